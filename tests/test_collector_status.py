"""collector_status: the collector's own schedule and readings, never another topic's trouble."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import airq_nb
from airq_nb.collector._schedule import install_collector
from airq_nb.ui.widgets import StatusPanel

pytestmark = pytest.mark.backends("sqlite", "postgres")


def fail(value: object) -> None:
    raise ValueError(f"unrelated failure {value!r}")


def collector_beside_others(store: airq_nb.Store, url: str) -> airq_nb.RunSummary:
    """A collector that ran once, then another topic's dead letter and an unlistened topic."""
    scheduler = airq_nb.Scheduler(store)
    try:
        source = airq_nb.source_from_env("open-meteo", base_url=url)
        install_collector(scheduler, store, source=source)
        collected = asyncio.run(scheduler.run_until_idle(timeout=60))
        assert collected.delivered == 1
        scheduler.listen_queue(fail, topic="jobs")
        store.enqueue({"n": 1}, topic="jobs", backoff_schedule=[])
        # Due now and no handler anywhere: it would pin "next due" in the past.
        store.enqueue({"orphan": True}, topic="nobody")
        return asyncio.run(scheduler.run_until_idle(timeout=60))
    finally:
        scheduler.close()


def test_collector_status_reports_only_its_own_schedule(store, openmeteo_server):
    summary = collector_beside_others(store, openmeteo_server.url)
    assert (summary.delivered, summary.dead_lettered) == (0, 1)
    # The store-wide view sees the other topics' trouble...
    overall = airq_nb.store_status(store)
    assert overall.dead_letters == 1 and overall.last_outcome == "dead"
    assert overall.next_due is not None and overall.next_due.timestamp() <= store.now()

    status = airq_nb.collector_status(store)
    assert [info.name for info in status.schedules] == ["collect:London"]
    assert status.last_outcome == "ok" and status.last_error is None
    assert status.dead_letters == 0 and not status.running and not status.paused
    # ...the collector's next run is its next hourly slot, not the orphan message.
    now = datetime.fromtimestamp(store.now(), UTC)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert status.next_run_at == next_hour
    assert status.last_run_at is not None and abs(status.last_run_at - now) < timedelta(minutes=1)
    stored = airq_nb.read_readings(store)
    assert status.readings == len(stored) >= 24 * 6
    assert status.newest_reading_at == stored.index.max().to_pydatetime(warn=False)
    assert timedelta(0) <= status.newest_reading_age < timedelta(hours=3)
    text = str(status)
    assert "collect:London" in text and "Outcome:" in text and "ok" in text
    assert "unrelated" not in text and "nobody" not in text and "dead letter" not in text

    panel = StatusPanel(store, autostart=False).value
    assert "collect:London" in panel and "unrelated" not in panel
    assert "Dead letters" not in panel


def test_a_failed_collection_shows_with_its_error_and_retry(store):
    scheduler = airq_nb.Scheduler(store)
    # Nothing listens on the closed port: the run fails and is retried by back-off.
    source = airq_nb.source_from_env("open-meteo", base_url="http://127.0.0.1:9")
    install_collector(scheduler, store, source=source)
    asyncio.run(scheduler.run_until_idle(timeout=60))
    scheduler.close()
    status = airq_nb.collector_status(store)
    assert status.last_outcome == "retry"
    assert "Open-Meteo" in status.last_error
    assert status.readings == 0 and status.newest_reading_at is None
    assert status.next_run_at is not None and status.next_run_at.timestamp() > store.now()
    assert "failed, will be retried" in str(status)


def test_before_the_collector_starts_the_status_says_so(store):
    store.enqueue({"n": 1}, topic="other")
    status = airq_nb.collector_status(store)
    assert status.schedules == () and status.last_outcome is None
    assert status.next_run_at is None and status.readings == 0
    assert "not started" in str(status)


def test_pausing_the_collect_topic_shows_as_paused(store, openmeteo_server):
    collector_beside_others(store, openmeteo_server.url)
    store.queue.pause("collect")
    status = airq_nb.collector_status(store)
    assert status.paused
    assert "Next run:" in str(status) and "paused" in str(status)
    store.queue.resume("collect")
    store.queue.pause("jobs")  # another topic's pause is not the collector's
    assert not airq_nb.collector_status(store).paused


def test_wait_for_readings_returns_once_the_first_collection_is_stored(store, openmeteo_server):
    # A slow source: the wait must outlast a first run that has started but not finished.
    openmeteo_server.delay = 2.0

    async def scenario() -> airq_nb.CollectorStatus:
        scheduler = airq_nb.Scheduler(store)
        source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
        install_collector(scheduler, store, source=source)
        scheduler.start()
        try:
            return await airq_nb.wait_for_readings(store, timeout=60)
        finally:
            await scheduler.stop()
            scheduler.close()

    status = asyncio.run(scenario())
    assert status.readings >= 24 * 6
    # The readings commit before the scheduler settles the run, so the wait may return
    # before the outcome is logged; once the scheduler has stopped, it is.
    assert airq_nb.collector_status(store).last_outcome == "ok"


def test_wait_for_readings_does_not_wait_for_a_collector_that_is_not_there(store):
    async def scenario() -> tuple[airq_nb.CollectorStatus, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = await airq_nb.wait_for_readings(store, timeout=30)
        return status, loop.time() - started

    status, waited = asyncio.run(scenario())
    assert status.schedules == () and status.readings == 0
    assert waited < 5


def test_the_status_panel_escapes_what_it_shows(store):
    hostile = "<img src=x onerror=alert(1)>"
    scheduler = airq_nb.Scheduler(store)
    scheduler.schedule(f"collect:{hostile}", every=timedelta(hours=1), topic="collect")
    scheduler.close()
    panel = StatusPanel(store, autostart=False, tz="Europe/London")
    assert "<img" not in panel.value and "&lt;img src=x onerror=alert(1)&gt;" in panel.value
    assert " GMT (" in panel.value or " BST (" in panel.value
