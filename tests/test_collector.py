"""collect_once against fake servers: backfill, increments, gaps, idempotence, retention,
retries, nothing written on bad replies, the key never stored, and a kill mid-write."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fake_sources import FakeOpenMeteo, default_pm2_5

import airq_nb

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = 3600
DAY = 24 * HOUR
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z, the fake clock's start
#: For tests of the gap logic alone: no re-fetch of the recent window (see test_revisions).
NO_REVISION = timedelta(0)


@pytest.fixture
def meteo(openmeteo_server):
    return airq_nb.OpenMeteoSource(base_url=openmeteo_server.url, timeout=5)


@pytest.fixture
def owm(openweathermap_server):
    return airq_nb.OpenWeatherMapSource(
        api_key=openweathermap_server.api_key, base_url=openweathermap_server.url, timeout=5
    )


def hours(store, **filters) -> list[int]:
    frame = airq_nb.read_readings(store, **filters)
    return [int(t.timestamp()) for t in frame.index]


def collect(store, source, **options):
    return airq_nb.collect_now(store, source=source, **options)


def test_first_run_backfills_seven_days_in_one_request(clocked_store, meteo, openmeteo_server):
    result = collect(clocked_store, meteo)
    last = T0 // HOUR * HOUR
    assert len(openmeteo_server.requests) == 1
    assert result.stored == result.received == 168
    assert hours(clocked_store) == list(range(last - 167 * HOUR, last + 1, HOUR))
    assert result.newest.timestamp() == last
    assert result.attempts == 1


def test_hourly_runs_fetch_only_the_new_hour(clocked_store, fake_clock, owm, openweathermap_server):
    collect(clocked_store, owm)
    for _ in range(3):
        fake_clock.advance(HOUR)
        result = collect(clocked_store, owm, revise=NO_REVISION)
        assert result.stored == 1
        assert result.start == result.end
    starts = [int(r.params["start"]) for r in openweathermap_server.requests]
    assert starts[1:] == [T0 // HOUR * HOUR + n * HOUR for n in (1, 2, 3)]
    assert len(hours(clocked_store)) == 168  # 3 new hours in, 3 old ones out


def test_a_run_within_the_same_hour_makes_no_request(
    clocked_store, fake_clock, meteo, openmeteo_server
):
    collect(clocked_store, meteo)
    fake_clock.advance(10 * 60)
    result = collect(clocked_store, meteo)
    assert result.up_to_date and result.stored == 0
    assert len(openmeteo_server.requests) == 1


def test_three_day_outage_is_filled_by_one_request(
    clocked_store, fake_clock, meteo, openmeteo_server
):
    collect(clocked_store, meteo)
    fake_clock.advance(3 * DAY)
    result = collect(clocked_store, meteo)
    assert len(openmeteo_server.requests) == 2
    assert result.stored == 72
    assert result.deleted == 72
    stored = hours(clocked_store)
    assert len(stored) == 168 and stored == sorted(set(stored))
    assert all(b - a == HOUR for a, b in itertools.pairwise(stored))


def serve_with_a_hole(server, hole: int) -> None:
    """Serve ten days around T0 except ``hole``: null (Open-Meteo) or left out (OWM)."""
    around = T0 // HOUR * HOUR
    if isinstance(server, FakeOpenMeteo):
        server.set_data(around - 10 * DAY, around + 3 * DAY)
        server.set_data(hole, hole, pm2_5=None, pm10=None)
    else:
        server.set_data(around - 10 * DAY, hole - HOUR)
        server.set_data(hole + HOUR, around + 3 * DAY)


def window_start(server) -> int:
    params = server.requests[-1].params
    if "start" in params:
        return int(params["start"])
    return int(datetime.fromisoformat(params["start_hour"]).replace(tzinfo=UTC).timestamp())


@pytest.mark.parametrize("which", ["open-meteo", "openweathermap"])
def test_an_hour_missing_mid_reply_is_asked_for_again(clocked_store, fake_clock, request, which):
    server = request.getfixturevalue(
        "openmeteo_server" if which == "open-meteo" else "openweathermap_server"
    )
    source = request.getfixturevalue("meteo" if which == "open-meteo" else "owm")
    last = T0 // HOUR * HOUR
    hole = last - 5 * HOUR
    serve_with_a_hole(server, hole)
    assert collect(clocked_store, source).stored == 167
    assert hole not in hours(clocked_store)
    server.set_data(hole, hole)  # the source has the hour now
    fake_clock.advance(HOUR)
    result = collect(clocked_store, source, revise=NO_REVISION)
    assert len(server.requests) == 2  # still one request per run
    assert window_start(server) == hole and result.start.timestamp() == hole
    assert hole in hours(clocked_store) and len(hours(clocked_store)) == 168


def test_a_hole_is_asked_for_for_a_day_then_left_alone(
    clocked_store, fake_clock, meteo, openmeteo_server
):
    last = T0 // HOUR * HOUR
    hole = last - 5 * HOUR
    serve_with_a_hole(openmeteo_server, hole)  # and it never gets a value
    collect(clocked_store, meteo)
    fake_clock.advance(HOUR)
    collect(clocked_store, meteo, revise=NO_REVISION)
    assert window_start(openmeteo_server) == hole
    # 21 hours later the hole is more than a day old: only the new hours are asked for.
    fake_clock.advance(20 * HOUR)
    result = collect(clocked_store, meteo, revise=NO_REVISION)
    assert window_start(openmeteo_server) == last + 2 * HOUR
    assert result.stored == 20 and len(openmeteo_server.requests) == 3


def test_a_hole_older_than_a_day_is_not_asked_for(
    clocked_store, fake_clock, owm, openweathermap_server
):
    last = T0 // HOUR * HOUR
    serve_with_a_hole(openweathermap_server, last - 30 * HOUR)
    collect(clocked_store, owm)
    fake_clock.advance(HOUR)
    assert collect(clocked_store, owm, revise=NO_REVISION).stored == 1
    assert window_start(openweathermap_server) == last + HOUR


def test_outage_longer_than_retention_asks_only_for_seven_days(
    clocked_store, fake_clock, owm, openweathermap_server
):
    collect(clocked_store, owm)
    fake_clock.advance(30 * DAY)
    result = collect(clocked_store, owm)
    request = openweathermap_server.requests[-1]
    assert int(request.params["end"]) - int(request.params["start"]) == 167 * HOUR
    assert result.deleted == 168 and len(hours(clocked_store)) == 168


def test_two_processes_fetching_the_same_window_store_each_hour_once(
    db_path, fake_clock, openmeteo_server, meteo
):
    import asyncio

    # Two connections to one file (two kernels, or a kernel and cron) run at the same
    # moment: both see nothing stored, both fetch the same 7 days, both write them.
    openmeteo_server.delay = 0.2
    with (
        airq_nb.open_store(db_path, clock=fake_clock) as first,
        airq_nb.open_store(db_path, clock=fake_clock) as second,
    ):

        async def both():
            return await asyncio.gather(
                airq_nb.collect_once(first, source=meteo),
                airq_nb.collect_once(second, source=meteo),
            )

        results = asyncio.run(both())
        # Both received the week; whichever wrote second found every hour already there.
        assert [r.received for r in results] == [168, 168]
        assert sorted(r.stored for r in results) == [0, 168]
        assert len(openmeteo_server.requests) == 2
        frame = airq_nb.read_readings(first)
    assert len(frame) == 168 and frame.index.is_unique


def test_an_overlapping_batch_updates_hours_instead_of_duplicating(clocked_store, owm):
    from airq_nb.store.readings import upsert_readings

    collect(clocked_store, owm)
    newer = [airq_nb.Reading(t, 99.0, 100.0, 5) for t in hours(clocked_store)[-10:]]
    newer.append(airq_nb.Reading(newer[-1].time + HOUR, 98.0, 99.0, 5))  # one hour past it
    upserted = upsert_readings(
        clocked_store, newer, source="openweathermap", location="London", fetched_at=T0
    )
    assert (upserted.inserted, upserted.revised) == (1, 10)
    frame = airq_nb.read_readings(clocked_store)
    assert len(frame) == 169 and frame.index.is_unique
    assert (frame["pm2_5"].iloc[-11:-1] == 99.0).all()
    assert frame["pm2_5"].iloc[0] == default_pm2_5(int(frame.index[0].timestamp()))


def test_retention_deletes_old_readings_in_the_same_run(clocked_store, fake_clock, meteo):
    collect(clocked_store, meteo)
    fake_clock.advance(2 * DAY)
    collect(clocked_store, meteo, retention=timedelta(days=1))
    stored = hours(clocked_store)
    assert len(stored) == 24
    assert min(stored) >= fake_clock.now() - DAY


def test_several_locations_and_sources_share_one_store(clocked_store, meteo, owm):
    paris = airq_nb.Location("Paris", 48.8566, 2.3522)
    collect(clocked_store, meteo)
    collect(clocked_store, meteo, location=paris)
    collect(clocked_store, owm, location=paris)
    assert len(hours(clocked_store, location="Paris")) == 336
    assert len(hours(clocked_store, location=paris, source="open-meteo")) == 168
    assert len(hours(clocked_store, location="London")) == 168
    assert len(hours(clocked_store, since=timedelta(hours=5))) == 3 * 5


def test_read_readings_shape_and_empty_store(store, clocked_store, meteo):
    empty = airq_nb.read_readings(store)
    columns = ["location", "source", "kind", "pm2_5", "pm10", "fetched_at", "point"]
    columns += ["site_name", "latitude", "longitude", "provenance"]
    assert list(empty.columns) == columns
    assert empty.empty and str(empty.index.dtype).startswith("datetime64") and empty.index.tz
    collect(clocked_store, meteo)
    frame = airq_nb.read_readings(clocked_store, since="2023-11-14T00:00Z")
    assert frame.index.name == "time" and str(frame.index.tz) == "UTC"
    assert len(frame) == 23
    assert list(frame.columns) == columns  # Open-Meteo gives no AQI: no all-empty column
    assert set(frame["kind"]) == {"modelled"}
    # The point asked for, named after the location; Open-Meteo adds no details of its own.
    assert set(frame["point"]) == {"51.5074,-0.1278"} and set(frame["site_name"]) == {"London"}
    assert set(frame["latitude"]) == {51.5074} and set(frame["longitude"]) == {-0.1278}
    assert set(frame["provenance"]) == {None}


# -- failures -------------------------------------------------------------------------------


def test_invalid_key_is_not_retried(clocked_store, openweathermap_server):
    source = airq_nb.OpenWeatherMapSource(api_key="not-the-key", base_url=openweathermap_server.url)
    with pytest.raises(airq_nb.InvalidApiKeyError, match="OPENWEATHER_API_KEY"):
        collect(clocked_store, source)
    assert len(openweathermap_server.requests) == 1
    assert hours(clocked_store) == []


def test_500_is_retried_then_succeeds(clocked_store, fake_clock, meteo, openmeteo_server):
    openmeteo_server.fail(500, times=2)
    before = fake_clock.now()
    result = collect(clocked_store, meteo)
    assert result.attempts == 3 and result.stored == 168
    assert len(openmeteo_server.requests) == 3
    assert fake_clock.now() - before >= 1.0 + 4.0  # the back-off was waited (on the clock)


def test_500_every_time_raises_after_bounded_tries(clocked_store, meteo, openmeteo_server):
    openmeteo_server.fail(503)
    with pytest.raises(airq_nb.SourceUnavailableError, match="HTTP 503") as info:
        collect(clocked_store, meteo)
    assert info.value.retryable
    assert len(openmeteo_server.requests) == 3


def test_429_waits_the_retry_after_it_was_given(clocked_store, fake_clock, meteo, openmeteo_server):
    openmeteo_server.fail(429, retry_after=17, times=1)
    before = fake_clock.now()
    result = collect(clocked_store, meteo)
    assert result.attempts == 2
    assert fake_clock.now() - before == pytest.approx(17.0)


def test_429_with_a_long_retry_after_is_left_to_the_scheduler(
    clocked_store, meteo, openmeteo_server
):
    openmeteo_server.fail(429, retry_after=3600)
    with pytest.raises(airq_nb.RateLimitedError) as info:
        collect(clocked_store, meteo)
    assert info.value.retry_after == 3600
    assert len(openmeteo_server.requests) == 1


def test_429_honoured_on_the_real_clock(store, openmeteo_server):
    openmeteo_server.fail(429, retry_after=1, times=1)
    collect(store, airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))
    first, second = openmeteo_server.requests
    assert second.at - first.at >= 0.95


def test_slow_server_times_out_and_writes_nothing(clocked_store, openmeteo_server):
    openmeteo_server.delay = 0.6
    source = airq_nb.OpenMeteoSource(base_url=openmeteo_server.url, timeout=0.15)
    started = time.monotonic()
    with pytest.raises(airq_nb.SourceUnavailableError, match="did not answer"):
        airq_nb.collect_now(clocked_store, source=source)
    assert time.monotonic() - started < 3 * 0.6  # gave up on each try, did not wait it out
    assert len(openmeteo_server.requests) == 3
    assert hours(clocked_store) == []


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "html",
        "wrong_types",
        "negative",
        "absurd",
        "outside_window",
        "missing_field",
        "deep",
    ],
)
def test_malformed_reply_writes_nothing_and_keeps_old_data(
    clocked_store, fake_clock, owm, openweathermap_server, kind
):
    collect(clocked_store, owm)
    before = airq_nb.read_readings(clocked_store)
    fake_clock.advance(5 * HOUR)
    openweathermap_server.malform(kind)
    with pytest.raises(airq_nb.MalformedReplyError, match="OpenWeatherMap sent"):
        collect(clocked_store, owm)
    assert len(openweathermap_server.requests) == 2  # malformed replies are not hammered
    after = airq_nb.read_readings(clocked_store)
    assert after.equals(before)


def test_the_last_outcome_is_remembered_for_status(clocked_store, meteo, openmeteo_server):
    from airq_nb.collector._job import last_collection

    collect(clocked_store, meteo)
    assert last_collection(clocked_store)[0]["outcome"] == "ok"
    openmeteo_server.fail(400, body={"error": True, "reason": "bad"})
    clocked_store.clock.advance(HOUR)
    with pytest.raises(airq_nb.RequestRejectedError):
        collect(clocked_store, meteo)
    (last,) = last_collection(clocked_store)
    assert last["outcome"] == "error" and "bad" in last["error"]


@pytest.mark.sqlite_only("searches the store's SQLite files for the key")
def test_api_key_never_reaches_the_database_or_the_logs(
    db_path, fake_clock, openweathermap_server, caplog
):
    caplog.set_level(logging.DEBUG)
    key = openweathermap_server.api_key
    source = airq_nb.OpenWeatherMapSource(
        api_key=key, base_url=openweathermap_server.url, timeout=0.2
    )
    with airq_nb.open_store(db_path, clock=fake_clock) as store:
        collect(store, source)
        fake_clock.advance(2 * HOUR)
        openweathermap_server.fail(500)
        with pytest.raises(airq_nb.SourceUnavailableError) as info:
            collect(store, source)
        assert key not in str(info.value)
        openweathermap_server.reset()
        openweathermap_server.delay = 0.5
        with pytest.raises(airq_nb.SourceUnavailableError):
            collect(store, source)
    files = [db_path, *db_path.parent.glob(db_path.name + "-*")]
    assert not any(key.encode() in f.read_bytes() for f in files)
    assert "appid=***" in caplog.text and key not in caplog.text


# -- a process killed mid-write --------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import random, sys, airq_nb

    class Local:
        # No network: the loop is nearly all SQLite writes, so the kill lands in one.
        name = "local"

        async def fetch(self, location, *, start, end):
            return [airq_nb.Reading(t, random.random(), 2.0) for t in range(start, end + 1, 3600)]

    db, url = sys.argv[1], sys.argv[2]
    store = airq_nb.open_store(db, durability="full")
    source = Local() if url == "local" else airq_nb.OpenMeteoSource(base_url=url)
    print("ready", flush=True)
    n = 0
    while True:
        airq_nb.collect_now(store, source=source, location=airq_nb.Location(f"p{n}", 51.5, 0.1))
        n += 1
    """
)


