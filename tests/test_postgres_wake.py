"""KV writes and acks wake a waiting consumer on PostgreSQL, as any commit does on SQLite.

A Scheduler's change watcher blocks in ``store.wait_for_change``; here another process sets
a KV entry, enqueues, claims, acks and dead-letters, and the waiter in this process is
woken by each — except the claim, which gives a waiting consumer nothing to do.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import airq_nb

OTHER_PROCESS = """
import sys, airq_nb
store = airq_nb.open_store(sys.argv[1])
held = {}
print("ready", flush=True)
for line in sys.stdin:
    verb = line.strip()
    if verb == "set":
        store.set(("status", "collector"), {"ok": True})
    elif verb == "delete":
        store.delete(("status", "collector"))
    elif verb == "enqueue":
        store.enqueue({"n": 1}, topic="work", backoff_schedule=[])
    elif verb == "claim":
        held["d"] = store.claim(topics=["work"])
        assert held["d"] is not None
    elif verb == "ack":
        assert store.ack(held.pop("d"))
    elif verb == "fail":
        store.fail(held.pop("d"), "no attempts left")
    print("done", flush=True)
"""


class OtherProcess:
    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", OTHER_PROCESS, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.readline() == "ready"

    def readline(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def do(self, verb: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(verb + "\n")
        self.process.stdin.flush()
        assert self.readline() == "done", f"{verb} failed in the other process"


@pytest.fixture
def other(postgres_store_url: str) -> Iterator[OtherProcess]:
    other = OtherProcess(postgres_store_url)
    yield other
    other.process.kill()
    other.process.communicate()  # closes its pipes


def _quiet(store: airq_nb.Store) -> None:
    """Take in every change so far, so the next wait reports only what comes after."""
    while store.wait_for_change(0.05):
        pass


def test_kv_writes_and_acks_wake_a_waiting_consumer(
    postgres_store_url: str, other: OtherProcess
) -> None:
    with airq_nb.open_store(postgres_store_url) as store:
        sched = airq_nb.Scheduler(store)  # watches the store, as a waiting scheduler does
        try:
            _quiet(store)
            for verb, wakes in [
                ("set", True),
                ("delete", True),
                ("enqueue", True),
                ("claim", False),
                ("ack", True),
                ("enqueue", True),
                ("claim", False),
                ("fail", True),  # no attempts left: dead-lettered
            ]:
                other.do(verb)
                started = time.monotonic()
                woke = store.wait_for_change(2.0 if wakes else 0.3)
                assert woke is wakes, f"after {verb} in another process"
                if wakes:
                    assert time.monotonic() - started < 1.0, verb
                _quiet(store)
            assert store.queue.counts().by_state.get("dead") == 1
        finally:
            sched.close()
