"""Queue throughput of airq_nb against other SQLite queues and raw sqlite3, on fresh files.

Every system runs on its own fresh file in one temporary folder, in WAL mode with
``synchronous=NORMAL`` (airq_nb's default durability), so the numbers compare the queue
code, not fsync settings. Payloads are the same small dict, JSON-encoded by every system
(raw sqlite3 included: a real queue must serialise its messages).

Measured per system:

- enqueue/s: one message per commit;
- deliver-cycle/s: take the next message and acknowledge it, until the queue is empty;
- batch enqueue msg/s: N messages in one commit (one atomic operation for airq_nb).

Raw sqlite3 is the practical limit: one INSERT per commit to enqueue; to deliver, one
commit to lease the next row (``UPDATE ... RETURNING``) and one to delete it.

Run: ``python benchmarks/queue_throughput.py`` (about a minute) or ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import airq_nb

PAYLOAD = {"location": "London", "latitude": 51.5072, "longitude": -0.1276, "source": "openmeteo"}


def payload(n: int) -> dict[str, Any]:
    return {**PAYLOAD, "n": n}


def normal_durability(conn: sqlite3.Connection) -> None:
    """The durability every system gets: WAL, synchronous=NORMAL."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")


class Raw:
    """Plain sqlite3: one INSERT per commit; lease (UPDATE ... RETURNING) and DELETE: two commits."""

    name = "raw sqlite3"

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        normal_durability(self.conn)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS queue (id INTEGER PRIMARY KEY, value TEXT NOT NULL, "
            "due_at REAL NOT NULL, lease_expires_at REAL)"
        )
        self.conn.execute("CREATE INDEX IF NOT EXISTS queue_due ON queue (due_at)")

    def enqueue(self, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO queue (value, due_at) VALUES (?, ?)", (json.dumps(value), time.time())
        )

    def deliver(self) -> bool:
        now = time.time()
        row = self.conn.execute(
            "UPDATE queue SET lease_expires_at = ?, due_at = ? WHERE id = "
            "(SELECT id FROM queue WHERE due_at <= ? ORDER BY due_at, id LIMIT 1) "
            "RETURNING id, value",
            (now + 30, now + 30, now),
        ).fetchone()
        if row is None:
            return False
        json.loads(row[1])
        self.conn.execute("DELETE FROM queue WHERE id = ?", (row[0],))
        return True

    def batch(self, values: list[Any]) -> None:
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT INTO queue (value, due_at) VALUES (?, ?)",
            [(json.dumps(value), now) for value in values],
        )
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class Airq:
    """airq_nb: ``store.enqueue``; ``store.claim`` + ``store.ack``; one ``atomic()`` commit."""

    name = "airq_nb"

    def __init__(self, path: Path) -> None:
        self.store = airq_nb.open_store(path, durability="normal")

    def enqueue(self, value: Any) -> None:
        self.store.enqueue(value)

    def deliver(self) -> bool:
        delivery = self.store.claim()
        if delivery is None:
            return False
        self.store.ack(delivery)
        return True

    def batch(self, values: list[Any]) -> None:
        atomic = self.store.atomic()
        for value in values:
            atomic.enqueue(value)
        atomic.commit()

    def close(self) -> None:
        self.store.close()


class AirqOneCommit(Airq):
    """airq_nb consuming with ``ack_and_claim``: the ack and the next lease in one commit."""

    name = "airq_nb, ack_and_claim (1 commit/cycle)"
    deliver_only = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.held: airq_nb.Delivery | None = None

    def deliver(self) -> bool:
        if self.held is None:
            self.held = self.store.claim()
        else:
            _acked, self.held = self.store.ack_and_claim(self.held)
        return self.held is not None


class AirqBatched(Airq):
    """airq_nb consuming with ``claim_many`` + ``ack_many``: 8 leases, then 8 acks, per 2 commits."""

    name = "airq_nb, claim_many/ack_many (8 per commit)"
    deliver_only = True
    batch_size = 8

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.held: list[airq_nb.Delivery] = []
        self.done: list[airq_nb.Delivery] = []

    def deliver(self) -> bool:
        # One message "handled" per call; leases are taken and acks sent in batches.
        if not self.held:
            if self.done:
                self.store.ack_many(self.done)
                self.done = []
            self.held = self.store.claim_many(self.batch_size)
            if not self.held:
                return False
        self.done.append(self.held.pop(0))
        return True

    def close(self) -> None:
        if self.done:
            self.store.ack_many(self.done)
        super().close()


