"""A process draining a shared backlog through a default Scheduler, for the prefetch tests.

python prefetch_worker.py DB GO SECONDS OUT   wait for the file GO, then run_until_idle with
                                              an async handler taking SECONDS per message;
                                              write the values it handled to OUT (JSON)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import airq_nb


async def drain(store: airq_nb.Store, go: Path, seconds: float) -> list[int]:
    sched = airq_nb.Scheduler(store)  # the defaults: concurrency 8, prefetch on
    handled: list[int] = []

    async def handler(value: int) -> None:
        handled.append(value)
        await asyncio.sleep(seconds)

    sched.listen_queue(handler)
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    summary = await sched.run_until_idle(timeout=120)
    sched.close()
    assert not summary.timed_out and summary.lost == 0, summary
    return handled


def main() -> None:
    db, go, seconds, out = sys.argv[1:5]
    with airq_nb.open_store(db) as store:
        handled = asyncio.run(drain(store, Path(go), float(seconds)))
    Path(out).write_text(json.dumps(handled))


if __name__ == "__main__":
    main()
