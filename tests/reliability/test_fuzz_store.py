"""Hypothesis drives the public store API against an in-memory model of the KV and the queue.

Every step the model and the store must agree (entries, versionstamps, order, queue states
and attempts); bad input must raise one of our own exception types and change nothing; and
at the end the file passes ``PRAGMA integrity_check``. Time is a FakeClock, moved by a rule.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import airq_nb
from airq_nb import AirqError, FakeClock

# -- strategies -------------------------------------------------------------------------------

_finite = st.floats(allow_nan=False, allow_infinity=True, width=64).filter(
    lambda x: x != 0 or math.copysign(1, x) > 0  # -0.0 == 0.0 in Python but not in the key order
)
key_parts = st.one_of(
    st.binary(max_size=3),
    st.text(alphabet="ab\x00é", max_size=3),
    _finite,
    st.integers(min_value=-300, max_value=300) | st.sampled_from([2**70, -(2**70)]),
    st.booleans(),
)
keys = st.lists(key_parts, min_size=1, max_size=3).map(tuple)
prefixes = st.lists(key_parts, min_size=0, max_size=2).map(tuple)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
numbers = st.integers(min_value=-1000, max_value=1000) | st.floats(
    min_value=-1000, max_value=1000, allow_nan=False
)
topics = st.sampled_from(["a", "b"])


class _LongText(str):
    """Text over the payload limit, with a short repr (hypothesis prints failing inputs)."""

    def __repr__(self) -> str:
        return f"<{len(self):,} characters>"


# Anything a caller might pass: valid or not, the store must either accept it or raise ours.
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.sampled_from([object(), {1, 2}, 1j, b"\x80\x04", 2**4000, _LongText("x" * 70_000)]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
    ),
    max_leaves=5,
)
any_keys = st.one_of(
    keys,
    anything,
    st.lists(anything, min_size=1, max_size=3).map(tuple),
)
any_delays = st.one_of(
    st.floats(), st.integers(), st.sampled_from([None, "5", True, 30 * 24 * 3600.0])
)
backoffs = st.none() | st.lists(st.sampled_from([0.0, 1.0, 2.5, 60.0]), max_size=3)

_deep = []
for _ in range(10_000):
    _deep = [_deep]

# Each bad call must raise an AirqError subclass and write nothing.
BAD_CALLS: dict[str, Any] = {
    "key is a list": lambda s: s.set(["a"], 1),
    "empty key": lambda s: s.set((), 1),
    "key part None": lambda s: s.get(("a", None)),
    "key part dict": lambda s: s.delete(({"a": 1},)),
    "key too long": lambda s: s.set(("x" * 3000,), 1),
    "int part too large": lambda s: s.set((2**3000,), 1),
    "value is a set": lambda s: s.set(("k",), {1, 2}),
    "value is bytes": lambda s: s.set(("k",), b"raw"),
    "value is NaN": lambda s: s.set(("k",), math.nan),
    "value too large": lambda s: s.set(("k",), "x" * (64 * 1024)),
    "value nested too deep": lambda s: s.set(("k",), _deep),
    "value is an object": lambda s: s.enqueue(object()),
    "negative delay": lambda s: s.enqueue(1, delay=-1),
    "NaN delay": lambda s: s.enqueue(1, delay=math.nan),
    "delay over 30 days": lambda s: s.enqueue(1, delay=31 * 24 * 3600),
    "delay is text": lambda s: s.enqueue(1, delay="5"),
    "delay is bool": lambda s: s.enqueue(1, delay=True),
    "backoff too long": lambda s: s.enqueue(1, backoff_schedule=[1] * 21),
    "backoff negative": lambda s: s.enqueue(1, backoff_schedule=[-1]),
    "backoff is text": lambda s: s.enqueue(1, backoff_schedule="1,5"),
    "empty topic": lambda s: s.enqueue(1, topic=""),
    "topic '*'": lambda s: s.enqueue(1, topic="*"),
    "topic not text": lambda s: s.enqueue(1, topic=5),
    "dedup key not text": lambda s: s.enqueue(1, dedup_key=5),
    "keys_if_undelivered one key": lambda s: s.enqueue(1, keys_if_undelivered=("a", "b")),
    "sum of text": lambda s: s.atomic().sum(("n",), "1").commit(),
    "sum of NaN": lambda s: s.atomic().sum(("n",), math.nan).commit(),
    "max of bool": lambda s: s.atomic().max(("n",), True).commit(),
    "negative expiry": lambda s: s.set(("k",), 1, expire_in=-5),
    "list without bounds": lambda s: s.list(),
    "list negative limit": lambda s: s.list(prefix=(), limit=-1),
    "claim bare topic string": lambda s: s.claim(topics="a"),
    "claim negative lease": lambda s: s.claim(lease_seconds=-1),
    "unknown state filter": lambda s: s.queue.list(state="done"),
    "get missing message": lambda s: s.queue.get(10**9),
    "delete missing message": lambda s: s.queue.delete(10**9),
    "redrive missing message": lambda s: s.queue.redrive(10**9),
}

# -- the model ----------------------------------------------------------------------------------

_RANK = {bytes: 0, str: 1, int: 2, float: 3, bool: 4}  # Deno runtime: bigint < number


def model_key(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """A key as the model orders it: Deno's type rank first, then the value (str by UTF-8)."""
    parts = []
    for part in key:
        rank = _RANK[type(part)]
        parts.append((rank, part.encode() if isinstance(part, str) else part))
    return tuple(parts)


