"""A headless ``run_until_idle`` across a real PostgreSQL restart, crash and outage.

A process draining 1,500 messages with the default ``Scheduler(store)`` has the server
restarted under it (``pg_ctl restart -m fast``, and ``-m immediate``: a crash and its
recovery) and carries on: every message handled, each acked exactly once (one ``ok`` row
in the delivery log, no ``lost`` one), none left queued or leased. A run whose time-out
comes while the server is down raises ``StoreUnavailableError``, and a later run delivers
what it could not record. A loopback proxy cuts the connection exactly at a trip's
``COMMIT`` — after the server got it (committed) or before (aborted) — and the run settles
every message once and gives back what the cut trip claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import airq_nb

WORKER = os.path.join(os.path.dirname(__file__), "workers", "drain_worker.py")
TOTAL = 1_500


def _pg_ctl(*args: str) -> None:
    """Run the test cluster's pg_ctl (scripts/_postgres.sh says where it is)."""
    binary, data = os.environ.get("AIRQ_NB_TEST_PG_BIN"), os.environ.get("AIRQ_NB_TEST_PG_DATA")
    if not (binary and data):
        message = "AIRQ_NB_TEST_PG_BIN/_DATA unset: scripts/test starts a server it can restart"
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL tests must run in CI; " + message)
        pytest.skip(message)
    command = [os.path.join(binary, "pg_ctl"), "-D", data, "-w", *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    log = os.path.join(os.path.dirname(data), "server.log")
    subprocess.run([*command, "-l", log], check=True, capture_output=True, timeout=120)


def _server_options() -> str:
    """The options the server was started with (socket folder, fsync...), for a new start."""
    data = os.environ["AIRQ_NB_TEST_PG_DATA"]
    words = shlex.split(Path(data, "postmaster.opts").read_text())[1:]  # no binary
    while "-D" in words:
        at = words.index("-D")
        del words[at : at + 2]
    return shlex.join(words)


def _enqueue_work(url: str, total: int) -> None:
    with airq_nb.open_store(url) as store:
        atomic = store.atomic()
        for n in range(total):
            atomic.enqueue(n, topic="work")
        atomic.commit()


def _drain(url: str, out: Path, *, timeout: float, lease: float = 30.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, url, str(out), str(timeout), str(lease)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _handled(out: Path) -> list[int]:
    return [int(line) for line in out.read_text().split()] if out.exists() else []


def _wait_for_lines(out: Path, count: int, worker: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(_handled(out)) < count:
        assert worker.poll() is None, worker.communicate()
        assert time.monotonic() < deadline, "the drain did not start"
        time.sleep(0.005)


def _assert_settled_once(url: str, total: int) -> None:
    """Each message acked exactly once, none left queued or leased, the log consistent."""
    with airq_nb.open_store(url) as store:
        log = airq_nb.read_delivery_log(store, topic="work")
        assert store.queue.counts().total == 0
        assert store.queue.list() == []
    ok = Counter(log[log["outcome"] == "ok"]["message_id"])
    assert len(ok) == total and set(ok.values()) == {1}, "one ok row per message"
    # A message given back unstarted (by a cut trip) is logged "released"; nothing else.
    assert set(log["outcome"]) <= {"ok", "released"}, Counter(log["outcome"])


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_headless_drain_rides_out_a_server_restart(
    postgres_store_url: str, tmp_path: Path, mode: str
) -> None:
    _enqueue_work(postgres_store_url, TOTAL)
    out = tmp_path / "handled.txt"
    worker = _drain(postgres_store_url, out, timeout=120)
    try:
        _wait_for_lines(out, 150, worker)
        _pg_ctl("-m", mode, "restart")
        assert worker.poll() is None and len(_handled(out)) < TOTAL, "the drain ended first"
        stdout, stderr = worker.communicate(timeout=150)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    # Its trips failed and were retried, or waited for the server to accept connections.
    summary = json.loads(stdout)
    assert (summary["delivered"], summary["failed"], summary["lost"]) == (TOTAL, 0, 0)
    assert not summary["timed_out"]
    handled = _handled(out)
    assert set(handled) == set(range(TOTAL))  # every message at least once
    _assert_settled_once(postgres_store_url, TOTAL)


def test_a_run_timing_out_while_the_server_is_down_raises_store_unavailable(
    postgres_store_url: str, tmp_path: Path
) -> None:
    _enqueue_work(postgres_store_url, TOTAL)
    out = tmp_path / "handled.txt"
    options = None
    worker = _drain(postgres_store_url, out, timeout=4, lease=2)
    try:
        _wait_for_lines(out, 150, worker)
        options = _server_options()
        _pg_ctl("-m", "fast", "stop")
        stopped = time.monotonic()
        stdout, stderr = worker.communicate(timeout=120)
        took = time.monotonic() - stopped
    finally:
        worker.kill()
        if options is not None:
            _pg_ctl("-o", options, "start")
    assert worker.returncode == 3, stderr
    error = json.loads(stdout)
    assert error["error"] == "StoreUnavailableError"
    assert "time-out" in error["message"] and "delivered again" in error["message"]
    # The time-out, plus at most the store's connect time-out (10 s) for the trip under way
    # and again for the last attempt to record what finished.
    assert took < 4 + 2 * 10 + 10, took
    first = set(_handled(out))
    assert 0 < len(first) < TOTAL
    # The server is back: a later run (once the leases lapsed) delivers everything left.
    time.sleep(2.5)
    worker = _drain(postgres_store_url, out, timeout=120)
    stdout, stderr = worker.communicate(timeout=150)
    assert worker.returncode == 0, stderr
    assert set(_handled(out)) == set(range(TOTAL))
    _assert_settled_once(postgres_store_url, TOTAL)


# -- a connection cut exactly at COMMIT ------------------------------------------------------


class CommitCutter:
    """A loopback proxy for a PostgreSQL Unix socket that can cut a connection at ``COMMIT``.

    Armed with ``cut(after_server=True)``, the next client message holding ``COMMIT`` is
    sent on to the server and its reply dropped, and the client's connection closed: the
    transaction committed, the client cannot know. With ``after_server=False`` the
    ``COMMIT`` never reaches the server, which then rolls back.
    """

    def __init__(self, server_folder: str, folder: Path) -> None:
        self.folder = folder
        self._server = os.path.join(server_folder, ".s.PGSQL.5432")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(folder / ".s.PGSQL.5432"))
        self._listener.listen(64)
        self._armed: bool | None = None
        self.cuts = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, *, after_server: bool) -> None:
        with self._lock:
            self._armed = after_server

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self._server)
            pair = {"cut": False}
            threading.Thread(
                target=self._pump, args=(client, server, pair, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, pair, False), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, pair: dict[str, bool], up: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                if up and b"COMMIT\x00" in data:
                    with self._lock:
                        armed, self._armed = self._armed, None
                    if armed is not None:
                        pair["cut"] = True
                        self.cuts += 1
                        if armed:
                            sink.sendall(data)  # the server commits; its answer is lost
                            time.sleep(0.2)
                        break
                if pair["cut"]:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()


@pytest.fixture
def cutter(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommitCutter]:
    import psycopg

    host = psycopg.conninfo.conninfo_to_dict(postgres_url)["host"]
    proxy = CommitCutter(host, tmp_path_factory.mktemp("proxy"))
    yield proxy
    proxy.close()


@pytest.mark.parametrize("after_server", [True, False], ids=["committed", "rolled-back"])
def test_a_trip_cut_at_commit_settles_once_and_gives_its_claims_back(
    postgres_url: str, postgres_store_url: str, cutter: CommitCutter, after_server: bool
) -> None:
    import psycopg

    host = psycopg.conninfo.conninfo_to_dict(postgres_url)["host"]
    proxied = postgres_store_url.replace(f"host={host}", f"host={cutter.folder}")
    total = 200
    _enqueue_work(postgres_store_url, total)
    handled: list[int] = []
    trips = 0

    async def main() -> airq_nb.RunSummary:
        with airq_nb.open_store(proxied) as store:
            sched = airq_nb.Scheduler(store)

            async def handler(n: int) -> None:
                nonlocal trips
                handled.append(n)
                trips += 1
                if trips == 20:  # mid-drain: the trip settling these and claiming more
                    cutter.cut(after_server=after_server)

            sched.listen_queue(handler, topic="work")
            try:
                return await sched.run_until_idle(timeout=60)
            finally:
                sched.close()

    summary = asyncio.run(main())
    assert cutter.cuts == 1
    assert (summary.delivered, summary.lost, summary.timed_out) == (total, 0, False)
    # No handler ran twice: the settlements were not redone, the claims never started.
    assert sorted(handled) == list(range(total))
    _assert_settled_once(postgres_store_url, total)


@pytest.mark.backends("sqlite", "postgres")
def test_a_run_on_a_closed_store_raises_at_once_rather_than_waiting(db_path: Path) -> None:
    store = airq_nb.open_store(db_path)
    sched = airq_nb.Scheduler(store)
    sched.listen_queue(lambda value: None)
    store.enqueue(1)
    store.close()
    started = time.monotonic()
    with pytest.raises(airq_nb.StoreClosedError, match="open it again"):
        asyncio.run(sched.run_until_idle(timeout=30))
    assert time.monotonic() - started < 10  # not ridden out as an outage
    sched.close()


def test_a_cut_transaction_the_server_never_recorded_counts_as_aborted(
    postgres_store_url: str,
) -> None:
    # A crash (pg_ctl -m immediate) can lose the WAL of a transaction that had its id but
    # had not committed: after recovery its id is "in the future" to pg_xact_status, which
    # raises. It never committed, so the retry redoes it, as for an aborted one.
    from airq_nb.store._batch import Work
    from airq_nb.store.postgres._in_doubt import InDoubt, _Cut

    with airq_nb.open_store(postgres_store_url) as store:
        ((current,),) = store.execute("SELECT pg_current_xact_id()::text", ())
        doubt = InDoubt()
        doubt._cuts.append(_Cut(str(int(current) + 1_000_000), {(1, "lease"): "ok"}, Work(), []))
        doubt._resolve(store)
    assert doubt._cuts == [] and doubt._settled == {} and doubt._give_back == []
