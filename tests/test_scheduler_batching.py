"""Batched claims and settlements, change-wait wake-ups, and no overlap under re-drive."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

import airq_nb

pytestmark = pytest.mark.backends("sqlite", "postgres")


def run(coro):
    return asyncio.run(coro)


def test_a_backlog_drains_in_batches_in_due_order_with_every_row_logged(store):
    started: list[int] = []

    async def handler(value):
        started.append(value["n"])
        await asyncio.sleep(0)

    with store.transaction():
        for n in range(300):
            store.enqueue({"n": n})
    sched = airq_nb.Scheduler(store, concurrency=16)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=30))
    sched.close()
    assert summary.delivered == 300 and summary.failed == 0
    assert started == list(range(300))  # started in due order, batch after batch
    log = airq_nb.read_delivery_log(store)
    assert sorted(log["message_id"]) == list(range(1, 301))
    assert set(log["outcome"]) == {"ok"}
    assert store.queue.counts().total == 0


def test_retries_and_dead_letters_settle_in_batches_with_their_rows(store):
    async def handler(value):
        if value % 3 == 0:
            raise airq_nb.Permanent(f"bad {value}")
        if value % 3 == 1:
            raise RuntimeError(f"flaky {value}")

    with store.transaction():
        for n in range(60):
            store.enqueue(n, backoff_schedule=[0.01])
    sched = airq_nb.Scheduler(store, concurrency=8)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=30, until=timedelta(seconds=0.5)))
    sched.close()
    assert summary.delivered == 20
    assert summary.dead_lettered == 40  # 20 permanent at once, 20 after their one retry
    assert summary.failed == 20 + 40
    log = airq_nb.read_delivery_log(store)
    assert len(log) == 20 + 20 + 40
    assert len(store.queue.dead_letters()) == 40


def test_wait_for_change_reports_other_connections_commits(db_path):
    with airq_nb.open_store(db_path) as watched, airq_nb.open_store(db_path) as other:
        watched.wait_for_change(0)  # starts watching
        assert watched.wait_for_change(0.05) is False
        other.enqueue("x")
        assert watched.wait_for_change(5) is True
        assert watched.wait_for_change(0.05) is False
        other.enqueue("y")  # committed between two waits: the next one reports it at once
        assert watched.wait_for_change(0) is True


def test_a_running_scheduler_notices_another_connections_enqueue_without_polling(db_path):
    async def main():
        with airq_nb.open_store(db_path) as store, airq_nb.open_store(db_path) as producer:
            # poll_interval only bounds one wait; the change-wait is what wakes the runtime.
            sched = airq_nb.Scheduler(store, poll_interval=60)
            got = asyncio.Event()
            sched.listen_queue(lambda value: got.set())
            sched.start()
            await asyncio.sleep(0.2)  # idle now
            producer.enqueue("from elsewhere")  # another connection: no in-process callback
            await asyncio.wait_for(got.wait(), 10)
            await sched.stop()
            sched.close()

    run(main())


def test_a_redriven_old_run_never_overlaps_the_current_run(store):
    """A dead-lettered run of a schedule, re-driven while the next run is running, waits."""
    lock = threading.Lock()
    running = peak = 0
    calls: list[str] = []
    old_run: list[int] = []

    def handler(value):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            calls.append("call")
            call = len(calls)
        try:
            if call == 1:
                raise airq_nb.Permanent("first run fails for good")
            if call == 2:
                store.queue.redrive(old_run[0])  # the old run is due again, now
                time.sleep(0.4)
        finally:
            with lock:
                running -= 1

    sched = airq_nb.Scheduler(store, concurrency=4)
    sched.listen_queue(handler, topic="job")
    sched.schedule("job", every=timedelta(hours=1))
    old_run.append(sched.run_now("job"))
    first = run(sched.run_until_idle(timeout=10))
    assert first.dead_lettered == 1
    sched.run_now("job")
    second = run(sched.run_until_idle(timeout=10))
    sched.close()
    assert peak == 1  # never two runs of the schedule at once
    assert second.delivered == 2 and len(calls) == 3
    rows = airq_nb.read_delivery_log(store, schedule="job")
    assert list(rows["outcome"]) == ["dead", "ok", "ok"]
    assert rows["started_at"].iloc[2] >= rows["finished_at"].iloc[1]