def _batches(db_path) -> list[int]:
    connection = sqlite3.connect(db_path, timeout=30)
    try:
        return [n for (n,) in connection.execute("SELECT COUNT(*) FROM readings GROUP BY location")]
    except sqlite3.OperationalError:  # the table is not there yet
        return []
    finally:
        connection.close()


@pytest.mark.sqlite_only("reads the SQLite file under a killed writer, PRAGMA integrity_check")
@pytest.mark.parametrize("via", ["http", "local"])
def test_killed_writer_leaves_whole_batches_only(db_path, openmeteo_server, tmp_path, via):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writer = subprocess.Popen(
        [sys.executable, str(script), str(db_path), openmeteo_server.url if via == "http" else via],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while len(_batches(db_path)) < 6 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.013)  # land somewhere inside a later batch
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait()
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        connection.close()
    batches = _batches(db_path)
    assert len(batches) >= 6
    assert set(batches) == {168}  # each batch whole, none half-written
    with airq_nb.open_store(db_path) as store:  # and the store opens and works after the kill
        assert len(airq_nb.read_readings(store)) == 168 * len(batches)


def test_collect_now_works_inside_a_running_event_loop(clocked_store, meteo):
    import asyncio

    async def cell():
        return airq_nb.collect_now(clocked_store, source=meteo)

    assert asyncio.run(cell()).stored == 168


