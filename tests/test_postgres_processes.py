"""The PostgreSQL queue across real processes and a real server restart.

4 processes share 2,000 messages, each delivered once; the server restarted under a running
consumer gives clear ``StoreError``s or a reconnect, and no message is lost. The consumers
are tests/workers/queue_worker.py, the SQLite process tests' own worker, given the store's
URL instead of a file path. (tests/test_queue_processes.py runs on both backends: two
processes sharing 2,000 messages, and a SIGKILLed consumer redelivered after its lease.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import airq_nb

WORKER = os.path.join(os.path.dirname(__file__), "workers", "queue_worker.py")


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_four_processes_deliver_2000_messages_each_once(postgres_store_url: str) -> None:
    total, processes = 2_000, 4
    with airq_nb.open_store(postgres_store_url) as store:
        store.set(("test", "go"), False)
        workers = [_start("consume", postgres_store_url, "4") for _ in range(processes)]
        try:
            first_half = store.atomic()
            for n in range(total // 2):
                first_half.enqueue({"n": n})
            first_half.commit()
            deadline = time.monotonic() + 60
            while len(store.list(prefix=("test", "ready"))) < processes:
                assert time.monotonic() < deadline, "the consumers did not start"
                time.sleep(0.01)
            store.set(("test", "go"), True)
            for n in range(total // 2, total):  # the rest one by one, while they claim
                store.enqueue({"n": n})
            store.set(("test", "producer_done"), True)
            outputs = [worker.communicate(timeout=180) for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        for worker, (_out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err
        delivered = [json.loads(out) for out, _err in outputs]
        combined = [n for per_process in delivered for n in per_process]
        assert sorted(combined) == list(range(total))  # every message, none twice
        assert sum(1 for per_process in delivered if per_process) >= 2
        assert store.queue.counts().total == 0


def _restart_server() -> None:
    """Restart the test cluster (scripts/_postgres.sh says where it is)."""
    binary, data = os.environ.get("AIRQ_NB_TEST_PG_BIN"), os.environ.get("AIRQ_NB_TEST_PG_DATA")
    if not (binary and data):
        message = "AIRQ_NB_TEST_PG_BIN/_DATA unset: scripts/test starts a server it can restart"
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL tests must run in CI; " + message)
        pytest.skip(message)
    command = [os.path.join(binary, "pg_ctl"), "-D", data, "-m", "fast", "-w", "restart"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    log = os.path.join(os.path.dirname(data), "server.log")
    subprocess.run([*command, "-l", log], check=True, capture_output=True, timeout=120)


def test_a_server_restart_under_a_running_consumer_loses_nothing(
    postgres_store_url: str,
) -> None:
    total = 300
    delivered: list[int] = []
    errors: list[str] = []
    stop = threading.Event()
    with airq_nb.open_store(postgres_store_url) as producer:
        consumer_store = airq_nb.open_store(postgres_store_url)

        def consume() -> None:
            while not stop.is_set():
                try:
                    delivery = consumer_store.claim(lease_seconds=1)
                    if delivery is None:  # idle: LISTEN, across the restart too
                        consumer_store.wait_for_change(0.2)
                        continue
                    time.sleep(0.002)  # the handler, whose effect is recorded here:
                    delivered.append(delivery.value)
                    consumer_store.ack(delivery)
                except airq_nb.StoreError as exc:
                    errors.append(str(exc))
                    time.sleep(0.05)

        consumer = threading.Thread(target=consume)
        consumer.start()
        try:
            for n in range(total // 2):
                producer.enqueue(n)
            while not delivered:
                time.sleep(0.005)
            _restart_server()
            assert len(set(delivered)) < total // 2, "the restart came after the first half"
            for n in range(total // 2, total):
                while True:
                    try:
                        producer.enqueue(n)
                        break
                    except airq_nb.StoreError:  # an enqueue on a connection the restart cut
                        time.sleep(0.05)
            deadline = time.monotonic() + 60
            while len(set(delivered)) < total and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            consumer.join(30)
            consumer_store.close()
        assert sorted(set(delivered)) == list(range(total)), errors  # nothing lost
        # At-least-once: an ack cut by the restart may redeliver its message, no more.
        assert len(delivered) - total <= len(errors)
        print(f"{len(errors)} StoreErrors, {len(delivered) - total} redelivered")
        for error in errors:
            assert "connection to PostgreSQL" in error
            assert "reconnects by itself" in error or "try again" in error.lower()
        assert producer.queue.counts().total == 0
