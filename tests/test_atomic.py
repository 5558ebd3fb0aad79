"""Atomic operations: checks against concurrent writers, sum/min/max, enqueue, all or nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import airq_nb

# The contract: every test below runs on SQLite and on PostgreSQL (tests/store_backends.py).
pytestmark = pytest.mark.backends("sqlite", "postgres")

WRITER = """
import sys, airq_nb
with airq_nb.open_store(sys.argv[1]) as store:
    store.set(("account", "alice"), {"balance": int(sys.argv[2])})
"""


def _snapshot(store: airq_nb.Store) -> tuple[list[tuple[object, object]], int]:
    return [(e.key, e.value) for e in store.list(prefix=())], store.queue.counts().total


def test_check_fails_after_a_write_from_another_connection(db_path: Path) -> None:
    with airq_nb.open_store(db_path) as ours, airq_nb.open_store(db_path) as theirs:
        ours.set(("account", "alice"), {"balance": 10})
        read = ours.get(("account", "alice"))
        theirs.set(("account", "alice"), {"balance": 99})
        result = (
            ours.atomic()
            .check(("account", "alice"), read.versionstamp)
            .set(("account", "alice"), {"balance": read.value["balance"] - 5})
            .set(("audit", 1), "debited")
            .enqueue({"notify": "alice"}, keys_if_undelivered=[("failed", 1)])
            .commit()
        )
        assert not result.ok
        assert not result
        assert result.versionstamp is None
        assert _snapshot(ours) == ([(("account", "alice"), {"balance": 99})], 0)


def test_check_fails_after_a_write_from_another_process(db_path: Path) -> None:
    with airq_nb.open_store(db_path) as store:
        store.set(("account", "alice"), {"balance": 10})
        read = store.get(("account", "alice"))
        subprocess.run([sys.executable, "-c", WRITER, str(db_path), "42"], check=True, timeout=60)
        result = (
            store.atomic()
            .check(("account", "alice"), read.versionstamp)
            .set(("account", "alice"), {"balance": 0})
            .enqueue({"n": 1})
            .enqueue({"n": 2})
            .commit()
        )
        assert not result.ok
        assert _snapshot(store) == ([(("account", "alice"), {"balance": 42})], 0)
        # With the fresh versionstamp the same operation goes through.
        fresh = store.get(("account", "alice"))
        retried = (
            store.atomic()
            .check(("account", "alice"), fresh.versionstamp)
            .set(("account", "alice"), {"balance": 0})
            .enqueue({"n": 1})
            .commit()
        )
        assert retried.ok and retried.versionstamp > fresh.versionstamp
        assert store.get(("account", "alice")).value == {"balance": 0}
        assert [m.value for m in store.queue.list()] == [{"n": 1}]


def test_check_for_absence(store: airq_nb.Store) -> None:
    assert store.atomic().check(("once",), None).set(("once",), 1).commit().ok
    assert not store.atomic().check(("once",), None).set(("once",), 2).commit().ok
    assert store.get(("once",)).value == 1


def test_all_checks_must_hold(store: airq_nb.Store) -> None:
    a = store.set(("a",), 1)
    store.set(("b",), 1)
    result = store.atomic().check(("a",), a.versionstamp).check(("b",), a.versionstamp)
    assert not result.set(("c",), 1).commit().ok
    assert store.get(("c",)).value is None


def test_one_versionstamp_per_commit(store: airq_nb.Store) -> None:
    result = store.atomic().set(("x",), 1).set(("y",), 2).commit()
    assert store.get(("x",)).versionstamp == store.get(("y",)).versionstamp == result.versionstamp


def test_sum_min_max(store: airq_nb.Store) -> None:
    store.atomic().sum(("count",), 2).min(("low",), 5).max(("high",), 5).commit()
    store.atomic().sum(("count",), 3).min(("low",), 7).max(("high",), 7).commit()
    store.atomic().sum(("count",), 0.5).min(("low",), -1).max(("high",), 6).commit()
    assert store.get(("count",)).value == 5.5
    assert store.get(("low",)).value == -1
    assert store.get(("high",)).value == 7


def test_sum_on_a_non_number_writes_nothing(store: airq_nb.Store) -> None:
    store.set(("name",), "alice")
    with pytest.raises(airq_nb.InvalidValueError, match="needs a number"):
        store.atomic().set(("other",), 1).sum(("name",), 1).enqueue({"n": 1}).commit()
    assert _snapshot(store) == ([(("name",), "alice")], 0)


@pytest.mark.parametrize("n", [float("nan"), float("inf"), True, "1", None])
def test_sum_refuses_non_numbers(store: airq_nb.Store, n: object) -> None:
    with pytest.raises(airq_nb.InvalidValueError, match="finite int or float"):
        store.atomic().sum(("c",), n)  # type: ignore[arg-type]


def test_sum_overflowing_to_infinity_writes_nothing(store: airq_nb.Store) -> None:
    store.set(("c",), 1e308)
    with pytest.raises(airq_nb.InvalidValueError):
        store.atomic().sum(("c",), 1e308).commit()
    assert store.get(("c",)).value == 1e308


def test_atomic_enqueue_applies_with_the_kv_writes(store: airq_nb.Store) -> None:
    result = (
        store.atomic()
        .set(("job", 1), "queued")
        .enqueue({"job": 1}, topic="jobs")
        .enqueue({"job": 2}, topic="jobs", delay=60)
        .enqueue({"job": 3}, topic="jobs", dedup_key="job-3")
        .commit()
    )
    assert result.ok and len(result.message_ids) == 3
    messages = {m.id: m for m in store.queue.list()}
    assert set(messages) == set(result.message_ids)
    assert [messages[i].value for i in result.message_ids] == [{"job": 1}, {"job": 2}, {"job": 3}]
    assert store.get(("job", 1)).value == "queued"


def test_batch_enqueue_ids_match_rows(store: airq_nb.Store) -> None:
    store.enqueue("before")
    atomic = store.atomic()
    for i in range(50):
        atomic.enqueue(i)
    ids = atomic.commit().message_ids
    assert [store.queue.get(i).value for i in ids] == list(range(50))


def test_batch_enqueue_with_dedup_keys_reuses_live_twins(store: airq_nb.Store) -> None:
    queued = store.enqueue("queued twin", dedup_key="k-queued")
    leased = store.enqueue("leased twin", topic="lease", dedup_key="k-leased")
    dead = store.enqueue("dead twin", topic="dead", dedup_key="k-dead")
    assert store.claim(topics=["lease"]) is not None
    assert store.fail(store.claim(topics=["dead"]), "boom", retry=False) == "dead"
    atomic = store.atomic()
    # More keys than one look-up statement takes, plain messages between them.
    for n in range(1200):
        if n % 3:
            atomic.enqueue(n, dedup_key=f"k-{n}", backoff_schedule=[10, 60])
        else:
            atomic.enqueue(n)
    atomic.enqueue("again", dedup_key="k-1")  # the batch's own first k-1 wins
    atomic.enqueue("not added", dedup_key="k-queued")
    atomic.enqueue("not added", dedup_key="k-leased")
    atomic.enqueue("new", dedup_key="k-dead")  # a dead twin gave up its key
    ids = atomic.commit().message_ids
    assert len(ids) == 1204
    assert [store.queue.get(i).value for i in ids[:1200]] == list(range(1200))
    assert ids[1200] == ids[1]
    assert ids[1201:1203] == (queued, leased)
    assert ids[1203] not in (dead, *ids[:1200])
    assert store.queue.get(ids[1203]).value == "new"
    assert store.queue.get(dead).state == "dead" and store.queue.get(dead).dedup_key is None
    assert store.queue.get(ids[2]).dedup_key == "k-2"
    assert store.queue.get(ids[2]).max_attempts == 3
    assert store.queue.counts().total == 3 + 1200 + 1
    # Committed: the same batch again adds nothing.
    again = store.atomic()
    for n in range(1, 1200, 3):
        again.enqueue("twice", dedup_key=f"k-{n}")
    assert again.commit().message_ids == ids[1:1200:3]
    assert store.queue.counts().total == 3 + 1200 + 1


def test_a_bad_enqueue_fails_before_anything_is_written(store: airq_nb.Store) -> None:
    atomic = store.atomic().set(("k",), 1)
    with pytest.raises(airq_nb.InvalidValueError):
        atomic.enqueue({"bad": {1, 2}})
    assert _snapshot(store) == ([], 0)


@pytest.mark.parametrize(
    "bad",
    ["", "xx" * 10, "aa" * 11, "xxxx", "0" * 19, 42, b"0" * 20],
    ids=["empty", "not-hex", "too-long", "xxxx", "too-short", "int", "bytes"],
)
def test_a_malformed_versionstamp_is_refused_not_a_failed_check(
    store: airq_nb.Store, bad: object
) -> None:
    # Deno's kv_test.ts "invalid versionstamp in atomic check rejects": "", "xx"*10, "aa"*11.
    store.set(("a",), 1)
    with pytest.raises(airq_nb.InvalidValueError, match="20 hex digits"):
        store.atomic().check(("a",), bad).set(("a",), 2).commit()  # type: ignore[arg-type]
    assert store.get(("a",)).value == 1


def test_a_versionstamp_in_capitals_is_the_same_versionstamp(store: airq_nb.Store) -> None:
    stamp = store.set(("a",), 1).versionstamp
    assert stamp is not None
    assert store.atomic().check(("a",), stamp.upper()).set(("a",), 2).commit().ok
    assert store.get(("a",)).value == 2
