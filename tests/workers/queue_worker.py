"""A queue consumer run as a separate process by tests/test_queue_processes.py.

``consume DB [BATCH]``: claim and ack (with BATCH > 1: ``claim_many``/``ack_many``) until
the producer says it is done and the queue is empty; prints the delivered ids as JSON. ``hold DB LEASE``: claim one message, print its id,
then hang while holding the lease (the test SIGKILLs it).
"""

from __future__ import annotations

import json
import os
import sys
import time

import airq_nb


def consume(path: str, batch: int) -> None:
    delivered: list[int] = []
    with airq_nb.open_store(path) as store:
        store.set(("test", "ready", os.getpid()), True)
        while not store.get(("test", "go")).value:
            time.sleep(0.005)
        while True:
            # Read "done" before claiming: an empty claim after it means nothing is left.
            producer_done = store.get(("test", "producer_done")).value
            if batch == 1:
                delivery = store.claim(lease_seconds=60)
                deliveries = [] if delivery is None else [delivery]
            else:
                deliveries = store.claim_many(batch, lease_seconds=60)
            if not deliveries:
                if producer_done:
                    break
                time.sleep(0.002)
                continue
            delivered.extend(delivery.value["n"] for delivery in deliveries)
            acked = store.ack(deliveries[0]) if batch == 1 else store.ack_many(deliveries)
            if acked != len(deliveries):
                raise SystemExit(f"lost a lease among messages {[d.id for d in deliveries]}")
    print(json.dumps(delivered))


def hold(path: str, lease_seconds: float) -> None:
    with airq_nb.open_store(path) as store:
        delivery = store.claim(lease_seconds=lease_seconds)
        assert delivery is not None
        print(json.dumps({"id": delivery.id, "n": delivery.value["n"]}), flush=True)
        time.sleep(600)


if __name__ == "__main__":
    if sys.argv[1] == "consume":
        consume(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    else:
        hold(sys.argv[2], float(sys.argv[3]))
