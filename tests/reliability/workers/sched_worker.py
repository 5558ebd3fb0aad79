"""A process consuming the queue through airq_nb's Scheduler, as a headless kernel would.

Run by ``test_kill9.py``: ``python sched_worker.py DB OUT_DIR``. The handler records each
message's ``n`` durably (fsync) before it returns; the test SIGKILLs this process at random
moments. Exits 0 once nothing is queued or leased.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

import airq_nb


def main() -> None:
    db_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    handled_log = out_dir / f"handled-{os.getpid()}.log"

    def handle(message: dict) -> None:
        time.sleep(random.uniform(0.005, 0.02))
        fd = os.open(handled_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{message['n']}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    async def consume() -> None:
        with airq_nb.open_store(db_path) as store:
            sched = airq_nb.Scheduler(store, lease_seconds=1.0, concurrency=2)
            sched.listen_queue(handle, topic="work")
            print("ready", flush=True)
            # Leases of killed workers fall due later, so keep going until the queue is empty.
            while any(store.queue.counts().by_state.get(s) for s in ("queued", "leased")):
                await sched.run_until_idle(until=timedelta(seconds=0.3))
            sched.close()

    asyncio.run(consume())


if __name__ == "__main__":
    main()
