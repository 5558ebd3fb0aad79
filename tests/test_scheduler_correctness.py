"""Scheduler correctness under time-outs, stops and another process's write lock.

Each test reproduces a way the scheduler could hand a message to two consumers at once,
settle it twice, or leave it leased unstarted — with real SQLite files and real threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading

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
