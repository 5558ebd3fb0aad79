"""A source server that fails in turn — time-outs, 500, 429 with Retry-After, truncated JSON,
HTML, a dropped connection — then recovers: the stored readings equal what a healthy server
gave, nothing is duplicated, and the API key appears nowhere (database, logs, errors).

The hourly collector runs on a Scheduler with a FakeClock (back-off waits are instant); the
HTTP is real, to the fake OpenWeatherMap on 127.0.0.1 from ``tests/fake_sources.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import traceback
from datetime import timedelta
from pathlib import Path

import pytest

import airq_nb
from airq_nb import FakeClock, OpenWeatherMapSource, Scheduler, read_delivery_log, read_readings
from airq_nb.collector._schedule import install_collector

HOUR = 3600
# Ten past an hour: the retries' few fake minutes never cross into the next hour.
START = 472_223 * HOUR + 600
COMPARED = ["source", "location", "pm2_5", "pm10", "aqi"]


def run_collector(store: airq_nb.Store, clock: FakeClock, source, *, until: float = 0) -> None:
    """One headless pass of the hourly collector, as ``airq-nb run --until-idle`` does."""

    async def run() -> airq_nb.RunSummary:
        sched = Scheduler(store, clock=clock)
        install_collector(sched, store, source=source)
        return await sched.run_until_idle(until=timedelta(seconds=until), timeout=60)

    summary = asyncio.run(run())
    assert not summary.timed_out


def key_leaks(key: str, store: airq_nb.Store, *texts: str) -> list[str]:
    """Where ``key`` shows up: the store's files (db, -wal, -shm) and the given texts."""
    found = [
        path.name
        for path in store.path.parent.glob(store.path.name + "*")
        if key.encode() in path.read_bytes()
    ]
    return found + [text[:200] for text in texts if key in text]


def test_readings_after_a_run_of_failures_equal_a_healthy_servers(
    tmp_path: Path, openweathermap_server, caplog, reliability_report
) -> None:
    caplog.set_level(logging.DEBUG)
    server, key = openweathermap_server, openweathermap_server.api_key
    source = OpenWeatherMapSource(api_key=key, base_url=server.url, timeout=0.2)

    healthy_clock, flaky_clock = FakeClock(START), FakeClock(START)
    healthy = airq_nb.open_store(tmp_path / "healthy.db", clock=healthy_clock)
    flaky = airq_nb.open_store(tmp_path / "flaky.db", clock=flaky_clock)
    try:
        run_collector(healthy, healthy_clock, source)
        server.reset()

        # Phase 1: the server hangs past the client's time-out, on every try of the run.
        server.delay = 0.5
        run_collector(flaky, flaky_clock, source)
        assert read_readings(flaky).empty
        # The three hung requests took their (empty) action on arrival; wait until they are
        # answered so that none is still in flight when phase 2's failures are scripted.
        server.wait_idle(requests=3)
        server.delay = 0.0
        # Phase 2: each request fails differently, in turn, then the server recovers.
        server.fail(500, times=1)
        server.fail(429, retry_after="2", times=1)
        server.malform("truncated", times=1)
        server.malform("html", times=1)
        server.drop_connection(times=1)
        run_collector(flaky, flaky_clock, source, until=300)
        faults = 3 + 5  # three time-outs, then the five scripted failures

        log = read_delivery_log(flaky)
        assert list(log.outcome) == ["retry", "retry", "retry", "ok"], log[["outcome", "error"]]
        assert len(server.requests) == faults + 1
        assert flaky.queue.counts().by_state.get("dead", 0) == 0

        want, got = read_readings(healthy), read_readings(flaky)
        assert len(want) >= 24 * 6
        assert not got.index.duplicated().any()
        assert got[COMPARED].equals(want[COMPARED])

        # An hour later both collect again: one new hour each (and the oldest past the 7-day
        # retention gone), still identical, no duplicates.
        for store, clock in ((healthy, healthy_clock), (flaky, flaky_clock)):
            clock.advance(HOUR)
            run_collector(store, clock, source)
        want2, got2 = read_readings(healthy), read_readings(flaky)
        assert len(got2) == len(got)
        assert (got2.index.max() - got.index.max()).total_seconds() == HOUR
        assert not got2.index.duplicated().any()
        assert got2[COMPARED].equals(want2[COMPARED])

        errors = [str(e) for e in log.error.dropna()]
        errors += [m.last_error or "" for m in flaky.queue.list()]
        leaks = key_leaks(key, flaky, caplog.text, *errors)
        leaks += key_leaks(key, healthy)
        assert leaks == []
        # The log did record the requests (masked), so the scan above looked at real lines.
        assert "air_pollution/history" in caplog.text
    finally:
        healthy.close()
        flaky.close()
    reliability_report(
        "source fails in turn, then recovers",
        faults=faults,
        messages=len(got2),
        lost=len(want2) - len(got2),
        duplicated=int(got2.index.duplicated().sum()),
        notes="time-outs, 500, 429+Retry-After, truncated JSON, HTML, dropped connection",
    )


@pytest.mark.parametrize("failure", ["timeout", "500", "429", "401", "truncated", "html", "drop"])
def test_the_api_key_is_in_no_error_or_traceback(
    tmp_path: Path, openweathermap_server, caplog, failure: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server = openweathermap_server
    key = server.api_key if failure != "401" else "wrong-secret-key-8c41d7"
    source = OpenWeatherMapSource(api_key=key, base_url=server.url, timeout=0.2)
    if failure == "timeout":
        server.delay = 0.5
    elif failure in ("500", "429"):
        server.fail(int(failure), retry_after="1" if failure == "429" else None)
    elif failure == "drop":
        server.drop_connection()
    elif failure != "401":
        server.malform(failure)
    with airq_nb.open_store(tmp_path / "errors.db", clock=FakeClock(START)) as store:
        with pytest.raises(airq_nb.SourceError) as raised:
            asyncio.run(airq_nb.collect_once(store, source=source, tries=2, backoff=[0]))
        shown = "".join(traceback.format_exception(raised.value))
        assert key_leaks(key, store, shown, repr(raised.value), repr(source), caplog.text) == []
    assert server.requests, "the source was never asked"
    assert key in server.requests[0].params.get("appid", ""), "the fake never saw the key"


def test_the_cli_never_shows_the_api_key(tmp_path: Path, openweathermap_server) -> None:
    server, key = openweathermap_server, "wrong-secret-key-8c41d7"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_NB_", "OPENWEATHER"))}
    env.update(AIRQ_NB_OPENWEATHER_URL=server.url, OPENWEATHER_API_KEY=key)
    db = tmp_path / "cli.db"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "airq_nb", "--db", str(db), "--source", "openweathermap"]
        return subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=60
        )

    # The wrong key is refused (HTTP 401): by `collect`, and by the scheduled run, which
    # dead-letters at once; then everything that shows state is asked to show it.
    results = [cli("collect"), cli("run", "--until-idle")]
    assert all(r.returncode != 0 for r in results), [r.stdout for r in results]
    shows = [cli("status"), cli("queue", "list", "--state", "dead"), cli("schedules")]
    shows += [cli("--json", "status"), cli("--json", "queue", "list")]
    assert all(r.returncode == 0 for r in shows), [r.stderr for r in shows]
    results += shows
    assert "401" in "".join(r.stdout + r.stderr for r in results)
    with airq_nb.open_store(db) as store:
        assert len(store.queue.dead_letters()) == 1
        texts = [r.stdout + r.stderr for r in results]
        assert key_leaks(key, store, *texts) == []
    assert all(r.params.get("appid") == key for r in server.requests)
