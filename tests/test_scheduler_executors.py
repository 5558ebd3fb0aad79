"""Handlers as the dispatcher runs them: sync calls on the pool, one watchdog for time-outs,
stop with a grace period, and a trip cut short by a time-out."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import airq_nb


def run(coro):
    return asyncio.run(coro)


def outcomes(store) -> list[str]:
    return list(airq_nb.read_delivery_log(store)["outcome"])


def test_a_sync_handler_that_returns_a_coroutine_has_it_awaited(store):
    awaited = []

    async def work(value):
        await asyncio.sleep(0.01)
        awaited.append(value)

    def handler(value):  # a plain function handing back a coroutine
        return work(value)

    sched = airq_nb.Scheduler(store)
    sched.listen_queue(handler)
    store.enqueue("x")
    summary = run(sched.run_until_idle(timeout=10))
    sched.close()
    assert awaited == ["x"] and summary.delivered == 1
    assert outcomes(store) == ["ok"]


def test_time_outs_fail_each_overrunning_handler_and_spare_the_quick_ones(store):
    release = threading.Event()

    async def slow_async(value):
        if value["slow"]:
            await asyncio.sleep(30)

    def slow_sync(value):
        if value["slow"]:
            release.wait(10)

    async def main():
        sched = airq_nb.Scheduler(store, concurrency=8, handler_timeout=0.3)
        sched.listen_queue(slow_async, topic="a")
        sched.listen_queue(slow_sync, topic="s")
        for n in range(6):
            for topic in ("a", "s"):
                store.enqueue({"slow": n % 2 == 0}, topic=topic, backoff_schedule=[])
        began = time.monotonic()
        summary = await sched.run_until_idle(timeout=10)
        took = time.monotonic() - began
        stuck = sched.status().stuck_handlers
        held = [m.state for m in store.queue.list(topic="s")]
        release.set()
        sched.close()
        return summary, took, stuck, held

    summary, took, stuck, held = run(main())
    # 3 slow async handlers overran 0.3 s: cancelled and dead-lettered (no retries left), at
    # once. The 3 slow sync ones cannot be stopped: the call does not wait for them, and
    # their messages stay leased (never run twice at once) until their threads return.
    assert summary.delivered == 6 and summary.failed == 3 and summary.dead_lettered == 3
    assert took < 5
    assert stuck == 3 and held == ["leased"] * 3
    deadline = time.monotonic() + 5
    while len(log := airq_nb.read_delivery_log(store)) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)  # the threads returned: their attempts are settled as timed out
    timed_out = log[log["outcome"] == "dead"]
    assert len(timed_out) == 6 and set(timed_out["error"]) == {"handler timed out after 0.3 s"}
    assert len(log) == 12  # one row per attempt
    assert store.queue.counts().by_state.get("leased", 0) == 0


def test_stop_with_grace_lets_a_running_sync_handler_finish(store):
    async def main():
        sched = airq_nb.Scheduler(store)
        started = threading.Event()

        def slow(value):
            started.set()
            time.sleep(0.3)

        sched.listen_queue(slow)
        message_id = store.enqueue("x")
        sched.start()
        while not started.is_set():
            await asyncio.sleep(0.01)
        await sched.stop(grace=5)
        sched.close()
        return message_id

    message_id = run(main())
    assert message_id not in [m.id for m in store.queue.list()]  # acked, not given back
    assert outcomes(store) == ["ok"]


def test_a_trip_cut_short_by_a_time_out_gives_its_claims_back(store, db_path):
    seen = []

    async def main():
        sched = airq_nb.Scheduler(store)
        sched.listen_queue(seen.append)
        message_id = store.enqueue("x")
        rival = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        rival.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        threading.Timer(0.6, rival.execute, ("ROLLBACK",)).start()
        try:
            # The trip waits for the lock past the time-out, then claims the message.
            summary = await sched.run_until_idle(timeout=0.2)
        finally:
            await asyncio.sleep(0.7)
            rival.close()
        sched.close()
        return summary, message_id

    summary, message_id = run(main())
    assert summary.timed_out and seen == []
    message = store.queue.get(message_id)
    assert message.state == "queued" and message.attempts == 0  # not left leased
    assert outcomes(store) == ["released"]
