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
COLUMNS = ["location", "source", "kind", "pm2_5", "pm10", "fetched_at"]


def put(store, location, source, hours, *, kind="modelled", pm2_5=5.0, pm10=9.0, aqi=None):
    readings = [airq_nb.Reading(LAST - n * HOUR, pm2_5, pm10, aqi) for n in hours]
    return upsert_readings(
        store, readings, source=source, location=location, fetched_at=T0, kind=kind
    )


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
