"""The scheduler inside a real Jupyter kernel: started in one cell, it keeps delivering while
other cells run and while the kernel sits idle. The database is read from this process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

import airq_nb

pytestmark = pytest.mark.kernel

START_CELL = """
import asyncio, time
from datetime import timedelta
import airq_nb

store = airq_nb.open_store()
sched = airq_nb.scheduler_for(store)
calls = []

def tick(value):
    calls.append(value)

sched.listen_queue(tick, topic="tick")
sched.schedule("tick", every=timedelta(seconds=1), message={"n": 1})
sched.start()
print("started", sched.running)
"""


def execute(client, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=60, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def runs(db_path: Path) -> list[tuple[float, str]]:
    with airq_nb.open_store(db_path) as store:
        return store.execute(
            "SELECT scheduled_at, outcome FROM delivery_log WHERE schedule = 'tick' ORDER BY id"
        )


def test_scheduler_keeps_delivering_in_a_live_kernel(db_path):
    airq_nb.open_store(db_path).close()
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, "AIRQ_NB_DB": str(db_path)})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        assert execute(client, START_CELL).strip() == "started True"
        # Other cells run while it delivers: plain code, a blocking sleep, and an await.
        assert execute(client, "print(sum(range(10**6)))").strip() == str(sum(range(10**6)))
        execute(client, "time.sleep(1.2)")
        execute(client, "await asyncio.sleep(2.5)")
        during_cells = len(runs(db_path))
        assert during_cells >= 2
        # Re-running the start cell's calls gives the same runtime, not a second one.
        again = execute(client, "s2 = airq_nb.scheduler_for(store); s2.start(); print(s2 is sched)")
        assert again.strip() == "True"
        time.sleep(3.5)  # the kernel is idle: no cell is executing
        idle = runs(db_path)
        assert len(idle) >= during_cells + 2
        assert {outcome for _, outcome in idle} == {"ok"}
        slots = [slot for slot, _ in idle]
        assert len(set(slots)) == len(slots)  # one run per slot, so one runtime
        status = execute(client, "print(len(calls) == len(airq_nb.read_delivery_log(store)))")
        assert status.strip() == "True"
        assert execute(client, "await sched.stop(); print(sched.running)").strip() == "False"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
