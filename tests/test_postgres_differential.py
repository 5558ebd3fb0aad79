"""Both backends answer alike: random sequences of store calls, on SQLite and on PostgreSQL.

Hypothesis draws a sequence of KV, atomic and queue calls (keys of every part type, so
Deno's key order is compared too); each runs on a SQLite file and on a PostgreSQL schema,
with one fake clock, and every answer must match — versionstamps and lease tokens aside,
which only need to behave alike (stamps grow with each commit on both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_backends import drop_schema, fresh_schema_url

import airq_nb

KEY_PARTS = st.one_of(
    st.sampled_from([b"", b"\x00", b"a"]),
    st.sampled_from(["", "a", "b", "é"]),
    st.integers(-3, 3),
    st.sampled_from([-1.5, 0.0, 2.5]),
    st.booleans(),
)
KEYS = st.lists(KEY_PARTS, min_size=1, max_size=3).map(tuple)
VALUES = st.one_of(
    st.integers(-5, 5), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2)
)
TOPICS = st.sampled_from(["a", "b"])

OPERATIONS = st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("sum"), KEYS, st.integers(-3, 3)),
    st.tuples(st.just("get"), KEYS),
    st.tuples(
        st.just("list"),
        st.lists(KEY_PARTS, max_size=1).map(tuple),
        st.booleans(),
        st.sampled_from([None, 1, 3]),
    ),
    st.tuples(st.just("check"), KEYS, VALUES),
    st.tuples(
        st.just("enqueue"),
        VALUES,
        TOPICS,
        st.sampled_from([0, 5]),
        st.sampled_from([None, "d1", "d2"]),
    ),
    st.tuples(st.just("claim"), st.sampled_from([None, ["a"], ["b"]])),
    st.tuples(st.just("settle"), st.sampled_from(["ack", "fail", "fail-dead", "release"])),
    st.tuples(st.just("advance"), st.sampled_from([1, 10, 40])),
    st.tuples(st.just("pause"), st.sampled_from([None, "a"])),
    st.tuples(st.just("resume"), st.sampled_from([None, "a"])),
    st.tuples(
        st.just("redrive_all"),
    ),
    st.tuples(
        st.just("queue"),
    ),
)


class Runner:
    """One store and what a consumer of it holds."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.held: list[airq_nb.Delivery] = []
        self.stamps: list[str] = []

    def apply(self, operation: tuple[Any, ...]) -> Any:
        store, name, args = self.store, operation[0], operation[1:]
        try:
            return self._apply(store, name, args)
        except airq_nb.AirqError as exc:
            return ("error", type(exc).__name__)

    def _apply(self, store: Any, name: str, args: tuple[Any, ...]) -> Any:
        if name == "set":
            return self._stamped(store.set(args[0], args[1]))
        if name == "delete":
            return store.delete(args[0])
        if name == "sum":
            return self._stamped(store.atomic().sum(args[0], args[1]).commit())
        if name == "get":
            entry = store.get(args[0])
            return (entry.key, entry.value, entry.versionstamp is None)
        if name == "list":
            prefix, reverse, limit = args
            return [
                (e.key, e.value) for e in store.list(prefix=prefix, reverse=reverse, limit=limit)
            ]
        if name == "check":
            current = store.get(args[0]).versionstamp
            result = store.atomic().check(args[0], current).set(args[0], args[1]).commit()
            return self._stamped(result)
        if name == "enqueue":
            value, topic, delay, dedup = args
            return store.enqueue(
                value, topic=topic, delay=delay, dedup_key=dedup, backoff_schedule=[1]
            )
        if name == "claim":
            delivery = store.claim(topics=args[0], lease_seconds=30)
            if delivery is None:
                return None
            self.held.append(delivery)
            return (delivery.id, delivery.topic, delivery.value, delivery.attempt)
        if name == "settle":
            if not self.held:
                return None
            delivery = self.held.pop(0)
            how = args[0]
            if how == "ack":
                return store.ack(delivery)
            if how == "release":
                return store.release(delivery)
            return store.fail(delivery, "boom", retry=how == "fail")
        if name == "advance":
            store.clock.advance(args[0])
            return None
        if name in ("pause", "resume"):
            return getattr(store.queue, name)(args[0])
        if name == "redrive_all":
            return store.queue.redrive_all()
        if name == "queue":
            messages = store.queue.list()
            return (
                [(m.id, m.topic, m.value, m.state, m.attempts, m.paused) for m in messages],
                store.queue.counts().by_state,
                store.next_due(),
            )
        raise AssertionError(name)

    def _stamped(self, result: airq_nb.CommitResult) -> bool:
        if result.ok:
            assert len(result.versionstamp) == 20
            assert not self.stamps or result.versionstamp > self.stamps[-1]
            self.stamps.append(result.versionstamp)
        return result.ok


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=30))
def test_sqlite_and_postgres_answer_alike(
    operations: list[tuple[Any, ...]], postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path: Path = tmp_path_factory.mktemp("diff") / "airq.db"
    url, schema = fresh_schema_url(postgres_url)
    try:
        with (
            airq_nb.open_store(path, clock=airq_nb.FakeClock()) as sqlite_store,
            airq_nb.open_store(url, clock=airq_nb.FakeClock()) as postgres_store,
        ):
            on_sqlite, on_postgres = Runner(sqlite_store), Runner(postgres_store)
            for step, operation in enumerate(operations):
                expected = on_sqlite.apply(operation)
                got = on_postgres.apply(operation)
                assert got == expected, f"step {step}: {operation}"
    finally:
        drop_schema(postgres_url, schema)
