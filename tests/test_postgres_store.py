"""The PostgreSQL backend beyond the shared contract: opening, schemas, races, change-wait.

The contract itself (KV, atomic, queue) runs on both backends in test_kv.py, test_atomic.py
and test_queue.py; this module holds what only PostgreSQL has or needs: URLs and schemas,
writers racing on real separate connections, LISTEN/NOTIFY, and server-side failures.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from store_backends import behind_the_back, drop_schema, fresh_schema_url

import airq_nb
from airq_nb.store._backend import QueueAdmin, Store
from airq_nb.store.postgres._store import PostgresStore
from airq_nb.store.queue_manager import QueueManager
from airq_nb.store.sqlite import SqliteStore


@pytest.fixture
def url(postgres_store_url: str) -> str:
    return postgres_store_url


@pytest.fixture
def pg(url: str) -> Iterator[PostgresStore]:
    with airq_nb.open_store(url) as store:
        assert isinstance(store, PostgresStore)
        yield store


# -- the backend interface -----------------------------------------------------------------


def _public_signature(obj: object, name: str) -> list[tuple[str, object, object]]:
    params = inspect.signature(getattr(obj, name)).parameters.values()
    return [(p.name, p.kind, p.default) for p in params if p.name != "self"]


@pytest.mark.parametrize(
    ("protocol", "backends"),
    [
        (Store, (SqliteStore, PostgresStore)),
        (QueueAdmin, (QueueManager,)),
    ],
    ids=["store", "queue"],
)
def test_both_backends_implement_every_verb_with_the_same_parameters(
    protocol: type, backends: tuple[type, ...]
) -> None:
    verbs = [
        name
        for name, member in vars(protocol).items()
        if callable(member) and not name.startswith("_")
    ]
    assert len(verbs) >= 11
    for backend in backends:
        for verb in verbs:
            assert _public_signature(backend, verb) == _public_signature(protocol, verb), (
                backend,
                verb,
            )


def test_both_backends_are_a_store(pg: PostgresStore, tmp_path: Path) -> None:
    assert airq_nb.Store is Store
    with airq_nb.open_store(tmp_path / "airq.db") as lite:
        assert isinstance(lite, SqliteStore)
        assert isinstance(lite, airq_nb.Store)
    assert isinstance(pg, airq_nb.Store)


# -- opening: URLs, AIRQ_NB_DB, schemas ----------------------------------------------------


def test_airq_nb_db_may_hold_the_url(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRQ_NB_DB", url)
    with airq_nb.open_store() as store:
        assert isinstance(store, PostgresStore)
        store.set(("from", "env"), 1)
    with airq_nb.open_store(url) as again:
        assert again.get(("from", "env")).value == 1


def test_schemas_are_independent_stores(postgres_url: str) -> None:
    first_url, first = fresh_schema_url(postgres_url)
    _, second = fresh_schema_url(postgres_url)
    try:
        with (
            airq_nb.open_store(first_url) as a,
            airq_nb.open_store(postgres_url, schema=second) as b,
        ):
            a.set(("k",), "a")
            a.enqueue("for a")
            assert b.get(("k",)).value is None
            assert b.claim() is None
            b.set(("k",), "b")
            assert a.get(("k",)).value == "a"
            assert a.claim().value == "for a"
            assert a.schema == first and b.schema == second
    finally:
        drop_schema(postgres_url, first)
        drop_schema(postgres_url, second)


def test_schema_options_are_checked(postgres_url: str, tmp_path) -> None:
    with pytest.raises(airq_nb.ConfigurationError, match="lower-case identifier"):
        airq_nb.open_store(postgres_url, schema="Robert'); DROP TABLE kv;--")
    with pytest.raises(airq_nb.ConfigurationError, match="disagrees"):
        airq_nb.open_store(postgres_url + "&schema=one", schema="two")
    with pytest.raises(airq_nb.ConfigurationError, match="PostgreSQL"):
        airq_nb.open_store(tmp_path / "file.db", schema="one")


def test_an_unreachable_server_is_a_store_error(tmp_path) -> None:
    with pytest.raises(airq_nb.StoreError, match="cannot connect to PostgreSQL"):
        airq_nb.open_store(f"postgresql://nobody@/nowhere?host={tmp_path}")


def test_a_newer_schema_is_a_store_error(pg: PostgresStore, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"COMMENT ON SCHEMA {pg.schema} IS 'airq_nb schema 99'")
    with pytest.raises(airq_nb.StoreError, match="newer airq_nb"):
        airq_nb.open_store(postgres_url, schema=pg.schema)


def test_the_password_stays_out_of_messages(pg: PostgresStore) -> None:
    with airq_nb.open_store(
        pg._db.url.replace("postgres@", "postgres:s3cret@"), schema=pg.schema
    ) as s:
        assert "s3cret" not in repr(s)
        s.close()
        with pytest.raises(airq_nb.StoreError, match="closed") as raised:
            s.get(("k",))
        assert "s3cret" not in str(raised.value)


# -- races between real connections --------------------------------------------------------


def _in_threads(count: int, work) -> None:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors


def test_versionstamps_increase_in_commit_order_across_concurrent_writers(url: str) -> None:
    stamps: dict[float, str] = {}
    stores = [airq_nb.open_store(url) for _ in range(4)]
    try:

        def write(n: int) -> None:
            for _ in range(40):
                result = stores[n].atomic().sum(("count",), 1).commit()
                # The counter's value after this commit is its position in commit order.
                value = stores[n].get(("count",))
                if value.versionstamp == result.versionstamp:
                    stamps[value.value] = result.versionstamp

        _in_threads(4, write)
        assert stores[0].get(("count",)).value == 160  # no lost update
        in_commit_order = [stamps[position] for position in sorted(stamps)]
        assert len(in_commit_order) > 40
        assert in_commit_order == sorted(in_commit_order)
        assert len(set(in_commit_order)) == len(in_commit_order)
    finally:
        for store in stores:
            store.close()


def test_atomic_checks_cannot_be_raced(url: str) -> None:
    stores = [airq_nb.open_store(url) for _ in range(4)]
    stores[0].set(("balance",), 0)
    try:

        def deposit(n: int) -> None:
            done = 0
            while done < 25:
                entry = stores[n].get(("balance",))
                committed = (
                    stores[n]
                    .atomic()
                    .check(("balance",), entry.versionstamp)
                    .set(("balance",), entry.value + 1)
                    .commit()
                )
                done += committed.ok

        _in_threads(4, deposit)
        assert stores[0].get(("balance",)).value == 100
    finally:
        for store in stores:
            store.close()


def test_a_dedup_key_raced_by_two_connections_makes_one_message(url: str) -> None:
    stores = [airq_nb.open_store(url) for _ in range(4)]
    ids: list[int] = []
    barrier = threading.Barrier(4)
    try:

        def enqueue(n: int) -> None:
            barrier.wait()
            ids.append(stores[n].enqueue(n, dedup_key="collect:2026-12-02T03"))

        _in_threads(4, enqueue)
        assert len(set(ids)) == 1
        assert stores[0].queue.counts().total == 1
    finally:
        for store in stores:
            store.close()


def test_a_batch_racing_an_uncommitted_twin_takes_its_id(url: str) -> None:
    ours, theirs = airq_nb.open_store(url), airq_nb.open_store(url)
    got: list[tuple[int, ...]] = []
    try:
        with theirs.transaction():
            twin = theirs.enqueue("theirs", dedup_key="alert:5")
            # Our batch cannot see their message yet: its insert waits on the unique index.
            batch = ours.atomic()
            for n in range(10):
                batch.enqueue(n, dedup_key=f"alert:{n}")
            batch.enqueue("plain")
            racer = threading.Thread(target=lambda: got.append(batch.commit().message_ids))
            racer.start()
            time.sleep(0.3)
            assert racer.is_alive()
        racer.join(10)
        (ids,) = got
        assert ids[5] == twin and len(set(ids)) == 11
        values = {m.id: m.value for m in ours.queue.list()}
        assert [values[i] for i in ids] == [0, 1, 2, 3, 4, "theirs", 6, 7, 8, 9, "plain"]
    finally:
        ours.close()
        theirs.close()


def test_concurrent_claims_never_share_a_message(url: str) -> None:
    stores = [airq_nb.open_store(url) for _ in range(4)]
    batch = stores[0].atomic()
    for n in range(400):
        batch.enqueue(n)
    batch.commit()
    got: list[list[int]] = [[] for _ in stores]
    try:

        def consume(n: int) -> None:
            while True:
                if n % 2:
                    deliveries = stores[n].claim_many(7)
                else:
                    one = stores[n].claim()
                    deliveries = [] if one is None else [one]
                if not deliveries:
                    return
                got[n].extend(d.value for d in deliveries)
                assert stores[n].ack_many(deliveries) == len(deliveries)

        _in_threads(4, consume)
        everything = [value for values in got for value in values]
        assert sorted(everything) == list(range(400))
    finally:
        for store in stores:
            store.close()


def test_a_row_lock_held_past_the_busy_timeout_is_a_store_error(
    url: str, postgres_url: str
) -> None:
    with airq_nb.open_store(url, busy_timeout=0.2) as store:
        store.set(("k",), 1)
        with psycopg.connect(postgres_url) as holder:
            holder.execute(
                f"UPDATE {store.schema}.meta SET value = value WHERE name = 'versionstamp'"
            )
            with pytest.raises(airq_nb.StoreError, match="stayed locked"):
                store.set(("k",), 2)
            holder.rollback()
        assert store.set(("k",), 3).ok
        assert store.get(("k",)).value == 3


# -- transactions ---------------------------------------------------------------------------


def test_dead_letter_and_keys_if_undelivered_are_one_transaction(
    pg: PostgresStore, url: str
) -> None:
    pg.enqueue({"job": 1}, keys_if_undelivered=[("failed", 1)], backoff_schedule=[])
    delivery = pg.claim()
    assert delivery is not None
    behind_the_back(
        url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
    )
    behind_the_back(url, "CREATE TRIGGER refuse BEFORE INSERT ON kv EXECUTE FUNCTION refuse()")
    with pytest.raises(psycopg.errors.RaiseException, match="refused"):
        pg.fail(delivery, "boom")
    assert pg.queue.get(delivery.id).state == "leased"
    behind_the_back(url, "DROP TRIGGER refuse ON kv")
    assert pg.fail(delivery, "boom") == "dead"
    assert pg.get(("failed", 1)).value == {"job": 1}


def test_ack_and_claim_is_one_transaction(pg: PostgresStore, url: str) -> None:
    for n in range(3):
        pg.enqueue(n, topic="t")
    first = pg.claim(topics=["t"])
    assert first is not None
    acked, second = pg.ack_and_claim(first, topics=["t"])
    assert acked and second is not None and second.value == 1
    # Make the claim half fail: the ack half must roll back with it.
    behind_the_back(
        url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
    )
    behind_the_back(
        url,
        "CREATE TRIGGER refuse BEFORE UPDATE OF state ON queue FOR EACH ROW "
        "WHEN (NEW.state = 'leased') EXECUTE FUNCTION refuse()",
    )
    with pytest.raises(psycopg.errors.RaiseException):
        pg.ack_and_claim(second, topics=["t"])
    assert pg.queue.get(second.id).state == "leased"
    behind_the_back(url, "DROP TRIGGER refuse ON queue")
    acked, third = pg.ack_and_claim(second, topics=["t"])
    assert acked and third is not None and third.value == 2
    assert not pg.ack_and_claim(second)[0]


def test_a_read_inside_a_transaction_sees_its_writes(pg: PostgresStore) -> None:
    with pg.transaction():
        pg.set(("inside",), 1)
        assert pg.get(("inside",)).value == 1
        with airq_nb.open_store(pg._db.url, schema=pg.schema) as other:
            assert other.get(("inside",)).value is None  # not committed yet
    assert pg.get(("inside",)).value == 1


# -- change-wait: LISTEN/NOTIFY --------------------------------------------------------------


def test_wait_for_change_wakes_on_other_connections_work(pg: PostgresStore, url: str) -> None:
    assert pg.wait_for_change(0.05)  # the first call starts listening: "look now"
    assert not pg.wait_for_change(0.05)
    with airq_nb.open_store(url) as producer:
        timer = threading.Timer(0.2, producer.enqueue, args=("work",))
        started = time.monotonic()
        timer.start()
        assert pg.wait_for_change(10)
        woke_after = time.monotonic() - started
        timer.join()
        assert 0.15 < woke_after < 5
        delivery = pg.claim(lease_seconds=1)
        assert delivery is not None
        # Claims, acks and lease extensions are bookkeeping: they wake nobody.
        assert pg.extend_lease(delivery, 5)
        assert not pg.wait_for_change(0.1)
        # Work due again does wake a waiting consumer.
        assert producer.fail(delivery, "boom") == "retry"
        assert pg.wait_for_change(5)
        producer.queue.pause("t")
        assert not pg.wait_for_change(0.1)
        producer.queue.resume("t")
        assert pg.wait_for_change(5)
        # A rolled-back enqueue never notifies.
        with pytest.raises(RuntimeError), producer.transaction():
            producer.enqueue("never")
            raise RuntimeError("roll back")
        assert not pg.wait_for_change(0.1)


def test_wait_for_change_refuses_a_bad_timeout(pg: PostgresStore) -> None:
    with pytest.raises(airq_nb.InvalidDelayError, match="timeout"):
        pg.wait_for_change(-1)


def test_close_wakes_a_thread_waiting_for_change(url: str) -> None:
    store = airq_nb.open_store(url)
    assert store.wait_for_change(0)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait_for_change(60)))
    waiter.start()
    time.sleep(0.2)  # let it block
    started = time.monotonic()
    store.close()
    waiter.join(10)
    assert not waiter.is_alive() and woke == [True]
    assert time.monotonic() - started < 5
    with pytest.raises(airq_nb.StoreError, match="closed"):
        store.wait_for_change(0.1)


def test_every_thread_waiting_for_change_wakes(pg: PostgresStore, url: str) -> None:
    assert pg.wait_for_change(0)
    woke: list[bool] = []
    waiters = [
        threading.Thread(target=lambda: woke.append(pg.wait_for_change(10))) for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.2)  # all three waiting: one reads the connection, two wait on it
    with airq_nb.open_store(url) as producer:
        started = time.monotonic()
        producer.enqueue("work")
        for waiter in waiters:
            waiter.join(10)
    assert woke == [True, True, True]
    assert time.monotonic() - started < 5


def test_nul_characters_get_our_errors_not_the_drivers(pg: PostgresStore) -> None:
    for options in ({"topic": "a\x00b"}, {"dedup_key": "k\x00"}, {"schedule": "\x00"}):
        with pytest.raises(airq_nb.InvalidValueError, match="NUL"):
            pg.enqueue("x", **options)
    with pytest.raises(airq_nb.InvalidValueError, match="NUL"):
        pg.queue.pause("t\x00")
    assert pg.queue.counts().total == 0
    # A handler's error text may hold anything: the failure is still recorded.
    pg.enqueue({"nul": "\x00 is fine in a JSON value"}, backoff_schedule=[])
    delivery = pg.claim()
    assert delivery is not None and delivery.value == {"nul": "\x00 is fine in a JSON value"}
    assert pg.fail(delivery, "boom\x00") == "dead"
    assert pg.queue.dead_letters()[0].last_error == "boom\\x00"


def test_a_malformed_url_is_a_store_error_without_its_password(postgres_url: str) -> None:
    with pytest.raises(airq_nb.StoreError, match="as a PostgreSQL URL") as raised:
        airq_nb.open_store(postgres_url.replace("postgres@", "postgres:s3cret@") + "&bogus=1")
    assert "s3cret" not in str(raised.value)
