"""read_readings / read_revisions: the contract the charts and widgets rely on, and the
readings table's provenance migration on a file written before it."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import airq_nb
from airq_nb.store.readings import upsert_readings

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = 3600
T0 = 1_700_000_000
LAST = T0 // HOUR * HOUR
COLUMNS = [
    "location",
    "source",
    "kind",
    "pm2_5",
    "pm10",
    "fetched_at",
    "point",
    "site_name",
    "latitude",
    "longitude",
    "provenance",
]
#: What each test location stands for: point, site name, latitude, longitude, details.
SITES = {
    "London": ("51.5074,-0.1278", "London", 51.5074, -0.1278, None),
    "Paris": ("48.8566,2.3522", "Paris", 48.8566, 2.3522, None),
    "laqn:KF1": ("KF1", "North Kensington", 51.52105, -0.213492, {"network": "LAQN"}),
}


def put(store, location, source, hours, *, kind="modelled", pm2_5=5.0, pm10=9.0, aqi=None):
    readings = [airq_nb.Reading(LAST - n * HOUR, pm2_5, pm10, aqi) for n in hours]
    point, site_name, latitude, longitude, details = SITES[location]
    return upsert_readings(
        store, readings, source=source, location=location, fetched_at=T0, kind=kind,
        point=point, site_name=site_name, latitude=latitude, longitude=longitude,
        details=details,
    )  # fmt: skip


@pytest.fixture
def filled(clocked_store):
    put(clocked_store, "London", "open-meteo", range(3))
    put(clocked_store, "laqn:KF1", "laqn", range(2), kind="measured", pm2_5=None)
    put(clocked_store, "Paris", "open-meteo", range(1))
    return clocked_store


def test_columns_types_and_order(filled):
    frame = airq_nb.read_readings(filled)
    assert list(frame.columns) == COLUMNS
    assert frame.index.name == "time" and str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing
    assert frame["pm2_5"].dtype == "float64" and frame["pm10"].dtype == "float64"
    assert isinstance(frame["fetched_at"].dtype, pd.DatetimeTZDtype)
    assert not [c for c, t in frame.dtypes.items() if pd.api.types.is_integer_dtype(t)]
    # Missing is NaN, never 0, and no column is all empty.
    kf1 = frame[frame["location"] == "laqn:KF1"]
    assert kf1["pm2_5"].isna().all() and (kf1["pm10"] == 9.0).all()
    assert not any(frame[c].isna().all() for c in frame.columns)
    assert set(zip(frame["location"], frame["kind"], strict=True)) == {
        ("London", "modelled"),
        ("laqn:KF1", "measured"),
        ("Paris", "modelled"),
    }


def test_every_source_has_the_same_provenance_columns(filled):
    frame = airq_nb.read_readings(filled)
    assert frame["latitude"].dtype == "float64" and frame["longitude"].dtype == "float64"
    first = frame.drop_duplicates("location").set_index("location")
    for location, (point, site_name, latitude, longitude, details) in SITES.items():
        row = first.loc[location]
        assert (row["point"], row["site_name"]) == (point, site_name)
        assert (row["latitude"], row["longitude"]) == (latitude, longitude)
        assert row["provenance"] == details


def test_a_readings_own_details_join_the_series_details(clocked_store):
    hour = airq_nb.Reading(LAST, 5.0, 9.0, details={"coverage": {"pm2_5": [1, 1]}})
    upsert_readings(
        clocked_store, [hour], source="openaq", location="openaq:2178", fetched_at=T0,
        kind="measured", point="2178", details={"provider": "AirNow"},
    )  # fmt: skip
    (provenance,) = airq_nb.read_readings(clocked_store)["provenance"]
    assert provenance == {"provider": "AirNow", "coverage": {"pm2_5": [1, 1]}}


def test_rows_stored_before_their_site_was_known_get_it_with_the_next_batch(clocked_store):
    old = [airq_nb.Reading(LAST - HOUR, 5.0, 9.0)]
    upsert_readings(
        clocked_store, old, source="laqn", location="laqn:KF1", fetched_at=T0, kind="measured"
    )
    assert airq_nb.read_readings(clocked_store)["site_name"].isna().all()
    put(clocked_store, "laqn:KF1", "laqn", range(1), kind="measured")
    frame = airq_nb.read_readings(clocked_store)
    assert list(frame["site_name"]) == ["North Kensington"] * 2
    assert list(frame["latitude"]) == [51.52105] * 2


def test_location_filters_by_one_name_several_or_a_location(filled):
    assert set(airq_nb.read_readings(filled, location="London")["location"]) == {"London"}
    both = airq_nb.read_readings(filled, location=["London", "laqn:KF1"])
    assert both.groupby("location").size().to_dict() == {"London": 3, "laqn:KF1": 2}
    kf1 = airq_nb.Location.parse("laqn:KF1")
    assert len(airq_nb.read_readings(filled, location=kf1)) == 2
    assert airq_nb.read_readings(filled, location=[]).empty
    assert len(airq_nb.read_readings(filled, source="laqn")) == 2
    assert len(airq_nb.read_readings(filled, source=["laqn", "open-meteo"])) == 6


def test_times_in_a_named_zone(filled):
    utc = airq_nb.read_readings(filled)
    london = airq_nb.read_readings(filled, tz="Europe/London")
    assert str(london.index.tz) == "Europe/London"
    assert str(london["fetched_at"].dt.tz) == "Europe/London"
    assert (london.index == utc.index).all()  # the same instants
    with pytest.raises(airq_nb.ConfigurationError, match="Europe/London"):
        airq_nb.read_readings(filled, tz="Mars/Olympus")


def test_since_keeps_recent_hours(filled):
    recent = airq_nb.read_readings(filled, since=timedelta(hours=1))
    assert {int(t.timestamp()) for t in recent.index} == {LAST}


def test_aqi_appears_only_when_some_source_gives_it(clocked_store):
    put(clocked_store, "London", "openweathermap", range(2), aqi=2)
    frame = airq_nb.read_readings(clocked_store)
    assert list(frame.columns) == [*COLUMNS, "aqi"] and str(frame["aqi"].dtype) == "Int64"


def test_read_revisions_shape(clocked_store):
    put(clocked_store, "London", "open-meteo", range(2))
    put(clocked_store, "London", "open-meteo", range(1), pm2_5=6.5)
    revisions = airq_nb.read_revisions(clocked_store, tz="Europe/London")
    assert list(revisions.columns) == [
        "time", "location", "source", "pollutant", "old", "new", "noticed_at"
    ]  # fmt: skip
    assert revisions[["pollutant", "old", "new"]].values.tolist() == [["pm2_5", 5.0, 6.5]]
    assert str(revisions["time"].dt.tz) == "Europe/London"
    assert airq_nb.read_revisions(clocked_store, location="Paris").empty


def test_a_file_from_before_provenance_is_read_and_migrated(tmp_path, fake_clock):
    # A store written by the last release before provenance (readings with no kind column).
    dump = Path(__file__).parent / "data" / "store-schema2-broken-f774d0e.sql"
    db_path = tmp_path / "old.db"
    old = sqlite3.connect(db_path)
    old.executescript(dump.read_text(encoding="utf-8"))
    old.close()
    with airq_nb.open_store(db_path, clock=fake_clock) as store:
        before = airq_nb.read_readings(store)
        assert set(before["kind"]) == {"modelled"} and len(before) == 2
        put(store, "laqn:KF1", "laqn", range(1), kind="measured")
        after = airq_nb.read_readings(store)
    assert after.groupby("kind").size().to_dict() == {"measured": 1, "modelled": 2}
    # The release before provenance kept no point, so nothing tells where its rows were.
    assert after[after["kind"] == "modelled"][["point", "latitude"]].isna().all().all()


@pytest.mark.backends("sqlite")
def test_the_site_step_gives_rows_of_a_point_their_coordinates_back(tmp_path):
    # A file at schema 9 (before step 10), with one point row and one site row.
    from airq_nb.store.sqlite._schema import MIGRATIONS

    db_path = tmp_path / "nine.db"
    conn = sqlite3.connect(db_path)
    with conn:
        for _what, step in MIGRATIONS[:9]:
            step(conn)
        conn.execute("PRAGMA user_version = 9")
        conn.executemany(
            "INSERT INTO readings (source, location, time, pm2_5, pm10, fetched_at, kind, point)"
            " VALUES (?, ?, ?, 5.0, 9.0, ?, ?, ?)",
            [
                ("open-meteo", "London", LAST, T0, "modelled", "51.5074,-0.1278"),
                ("laqn", "laqn:KF1", LAST, T0, "measured", "KF1"),
            ],
        )
    conn.close()
    with airq_nb.open_store(db_path) as store:
        frame = airq_nb.read_readings(store).set_index("location")
    assert (frame.loc["London", "latitude"], frame.loc["London", "longitude"]) == (
        51.5074,
        -0.1278,
    )
    assert pd.isna(frame.loc["laqn:KF1", "latitude"]) and frame.loc["laqn:KF1", "point"] == "KF1"


@pytest.mark.backends("sqlite")
def test_postgres_step_5_gives_rows_of_a_point_their_coordinates_back(postgres_url):
    # Marked sqlite only so it runs once; it makes its own PostgreSQL schema at step 4.
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql
    from store_backends import drop_schema, fresh_schema_url

    from airq_nb.store.postgres._schema import STEPS

    url, schema = fresh_schema_url(postgres_url)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            # A schema as airq_nb with four steps left it.
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            channel = sql.Literal(f"airq_nb:{schema}")
            for _what, statements in STEPS[:4]:
                for statement in statements:
                    conn.execute(sql.SQL(statement).format(channel=channel))
            conn.execute(
                sql.SQL("COMMENT ON SCHEMA {} IS 'airq_nb schema 4'").format(sql.Identifier(schema))
            )
            conn.execute(
                "INSERT INTO readings (source, location, time, pm2_5, pm10, fetched_at, kind, "
                "point) VALUES ('open-meteo', 'London', %s, 5.0, 9.0, %s, 'modelled', "
                "'51.5074,-0.1278')",
                (LAST, T0),
            )
        with airq_nb.open_store(url) as store:
            frame = airq_nb.read_readings(store)
        assert (frame["latitude"].iloc[0], frame["longitude"].iloc[0]) == (51.5074, -0.1278)
        assert frame["site_name"].isna().all()
    finally:
        drop_schema(postgres_url, schema)
