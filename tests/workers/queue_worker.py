"""A queue consumer run as a separate process by tests/test_queue_processes.py.

``consume DB``: claim and ack until the producer says it is done and the queue is empty;
prints the delivered ids as JSON. ``hold DB LEASE``: claim one message, print its id,
then hang while holding the lease (the test SIGKILLs it).
"""

from __future__ import annotations

import json
import os
import sys
import time

import airq_nb


def consume(path: str) -> None:
    delivered: list[int] = []
    with airq_nb.open_store(path) as store:
        store.set(("test", "ready", os.getpid()), True)
        while not store.get(("test", "go")).value:
            time.sleep(0.005)
        while True:
            # Read "done" before claiming: a None claim after it means nothing is left.
            producer_done = store.get(("test", "producer_done")).value
            delivery = store.claim(lease_seconds=60)
            if delivery is None:
                if producer_done:
                    break
                time.sleep(0.002)
                continue
            delivered.append(delivery.value["n"])
            if not store.ack(delivery):
                raise SystemExit(f"lost the lease of message {delivery.id}")
    print(json.dumps(delivered))


def hold(path: str, lease_seconds: float) -> None:
    with airq_nb.open_store(path) as store:
        delivery = store.claim(lease_seconds=lease_seconds)
        assert delivery is not None
        print(json.dumps({"id": delivery.id, "n": delivery.value["n"]}), flush=True)
        time.sleep(600)


if __name__ == "__main__":
    if sys.argv[1] == "consume":
        consume(sys.argv[2])
    else:
        hold(sys.argv[2], float(sys.argv[3]))
