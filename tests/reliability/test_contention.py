"""Four processes enqueueing and consuming on one file: no "database is locked", nothing lost.

Runs for ``$AIRQ_NB_CONTENTION_SECONDS`` (default 20) seconds.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import airq_nb

PROCESSES = 4


def test_four_processes_share_one_file_without_errors_or_loss(
    tmp_path: Path, worker_command, reliability_report
) -> None:
    seconds = float(os.environ.get("AIRQ_NB_CONTENTION_SECONDS", "20"))
    db_path, out_dir = tmp_path / "contention.db", tmp_path / "out"
    out_dir.mkdir()
    airq_nb.open_store(db_path).close()
    workers = [
        subprocess.Popen(
            worker_command("contention_worker.py", db_path, out_dir, index, seconds),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESSES)
    ]
    outputs = [worker.communicate(timeout=seconds + 120) for worker in workers]

    errors = [err for _out, err in outputs if err.strip()]
    assert not any("locked" in err for err in errors), errors
    assert not errors, errors
    assert [worker.returncode for worker in workers] == [0] * PROCESSES

    enqueued: set[int] = set()
    handled: Counter[int] = Counter()
    for index in range(PROCESSES):
        enqueued.update(map(int, (out_dir / f"enqueued-{index}.log").read_text().split()))
        handled.update(map(int, (out_dir / f"handled-{index}.log").read_text().split()))
    lost = enqueued - set(handled)
    duplicated = sum(handled.values()) - len(handled)
    reliability_report(
        f"{PROCESSES} processes contending for {seconds:.0f} s",
        faults=0,
        messages=len(enqueued),
        lost=len(lost),
        duplicated=duplicated,
        notes="enqueue+claim+ack+KV on one file; no 'database is locked'",
    )
    assert len(enqueued) > PROCESSES * 10, "the workers barely ran"
    assert not lost
    # Leases were never lost (30 s, nobody died), so nothing may be handled twice.
    assert duplicated == 0
    with airq_nb.open_store(db_path) as store:
        assert store.get(("enqueued",)).value == len(enqueued)
        per_worker = [store.get(("enqueued_by", index)).value for index in range(PROCESSES)]
        assert all(count > 0 for count in per_worker), per_worker
        assert store.queue.counts().total == 0
        assert store.execute("PRAGMA integrity_check") == [("ok",)]