class Huey:
    """huey's SqliteStorage: ``enqueue``; ``dequeue`` (take and delete in one commit)."""

    name = "huey SqliteStorage"

    def __init__(self, path: Path) -> None:
        from huey.storage import SqliteStorage

        self.storage = SqliteStorage(name="bench", filename=str(path))
        normal_durability(self.storage.conn)

    def enqueue(self, value: Any) -> None:
        self.storage.enqueue(json.dumps(value).encode())

    def deliver(self) -> bool:
        data = self.storage.dequeue()
        if data is None:
            return False
        json.loads(bytes(data))
        return True

    def batch(self, values: list[Any]) -> None:
        # huey has no batch enqueue; its own transaction helper makes one commit of many.
        with self.storage.db(commit=True) as cursor:
            cursor.executemany(
                "insert into task (queue, data, priority) values (?, ?, 0)",
                [(self.storage.name, json.dumps(value).encode()) for value in values],
            )

    def close(self) -> None:
        self.storage.close()


class PersistQueue:
    """persist-queue's SQLiteAckQueue (JSON serializer): ``put``; ``get`` + ``ack``."""

    name = "persist-queue SQLiteAckQueue"

    def __init__(self, path: Path, *, auto_commit: bool = True) -> None:
        from persistqueue import SQLiteAckQueue
        from persistqueue.serializers import json as json_serializer

        self.queue = SQLiteAckQueue(str(path), auto_commit=auto_commit, serializer=json_serializer)
        normal_durability(self.queue._putter)

    def enqueue(self, value: Any) -> None:
        self.queue.put(value)

    def deliver(self) -> bool:
        from persistqueue import Empty

        try:
            item = self.queue.get(block=False)
        except Empty:
            return False
        self.queue.ack(item)
        return True

    def batch(self, values: list[Any]) -> None:
        # With auto_commit=False, puts accumulate until task_done() commits them all.
        self.queue.auto_commit = False
        for value in values:
            self.queue.put(value)
        self.queue.task_done()
        self.queue.auto_commit = True

    def close(self) -> None:
        self.queue.close()


class LiteQueue:
    """litequeue: ``put``; ``pop`` + ``done``; ``put`` inside its ``transaction()``."""

    name = "litequeue"

    def __init__(self, path: Path) -> None:
        from litequeue import LiteQueue as _LiteQueue

        self.queue = _LiteQueue(str(path))
        normal_durability(self.queue.conn)

    def enqueue(self, value: Any) -> None:
        self.queue.put(json.dumps(value))

    def deliver(self) -> bool:
        message = self.queue.pop()
        if message is None:
            return False
        json.loads(message.data)
        self.queue.done(message.message_id)
        return True

    def batch(self, values: list[Any]) -> None:
        with self.queue.transaction(mode="IMMEDIATE"):
            for value in values:
                self.queue.put(json.dumps(value))

    def close(self) -> None:
        self.queue.conn.close()


SYSTEMS: list[Callable[[Path], Any]] = [
    Raw,
    Airq,
    AirqOneCommit,
    AirqBatched,
    Huey,
    PersistQueue,
    LiteQueue,
]


