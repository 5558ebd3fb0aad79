"""Schedulers in separate processes sharing one file: no duplicate schedules or runs, no loss."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import airq_nb

pytestmark = pytest.mark.backends("sqlite", "postgres")

WORKER = Path(__file__).parent / "workers" / "scheduler_worker.py"


def spawn(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_one_schedule_row_and_one_run_per_slot(db_path):
    airq_nb.open_store(db_path).close()  # create the file once, before the race
    workers = [spawn(db_path, "schedule", 4.5) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    with airq_nb.open_store(db_path) as store:
        assert store.execute("SELECT name FROM schedules") == [("shared",)]
        log = airq_nb.read_delivery_log(store, schedule="shared")
        firsts = log[log["attempt"] == 1]
        slots = list(firsts["scheduled_at"])
        assert 2 <= len(slots) <= 6
        assert len(set(slots)) == len(slots)  # never two runs for one slot
        assert all(slot.microsecond == 0 for slot in slots)  # on whole seconds
        assert set(log["outcome"]) == {"ok"}, log.to_string()
        runs = sum(entry.value for entry in store.list(prefix=("runs",)))
        assert runs == len(log)  # each logged run is one handler call, in either process
        assert store.queue.counts().by_state.get("leased", 0) == 0


def test_a_sigkilled_handler_is_redelivered_after_its_lease(db_path, tmp_path):
    marker = tmp_path / "started"
    with airq_nb.open_store(db_path) as store:
        message_id = store.enqueue({"job": 1}, topic="work")
        worker = spawn(db_path, "hang", marker)
        try:
            deadline = time.monotonic() + 30
            while not marker.exists():
                assert worker.poll() is None, worker.communicate()[1]
                assert time.monotonic() < deadline, "the worker never started the handler"
                time.sleep(0.05)
            assert store.queue.get(message_id).state == "leased"
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.communicate(timeout=10)
        assert worker.returncode == -signal.SIGKILL

        got = []
        sched = airq_nb.Scheduler(store)
        sched.listen_queue(got.append, topic="work")
        summary = asyncio.run(sched.run_until_idle(until=timedelta(seconds=3), timeout=20))
        assert got == [{"job": 1}] and summary.delivered == 1
        rows = airq_nb.read_delivery_log(store).to_dict("records")
        assert [(r["message_id"], r["attempt"], r["outcome"]) for r in rows] == [
            (message_id, 2, "ok")
        ]
        assert store.queue.counts().total == 0
