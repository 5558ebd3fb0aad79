"""Draining a backlog end to end: 5,000 queued messages to a no-op handler.

Side by side, in one run, each on its own fresh file in WAL mode with synchronous=NORMAL:

- airq_nb ``Scheduler.run_until_idle()`` with an async no-op handler, and with a sync one
  (run on the scheduler's thread pool); every message is claimed, delivered, acked and
  logged in the delivery log, with leases kept and settlements batched;
- huey's worker loop, as ``huey.consumer.Worker.loop`` does it: ``huey.dequeue()`` (one
  commit that takes and deletes the task) then ``huey.execute(task)`` (deserialise, run
  the task function, store nothing: the task returns None), on ``SqliteHuey``;
- a raw sqlite3 loop: one ``DELETE ... RETURNING`` of the oldest row per message (claim and
  delete in one commit), then ``json.loads`` — the floor for one commit per message.

Enqueueing is not timed (each system fills its queue its own fastest way first). Prints
msg/s and each row's ratio to huey. Targets (issue 19): with the *default*
``Scheduler(store)`` (concurrency 8, prefetch 256) async ≥ 2x huey and sync ≥ 1.2x huey;
those rows come first. Then tuned rows (concurrency 64 async, 16 sync), and concurrency 4
with ``prefetch=0``, where a claim is capped by the free slots (the defaults before
prefetching).

Run: ``python benchmarks/drain.py`` (``--messages N``; ``--repeat R`` keeps each system's
best of R rounds, a round running every system once, in turn). The machine's load
matters: the caption prints the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import airq_nb

#: (row label, handler kind, Scheduler options): the defaults first.
VARIANTS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("default Scheduler(store)", "async", {}),
    ("default Scheduler(store)", "sync", {}),
    ("concurrency 64", "async", {"concurrency": 64}),
    ("concurrency 16", "sync", {"concurrency": 16}),
    ("concurrency 4, prefetch=0", "async", {"concurrency": 4, "prefetch": 0}),
    ("concurrency 4, prefetch=0", "sync", {"concurrency": 4, "prefetch": 0}),
)


def airq_drain(folder: Path, messages: int, kind: str, options: dict[str, int]) -> float:
    with airq_nb.open_store(folder / f"airq-{kind}.db") as store:
        with store.transaction():
            for n in range(messages):
                store.enqueue({"n": n})
        sched = airq_nb.Scheduler(store, **options)
        if kind == "async":

            async def handler(value: object) -> None:
                return None

        else:

            def handler(value: object) -> None:  # type: ignore[misc]
                return None

        sched.listen_queue(handler)
        began = time.perf_counter()
        summary = asyncio.run(sched.run_until_idle())
        elapsed = time.perf_counter() - began
        sched.close()
        assert summary.delivered == messages, summary
        assert len(airq_nb.read_delivery_log(store)) == messages
    return elapsed


def huey_drain(folder: Path, messages: int) -> float:
    from huey import SqliteHuey

    huey = SqliteHuey(name="bench", filename=str(folder / "huey.db"), journal_mode="wal")
    huey.storage.conn.execute("PRAGMA synchronous = NORMAL")
    done = [0]

    @huey.task()
    def noop(n: int) -> None:
        done[0] += 1

    for n in range(messages):  # enqueue (not timed)
        noop(n)
    began = time.perf_counter()
    while True:  # huey.consumer.Worker.loop: dequeue, then execute
        task = huey.dequeue()
        if task is None:
            break
        huey.execute(task)
    elapsed = time.perf_counter() - began
    assert done[0] == messages, done
    huey.storage.close()
    return elapsed


def raw_drain(folder: Path, messages: int) -> float:
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE queue (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO queue (value) VALUES (?)", [(json.dumps({"n": n}),) for n in range(messages)]
    )
    conn.execute("COMMIT")
    handled = 0
    began = time.perf_counter()
    while True:
        row = conn.execute(
            "DELETE FROM queue WHERE id = (SELECT MIN(id) FROM queue) RETURNING value"
        ).fetchone()
        if row is None:
            break
        json.loads(row[0])
        handled += 1
    elapsed = time.perf_counter() - began
    assert handled == messages
    conn.close()
    return elapsed


def best_interleaved(runs: dict[str, Callable[[Path], float]], repeat: int) -> dict[str, float]:
    """Each system's best time over ``repeat`` rounds; a round runs every system once, in
    turn, so a busy moment of a shared machine hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            with tempfile.TemporaryDirectory(prefix="airq-drain-") as folder:
                times[name].append(run(Path(folder)))
    return {name: min(found) for name, found in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.messages
    runs: dict[str, Callable[[Path], float]] = {
        "raw sqlite3 claim+delete loop": lambda f: raw_drain(f, n),
        "huey worker loop (SqliteHuey, WAL)": lambda f: huey_drain(f, n),
    }
    for label, kind, options in VARIANTS:
        name = f"airq_nb run_until_idle, {kind} handler, {label}"
        runs[name] = lambda f, k=kind, o=options: airq_drain(f, n, k, o)  # type: ignore[misc]
    rows = best_interleaved(runs, args.repeat)
    huey_rate = n / rows["huey worker loop (SqliteHuey, WAL)"]
    load = os.getloadavg()
    print(f"Draining {n:,} queued messages to a no-op handler (best of {args.repeat}); ")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores\n")
    print("| system | msg/s | × huey |")
    print("|---|---|---|")
    for name, elapsed in rows.items():
        rate = n / elapsed
        print(f"| {name} | {rate:,.0f} | {rate / huey_rate:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
