"""Restart after a simulated week of downtime: 1,000 overdue messages and an hourly schedule.

The scheduler comes back with ``max_deliveries_per_second`` set: the backlog is started at
that rate (measured from the delivery log's start times), every message is delivered once,
and the hourly schedule runs as its misfire policy says — once under ``coalesce``. A
FakeClock stands in for the week, so the test takes seconds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

import airq_nb
from airq_nb import FakeClock, Scheduler, read_delivery_log

HOUR = 3600
# Ten past an hour, so the few fake seconds the backlog takes never cross a slot.
START = 472_223 * HOUR + 600
MESSAGES = 1000
RATE = 50.0
WEEK = 7 * 24 * HOUR


def _scheduler(store: airq_nb.Store, clock: FakeClock, handled: Counter, runs: list) -> Scheduler:
    """A fresh runtime, as a restarted kernel would make, with the same handlers."""
    sched = Scheduler(store, clock=clock, max_deliveries_per_second=RATE, concurrency=4)
    sched.listen_queue(lambda value: handled.update([value["n"]]), topic="work")
    sched.listen_queue(lambda _value: runs.append(clock.now()), topic="hourly")
    return sched


@pytest.mark.parametrize(
    ("misfire", "runs_after_restart"), [("coalesce", 1), ("skip", 0), ("catch_up", 10)]
)
def test_restart_after_a_week_is_rate_limited_and_runs_the_schedule_by_its_policy(
    tmp_path: Path, misfire: str, runs_after_restart: int, reliability_report
) -> None:
    clock = FakeClock(START)
    handled: Counter[int] = Counter()
    runs: list[float] = []

    async def scenario() -> tuple[airq_nb.RunSummary, float]:
        with airq_nb.open_store(tmp_path / "downtime.db", clock=clock) as store:
            before = _scheduler(store, clock, handled, runs)
            before.schedule("hourly", every=timedelta(hours=1), misfire=misfire, max_catch_up=10)
            await before.run_until_idle(until=timedelta(hours=2))
            assert len(runs) == 2, "the hourly schedule did not run before the downtime"
            # Work queued to fall due over the coming week; then the kernel is gone a week.
            operation = store.atomic()
            for n in range(MESSAGES):
                operation.enqueue({"n": n}, topic="work", delay=n * WEEK / MESSAGES)
            operation.commit()
            clock.advance(WEEK)
            restart = clock.now()
            after = _scheduler(store, clock, handled, runs)
            # Five fake minutes: 1,000 messages at 50/s need 20 s; no hourly slot falls inside.
            summary = await after.run_until_idle(until=timedelta(minutes=5), timeout=120)
            return summary, restart

    summary, restart = asyncio.run(scenario())
    assert not summary.timed_out
    assert sorted(handled) == list(range(MESSAGES))
    duplicated = sum(handled.values()) - MESSAGES
    assert duplicated == 0
    assert len(runs) - 2 == runs_after_restart, runs[2:]

    with airq_nb.open_store(tmp_path / "downtime.db", clock=clock) as store:
        log = read_delivery_log(store, since=restart)
        next_run = store.execute("SELECT next_run_at FROM schedules WHERE name = 'hourly'")[0][0]
    work = log[log.topic == "work"]
    assert len(work) == MESSAGES and set(work.outcome) == {"ok"}
    starts = sorted(log.started_at.astype("int64") / 1e9)
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    # Flood control: no two deliveries started closer together than 1/RATE (fake) seconds,
    # so the backlog was spread over the time that rate implies instead of started at once.
    assert min(gaps) >= 0.999 / RATE, min(gaps)
    overall_rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert overall_rate <= RATE * 1.001
    assert next_run > clock.now() - HOUR and next_run % HOUR == 0
    if misfire == "coalesce":
        reliability_report(
            "week of downtime: 1,000 overdue + hourly",
            faults=1,
            messages=MESSAGES,
            lost=MESSAGES - len(handled),
            duplicated=duplicated,
            notes=(
                f"started at {overall_rate:.1f}/s (limit {RATE:g}/s, closest two "
                f"{min(gaps) * 1000:.0f} ms apart); hourly ran {runs_after_restart}x (coalesce)"
            ),
        )


def test_headless_run_until_idle_drains_a_due_backlog_at_the_configured_rate(
    tmp_path: Path,
) -> None:
    clock = FakeClock(START)
    handled: Counter[int] = Counter()

    async def scenario() -> airq_nb.RunSummary:
        with airq_nb.open_store(tmp_path / "backlog.db", clock=clock) as store:
            for n in range(20):
                store.enqueue({"n": n}, topic="work")
            summary = await _scheduler(store, clock, handled, []).run_until_idle(timeout=30)
            starts = airq_nb.read_delivery_log(store)["started_at"].sort_values()
            return summary, starts

    summary, starts = asyncio.run(scenario())
    assert summary.delivered == 20
    assert sorted(handled) == list(range(20))
    gaps = starts.diff().dropna().dt.total_seconds()
    assert gaps.min() >= 1 / RATE - 1e-6  # the backlog drains at the limit, not at once
