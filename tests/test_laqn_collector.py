"""Collecting LAQN sites: provenance, revised values, idle runs that write nothing, several
sites on the scheduler, and measured beside modelled data in one store."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from fake_sources import default_pm2_5

import airq_nb

HOUR = 3600
DAY = 24 * HOUR
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z, the fake clock's start
LAST = T0 // HOUR * HOUR
KF1 = airq_nb.Location.parse("laqn:KF1")


@pytest.fixture
def laqn(laqn_server):
    return airq_nb.LaqnSource(base_url=laqn_server.url, timeout=5)


def collect(store, source, **options):
    return airq_nb.collect_now(store, source=source, **options)


def hour(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def data_version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA data_version").fetchone()[0]


def test_readings_record_source_site_kind_and_fetch_time(clocked_store, laqn, laqn_server):
    result = collect(clocked_store, laqn)  # no location: LAQN's first default, KF1
    assert (result.source, result.location, result.kind) == ("laqn", "laqn:KF1", "measured")
    assert result.stored == 168
    assert laqn_server.data_requests()[0] == ("KF1", "PM25", "2023-11-07", "2023-11-15")
    assert len(laqn_server.data_requests()) == 2 and laqn_server.site_list_requests() == 1
    frame = airq_nb.read_readings(clocked_store)
    assert set(frame["location"]) == {"laqn:KF1"} and set(frame["source"]) == {"laqn"}
    assert set(frame["kind"]) == {"measured"}
    assert (frame["fetched_at"] == frame["fetched_at"].iloc[0]).all()
    assert frame["fetched_at"].iloc[0].timestamp() == T0
    # The site from the site list: its code, name and coordinates in degrees.
    assert set(frame["point"]) == {"KF1"}
    assert set(frame["site_name"]) == {"Kensington and Chelsea - North Ken FIDAS"}
    assert set(frame["latitude"]) == {51.52105} and set(frame["longitude"]) == {-0.213492}


def test_measured_kf1_and_modelled_london_coexist(clocked_store, laqn, openmeteo_server):
    collect(clocked_store, laqn, location=KF1)
    collect(clocked_store, airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))
    frame = airq_nb.read_readings(clocked_store, location=["laqn:KF1", "London"])
    series = frame.groupby(["location", "source", "kind"]).size().to_dict()
    assert series == {
        ("London", "open-meteo", "modelled"): 168,
        ("laqn:KF1", "laqn", "measured"): 168,
    }


def test_revised_values_are_stored_and_logged(clocked_store, fake_clock, laqn, laqn_server):
    laqn_server.set_data(LAST - 3 * DAY, LAST)
    collect(clocked_store, laqn, location=KF1)
    # Ratification changes a provisional value 5 hours back, and one 60 hours back.
    laqn_server.set_data(LAST - 5 * HOUR, LAST - 5 * HOUR, pm2_5=99.0)
    laqn_server.set_data(LAST - 60 * HOUR, LAST - 60 * HOUR, pm2_5=77.0)
    fake_clock.advance(HOUR)
    result = collect(clocked_store, laqn, location=KF1)
    # The recent window (48 h) is asked for again: from 23:00 - 47 h, 2023-11-13 00:00.
    assert laqn_server.data_requests()[-1] == ("KF1", "PM10", "2023-11-13", "2023-11-15")
    assert (result.stored, result.revised) == (1, 1)
    (change,) = airq_nb.read_revisions(clocked_store).itertuples()
    assert change.Index == 0
    assert change.time.timestamp() == LAST - 5 * HOUR
    assert (change.location, change.source, change.pollutant) == ("laqn:KF1", "laqn", "pm2_5")
    assert change.old == default_pm2_5(LAST - 5 * HOUR) and change.new == 99.0
    assert change.noticed_at.timestamp() == fake_clock.now()
    frame = airq_nb.read_readings(clocked_store)
    revised = frame.loc[hour(LAST - 5 * HOUR)]
    assert revised["pm2_5"] == 99.0 and revised["fetched_at"].timestamp() == fake_clock.now()
    older = frame.loc[hour(LAST - 60 * HOUR)]
    assert older["pm2_5"] == default_pm2_5(LAST - 60 * HOUR)  # outside the window: not seen


def test_a_withdrawn_value_is_logged_and_empty_hours_are_not_stored(
    clocked_store, fake_clock, laqn, laqn_server
):
    laqn_server.set_data(LAST - 3 * DAY, LAST - HOUR)  # LAST itself: listed, no value yet
    assert collect(clocked_store, laqn, location=KF1).stored == 72
    stored = airq_nb.read_readings(clocked_store)
    assert hour(LAST) not in stored.index  # an empty hour is not a reading
    # Ratification withdraws both values of an hour.
    laqn_server.set_data(LAST - 3 * HOUR, LAST - 3 * HOUR, pm2_5=None, pm10=None)
    fake_clock.advance(HOUR)
    result = collect(clocked_store, laqn, location=KF1)
    assert result.revised == 1
    changes = airq_nb.read_revisions(clocked_store)
    assert sorted(changes["pollutant"]) == ["pm10", "pm2_5"] and changes["new"].isna().all()
    withdrawn = airq_nb.read_readings(clocked_store).loc[hour(LAST - 3 * HOUR)]
    assert pd.isna(withdrawn["pm2_5"]) and pd.isna(withdrawn["pm10"])


def test_revision_window_is_a_parameter(clocked_store, fake_clock, laqn, laqn_server):
    collect(clocked_store, laqn, location=KF1)
    fake_clock.advance(HOUR)
    collect(clocked_store, laqn, location=KF1, revise=timedelta(hours=6))
    # From 23:00 - 5 h (18:00): one GMT day asked for, EndDate the day after (exclusive).
    assert laqn_server.data_requests()[-1] == ("KF1", "PM10", "2023-11-14", "2023-11-15")
    fake_clock.advance(HOUR)  # 00:13 on the 15th: only the new hour
    collect(clocked_store, laqn, location=KF1, revise=timedelta(0))
    assert laqn_server.data_requests()[-1] == ("KF1", "PM10", "2023-11-15", "2023-11-16")


def test_a_run_that_finds_nothing_new_writes_nothing(db_path, fake_clock, laqn, laqn_server):
    # LAQN lags: the newest hour is not measured yet, and it stays so for the next run.
    laqn_server.set_data(LAST - DAY, LAST - HOUR)
    watcher = sqlite3.connect(db_path)
    try:
        with airq_nb.open_store(db_path, clock=fake_clock) as store:
            assert collect(store, laqn, location=KF1).stored == 24
            before = data_version(watcher)
            fake_clock.advance(HOUR)
            result = collect(store, laqn, location=KF1)
            # 48 hours listed (24 of them without values yet): nothing new, nothing changed.
            assert (result.received, result.stored, result.revised) == (48, 0, 0)
            assert len(laqn_server.data_requests()) == 4  # it did ask again
            assert data_version(watcher) == before  # and committed nothing
            # The control: a changed value is a commit.
            laqn_server.set_data(LAST - 2 * HOUR, LAST - 2 * HOUR, pm10=55.0)
            fake_clock.advance(HOUR)
            assert collect(store, laqn, location=KF1).revised == 1
            assert data_version(watcher) != before
    finally:
        watcher.close()


def test_a_site_without_pm_is_refused_before_any_data_request(clocked_store, laqn, laqn_server):
    with pytest.raises(airq_nb.SourceConfigurationError, match="laqn:MY7"):
        collect(clocked_store, laqn, location=airq_nb.Location.parse("laqn:MY1"))
    assert laqn_server.data_requests() == []
    assert airq_nb.read_readings(clocked_store).empty


def test_default_sites_on_the_scheduler_are_two_series(clocked_store, laqn, laqn_server):
    summary = asyncio.run(airq_nb.collect_until_idle(clocked_store, source=laqn, timeout=30))
    assert summary.delivered == 2
    frame = airq_nb.read_readings(clocked_store)
    assert frame.groupby("location").size().to_dict() == {"laqn:KF1": 168, "laqn:MY7": 168}
    assert laqn_server.site_list_requests() == 1  # cached for the second site
    assert {site for site, *_ in laqn_server.data_requests()} == {"KF1", "MY7"}


def test_a_refused_site_dead_letters_at_once_naming_the_alternative(clocked_store, laqn):
    with pytest.raises(airq_nb.CollectionFailedError, match="laqn:MY7"):
        asyncio.run(
            airq_nb.collect_until_idle(
                clocked_store, source=laqn, location=airq_nb.Location.parse("laqn:MY1")
            )
        )
    (dead,) = clocked_store.queue.dead_letters()
    assert dead.attempts == 1 and "measures no PM2.5 or PM10" in dead.last_error


def test_several_locations_are_collected_each_as_its_own_series(clocked_store, openmeteo_server):
    meteo = airq_nb.OpenMeteoSource(base_url=openmeteo_server.url)
    paris = airq_nb.Location("Paris", 48.8566, 2.3522)
    summary = asyncio.run(
        airq_nb.collect_until_idle(
            clocked_store, source=meteo, locations=[airq_nb.LONDON, paris], timeout=30
        )
    )
    assert summary.delivered == 2
    names = sorted(i.name for i in airq_nb.Scheduler(clocked_store).schedules())
    assert names == ["collect:London", "collect:Paris"]
    frame = airq_nb.read_readings(clocked_store, location=["Paris", "London"])
    assert frame.groupby("location").size().to_dict() == {"London": 168, "Paris": 168}
    with pytest.raises(airq_nb.ConfigurationError, match="not both"):
        asyncio.run(
            airq_nb.collect_until_idle(
                clocked_store, source=meteo, location=paris, locations=[paris]
            )
        )


def test_start_collector_with_several_locations_in_a_running_loop(store, laqn, laqn_server):
    sites = [KF1, airq_nb.Location.parse("laqn:MY7")]

    async def notebook():
        scheduler = airq_nb.start_collector(store, source=laqn, locations=sites)
        again = airq_nb.start_collector(store, source=laqn, locations=sites)  # a re-run cell
        assert again is scheduler
        try:
            for _ in range(400):
                if len(airq_nb.read_readings(store)) == 2 * 168:
                    break
                await asyncio.sleep(0.025)
        finally:
            await scheduler.stop()
        return scheduler

    scheduler = asyncio.run(notebook())
    names = sorted(info.name for info in scheduler.schedules())
    assert names == ["collect:laqn:KF1", "collect:laqn:MY7"]
    frame = airq_nb.read_readings(store, location=["laqn:KF1", "laqn:MY7"])
    assert frame.groupby("location").size().to_dict() == {"laqn:KF1": 168, "laqn:MY7": 168}
    assert len(laqn_server.data_requests()) == 4  # one backfill per site, one request per species


def test_laqn_schedules_may_not_poll_more_than_hourly(clocked_store, laqn):
    with pytest.raises(airq_nb.ConfigurationError, match="no more often than every 1:00:00"):
        asyncio.run(
            airq_nb.collect_until_idle(clocked_store, source=laqn, every=timedelta(minutes=10))
        )
    assert airq_nb.Scheduler(clocked_store).schedules() == []


def test_an_implausible_hour_does_not_block_the_site(clocked_store, fake_clock, laqn, laqn_server):
    # A spike beyond the plausible is stored as missing; the next runs move on past it
    # instead of failing on the same reply for ever.
    laqn_server.set_data(LAST - 3 * DAY, LAST)
    laqn_server.set_data(LAST - 2 * HOUR, LAST - 2 * HOUR, pm2_5=2500.0)
    assert collect(clocked_store, laqn, location=KF1).stored == 3 * 24 + 1
    spike = airq_nb.read_readings(clocked_store).loc[hour(LAST - 2 * HOUR)]
    assert pd.isna(spike["pm2_5"]) and spike["pm10"] > 0
    for _ in range(3):
        fake_clock.advance(6 * HOUR)
        laqn_server.set_data(LAST, int(fake_clock.now()) // HOUR * HOUR)
        collect(clocked_store, laqn, location=KF1)
    newest = airq_nb.read_readings(clocked_store).index.max()
    assert newest == hour(int(fake_clock.now()) // HOUR * HOUR)  # 18 hours further on