@pytest.mark.sqlite_only("checks that the default SQLite file was created")
def test_collect_once_uses_the_environment_by_default(clocked_store, openmeteo_server, monkeypatch):
    import asyncio

    monkeypatch.delenv("OPENWEATHER_API_KEY", raising=False)
    monkeypatch.delenv("AIRQ_NB_SOURCE", raising=False)
    monkeypatch.setenv("AIRQ_NB_OPENMETEO_URL", openmeteo_server.url)
    result = asyncio.run(airq_nb.collect_once(clocked_store))
    assert (result.source, result.location, result.stored) == ("open-meteo", "London", 168)
    assert Path(clocked_store.path).exists()


# -- on the scheduler ----------------------------------------------------------------------


@pytest.mark.sqlite_only("searches the store's SQLite files for the key")
def test_start_collector_backfills_at_once_and_is_idempotent(
    store, openweathermap_server, monkeypatch
):
    import asyncio

    monkeypatch.setenv("OPENWEATHER_API_KEY", openweathermap_server.api_key)
    monkeypatch.setenv("AIRQ_NB_OPENWEATHER_URL", openweathermap_server.url)
    monkeypatch.delenv("AIRQ_NB_SOURCE", raising=False)

    async def notebook():
        first = airq_nb.start_collector(store)
        again = airq_nb.start_collector(store)  # a re-run cell
        assert again is first and first.running
        try:
            for _ in range(400):
                if len(hours(store)) == 168:
                    break
                await asyncio.sleep(0.025)
        finally:
            await first.stop()
        return first

    scheduler = asyncio.run(notebook())
    assert len(hours(store)) == 168
    assert len(openweathermap_server.requests) == 1  # one backfill, not one per call
    (info,) = scheduler.schedules()
    assert (info.name, info.topic, info.misfire, info.every) == (
        "collect:London",
        "collect",
        "coalesce",
        timedelta(hours=1),
    )
    assert info.message == {"location": airq_nb.LONDON.as_dict(), "source": "openweathermap"}
    files = [store.path, *store.path.parent.glob(store.path.name + "-*")]
    assert not any(openweathermap_server.api_key.encode() in f.read_bytes() for f in files)