def interleaved(
    queues: list[Any], step: Callable[[Any, int], object], *, n: int, block: int
) -> list[float]:
    """Rates of ``step`` run ``n`` times on each queue, in blocks taken in turn.

    Short blocks in rotation give every system the same share of the machine's mood, which
    on a shared machine moves more than the differences being measured.
    """
    spent = [0.0] * len(queues)
    for start in range(0, n, block):
        for k in range(len(queues)):
            # Rotate who goes first, so no system always follows the same neighbour.
            index = (k + start // block) % len(queues)
            queue = queues[index]
            began = time.perf_counter()
            for i in range(start, min(start + block, n)):
                step(queue, i)
            spent[index] += time.perf_counter() - began
    return [n / seconds for seconds in spent]


def deliver_one(queue: Any, _i: int) -> None:
    if not queue.deliver():
        raise RuntimeError(f"{queue.name} ran out of messages early")


def run(folder: Path, *, n: int, batch_n: int, block: int) -> dict[str, dict[str, float]]:
    """Rates of every system, phase by phase, each on fresh files in ``folder``."""
    queues = [system(folder / f"{system.__name__.lower()}-single") for system in SYSTEMS]
    results: dict[str, dict[str, float]] = {
        queue.name: dict.fromkeys(("enqueue", "deliver", "batch"), math.nan) for queue in queues
    }
    timed = [q for q in queues if not getattr(q, "deliver_only", False)]
    enqueue_rates = interleaved(timed, lambda q, i: q.enqueue(payload(i)), n=n, block=block)
    for queue, enqueue_rate in zip(timed, enqueue_rates, strict=True):
        results[queue.name]["enqueue"] = enqueue_rate
    for queue in queues:
        if getattr(queue, "deliver_only", False):
            queue.batch([payload(i) for i in range(n)])  # filled, not timed
    deliver_rates = interleaved(queues, deliver_one, n=n, block=block)
    for queue, deliver_rate in zip(queues, deliver_rates, strict=True):
        results[queue.name]["deliver"] = deliver_rate
        if queue.deliver():
            raise RuntimeError(f"{queue.name} delivered a message more than was enqueued")
        queue.close()

    values = [payload(i) for i in range(batch_n)]
    for system in SYSTEMS:
        if getattr(system, "deliver_only", False):
            continue
        queue = system(folder / f"{system.__name__.lower()}-batch")
        began = time.perf_counter()
        queue.batch(values)
        results[queue.name]["batch"] = batch_n / (time.perf_counter() - began)
        queue.close()
    return results


def table(results: dict[str, dict[str, float]], *, n: int, batch_n: int, repeat: int) -> str:
    raw = results[Raw.name]
    lines = [
        f"{n:,} messages one per commit (systems interleaved in blocks of 100); batch: "
        f"{batch_n:,} messages in one commit; median of {repeat} runs; "
        "WAL + synchronous=NORMAL for every system.",
        "",
        "| system | enqueue/s | × raw | deliver-cycle/s (claim+ack) | × raw | "
        "batch enqueue msg/s | × raw |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rates in results.items():
        cells = [name]
        for phase in ("enqueue", "deliver", "batch"):
            if math.isnan(rates[phase]):
                cells += ["(as airq_nb)", ""]
            else:
                cells += [f"{rates[phase]:,.0f}", f"{rates[phase] / raw[phase]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (a few seconds)")
    parser.add_argument("-n", type=int, help="messages per single-commit phase")
    parser.add_argument("--batch", type=int, help="messages in the one-commit batch")
    parser.add_argument("--repeat", type=int, help="runs; the median of each cell is shown")
    args = parser.parse_args(argv)
    n = args.n or (2_000 if args.quick else 10_000)
    batch_n = args.batch or (10_000 if args.quick else 20_000)
    repeat = args.repeat or (1 if args.quick else 3)

    runs = []
    for _ in range(repeat):
        # Fresh files each run; fsync latency on a shared disk is what varies most.
        with tempfile.TemporaryDirectory(prefix="airq-bench-") as tmp:
            runs.append(run(Path(tmp), n=n, batch_n=batch_n, block=100))
    results = {
        name: {
            phase: statistics.median(measured[name][phase] for measured in runs)
            for phase in runs[0][name]
        }
        for name in runs[0]
    }
    print(table(results, n=n, batch_n=batch_n, repeat=repeat))
    ours = results[Airq.name]
    raw = results[Raw.name]
    huey = results[Huey.name]
    print()
    print(
        f"targets: enqueue >= 0.8x raw: {ours['enqueue'] / raw['enqueue']:.2f}x; "
        f"deliver-cycle >= 0.7x raw: {ours['deliver'] / raw['deliver']:.2f}x "
        f"(huey {huey['deliver'] / raw['deliver']:.2f}x); "
        f"batch >= 100,000 msg/s: {ours['batch']:,.0f}"
    )


if __name__ == "__main__":
    main()
