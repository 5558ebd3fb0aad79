"""The durable queue in one process: leases, retries, dead letters, management, bad input."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from store_backends import behind_the_back

import airq_nb
from airq_nb import FakeClock, Store
from airq_nb.store.sqlite._schema import SCHEMA_VERSION

# The contract: every test below runs on SQLite and on PostgreSQL (tests/store_backends.py).
pytestmark = pytest.mark.backends("sqlite", "postgres")


def _claim(store: Store, **options: object) -> airq_nb.Delivery:
    delivery = store.claim(**options)  # type: ignore[arg-type]
    assert delivery is not None
    return delivery


def test_enqueue_claim_ack(clocked_store: Store, fake_clock: FakeClock) -> None:
    message_id = clocked_store.enqueue({"city": "London"}, topic="collect", schedule="hourly")
    delivery = _claim(clocked_store, lease_seconds=30)
    assert (delivery.id, delivery.topic, delivery.value) == (
        message_id,
        "collect",
        {"city": "London"},
    )
    assert (delivery.attempt, delivery.max_attempts) == (1, 6)
    assert delivery.deliver_at == delivery.enqueued_at == fake_clock.now()
    assert delivery.lease_expires_at == fake_clock.now() + 30
    assert delivery.schedule == "hourly"
    assert delivery.backoff_schedule == airq_nb.DEFAULT_BACKOFF_SCHEDULE
    assert clocked_store.queue.get(message_id).state == "leased"
    assert clocked_store.claim() is None  # one consumer at a time
    assert clocked_store.ack(delivery)
    assert not clocked_store.ack(delivery)
    assert clocked_store.queue.counts().total == 0
    with pytest.raises(airq_nb.MessageNotFoundError, match=r"queue\.list"):
        clocked_store.queue.get(message_id)


def test_delay_and_order(clocked_store: Store, fake_clock: FakeClock) -> None:
    later = clocked_store.enqueue("later", delay=20)
    sooner = clocked_store.enqueue("sooner", delay=10)
    assert clocked_store.claim() is None
    assert clocked_store.next_due() == fake_clock.now() + 10
    fake_clock.advance(25)
    assert [_claim(clocked_store).id, _claim(clocked_store).id] == [sooner, later]


def test_topics_filter(clocked_store: Store) -> None:
    clocked_store.enqueue("a", topic="alpha")
    beta = clocked_store.enqueue("b", topic="beta")
    assert _claim(clocked_store, topics=["beta"]).id == beta
    assert clocked_store.claim(topics=["beta"]) is None
    assert clocked_store.claim(topics=[]) is None
    with pytest.raises(airq_nb.InvalidValueError, match="list of topic names"):
        clocked_store.claim(topics="alpha")


def test_default_backoff_then_dead_letter_with_keys_if_undelivered(
    clocked_store: Store, fake_clock: FakeClock
) -> None:
    message_id = clocked_store.enqueue(
        {"job": 7}, keys_if_undelivered=[("failed", 7), ("failed", "latest")]
    )
    waits = []
    for attempt in range(1, 6):
        delivery = _claim(clocked_store)
        assert delivery.attempt == attempt
        assert clocked_store.fail(delivery, f"boom {attempt}") == "retry"
        message = clocked_store.queue.get(message_id)
        assert (message.state, message.last_error) == ("queued", f"boom {attempt}")
        waits.append(round(message.deliver_at - fake_clock.now(), 6))
        assert clocked_store.claim() is None or waits[-1] == 0
        fake_clock.advance(waits[-1])
    assert waits == [0.1, 1.0, 5.0, 30.0, 60.0]
    assert clocked_store.get(("failed", 7)).value is None
    last = _claim(clocked_store)
    assert last.attempt == 6
    assert clocked_store.fail(last, "final boom") == "dead"
    dead = clocked_store.queue.dead_letters()
    assert [(m.id, m.state, m.last_error, m.attempts) for m in dead] == [
        (message_id, "dead", "final boom", 6)
    ]
    assert clocked_store.get(("failed", 7)).value == {"job": 7}
    assert clocked_store.get(("failed", "latest")).value == {"job": 7}
    assert clocked_store.claim() is None


@pytest.mark.sqlite_only("a SQLite trigger; the PostgreSQL twin is in test_postgres_store.py")
def test_dead_letter_and_keys_if_undelivered_are_one_transaction(
    clocked_store: Store, db_path: Path
) -> None:
    clocked_store.enqueue({"job": 1}, keys_if_undelivered=[("failed", 1)], backoff_schedule=[])
    delivery = _claim(clocked_store)
    # Make the KV write fail, behind the store's back: the dead-lettering must roll back too.
    raw = sqlite3.connect(db_path)
    raw.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON kv BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    raw.commit()
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        clocked_store.fail(delivery, "boom")
    assert clocked_store.queue.get(delivery.id).state == "leased"
    raw.execute("DROP TRIGGER refuse")
    raw.commit()
    raw.close()
    assert clocked_store.fail(delivery, "boom") == "dead"
    assert clocked_store.get(("failed", 1)).value == {"job": 1}
    assert clocked_store.queue.get(delivery.id).state == "dead"


def test_custom_backoff_retry_in_and_no_retry(clocked_store: Store, fake_clock: FakeClock) -> None:
    clocked_store.enqueue("x", backoff_schedule=[2, 4])
    delivery = _claim(clocked_store)
    assert delivery.max_attempts == 3
    assert clocked_store.fail(delivery, "e1", retry_in=100) == "retry"
    fake_clock.advance(99)
    assert clocked_store.claim() is None
    fake_clock.advance(1)
    delivery = _claim(clocked_store)
    assert delivery.attempt == 2
    assert clocked_store.fail(delivery, "permanent", retry=False) == "dead"
    assert clocked_store.queue.dead_letters()[0].last_error == "permanent"


def test_expired_lease_is_delivered_again(clocked_store: Store, fake_clock: FakeClock) -> None:
    clocked_store.enqueue("work")
    first = _claim(clocked_store, lease_seconds=10)
    fake_clock.advance(9)
    assert clocked_store.claim() is None
    assert clocked_store.next_due() == first.lease_expires_at
    fake_clock.advance(2)
    second = _claim(clocked_store, lease_seconds=10)
    assert (second.id, second.attempt) == (first.id, 2)
    assert not clocked_store.ack(first)
    assert clocked_store.fail(first, "late") == "lost"
    assert not clocked_store.extend_lease(first, 10)
    assert not clocked_store.release(first)
    assert clocked_store.ack(second)


def test_lease_expiring_on_the_last_attempt_dead_letters(
    clocked_store: Store, fake_clock: FakeClock
) -> None:
    message_id = clocked_store.enqueue(
        "poison", backoff_schedule=[1], keys_if_undelivered=[("poison",)]
    )
    clocked_store.enqueue("fine", delay=100)
    _claim(clocked_store, lease_seconds=5)
    fake_clock.advance(6)
    assert _claim(clocked_store, lease_seconds=5).attempt == 2
    fake_clock.advance(6)
    # The poison message's lease ran out on its last attempt: dead, not delivered a third time.
    assert clocked_store.claim() is None
    fake_clock.advance(100)
    assert _claim(clocked_store).value == "fine"
    dead = clocked_store.queue.get(message_id)
    assert dead.state == "dead" and dead.attempts == 2
    assert "lease expired on attempt 2 of 2" in dead.last_error
    assert clocked_store.get(("poison",)).value == "poison"


def test_extend_lease(clocked_store: Store, fake_clock: FakeClock) -> None:
    clocked_store.enqueue("slow")
    delivery = _claim(clocked_store, lease_seconds=10)
    fake_clock.advance(8)
    assert clocked_store.extend_lease(delivery, 30)
    fake_clock.advance(20)
    assert clocked_store.claim() is None
    assert clocked_store.ack(delivery)
    with pytest.raises(airq_nb.InvalidDelayError):
        clocked_store.extend_lease(delivery, -1)


def test_release_gives_the_message_back_without_counting(clocked_store: Store) -> None:
    clocked_store.enqueue("shutdown")
    delivery = _claim(clocked_store)
    assert clocked_store.release(delivery)
    again = _claim(clocked_store)
    assert (again.id, again.attempt) == (delivery.id, 1)
    assert not clocked_store.ack(delivery)
    assert clocked_store.ack(again)


def test_pause_and_resume(clocked_store: Store) -> None:
    collect = clocked_store.enqueue("c", topic="collect")
    other = clocked_store.enqueue("o", topic="other")
    clocked_store.queue.pause("collect")
    assert clocked_store.queue.paused_topics() == ("collect",)
    assert clocked_store.queue.get(collect).paused
    assert not clocked_store.queue.get(other).paused
    assert clocked_store.ack(_claim(clocked_store))
    assert clocked_store.claim() is None
    assert clocked_store.next_due() is None
    assert clocked_store.queue.get(collect).state == "queued"
    clocked_store.queue.pause()
    clocked_store.queue.resume("collect")
    assert clocked_store.claim() is None  # everything is still paused
    clocked_store.queue.resume()
    assert clocked_store.queue.paused_topics() == ()
    assert _claim(clocked_store).id == collect
    with pytest.raises(airq_nb.InvalidValueError, match="topic"):
        clocked_store.queue.pause("*")


def _dead(store: Store, value: object, topic: str = "default") -> int:
    message_id = store.enqueue(value, topic=topic, backoff_schedule=[])
    delivery = store.claim(topics=[topic])
    assert delivery is not None and delivery.id == message_id
    assert store.fail(delivery, "boom") == "dead"
    return message_id


def test_purge_by_state_and_topic(clocked_store: Store) -> None:
    dead_a = _dead(clocked_store, "dead-a", topic="a")
    _dead(clocked_store, "dead-b", topic="b")
    clocked_store.enqueue("queued-a", topic="a")
    clocked_store.enqueue("queued-b", topic="b")
    assert clocked_store.queue.counts().by_state == {"dead": 2, "queued": 2}
    assert clocked_store.queue.purge(state="queued", topic="a") == 1
    assert clocked_store.queue.purge(state="dead", topic="b") == 1
    remaining = sorted(m.value for m in clocked_store.queue.list())
    assert remaining == ["dead-a", "queued-b"]
    counts = clocked_store.queue.counts()
    assert counts.by_topic == {"a": {"dead": 1}, "b": {"queued": 1}}
    assert clocked_store.queue.list(state="dead")[0].id == dead_a
    assert clocked_store.queue.purge() == 2
    assert clocked_store.queue.counts().total == 0
    with pytest.raises(airq_nb.InvalidValueError, match="state must be one of"):
        clocked_store.queue.purge(state="gone")


def test_list_filters_and_delete(clocked_store: Store, fake_clock: FakeClock) -> None:
    first = clocked_store.enqueue(1, topic="t")
    clocked_store.enqueue(2, topic="t", delay=100)
    clocked_store.enqueue(3, topic="u")
    assert [m.value for m in clocked_store.queue.list(topic="t")] == [1, 2]
    assert [m.value for m in clocked_store.queue.list(limit=2)] == [1, 3]
    due_soon = clocked_store.queue.list(due_before=fake_clock.now() + 50)
    assert [m.value for m in due_soon] == [1, 3]
    clocked_store.queue.delete(first)
    assert [m.value for m in clocked_store.queue.list()] == [3, 2]
    with pytest.raises(airq_nb.MessageNotFoundError):
        clocked_store.queue.delete(first)


def test_redrive(clocked_store: Store) -> None:
    message_id = _dead(clocked_store, {"retry": "me"})
    clocked_store.queue.redrive(message_id)
    message = clocked_store.queue.get(message_id)
    assert (message.state, message.attempts) == ("queued", 0)
    assert _claim(clocked_store).attempt == 1
    with pytest.raises(airq_nb.InvalidValueError, match="only dead letters"):
        clocked_store.queue.redrive(message_id)
    with pytest.raises(airq_nb.MessageNotFoundError):
        clocked_store.queue.redrive(10_000)


def test_redrive_all(clocked_store: Store) -> None:
    for i in range(3):
        _dead(clocked_store, i, topic="x" if i else "y")
    assert clocked_store.queue.redrive_all(topic="x") == 2
    assert clocked_store.queue.counts().by_state == {"queued": 2, "dead": 1}
    assert clocked_store.queue.redrive_all() == 1


def test_resume_and_redrive_call_the_on_queue_change_listeners(clocked_store: Store) -> None:
    # They add deliverable work, so a scheduler in this process must hear of it (both backends).
    message_id = _dead(clocked_store, "again")
    calls: list[str] = []
    unsubscribe = clocked_store.on_queue_change(lambda: calls.append("changed"))
    clocked_store.queue.pause("default")
    assert calls == []
    clocked_store.queue.resume("default")
    assert calls == ["changed"]
    clocked_store.queue.redrive(message_id)
    assert calls == ["changed"] * 2
    assert clocked_store.fail(_claim(clocked_store), "boom", retry=False) == "dead"
    calls.clear()
    assert clocked_store.queue.redrive_all() == 1
    assert calls == ["changed"]
    unsubscribe()


def test_dedup_key(clocked_store: Store) -> None:
    first = clocked_store.enqueue("a", dedup_key="collect:2026-11-28T21")
    assert clocked_store.enqueue("b", dedup_key="collect:2026-11-28T21") == first
    assert clocked_store.queue.counts().total == 1
    delivery = _claim(clocked_store)
    assert clocked_store.enqueue("c", dedup_key="collect:2026-11-28T21") == first
    assert clocked_store.fail(delivery, "boom", retry=False) == "dead"
    # A dead twin gives up its key: the next enqueue is a new message.
    second = clocked_store.enqueue("d", dedup_key="collect:2026-11-28T21")
    assert second != first
    assert clocked_store.queue.get(first).state == "dead"
    clocked_store.queue.redrive(first)
    assert {m.value for m in clocked_store.queue.list(state="queued")} == {"a", "d"}


def test_ids_are_never_reused(clocked_store: Store) -> None:
    first = clocked_store.enqueue(1)
    clocked_store.ack(_claim(clocked_store))
    assert clocked_store.queue.counts().total == 0
    assert clocked_store.enqueue(2) > first


# -- bad input: a typed error that says what to do, and nothing written ------------------


def _nothing_written(store: Store) -> None:
    assert store.queue.counts().total == 0
    assert store.list(prefix=()) == []


@pytest.mark.parametrize(
    "value",
    [math.nan, -math.inf, b"raw bytes", {"a", "b"}, {"when": object()}, [1, [math.nan]]],
    ids=["nan", "-inf", "bytes", "set", "object", "nested-nan"],
)
def test_non_json_payloads_are_refused(store: Store, value: object) -> None:
    with pytest.raises(airq_nb.InvalidValueError, match="queue payload must be JSON"):
        store.enqueue(value)
    _nothing_written(store)


def test_oversize_payload_is_refused(store: Store) -> None:
    with pytest.raises(airq_nb.PayloadTooLargeError, match="enqueue its key instead"):
        store.enqueue({"blob": "x" * (64 * 1024)})
    with pytest.raises(airq_nb.PayloadTooLargeError):
        store.atomic().enqueue("ok").enqueue(["é" * 20_000]).commit()
    _nothing_written(store)


@pytest.mark.parametrize(
    "delay",
    [-1, math.nan, math.inf, 30 * 24 * 3600 + 1, True, "5", None],
    ids=["negative", "nan", "inf", "over-30-days", "bool", "str", "None"],
)
def test_bad_delays_are_refused(store: Store, delay: object) -> None:
    with pytest.raises(airq_nb.InvalidDelayError, match="delay"):
        store.enqueue("x", delay=delay)  # type: ignore[arg-type]
    _nothing_written(store)


@pytest.mark.parametrize(
    "backoff",
    [[-1], [math.nan], [math.inf], [True], ["1"], "1,5", 5, {"a": 1}, [1] * 21, [2 * 86400]],
    ids=[
        "negative",
        "nan",
        "inf",
        "bool",
        "str-entry",
        "str",
        "int",
        "dict",
        "too-many",
        "too-long",
    ],
)
def test_bad_backoff_is_refused(store: Store, backoff: object) -> None:
    with pytest.raises(airq_nb.InvalidDelayError, match="backoff_schedule"):
        store.enqueue("x", backoff_schedule=backoff)  # type: ignore[arg-type]
    _nothing_written(store)


@pytest.mark.parametrize(
    "keys",
    [[["failed"]], [None], [("a", ("nested",))], [()], ("failed", 1), "failed"],
    ids=["list-key", "None-key", "nested", "empty", "one-key-not-a-list", "str"],
)
def test_bad_keys_if_undelivered_are_refused(store: Store, keys: object) -> None:
    with pytest.raises(airq_nb.InvalidKeyError, match="key"):
        store.enqueue("x", keys_if_undelivered=keys)  # type: ignore[arg-type]
    _nothing_written(store)


@pytest.mark.parametrize(
    "options",
    [{"topic": ""}, {"topic": "*"}, {"topic": 5}, {"dedup_key": 5}, {"schedule": 5}],
    ids=["empty-topic", "star-topic", "int-topic", "int-dedup", "int-schedule"],
)
def test_bad_message_options_are_refused(store: Store, options: dict[str, object]) -> None:
    with pytest.raises(airq_nb.InvalidValueError):
        store.enqueue("x", **options)  # type: ignore[arg-type]
    _nothing_written(store)


@pytest.mark.parametrize("lease", [-1, math.nan, math.inf, True])
def test_bad_lease_is_refused(store: Store, lease: object) -> None:
    store.enqueue("x")
    with pytest.raises(airq_nb.InvalidDelayError, match="lease_seconds"):
        store.claim(lease_seconds=lease)  # type: ignore[arg-type]
    assert store.queue.list()[0].state == "queued"


def test_bad_list_limit_is_refused(store: Store) -> None:
    with pytest.raises(airq_nb.InvalidValueError, match="limit"):
        store.queue.list(limit=-2)


# -- rows damaged behind the store's back --------------------------------------------------


def _damage(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    behind_the_back(db_path, sql, params)


@pytest.mark.parametrize(
    ("column", "bad", "error"),
    [
        ("value", "{not json", "corrupt queue row"),
        ("backoff_schedule", "[1, 'x'", "corrupt queue row"),
        ("backoff_schedule", "[-5]", "corrupt queue row"),
        ("keys_if_undelivered", '["zz"]', "corrupt queue row"),
    ],
    ids=["value", "backoff-json", "backoff-negative", "keys-hex"],
)
def test_corrupt_row_is_dead_lettered_on_claim(
    clocked_store: Store, db_path: Path, column: str, bad: str, error: str
) -> None:
    broken = clocked_store.enqueue({"n": 1}, keys_if_undelivered=[("k",)])
    good = clocked_store.enqueue({"n": 2})
    _damage(db_path, f"UPDATE queue SET {column} = ? WHERE id = ?", (bad, broken))

    listed = {m.id: m for m in clocked_store.queue.list()}
    if column in ("value", "backoff_schedule"):
        assert listed[broken].corrupt
    delivery = _claim(clocked_store)
    assert delivery.id == good
    dead = clocked_store.queue.get(broken)
    assert dead.state == "dead"
    assert error in dead.last_error
    assert clocked_store.claim() is None
    assert clocked_store.get(("k",)).value is None


def test_queue_list_shows_corrupt_rows_instead_of_raising(
    clocked_store: Store, db_path: Path
) -> None:
    message_id = clocked_store.enqueue("fine")
    _damage(db_path, "UPDATE queue SET value = X'00FF', backoff_schedule = 'nope'")
    (message,) = clocked_store.queue.list()
    assert message.id == message_id
    assert "backoff_schedule is unreadable" in message.corrupt
    assert clocked_store.queue.get(message_id).corrupt
    assert clocked_store.claim() is None
    assert clocked_store.queue.dead_letters()[0].id == message_id


def test_ids_stay_unique_after_purges_and_batches(clocked_store: Store) -> None:
    seen = [clocked_store.enqueue(i) for i in range(3)]
    clocked_store.queue.purge()
    seen += clocked_store.atomic().enqueue("a").enqueue("b").commit().message_ids
    newest = clocked_store.queue.list()[-1].id
    clocked_store.queue.delete(newest)
    seen.append(clocked_store.enqueue("c"))
    seen += clocked_store.atomic().enqueue("d").commit().message_ids
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert [m.value for m in clocked_store.queue.list()] == ["a", "c", "d"]


@pytest.mark.sqlite_only("a SQLite file of schema 1")
def test_a_schema_1_file_is_upgraded_without_reusing_ids(db_path: Path) -> None:
    # Schema 1 declared the queue with AUTOINCREMENT; its sequence must carry over.
    with airq_nb.open_store(db_path) as store:
        store.enqueue("old")
    raw = sqlite3.connect(db_path)
    raw.executescript(
        """
        DROP TRIGGER queue_high_water;
        DELETE FROM meta WHERE name = 'queue_high_water';
        CREATE TABLE makes_sequence (id INTEGER PRIMARY KEY AUTOINCREMENT);
        INSERT INTO sqlite_sequence (name, seq) VALUES ('queue', 41);
        DELETE FROM queue;
        PRAGMA user_version = 1;
        """
    )
    raw.close()
    with airq_nb.open_store(db_path) as store:
        assert store.enqueue("new") == 42
        assert store.execute("PRAGMA user_version") == [(SCHEMA_VERSION,)]


@pytest.mark.sqlite_only("counts commits with PRAGMA data_version")
def test_ack_and_claim_in_one_commit(clocked_store: Store, db_path: Path) -> None:
    for n in range(3):
        clocked_store.enqueue(n, topic="t")
    clocked_store.enqueue("other", topic="u")
    delivery = _claim(clocked_store, topics=["t"])
    seen = [delivery.value]
    with airq_nb.open_store(db_path) as observer:
        before = observer.data_version()
        acked, delivery = clocked_store.ack_and_claim(delivery, topics=["t"], lease_seconds=5)
        assert observer.data_version() == before + 1  # one commit for both
    while delivery is not None:
        seen.append(delivery.value)
        previous = delivery
        acked, delivery = clocked_store.ack_and_claim(delivery, topics=["t"])
        assert acked
    assert seen == [0, 1, 2]
    acked, last = clocked_store.ack_and_claim(previous)
    assert not acked  # already acked: the lease is not held any more
    assert last is not None and last.value == "other"
    assert [(m.value, m.state) for m in clocked_store.queue.list()] == [("other", "leased")]


@pytest.mark.parametrize("bad_id", ["1", [1], None, 1.0, True])
def test_bad_message_ids_are_refused(store: Store, bad_id: object) -> None:
    message_id = store.enqueue("kept")
    for verb in (store.queue.get, store.queue.delete, store.queue.redrive):
        with pytest.raises(airq_nb.InvalidValueError, match="message ids are integers"):
            verb(bad_id)  # type: ignore[operator]
    assert store.queue.get(message_id).value == "kept"


def test_bad_management_filters_are_refused(store: Store) -> None:
    with pytest.raises(airq_nb.InvalidValueError, match="topic must be a string"):
        store.queue.list(topic=["a"])  # type: ignore[arg-type]
    with pytest.raises(airq_nb.InvalidValueError, match="due_before"):
        store.queue.list(due_before="soon")  # type: ignore[arg-type]
    with pytest.raises(airq_nb.InvalidValueError, match="topic must be a string"):
        store.queue.purge(topic=5)  # type: ignore[arg-type]
    with pytest.raises(airq_nb.InvalidValueError, match="now"):
        store.claim(now="later")  # type: ignore[arg-type]


def test_claim_many_leases_a_batch_earliest_first(
    clocked_store: Store, db_path: Path, fake_clock: FakeClock
) -> None:
    late = clocked_store.enqueue("late", delay=5)
    ids = [clocked_store.enqueue(n, topic="work") for n in range(6)]
    other = clocked_store.enqueue("other", topic="elsewhere")

    batch = clocked_store.claim_many(4, topics=["work"])
    assert [d.id for d in batch] == ids[:4]
    assert all(d.attempt == 1 for d in batch)
    # Another connection (another consumer) never gets a message of this batch.
    with airq_nb.open_store(db_path, clock=fake_clock) as rival:
        theirs = rival.claim_many(10)
    assert [d.id for d in theirs] == [*ids[4:], other]
    assert late not in {d.id for d in batch + theirs}

    # Each message of a batch is its own delivery: fail one, ack the rest in one commit.
    assert clocked_store.fail(batch[0], "boom") == "retry"
    assert clocked_store.ack_many(batch[1:]) == 3
    assert clocked_store.ack_many(batch[1:]) == 0  # already acked: nothing held
    assert {m.id: m.state for m in clocked_store.queue.list()} == {
        late: "queued",
        batch[0].id: "queued",
        **{d.id: "leased" for d in theirs},
    }


def test_claim_many_dead_letters_corrupt_rows_and_delivers_the_rest(
    clocked_store: Store, db_path: Path
) -> None:
    good = [clocked_store.enqueue(n) for n in range(3)]
    broken = clocked_store.enqueue("x")
    _damage(db_path, "UPDATE queue SET value = '{not json' WHERE id = ?", (broken,))
    assert [d.id for d in clocked_store.claim_many(10)] == good
    assert clocked_store.queue.get(broken).state == "dead"


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, None])
def test_claim_many_refuses_a_bad_limit(store: Store, limit: object) -> None:
    store.enqueue("x")
    with pytest.raises(airq_nb.InvalidValueError, match="limit"):
        store.claim_many(limit)  # type: ignore[arg-type]
    assert store.queue.list()[0].state == "queued"


def test_lookahead_claims_a_queued_message_early_but_never_a_live_lease(
    clocked_store: Store, fake_clock: FakeClock
) -> None:
    held = clocked_store.enqueue("held")
    leased = _claim(clocked_store, lease_seconds=1.0)
    assert leased.id == held
    soon = clocked_store.enqueue("soon", delay=1.005)
    fake_clock.advance(0.995)  # the lease has 5 ms left; "soon" is due in 10 ms
    early = clocked_store.claim(lookahead=0.02)
    assert early is not None and early.id == soon
    assert clocked_store.claim(lookahead=0.02) is None  # the live lease is not taken
    fake_clock.advance(0.006)
    again = clocked_store.claim()
    assert again is not None and again.id == held and again.attempt == 2


def test_out_of_range_ids_and_non_string_topics_get_our_errors(store: Store) -> None:
    kept = store.enqueue("kept")
    for verb in (store.queue.get, store.queue.delete, store.queue.redrive):
        with pytest.raises(airq_nb.MessageNotFoundError):
            verb(2**70)
    for verb in (store.queue.pause, store.queue.resume):
        with pytest.raises(airq_nb.InvalidValueError, match="topic"):
            verb(["collect"])  # type: ignore[arg-type]
    assert store.queue.get(kept).value == "kept" and store.queue.paused_topics() == ()


def test_on_dead_letter_reports_rows_dead_lettered_while_claiming(
    clocked_store: Store, db_path: Path, fake_clock: FakeClock
) -> None:
    dying = clocked_store.enqueue("y", topic="t", backoff_schedule=[], schedule="job")
    assert _claim(clocked_store, lease_seconds=1).id == dying  # its only attempt; then it dies
    broken = clocked_store.enqueue("x", topic="t")
    _damage(db_path, "UPDATE queue SET value = '{not json' WHERE id = ?", (broken,))
    seen: list[airq_nb.DeadLettered] = []

    def log(dead: airq_nb.DeadLettered) -> None:
        seen.append(dead)
        clocked_store.set(("logged", dead.id), dead.error)  # joins the dead-lettering commit

    fake_clock.advance(2)
    assert clocked_store.claim(on_dead_letter=log) is None
    assert [(d.id, d.topic, d.schedule) for d in seen] == [(broken, "t", None), (dying, "t", "job")]
    assert "corrupt queue row" in seen[0].error and seen[1].attempt == 1
    assert "lease expired" in clocked_store.get(("logged", dying)).value
    assert {m.id: m.state for m in clocked_store.queue.list()} == {broken: "dead", dying: "dead"}