@dataclass
class ModelEntry:
    key: tuple[Any, ...]
    value: Any
    stamp: str
    expires_at: float | None


@dataclass
class ModelMessage:
    id: int
    topic: str
    value: Any
    state: str
    deliver_at: float
    due: float
    attempts: int
    max_attempts: int
    backoff: tuple[float, ...]
    keys_if_undelivered: list[tuple[Any, ...]]
    dedup_key: str | None
    token: str | None = None


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="airq-fuzz-"))
        self.clock = FakeClock(1_700_000_000.0)
        self.store = airq_nb.open_store(self.dir / "fuzz.db", clock=self.clock)
        self.kv: dict[tuple[Any, ...], ModelEntry] = {}
        self.messages: dict[int, ModelMessage] = {}
        self.deliveries: list[airq_nb.Delivery] = []
        self.paused: set[str] = set()
        self.last_stamp = ""
        self.undelivered_keys = 0

    def teardown(self) -> None:
        try:
            assert self.store.execute("PRAGMA integrity_check") == [("ok",)]
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------

    def visible(self, key: tuple[Any, ...]) -> ModelEntry | None:
        entry = self.kv.get(model_key(key))
        if entry is None or (entry.expires_at is not None and entry.expires_at <= self.clock.now()):
            return None
        return entry

    def new_stamp(self, stamp: str | None) -> str:
        assert stamp is not None and stamp > self.last_stamp, (stamp, self.last_stamp)
        self.last_stamp = stamp
        return stamp

    def dead_letter(self, message: ModelMessage) -> None:
        message.state, message.token, message.due = "dead", None, math.inf
        for key in message.keys_if_undelivered:
            entry = self.store.get(key)
            assert entry.value == message.value
            stamp = self.new_stamp(entry.versionstamp)
            self.kv[model_key(key)] = ModelEntry(key, message.value, stamp, None)

    # -- KV rules -------------------------------------------------------------------------

    @rule(key=keys, value=json_values, expire_in=st.none() | st.sampled_from([0.5, 10.0]))
    def set(self, key, value, expire_in) -> None:
        result = self.store.set(key, value, expire_in=expire_in)
        assert result.ok
        expires = None if expire_in is None else self.clock.now() + expire_in
        self.kv[model_key(key)] = ModelEntry(
            key, value, self.new_stamp(result.versionstamp), expires
        )

    @rule(key=any_keys, value=anything)
    def set_anything(self, key, value) -> None:
        before = self.store.execute("SELECT COUNT(*), MAX(versionstamp) FROM kv")
        try:
            result = self.store.set(key, value)
        except AirqError:
            assert self.store.execute("SELECT COUNT(*), MAX(versionstamp) FROM kv") == before
            return
        # Accepted: the key was a valid key and the value JSON (tuples become lists, dict
        # keys strings), so the model can hold it.
        assert isinstance(key, tuple) and key
        stored = json.loads(json.dumps(value))
        assert self.store.get(key).value == stored
        if any(
            isinstance(p, float) and (p != p or (p == 0 and math.copysign(1, p) < 0)) for p in key
        ):
            # NaN and -0.0 are valid key parts the model cannot tell apart; take it out again.
            self.store.delete(key)
            return
        self.kv[model_key(key)] = ModelEntry(key, stored, self.new_stamp(result.versionstamp), None)

    @rule(delay=any_delays)
    def enqueue_with_any_delay(self, delay) -> None:
        try:
            message_id = self.store.enqueue("any delay", delay=delay, topic="a")
        except AirqError:
            return
        assert isinstance(delay, int | float) and not isinstance(delay, bool)
        assert 0 <= delay <= 30 * 24 * 3600
        at = self.clock.now() + float(delay)
        self.messages[message_id] = ModelMessage(
            message_id, "a", "any delay", "queued", at, at, 0, 6,
            airq_nb.DEFAULT_BACKOFF_SCHEDULE, [], None,
        )  # fmt: skip

    @rule(key=keys)
    def delete(self, key) -> None:
        self.store.delete(key)
        self.kv.pop(model_key(key), None)

    @rule(key=keys)
    def get(self, key) -> None:
        entry = self.store.get(key)
        expected = self.visible(key)
        if expected is None:
            assert (entry.value, entry.versionstamp) == (None, None)
        else:
            assert (entry.value, entry.versionstamp) == (expected.value, expected.stamp)

    @rule(
        prefix=st.none() | prefixes,
        start=st.none() | keys,
        end=st.none() | keys,
        reverse=st.booleans(),
        limit=st.none() | st.integers(min_value=0, max_value=4),
    )
    def list(self, prefix, start, end, reverse, limit) -> None:
        if prefix is None and start is None and end is None:
            prefix = ()
        got = self.store.list(prefix=prefix, start=start, end=end, reverse=reverse, limit=limit)
        wanted = []
        for mkey in sorted(self.kv, reverse=reverse):
            entry = self.visible(self.kv[mkey].key)
            if entry is None:
                continue
            if prefix is not None and not (
                len(mkey) > len(prefix) and mkey[: len(prefix)] == model_key(prefix)
            ):
                continue
            if start is not None and mkey < model_key(start):
                continue
            if end is not None and mkey >= model_key(end):
                continue
            wanted.append(entry)
        if limit is not None:
            wanted = wanted[:limit]
        assert [model_key(e.key) for e in got] == [model_key(e.key) for e in wanted]
        assert [(e.value, e.versionstamp) for e in got] == [(e.value, e.stamp) for e in wanted]

    @rule(
        data=st.data(),
        ops=st.lists(
            st.tuples(
                st.sampled_from(["set", "delete", "sum", "min", "max"]), keys, json_values, numbers
            ),
            max_size=4,
        ),
        checks=st.lists(st.tuples(keys, st.booleans()), max_size=3),
    )
    def atomic(self, data, ops, checks) -> None:
        operation = self.store.atomic()
        checks_hold = True
        for key, right in checks:
            current = self.visible(key)
            stamp = None if current is None else current.stamp
            if not right:
                # "" (no commit yet) is no versionstamp: check() refuses it, as Deno does.
                stamp = data.draw(st.sampled_from([None, "0" * 20, self.last_stamp or None]))
                checks_hold &= stamp == (None if current is None else current.stamp)
            operation.check(key, stamp)
        staged = {mk: entry for mk, entry in self.kv.items() if self.visible(entry.key)}
        numeric_error = False
        for op, key, value, number in ops:
            mk = model_key(key)
            if op == "set":
                operation.set(key, value)
                staged[mk] = ModelEntry(key, value, "", None)
            elif op == "delete":
                operation.delete(key)
                staged.pop(mk, None)
            else:
                getattr(operation, op)(key, number)
                current = staged.get(mk)
                # A stored JSON null counts as absent, as a missing key does.
                if current is None or current.value is None:
                    result = number
                elif isinstance(current.value, bool) or not isinstance(current.value, int | float):
                    numeric_error = True
                    continue
                elif op == "sum":
                    result = current.value + number
                else:
                    result = (min if op == "min" else max)(current.value, number)
                staged[mk] = ModelEntry(key, result, "", None)
        if not checks_hold:
            assert operation.commit().ok is False
            return
        if numeric_error:
            try:
                operation.commit()
            except airq_nb.InvalidValueError:
                return
            raise AssertionError("sum/min/max on a non-number committed")
        result = operation.commit()
        assert result.ok
        stamp = self.new_stamp(result.versionstamp)
        touched = {model_key(key) for _op, key, _v, _n in ops}
        for mk in touched:
            if mk in staged:
                self.kv[mk] = ModelEntry(staged[mk].key, staged[mk].value, stamp, None)
            else:
                self.kv.pop(mk, None)

    @rule(name=st.sampled_from(sorted(BAD_CALLS)))
    def bad_input_raises_our_error_and_writes_nothing(self, name) -> None:
        before = self.store.execute("SELECT COUNT(*), MAX(versionstamp) FROM kv")
        queue_before = self.store.execute("SELECT COUNT(*) FROM queue")
        try:
            BAD_CALLS[name](self.store)
        except AirqError:
            pass
        else:
            raise AssertionError(f"{name}: no error raised")
        assert self.store.execute("SELECT COUNT(*), MAX(versionstamp) FROM kv") == before
        assert self.store.execute("SELECT COUNT(*) FROM queue") == queue_before

    # -- queue rules ----------------------------------------------------------------------

    @rule(
        value=json_values,
        delay=st.sampled_from([0, 0, 1, 5, 100]),
        topic=topics,
        backoff=backoffs,
        write_if_undelivered=st.booleans(),
        dedup_key=st.none() | st.sampled_from(["d1", "d2"]),
    )
    def enqueue(self, value, delay, topic, backoff, write_if_undelivered, dedup_key) -> None:
        # One key per message, so two dead letters never race for the same key.
        self.undelivered_keys += 1
        keys_if_undelivered = (
            [("undelivered", self.undelivered_keys)] if write_if_undelivered else []
        )
        message_id = self.store.enqueue(
            value,
            delay=delay,
            topic=topic,
            backoff_schedule=backoff,
            keys_if_undelivered=keys_if_undelivered,
            dedup_key=dedup_key,
        )
        if dedup_key is not None:
            twins = [
                m for m in self.messages.values() if m.dedup_key == dedup_key and m.state != "dead"
            ]
            if twins:
                assert message_id == twins[0].id
                return
            for m in self.messages.values():
                if m.dedup_key == dedup_key:
                    m.dedup_key = None
        assert message_id not in self.messages
        assert all(message_id > known for known in self.messages)
        steps = airq_nb.DEFAULT_BACKOFF_SCHEDULE if backoff is None else tuple(backoff)
        at = self.clock.now() + delay
        self.messages[message_id] = ModelMessage(
            message_id,
            topic,
            value,
            "queued",
            at,
            at,
            0,
            len(steps) + 1,
            steps,
            keys_if_undelivered,
            dedup_key,
        )

    @rule(
        lease=st.sampled_from([1.0, 10.0]),
        only=st.none() | st.sampled_from([["a"], ["b"], ["a", "b"]]),
    )
    def claim(self, lease, only) -> None:
        self.expect_claim(self.store.claim(lease_seconds=lease, topics=only), lease, only)

    def expect_claim(self, delivery: airq_nb.Delivery | None, lease: float, only) -> None:
        """Check ``delivery`` is what the model says a claim gets now, and record the lease."""
        now = self.clock.now()
        while True:
            due = [
                m
                for m in self.messages.values()
                if m.state in ("queued", "leased")
                and m.due <= now
                and m.topic not in self.paused
                and (only is None or m.topic in only)
            ]
            if not due:
                assert delivery is None
                return
            nxt = min(due, key=lambda m: (m.due, m.id))
            if nxt.state == "leased" and nxt.attempts >= nxt.max_attempts:
                self.dead_letter(nxt)
                continue
            break
        assert delivery is not None
        assert (delivery.id, delivery.attempt, delivery.value) == (
            nxt.id,
            nxt.attempts + 1,
            nxt.value,
        )
        assert delivery.deliver_at == nxt.deliver_at
        assert delivery.max_attempts == nxt.max_attempts
        nxt.state, nxt.attempts, nxt.due, nxt.token = (
            "leased",
            nxt.attempts + 1,
            now + lease,
            delivery.lease_token,
        )
        self.deliveries.append(delivery)

    def holder(self, delivery: airq_nb.Delivery) -> ModelMessage | None:
        message = self.messages.get(delivery.id)
        if message is None or message.token != delivery.lease_token:
            return None
        return message

    @precondition(lambda self: self.deliveries)
    @rule(data=st.data())
    def ack(self, data) -> None:
        delivery = data.draw(st.sampled_from(self.deliveries))
        message = self.holder(delivery)
        assert self.store.ack(delivery) is (message is not None)
        if message is not None:
            del self.messages[message.id]

    @precondition(lambda self: self.deliveries)
    @rule(data=st.data(), lease=st.sampled_from([1.0, 10.0]), only=st.none() | st.just(["a"]))
    def ack_and_claim(self, data, lease, only) -> None:
        delivery = data.draw(st.sampled_from(self.deliveries))
        message = self.holder(delivery)
        acked, following = self.store.ack_and_claim(delivery, lease_seconds=lease, topics=only)
        assert acked is (message is not None)
        if message is not None:
            del self.messages[message.id]
        self.expect_claim(following, lease, only)

    @precondition(lambda self: self.deliveries)
    @rule(data=st.data(), seconds=st.sampled_from([0.5, 20.0]))
    def extend_lease(self, data, seconds) -> None:
        delivery = data.draw(st.sampled_from(self.deliveries))
        message = self.holder(delivery)
        assert self.store.extend_lease(delivery, seconds) is (message is not None)
        if message is not None:
            message.due = self.clock.now() + seconds

    @rule(topic=st.none() | topics, state=st.none() | st.sampled_from(["queued", "leased", "dead"]))
    def purge(self, topic, state) -> None:
        doomed = [
            m.id
            for m in self.messages.values()
            if (topic is None or m.topic == topic) and (state is None or m.state == state)
        ]
        assert self.store.queue.purge(topic=topic, state=state) == len(doomed)
        for message_id in doomed:
            del self.messages[message_id]

    @precondition(lambda self: self.deliveries)
    @rule(data=st.data(), retry=st.booleans(), retry_in=st.none() | st.sampled_from([0.0, 3.0]))
    def fail(self, data, retry, retry_in) -> None:
        delivery = data.draw(st.sampled_from(self.deliveries))
        message = self.holder(delivery)
        outcome = self.store.fail(delivery, "boom", retry=retry, retry_in=retry_in)
        if message is None:
            assert outcome == "lost"
        elif retry and message.attempts < message.max_attempts:
            assert outcome == "retry"
            wait = message.backoff[message.attempts - 1] if retry_in is None else retry_in
            message.state, message.token = "queued", None
            message.deliver_at = message.due = self.clock.now() + wait
        else:
            assert outcome == "dead"
            self.dead_letter(message)

    @precondition(lambda self: self.deliveries)
    @rule(data=st.data())
    def release(self, data) -> None:
        delivery = data.draw(st.sampled_from(self.deliveries))
        message = self.holder(delivery)
        assert self.store.release(delivery) is (message is not None)
        if message is not None:
            message.state, message.token = "queued", None
            message.attempts = max(message.attempts - 1, 0)
            message.due = message.deliver_at

    @rule(seconds=st.sampled_from([0.05, 0.5, 1.0, 5.0, 30.0, 120.0]))
    def advance_clock(self, seconds) -> None:
        self.clock.advance(seconds)

    @rule(topic=topics, pause=st.booleans())
    def pause_or_resume(self, topic, pause) -> None:
        if pause:
            self.store.queue.pause(topic)
            self.paused.add(topic)
        else:
            self.store.queue.resume(topic)
            self.paused.discard(topic)

    @precondition(lambda self: any(m.state == "dead" for m in self.messages.values()))
    @rule(data=st.data())
    def redrive(self, data) -> None:
        dead = sorted(m.id for m in self.messages.values() if m.state == "dead")
        message = self.messages[data.draw(st.sampled_from(dead))]
        self.store.queue.redrive(message.id)
        message.state, message.attempts = "queued", 0
        message.deliver_at = message.due = self.clock.now()

    @precondition(lambda self: self.messages)
    @rule(data=st.data())
    def delete_message(self, data) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.messages)))
        self.store.queue.delete(message_id)
        del self.messages[message_id]

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def queue_agrees(self) -> None:
        got = {m.id: (m.state, m.attempts, m.topic, m.value) for m in self.store.queue.list()}
        wanted = {m.id: (m.state, m.attempts, m.topic, m.value) for m in self.messages.values()}
        assert got == wanted
        assert set(self.store.queue.paused_topics()) == self.paused

    @invariant()
    def kv_agrees(self) -> None:
        got = {model_key(e.key): (e.value, e.versionstamp) for e in self.store.list(prefix=())}
        wanted = {
            mk: (e.value, e.stamp) for mk, e in self.kv.items() if self.visible(e.key) is not None
        }
        assert got == wanted


StoreMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("AIRQ_NB_FUZZ_EXAMPLES", "100")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStoreAgainstModel = StoreMachine.TestCase
