"""One of several processes hammering one store file: enqueue, consume, read and write the KV.

Run by ``test_contention.py``: ``python contention_worker.py DB OUT_DIR INDEX SECONDS``. For
SECONDS it enqueues a message (atomically with a counter), claims and acks whatever is due,
and mixes in KV writes and reads; then it drains the queue and exits 0. Any exception is
printed and ends the process with status 1 — the test fails on it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import airq_nb


def main() -> None:
    db_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    index, seconds = int(sys.argv[3]), float(sys.argv[4])
    store = airq_nb.open_store(db_path)
    enqueued = (out_dir / f"enqueued-{index}.log").open("w")
    handled = (out_dir / f"handled-{index}.log").open("w")

    def consume_one() -> bool:
        delivery = store.claim(lease_seconds=30)
        if delivery is None:
            return False
        handled.write(f"{delivery.id}\n")
        if not store.ack(delivery):
            raise AssertionError(f"lease of message {delivery.id} lost inside 30 s")
        return True

    deadline = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < deadline:
        seq += 1
        result = (
            store.atomic()
            .sum(("enqueued",), 1)
            .sum(("enqueued_by", index), 1)
            .enqueue({"producer": index, "seq": seq})
            .commit()
        )
        enqueued.write(f"{result.message_ids[0]}\n")
        consume_one()
        if seq % 10 == 0:
            store.set(("worker", index), {"seq": seq, "at": time.time()})
            store.list(prefix=("worker",))
            store.queue.counts()
    # Drain: take what is due until nothing is queued or leased anywhere.
    while True:
        if consume_one():
            continue
        if store.next_due() is None:
            break
        time.sleep(0.01)
    enqueued.close()
    handled.close()
    print(seq, flush=True)


if __name__ == "__main__":
    main()
