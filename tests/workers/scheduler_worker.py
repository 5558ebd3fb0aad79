"""A separate process running a scheduler on a shared store file, for the process tests.

python scheduler_worker.py DB schedule SECONDS   register "shared" (every 1 s) and run
python scheduler_worker.py DB hang MARKER        take a "work" message, then hang forever
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import airq_nb


async def run_schedule(store: airq_nb.Store, seconds: float) -> None:
    sched = airq_nb.Scheduler(store)

    def handler(value: object) -> None:
        store.atomic().sum(("runs", os.getpid()), 1).commit()

    sched.listen_queue(handler, topic="shared")
    sched.schedule("shared", every=timedelta(seconds=1), message={"from": "worker"})
    sched.start()
    await asyncio.sleep(seconds)
    # A run in progress at the end finishes (no "released" row in the log the test checks).
    await sched.stop(grace=10)


async def hang(store: airq_nb.Store, marker: Path) -> None:
    sched = airq_nb.Scheduler(store, lease_seconds=1.0)

    def handler(value: object) -> None:
        marker.write_text(str(os.getpid()))
        time.sleep(3600)  # killed with SIGKILL long before this ends

    sched.listen_queue(handler, topic="work")
    sched.start()
    await asyncio.sleep(3600)


def main() -> None:
    db, mode, arg = sys.argv[1:4]
    with airq_nb.open_store(db) as store:
        if mode == "schedule":
            asyncio.run(run_schedule(store, float(arg)))
        else:
            asyncio.run(hang(store, Path(arg)))


if __name__ == "__main__":
    main()
