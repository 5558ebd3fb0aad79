"""The KV: get/set/delete, expiry, versionstamps, bad values, and files that are not our store."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from store_backends import behind_the_back

import airq_nb

# The contract: every test below runs on SQLite and on PostgreSQL (tests/store_backends.py).
pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_get_set_delete(store: airq_nb.Store) -> None:
    missing = store.get(("settings", "units"))
    assert (missing.key, missing.value, missing.versionstamp) == (("settings", "units"), None, None)
    result = store.set(("settings", "units"), {"pm": "µg/m³", "n": [1, 2.5, None, True]})
    assert result.ok and result.versionstamp
    entry = store.get(("settings", "units"))
    assert entry.value == {"pm": "µg/m³", "n": [1, 2.5, None, True]}
    assert entry.versionstamp == result.versionstamp
    store.delete(("settings", "units"))
    assert store.get(("settings", "units")).value is None
    store.delete(("settings", "units"))  # deleting a missing key is fine


def test_values_survive_reopening(db_path: Path) -> None:
    with airq_nb.open_store(db_path) as first:
        first.set(("a",), [1, "two"])
    with airq_nb.open_store(db_path) as second:
        assert second.get(("a",)).value == [1, "two"]


def test_open_store_uses_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRQ_NB_DB", str(tmp_path / "sub" / "env.db"))
    with airq_nb.open_store() as store:
        store.set(("x",), 1)
        assert store.path == tmp_path / "sub" / "env.db"
    assert (tmp_path / "sub" / "env.db").exists()


def test_expiry_with_a_fake_clock(
    clocked_store: airq_nb.Store, fake_clock: airq_nb.FakeClock
) -> None:
    clocked_store.set(("session",), "token", expire_in=60)
    clocked_store.set(("forever",), "kept")
    fake_clock.advance(59)
    assert clocked_store.get(("session",)).value == "token"
    fake_clock.advance(1)
    assert clocked_store.get(("session",)).value is None
    assert [e.key for e in clocked_store.list(prefix=())] == [("forever",)]
    # An expired key counts as absent for atomic checks.
    assert clocked_store.atomic().check(("session",), None).set(("session",), "new").commit().ok


def test_expired_rows_are_swept(
    clocked_store: airq_nb.Store, fake_clock: airq_nb.FakeClock
) -> None:
    clocked_store.set(("old",), 1, expire_in=10)
    fake_clock.advance(120)
    clocked_store.set(("trigger",), 1)
    assert clocked_store.execute("SELECT COUNT(*) FROM kv WHERE expires_at IS NOT NULL") == [(0,)]


def test_versionstamps_increase_in_commit_order_across_connections(db_path: Path) -> None:
    with airq_nb.open_store(db_path) as a, airq_nb.open_store(db_path) as b:
        stamps = []
        for i in range(6):
            writer = a if i % 2 else b
            stamps.append(writer.set(("k", i), i).versionstamp)
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
        assert [a.get(("k", i)).versionstamp for i in range(6)] == stamps


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, b"bytes", {1, 2}, object(), {"nested": [math.nan]}],
    ids=["nan", "inf", "bytes", "set", "object", "nested-nan"],
)
def test_non_json_values_are_refused(store: airq_nb.Store, value: object) -> None:
    with pytest.raises(airq_nb.InvalidValueError, match="must be JSON"):
        store.set(("v",), value)
    assert store.get(("v",)).value is None


def test_oversize_values_are_refused(store: airq_nb.Store) -> None:
    with pytest.raises(airq_nb.PayloadTooLargeError, match="the limit is 65,536"):
        store.set(("big",), "x" * 70_000)
    assert store.get(("big",)).value is None
    store.set(("fits",), "x" * 60_000)
    assert len(store.get(("fits",)).value) == 60_000


@pytest.mark.parametrize("expire_in", [-1, math.nan, math.inf, True, "10"])
def test_bad_expiry_is_refused(store: airq_nb.Store, expire_in: object) -> None:
    with pytest.raises(airq_nb.InvalidDelayError, match="expire_in"):
        store.set(("e",), 1, expire_in=expire_in)  # type: ignore[arg-type]
    assert store.get(("e",)).value is None


def test_get_many_reads_one_snapshot(store: airq_nb.Store) -> None:
    store.set(("a",), 1)
    entries = store.get_many([("a",), ("b",)])
    assert [(e.key, e.value) for e in entries] == [(("a",), 1), (("b",), None)]
    with store.transaction():
        assert store.get_many([("a",)])[0].value == 1


def test_corrupt_kv_value_is_a_store_error(store: airq_nb.Store, db_path: Path) -> None:
    store.set(("ok",), 1)
    behind_the_back(db_path, "UPDATE kv SET value = '{not json'")
    with pytest.raises(airq_nb.StoreError, match=r"store\.delete"):
        store.get(("ok",))
    store.delete(("ok",))
    assert store.get(("ok",)).value is None


def test_a_file_that_is_not_sqlite_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(airq_nb.StoreError, match="AIRQ_NB_DB"):
        airq_nb.open_store(path)
    assert path.read_text().startswith("these are my notes")


def test_a_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(airq_nb.StoreError, match="cannot open"):
        airq_nb.open_store(tmp_path)


@pytest.mark.sqlite_only("PRAGMA user_version")
def test_a_newer_schema_is_a_store_error(db_path: Path) -> None:
    airq_nb.open_store(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(airq_nb.StoreError, match="newer airq_nb"):
        airq_nb.open_store(db_path)


def test_bad_durability_is_refused(db_path: Path) -> None:
    with pytest.raises(airq_nb.StoreError, match="durability"):
        airq_nb.open_store(db_path, durability="fast")  # type: ignore[arg-type]


@pytest.mark.sqlite_only("SQLite's file lock and busy timeout")
def test_a_lock_held_past_the_busy_timeout_is_a_store_error(db_path: Path) -> None:
    store = airq_nb.open_store(db_path, busy_timeout=0.2)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(airq_nb.StoreError, match="busy_timeout") as raised:
            store.set(("k",), 1)
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(airq_nb.StoreError, match="locked"):
            store.enqueue({"n": 1})
        holder.execute("ROLLBACK")
        assert store.set(("k",), 2).ok
        assert store.get(("k",)).value == 2
        assert store.queue.counts().total == 0
    finally:
        holder.close()
        store.close()


@pytest.mark.sqlite_only("SQLite's file lock")
def test_contention_waits_instead_of_failing(db_path: Path) -> None:
    import threading

    store = airq_nb.open_store(db_path)
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    timer.start()
    try:
        assert store.set(("waited",), 1).ok
    finally:
        timer.join()
        holder.close()
        store.close()


@pytest.mark.sqlite_only("PRAGMA data_version")
def test_data_version_changes_when_another_connection_commits(db_path: Path) -> None:
    with airq_nb.open_store(db_path) as a, airq_nb.open_store(db_path) as b:
        before = a.data_version()
        assert a.data_version() == before
        b.set(("x",), 1)
        assert a.data_version() != before


def test_a_path_that_is_not_a_path_is_refused() -> None:
    with pytest.raises(airq_nb.ConfigurationError, match="file path"):
        airq_nb.open_store(42)  # type: ignore[arg-type]


def test_a_closed_store_says_so(db_path: Path) -> None:
    store = airq_nb.open_store(db_path)
    store.close()
    with pytest.raises(airq_nb.StoreError, match="closed"):
        store.get(("k",))
    with pytest.raises(airq_nb.StoreError, match="closed"):
        store.set(("k",), 1)
    with pytest.raises(airq_nb.StoreError, match="closed"):
        store.enqueue(1)


@pytest.mark.sqlite_only("WAL and synchronous pragmas")
def test_durability_sets_wal_and_synchronous(db_path: Path) -> None:
    with airq_nb.open_store(db_path) as normal:
        assert normal.execute("PRAGMA journal_mode") == [("wal",)]
        assert normal.execute("PRAGMA synchronous") == [(1,)]
    with airq_nb.open_store(db_path, durability="full") as full:
        assert full.execute("PRAGMA synchronous") == [(2,)]
        full.set(("k",), 1)
        assert full.get(("k",)).value == 1


@pytest.mark.sqlite_only("SQLite's file lock")
def test_reads_do_not_wait_behind_a_write_that_waits_for_another_process(db_path: Path) -> None:
    with airq_nb.open_store(db_path, busy_timeout=30) as store:
        store.set(("k",), "before")
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = threading.Event()

        def write() -> None:
            started.set()
            store.set(("k",), "after")  # waits for `other`, holding the store's write lock

        writer = threading.Thread(target=write)
        writer.start()
        started.wait()
        time.sleep(0.2)  # let the writer reach SQLite's busy wait
        try:
            # These would block for as long as the writer waits if reads shared its lock.
            assert store.get(("k",)).value == "before"
            assert store.queue.counts().total == 0
            assert writer.is_alive(), "the read returned while the write was still waiting"
        finally:
            other.execute("COMMIT")
            other.close()
            writer.join(30)
        assert store.get(("k",)).value == "after"


def test_an_in_memory_store_works(monkeypatch: pytest.MonkeyPatch) -> None:
    with airq_nb.open_store(":memory:") as store:
        store.set(("n", 1), "one")
        store.set(("n", 0.5), "half")
        assert store.get(("n", 1)).value == "one"
        assert [e.value for e in store.list(prefix=("n",))] == ["one", "half"]
        message_id = store.enqueue({"job": 1})
        delivery = store.claim()
        assert delivery is not None and delivery.id == message_id
        assert store.ack(delivery)
        assert store.queue.counts().total == 0
    monkeypatch.setenv("AIRQ_NB_DB", ":memory:")
    with airq_nb.open_store() as store:
        assert store.list(prefix=()) == []  # the last store closed, so it was dropped


def test_every_in_memory_store_of_a_process_shares_one_database() -> None:
    first = airq_nb.open_store(":memory:")
    try:
        first.set(("shared",), "from the first")
        seen: list[object] = []

        def other_thread() -> None:
            with airq_nb.open_store(":memory:") as second:
                seen.append(second.get(("shared",)).value)
                second.enqueue("from the second")

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen == ["from the first"]
        assert [m.value for m in first.queue.list()] == ["from the second"]
        with pytest.raises(airq_nb.StoreError, match="closed"):
            closed = airq_nb.open_store(":memory:")
            closed.close()
            closed.get(("shared",))
        assert first.get(("shared",)).value == "from the first"
    finally:
        first.close()


def test_a_scheduler_delivers_from_an_in_memory_store() -> None:
    with airq_nb.open_store(":memory:") as store:
        handled: list[object] = []
        sched = airq_nb.Scheduler(store)
        sched.listen_queue(handled.append)
        store.enqueue("in memory")
        asyncio.run(sched.run_until_idle(timeout=30))
        sched.close()
        assert handled == ["in memory"]
        assert store.queue.counts().total == 0
