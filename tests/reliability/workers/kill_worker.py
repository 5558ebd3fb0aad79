"""A queue consumer that can kill itself (SIGKILL) at a chosen point of a delivery.

Run by ``test_kill9.py``: ``python kill_worker.py DB OUT_DIR``. Environment:

- ``AIRQ_KILL_POINT``: where to die — ``before_claim_commit`` (inside the claim's write,
  before it commits), ``after_claim``, ``in_handler`` (handler started, not finished),
  ``after_handle`` (handled, not acked), ``before_ack_commit`` (inside the ack's write,
  before it commits), ``after_ack``; or ``none``.
- ``AIRQ_KILL_AT``: die at that point of the Nth delivery of this run.
- ``AIRQ_LEASE``: lease seconds.

The hooks live here, in test code: the package is never patched. "Before commit" points use
the connection's progress handler, which SQLite calls every few virtual-machine steps while a
statement runs: the kill lands a random number of steps into the claim's (or ack's) write,
which commits only when the statement completes.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

import airq_nb


def durable_append(path: Path, line: str) -> None:
    """Append one line and fsync it, so a SIGKILL right after cannot lose it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    db_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    kill_point = os.environ.get("AIRQ_KILL_POINT", "none")
    kill_at = int(os.environ.get("AIRQ_KILL_AT", "0"))
    lease = float(os.environ.get("AIRQ_LEASE", "0.5"))
    handled_log = out_dir / f"handled-{os.getpid()}.log"
    kills_log = out_dir / "kills.log"
    armed = False
    steps_left = 0
    current_id = -1

    def die(point: str) -> None:
        durable_append(kills_log, f"{point} {current_id}")
        os.kill(os.getpid(), signal.SIGKILL)

    def on_progress() -> int:
        nonlocal steps_left
        steps_left -= 1
        if armed and steps_left <= 0:
            die(kill_point)
        return 0

    store = airq_nb.open_store(db_path)

    def arm(on: bool) -> None:
        """Turn the in-statement kill on for the next write (off again after it)."""
        nonlocal armed, steps_left
        armed, steps_left = on, random.randint(1, 12)
        store.db.conn.set_progress_handler(on_progress if on else None, 1)

    # The parent waits for this line before it starts timing an external kill.
    print("ready", flush=True)

    deliveries = 0
    while True:
        this_one = deliveries + 1
        arm(kill_point == "before_claim_commit" and this_one == kill_at)
        delivery = store.claim(lease_seconds=lease)
        arm(False)
        if delivery is None:
            due = store.next_due()
            if due is None:
                return
            time.sleep(min(max(due - time.time(), 0.0), 0.05) + 0.005)
            continue
        deliveries = this_one
        current_id = delivery.id
        at_point = this_one == kill_at
        if at_point and kill_point == "after_claim":
            die(kill_point)
        # The handler: some work, then a durable record that this message was handled.
        time.sleep(random.uniform(0.005, 0.015))
        if at_point and kill_point == "in_handler":
            die(kill_point)
        durable_append(handled_log, f"{delivery.id} {delivery.attempt}")
        if at_point and kill_point == "after_handle":
            die(kill_point)
        arm(at_point and kill_point == "before_ack_commit")
        acked = store.ack(delivery)
        arm(False)
        if not acked:
            durable_append(out_dir / "lost-leases.log", str(delivery.id))
        if at_point and kill_point == "after_ack":
            die(kill_point)


if __name__ == "__main__":
    main()
