"""Scheduler correctness under time-outs, stops and another process's write lock.

Each test reproduces a way the scheduler could hand a message to two consumers at once,
settle it twice, or leave it leased unstarted — with real SQLite files and real threads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from datetime import timedelta

import airq_nb


def run(coro):
    return asyncio.run(coro)


def log_rows(store):
    return airq_nb.read_delivery_log(store).to_dict("records")


def test_a_timeout_during_a_trip_never_abandons_the_trip(store, db_path):
    """run_until_idle(timeout=...) expiring while a trip waits for the write lock."""
    handled = []
    rival = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)

    def handler(value):
        handled.append(value)
        if len(handled) == 1:
            # Another process takes the write lock: the trip settling this one waits for it.
            rival.execute("BEGIN IMMEDIATE")
            threading.Timer(1.5, lambda: rival.execute("COMMIT")).start()

    async def main():
        sched = airq_nb.Scheduler(store, concurrency=1)
        sched.listen_queue(handler)
        for n in range(3):
            store.enqueue(n)
        summary = await sched.run_until_idle(timeout=0.7)
        sched.close()
        return summary

    try:
        summary = run(main())
    finally:
        rival.close()
    assert summary.timed_out
    # The trip committed the ack: it is counted once, never settled again as "lost".
    assert summary.delivered == 1 and summary.lost == 0
    rows = log_rows(store)
    assert [(r["message_id"], r["outcome"]) for r in rows if r["outcome"] != "released"] == [
        (1, "ok")
    ]
    # Nothing is left leased unstarted: claims the trip made were given back.
    messages = store.queue.list()
    assert [(m.state, m.attempts) for m in messages] == [("queued", 0), ("queued", 0)]
    assert handled == [0]


def test_lease_renewal_never_queues_behind_our_own_trip(store, db_path, caplog):
    """Another process holds the write lock longer than the lease while a handler runs."""
    lease = 0.9
    hold = (0.3, 2.3)  # seconds after the start: longer than the lease
    caplog.set_level("WARNING", logger="airq_nb.scheduler")
    warned_at = []

    class Timed(logging.Handler):
        def emit(self, record):
            if "could not extend leases" in record.getMessage():
                warned_at.append(time.monotonic() - t0)

    def rival():
        conn = sqlite3.connect(db_path, isolation_level=None)
        time.sleep(hold[0])
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(hold[1] - hold[0])
        conn.execute("COMMIT")
        conn.close()

    async def long_one(value):
        await asyncio.sleep(3.0)

    async def main():
        sched = airq_nb.Scheduler(store, lease_seconds=lease, concurrency=2)
        sched.listen_queue(long_one, topic="long")
        sched.listen_queue(lambda value: None, topic="short")
        store.enqueue("a", topic="long")
        store.enqueue("b", topic="short", delay=0.5)  # its claim trip waits for the lock
        thread = threading.Thread(target=rival)
        thread.start()
        summary = await sched.run_until_idle(timeout=10, until=timedelta(seconds=0.6))
        thread.join()
        sched.close()
        return summary

    timed = Timed()
    logging.getLogger("airq_nb.scheduler").addHandler(timed)
    t0 = time.monotonic()
    try:
        summary = run(main())
    finally:
        logging.getLogger("airq_nb.scheduler").removeHandler(timed)
    # The keeper tried while the lock was held, and said so within the lease — it was not
    # silently queued behind the trip waiting for the same lock.
    assert warned_at and hold[0] < warned_at[0] < hold[0] + lease
    assert summary.delivered == 2 and summary.lost == 0
    assert sorted(r["outcome"] for r in log_rows(store)) == ["ok", "ok"]


def test_stop_never_hands_back_a_message_whose_sync_thread_still_runs(store, db_path):
    """stop() returns promptly; the message stays leased until the thread returns."""
    running = threading.Event()
    finished = []

    def slow(value):
        running.set()
        time.sleep(2.0)
        finished.append(value)

    async def main():
        sched = airq_nb.Scheduler(store, lease_seconds=0.6)
        sched.listen_queue(slow)
        message_id = store.enqueue("x", backoff_schedule=[])
        sched.start()
        while not running.is_set():
            await asyncio.sleep(0.01)
        began = time.monotonic()
        await sched.stop()
        stopped_in = time.monotonic() - began
        sched.close()
        return message_id, stopped_in

    message_id, stopped_in = run(main())
    assert stopped_in < 0.5 and not finished
    with airq_nb.open_store(db_path) as other:
        # Another consumer cannot take it — not at once, nor once its 0.6 s lease would
        # have lapsed: it is renewed while the thread runs. The attempt stays counted.
        for _ in range(2):
            message = store.queue.get(message_id)
            assert message.state == "leased" and message.attempts == 1
            assert other.claim(lease_seconds=5) is None
            time.sleep(0.7)
        deadline = time.monotonic() + 5
        while store.queue.list() and time.monotonic() < deadline:
            time.sleep(0.02)
    # The thread returned: its success is acked, exactly once, and logged.
    assert finished == ["x"] and store.queue.list() == []
    assert [(r["message_id"], r["outcome"]) for r in log_rows(store)] == [(message_id, "ok")]