def test_hourly_schedule_headless_with_a_fake_clock(
    clocked_store, fake_clock, meteo, openmeteo_server
):
    import asyncio

    from airq_nb.collector._schedule import install_collector

    async def run():
        scheduler = airq_nb.Scheduler(clocked_store)
        try:
            install_collector(scheduler, clocked_store, source=meteo)
            install_collector(
                scheduler,
                clocked_store,
                source=meteo,
                location=airq_nb.Location("Leeds", 53.8, -1.55),
            )
            return await scheduler.run_until_idle(until=timedelta(hours=5), timeout=30)
        finally:
            scheduler.close()

    summary = asyncio.run(run())
    assert summary.failed == 0
    # Per location: one backfill now, then one request per hour, each for one new hour.
    assert len(openmeteo_server.requests) == 2 * 6
    assert len(hours(clocked_store, location="London")) == 168
    newest = max(hours(clocked_store, location="Leeds"))
    assert newest == fake_clock.now() // HOUR * HOUR


def test_outage_under_the_scheduler_is_one_coalesced_run(
    clocked_store, fake_clock, meteo, openmeteo_server
):
    import asyncio

    from airq_nb.collector._schedule import install_collector

    async def run(**options):
        scheduler = airq_nb.Scheduler(clocked_store)
        try:
            install_collector(scheduler, clocked_store, source=meteo)
            return await scheduler.run_until_idle(timeout=30, **options)
        finally:
            scheduler.close()

    asyncio.run(run())
    fake_clock.advance(3 * DAY)  # the kernel was off for three days
    asyncio.run(run())
    assert len(openmeteo_server.requests) == 2
    assert (
        openmeteo_server.requests[1].params["start_hour"]
        < openmeteo_server.requests[1].params["end_hour"]
    )
    assert len(hours(clocked_store)) == 168


