"""run_until_idle() with the real clock: slots missed before the call are handled in it.

The FakeClock tests cannot see this: with a real clock, time moves while the call plans,
so a ``coalesce`` run planned at "now" falls due after the moment the call started. These
tests let a 1-second schedule miss real slots, then check the misfire policy's runs all
happen inside one call — and that nothing is left due when it returns.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from datetime import timedelta

import airq_nb

SECOND = timedelta(seconds=1)


def sleep_until_fraction(fraction: float) -> None:
    """Sleep until the wall clock is ``fraction`` of a second past a whole second."""
    now = time.time()
    target = math.floor(now) + fraction
    if target <= now + 0.05:
        target += 1.0
    time.sleep(target - now)


def miss_slots(store: airq_nb.Store, misfire: str, *, missed: int, fraction: float) -> float:
    """Register a 1 s schedule, let ``missed`` slots pass unrun; returns the newest missed slot."""
    sched = airq_nb.Scheduler(store)
    sched.schedule("tick", every=SECOND, misfire=misfire, max_catch_up=10)
    first = sched.get_schedule("tick").next_run_at.timestamp()
    sched.close()
    newest = first + missed - 1
    time.sleep(max(0.0, newest - time.time()))
    sleep_until_fraction(fraction)
    return newest


def drain(store: airq_nb.Store) -> tuple[airq_nb.RunSummary, list[float], float | None]:
    ran: list[float] = []
    sched = airq_nb.Scheduler(store)
    sched.listen_queue(lambda message: ran.append(time.time()), topic="tick")
    try:
        summary = asyncio.run(sched.run_until_idle(timeout=10))
        due_at_return = store.next_due()
    finally:
        sched.close()
    return summary, ran, due_at_return


def slots_run(store: airq_nb.Store) -> list[float]:
    frame = airq_nb.read_delivery_log(store, schedule="tick")
    return [t.timestamp() for t in frame["scheduled_at"]]


def test_coalesce_runs_missed_slots_once_in_the_same_call(store):
    newest = miss_slots(store, "coalesce", missed=3, fraction=0.3)
    summary, ran, due = drain(store)
    assert (summary.delivered, summary.scheduled_runs, len(ran)) == (1, 1, 1)
    assert slots_run(store) == [newest]
    assert due is None or due > time.time() - 0.05  # nothing left due when it returned
    assert summary.next_due is not None and summary.next_due.timestamp() == newest + 1


def test_skip_runs_nothing_for_late_slots_and_waits_for_the_next(store):
    # 0.6 s late is past skip's grace for a 1 s interval (half the interval).
    newest = miss_slots(store, "skip", missed=3, fraction=0.6)
    summary, ran, _due = drain(store)
    assert (summary.delivered, len(ran)) == (0, 0)
    assert summary.next_due is not None and summary.next_due.timestamp() == newest + 1


def test_catch_up_runs_each_missed_slot_oldest_first_in_the_same_call(store):
    newest = miss_slots(store, "catch_up", missed=3, fraction=0.3)
    summary, ran, _due = drain(store)
    assert summary.delivered == 3 == len(ran)
    assert slots_run(store) == [newest - 2, newest - 1, newest]


def test_cli_run_until_idle_after_a_missed_slot_runs_once(
    db_path, openmeteo_server, openweathermap_server, monkeypatch
):
    """``airq-nb run --until-idle`` (cron's path) delivers the missed hour in the same call."""
    env = {
        **os.environ,
        "AIRQ_NB_DB": str(db_path),
        "AIRQ_NB_OPENMETEO_URL": openmeteo_server.url,
        "AIRQ_NB_OPENWEATHER_URL": openweathermap_server.url,
    }
    for name in ("AIRQ_NB_SOURCE", "OPENWEATHER_API_KEY"):
        env.pop(name, None)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRQ_NB_OPENMETEO_URL", openmeteo_server.url)
    # The collector ran two hours ago (a fake clock then), so its next hourly slot has passed.
    clock = airq_nb.FakeClock(time.time() - 2 * 3600)
    with airq_nb.open_store(db_path, clock=clock) as past:
        first = asyncio.run(airq_nb.collect_until_idle(past))
        assert first.delivered == 1
    with airq_nb.open_store(db_path) as store:
        before = len(airq_nb.read_delivery_log(store))
        (info,) = airq_nb.Scheduler(store).schedules()
        missed = info.next_run_at.timestamp()
    assert missed < time.time()
    result = subprocess.run(
        [sys.executable, "-m", "airq_nb", "run", "--until-idle"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "delivered 1," in result.stdout
    with airq_nb.open_store(db_path) as store:
        log = airq_nb.read_delivery_log(store)
        assert len(log) == before + 1
        assert log["outcome"].iloc[-1] == "ok"
        assert log["scheduled_at"].iloc[-1].timestamp() >= missed
        assert store.queue.counts().by_state.get("queued", 0) == 0
