"""A headless drain run as its own process, for the PostgreSQL restart tests.

python drain_worker.py URL OUT TIMEOUT LEASE   ``asyncio.run(sched.run_until_idle(timeout=))``
with the default ``Scheduler(store)`` (``lease_seconds=LEASE``) over the "work" topic; each
handled message's value is appended to OUT (one line each, as it is handled). Prints a JSON
line: the run's summary and how many times the run retried the store, or the error it raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

import airq_nb


class _Retries(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "retrying in" in record.getMessage()


def main(url: str, out_path: str, timeout: float, lease: float) -> int:
    retries = _Retries()
    logging.getLogger("airq_nb.scheduler").addHandler(retries)
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - one line per handled message

    def handler(value: int) -> None:
        time.sleep(0.002)
        out.write(f"{value}\n")

    with airq_nb.open_store(url) as store:
        sched = airq_nb.Scheduler(store, lease_seconds=lease)
        sched.listen_queue(handler, topic="work")
        try:
            summary = asyncio.run(sched.run_until_idle(timeout=timeout))
        except airq_nb.StoreError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
            return 3
        finally:
            sched.close()
    report = {
        "delivered": summary.delivered,
        "failed": summary.failed,
        "lost": summary.lost,
        "released": summary.released,
        "timed_out": summary.timed_out,
        "retries": retries.count,
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