@pytest.mark.sqlite_only("searches the store's SQLite files for the key")
def test_invalid_key_dead_letters_at_once_and_the_schedule_goes_on(
    clocked_store, fake_clock, openweathermap_server
):
    import asyncio

    from airq_nb.collector._schedule import install_collector

    source = airq_nb.OpenWeatherMapSource(
        api_key="expired-key-0000", base_url=openweathermap_server.url
    )

    async def run():
        scheduler = airq_nb.Scheduler(clocked_store)
        try:
            install_collector(scheduler, clocked_store, source=source)
            return await scheduler.run_until_idle(until=timedelta(hours=2), timeout=30)
        finally:
            scheduler.close()

    summary = asyncio.run(run())
    assert len(openweathermap_server.requests) == 3  # now, +1 h, +2 h: never retried
    assert summary.dead_lettered == 3
    status = airq_nb.store_status(clocked_store)
    assert "OPENWEATHER_API_KEY" in status.last_error
    assert "expired-key-0000" not in status.last_error
    (info,) = airq_nb.Scheduler(clocked_store).schedules()
    assert not info.paused and info.next_run_at is not None
    files = [clocked_store.path, *clocked_store.path.parent.glob(clocked_store.path.name + "-*")]
    assert not any(b"expired-key-0000" in f.read_bytes() for f in files)


