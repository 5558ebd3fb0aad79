"""The queue across real processes: exactly-once without crashes, redelivery after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import airq_nb

# Also on PostgreSQL (tests/store_backends.py): there db_path is the store's URL.
pytestmark = pytest.mark.backends("sqlite", "postgres")

WORKER = Path(__file__).parent / "workers" / "queue_worker.py"


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("batch", [1, 8], ids=["claim-ack", "claim_many-ack_many"])
def test_two_processes_deliver_each_message_exactly_once(db_path: Path, batch: int) -> None:
    total = 2_000
    with airq_nb.open_store(db_path) as store:
        store.set(("test", "go"), False)
        workers = [_start("consume", str(db_path), str(batch)) for _ in range(2)]
        try:
            first_half = store.atomic()
            for n in range(total // 2):
                first_half.enqueue({"n": n})
            first_half.commit()
            deadline = time.monotonic() + 60
            while len(store.list(prefix=("test", "ready"))) < 2:
                assert time.monotonic() < deadline, "the consumers did not start"
                time.sleep(0.01)
            store.set(("test", "go"), True)
            # The rest arrives one by one while both consumers are claiming.
            for n in range(total // 2, total):
                store.enqueue({"n": n})
            store.set(("test", "producer_done"), True)
            outputs = [worker.communicate(timeout=120) for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        for worker, (_out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err
        delivered = [json.loads(out) for out, _err in outputs]
        if batch == 1:
            # (Batches of 8 drain so fast that a busy machine may let one process take all.)
            assert all(delivered), "both processes should have claimed messages"
        combined = delivered[0] + delivered[1]
        assert len(combined) == total
        assert sorted(combined) == list(range(total))
        assert store.queue.counts().total == 0


def test_sigkilled_consumer_loses_its_lease_and_nothing_else(db_path: Path) -> None:
    with airq_nb.open_store(db_path) as store:
        atomic = store.atomic()
        for n in range(20):
            atomic.enqueue({"n": n})
        atomic.commit()
        # Long enough that the claims below finish well inside it, even on a loaded machine.
        holder = _start("hold", str(db_path), "3.0")
        try:
            line = holder.stdout.readline() if holder.stdout else ""
            assert line, holder.stderr.read() if holder.stderr else ""
            held = json.loads(line)
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            holder.communicate(timeout=30)
        assert holder.returncode == -signal.SIGKILL

        got = []
        while (delivery := store.claim()) is not None:
            got.append(delivery.value["n"])
            assert store.ack(delivery)
        assert held["n"] not in got
        assert len(got) == 19
        leased = store.queue.get(held["id"])
        assert leased.state == "leased" and leased.lease_expires_at is not None
        assert store.claim() is None  # still held by the dead consumer

        time.sleep(max(0.0, leased.lease_expires_at - time.time()) + 0.05)
        again = store.claim()
        assert again is not None
        assert (again.id, again.value["n"], again.attempt) == (held["id"], held["n"], 2)
        assert store.ack(again)
        assert sorted([*got, again.value["n"]]) == list(range(20))
        assert store.claim() is None
        assert store.queue.counts().total == 0