def test_a_source_returning_hours_outside_the_window_writes_nothing(clocked_store):
    class Sloppy:
        name = "sloppy"

        async def fetch(self, location, *, start, end):
            return [airq_nb.Reading(start, 1.0, 2.0), airq_nb.Reading(end + HOUR, 1.0, 2.0)]

    with pytest.raises(airq_nb.MalformedReplyError, match="outside the window"):
        collect(clocked_store, Sloppy())
    assert hours(clocked_store) == []


def _deliver_collect_runs(store, source):
    """Run the queued collect messages headless on a fresh scheduler with the collector."""
    from airq_nb.collector._schedule import install_collector

    async def run():
        scheduler = airq_nb.Scheduler(store)
        try:
            install_collector(scheduler, store, source=source)
            return await scheduler.run_until_idle(timeout=30)
        finally:
            scheduler.close()

    return asyncio.run(run())


def test_a_run_for_openweathermap_without_a_key_dead_letters_at_once(
    clocked_store, meteo, monkeypatch
):

    monkeypatch.delenv("OPENWEATHER_API_KEY", raising=False)
    clocked_store.enqueue(
        {"location": airq_nb.LONDON.as_dict(), "source": "openweathermap"}, topic="collect"
    )

    assert _deliver_collect_runs(clocked_store, meteo).dead_lettered == 1
    (dead,) = clocked_store.queue.dead_letters()
    assert dead.attempts == 1 and "OPENWEATHER_API_KEY" in dead.last_error


def test_a_run_for_an_unknown_source_dead_letters_naming_the_real_cause(
    clocked_store, meteo, monkeypatch
):

    monkeypatch.delenv("AIRQ_NB_SOURCE", raising=False)
    clocked_store.enqueue(
        {"location": airq_nb.LONDON.as_dict(), "source": "purpleair"}, topic="collect"
    )

    assert _deliver_collect_runs(clocked_store, meteo).dead_lettered == 1
    (dead,) = clocked_store.queue.dead_letters()
    assert dead.attempts == 1
    # Not an API-key problem: the error names the unknown source and what to set instead.
    assert dead.last_error.startswith("SourceConfigurationError: unknown air-quality source")
    assert "AIRQ_NB_SOURCE" in dead.last_error
    assert issubclass(airq_nb.SourceConfigurationError, airq_nb.ConfigurationError)


def _open_files(path: Path) -> list[str]:
    """This process's file descriptors open on ``path`` or its -wal/-shm files."""
    import contextlib

    targets = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own descriptor)
            targets.append(os.readlink(fd))
    return [t for t in targets if t.startswith(str(path))]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_collect_until_idle_closes_the_store_it_opened(db_path, openmeteo_server, monkeypatch):
    import asyncio

    monkeypatch.setenv("AIRQ_NB_DB", str(db_path))
    source = airq_nb.OpenMeteoSource(base_url=openmeteo_server.url)
    summary = asyncio.run(airq_nb.collect_until_idle(source=source, timeout=30))
    assert summary.delivered == 1
    assert _open_files(db_path) == []
    with airq_nb.open_store(db_path) as store:  # it did use that file
        assert len(airq_nb.read_readings(store)) == 168
