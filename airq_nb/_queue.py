"""The durable queue: enqueue, lease-based claiming, ack/fail with back-off, dead letters.

These functions work on an open connection inside the caller's transaction, so the store's
plain verbs and its atomic operations share one implementation. Times are Unix seconds.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import InvalidDelayError, InvalidValueError
from ._json import dump_value, load_value

__all__ = [
    "DEFAULT_BACKOFF_SCHEDULE",
    "MAX_BACKOFF_ENTRIES",
    "MAX_BACKOFF_SECONDS",
    "MAX_DELAY_SECONDS",
    "Delivery",
    "FailOutcome",
    "Message",
    "QueueCounts",
]

#: Seconds to wait before each retry, Deno KV's default: 6 attempts in all.
DEFAULT_BACKOFF_SCHEDULE: tuple[float, ...] = (0.1, 1.0, 5.0, 30.0, 60.0)
#: Longest ``delay`` accepted at enqueue (Deno KV's limit: 30 days).
MAX_DELAY_SECONDS = 30 * 24 * 3600.0
#: Most retries one message may have.
MAX_BACKOFF_ENTRIES = 20
#: Longest single back-off step (one day).
MAX_BACKOFF_SECONDS = 24 * 3600.0

FailOutcome = Literal["retry", "dead", "lost"]
MessageState = Literal["queued", "leased", "dead"]

_MESSAGE_COLUMNS = (
    "id, topic, value, state, deliver_at, attempts, backoff_schedule, keys_if_undelivered, "
    "last_error, enqueued_at, lease_expires_at, dedup_key, schedule, dead_at"
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message leased to one consumer: ack it, fail it, extend or release the lease."""

    id: int
    topic: str
    value: Any
    attempt: int
    max_attempts: int
    deliver_at: float
    enqueued_at: float
    lease_token: str
    lease_expires_at: float
    schedule: str | None = None
    backoff_schedule: tuple[float, ...] = DEFAULT_BACKOFF_SCHEDULE


@dataclass(frozen=True, slots=True)
class Message:
    """A row of the queue as management sees it. ``corrupt`` names the damage of a bad row."""

    id: int
    topic: str
    value: Any
    state: str
    deliver_at: float
    attempts: int
    last_error: str | None
    enqueued_at: float
    paused: bool = False
    lease_expires_at: float | None = None
    dedup_key: str | None = None
    schedule: str | None = None
    dead_at: float | None = None
    max_attempts: int = len(DEFAULT_BACKOFF_SCHEDULE) + 1
    corrupt: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many messages are in each state, overall and per topic."""

    by_state: dict[str, int] = field(default_factory=dict)
    by_topic: dict[str, dict[str, int]] = field(default_factory=dict)
    paused_topics: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def check_delay(delay: float, *, what: str = "delay", limit: float = MAX_DELAY_SECONDS) -> float:
    """Return ``delay`` as float seconds, refusing negative, NaN, infinite or too-long values."""
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise InvalidDelayError(f"{what} must be a number of seconds, got {type(delay).__name__}")
    delay = float(delay)
    if not math.isfinite(delay) or delay < 0:
        raise InvalidDelayError(f"{what} must be a finite number of seconds >= 0, got {delay!r}")
    if delay > limit:
        raise InvalidDelayError(f"{what} of {delay:,.0f} s is over the limit of {limit:,.0f} s")
    return delay


def check_backoff(schedule: Iterable[float] | None) -> tuple[float, ...]:
    """Validate a back-off schedule (seconds before each retry); ``None`` means the default."""
    if schedule is None:
        return DEFAULT_BACKOFF_SCHEDULE
    if isinstance(schedule, str | bytes):
        raise InvalidDelayError("backoff_schedule must be a list of seconds, e.g. [1, 5, 30]")
    steps = tuple(
        check_delay(step, what="backoff_schedule entry", limit=MAX_BACKOFF_SECONDS)
        for step in schedule
    )
    if len(steps) > MAX_BACKOFF_ENTRIES:
        raise InvalidDelayError(
            f"backoff_schedule has {len(steps)} entries; at most {MAX_BACKOFF_ENTRIES} retries"
        )
    return steps


def check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not topic or topic == "*":
        raise InvalidValueError(f"topic must be a non-empty string other than '*', got {topic!r}")
    return topic


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """A validated message ready to insert; validation happens before any transaction opens."""

    topic: str
    value_json: str
    delay: float
    backoff_json: str | None
    keys_json: str | None
    dedup_key: str | None
    schedule: str | None


def prepare_message(
    value: Any,
    *,
    delay: float,
    topic: str,
    keys_if_undelivered: Sequence[bytes],
    backoff_schedule: Iterable[float] | None,
    dedup_key: str | None,
    schedule: str | None,
) -> PreparedMessage:
    """Validate everything about a message that does not need the database."""
    delay = check_delay(delay)
    backoff_json = None
    if backoff_schedule is not None:
        backoff_json = json.dumps(list(check_backoff(backoff_schedule)))
    keys_json = json.dumps([key.hex() for key in keys_if_undelivered]) if keys_if_undelivered else None
    if dedup_key is not None and not isinstance(dedup_key, str):
        raise InvalidValueError(f"dedup_key must be a string, got {type(dedup_key).__name__}")
    return PreparedMessage(
        topic=check_topic(topic),
        value_json=dump_value(value, what="queue payload"),
        delay=delay,
        backoff_json=backoff_json,
        keys_json=keys_json,
        dedup_key=dedup_key,
        schedule=schedule,
    )


_INSERT = (
    "INSERT INTO queue (topic, value, state, deliver_at, due_at, attempts, backoff_schedule, "
    "keys_if_undelivered, enqueued_at, dedup_key, schedule) "
    "VALUES (?, ?, 'queued', ?, ?, 0, ?, ?, ?, ?, ?)"
)


def insert_messages(conn: Any, messages: Sequence[PreparedMessage], now: float) -> list[int]:
    """Insert prepared messages in the open transaction; a live ``dedup_key`` twin is reused."""
    ids: list[int] = []
    for message in messages:
        if message.dedup_key is not None:
            row = conn.execute(
                "SELECT id FROM queue WHERE dedup_key = ? AND state != 'dead'", (message.dedup_key,)
            ).fetchone()
            if row is not None:
                ids.append(row[0])
                continue
            # A dead twin keeps its row for inspection but gives up the key.
            conn.execute(
                "UPDATE queue SET dedup_key = NULL WHERE dedup_key = ? AND state = 'dead'",
                (message.dedup_key,),
            )
        at = now + message.delay
        cursor = conn.execute(
            _INSERT,
            (
                message.topic,
                message.value_json,
                at,
                at,
                message.backoff_json,
                message.keys_json,
                now,
                message.dedup_key,
                message.schedule,
            ),
        )
        ids.append(cursor.lastrowid)
    return ids


def insert_many_plain(conn: Any, messages: Sequence[PreparedMessage], now: float) -> list[int]:
    """Fast path for messages without dedup keys: one ``executemany``, ids from the sequence."""
    before = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue'").fetchone()
    first = (before[0] if before else 0) + 1
    conn.executemany(
        _INSERT,
        [
            (m.topic, m.value_json, now + m.delay, now + m.delay, m.backoff_json, m.keys_json,
             now, None, m.schedule)
            for m in messages
        ],
    )
    return list(range(first, first + len(messages)))


def _backoff_of(raw: str | None) -> tuple[float, ...]:
    if raw is None:
        return DEFAULT_BACKOFF_SCHEDULE
    return check_backoff(json.loads(raw))


def _keys_of(raw: str | None) -> list[bytes]:
    if raw is None:
        return []
    return [bytes.fromhex(item) for item in json.loads(raw)]


def new_lease_token() -> str:
    return os.urandom(8).hex()


_CLAIM_SELECT = (
    "SELECT id, topic, value, state, deliver_at, attempts, backoff_schedule, "
    "keys_if_undelivered, enqueued_at, schedule FROM queue "
    "WHERE state IN ('queued', 'leased') AND due_at <= ? "
    "AND topic NOT IN (SELECT topic FROM paused_topics) "
    "AND NOT EXISTS (SELECT 1 FROM paused_topics WHERE topic = '*') "
)


def claim_next(
    conn: Any,
    *,
    now: float,
    lease_seconds: float,
    topics: Collection[str] | None,
    write_undelivered: Any,
) -> tuple[Delivery | None, list[tuple[int, str]]]:
    """Lease the next due message in the open write transaction.

    Returns the delivery (or ``None``) and the ``(id, error)`` of rows dead-lettered on the
    way: corrupt rows, and messages whose lease expired once too often (a consumer that
    keeps dying on them). ``write_undelivered(keys, value_json)`` writes the
    ``keys_if_undelivered`` of those.
    """
    sql = _CLAIM_SELECT
    params: list[Any] = [now]
    if topics is not None:
        topics = list(topics)
        sql += f"AND topic IN ({','.join('?' * len(topics))}) "
        params.extend(topics)
    sql += "ORDER BY due_at, id LIMIT 1"
    dead: list[tuple[int, str]] = []
    while True:
        row = conn.execute(sql, params).fetchone()
        if row is None:
            return None, dead
        (msg_id, topic, value_json, state, deliver_at, attempts, backoff_raw, keys_raw,
         enqueued_at, schedule) = row
        try:
            value = load_value(value_json)
            backoff = _backoff_of(backoff_raw)
            attempts = int(attempts)
            deliver_at = float(deliver_at)
            enqueued_at = float(enqueued_at)
            if not isinstance(topic, str):
                raise ValueError(f"topic is {topic!r}")
        except (TypeError, ValueError) as exc:
            error = f"corrupt queue row, not delivered: {exc}"
            _dead_letter(conn, msg_id, error, now)
            dead.append((msg_id, error))
            continue
        max_attempts = len(backoff) + 1
        if state == "leased" and attempts >= max_attempts:
            error = (
                f"lease expired on attempt {attempts} of {max_attempts}: "
                "the consumer died or hung while handling it"
            )
            _dead_letter(conn, msg_id, error, now)
            _write_undelivered_safely(write_undelivered, keys_raw, value_json)
            dead.append((msg_id, error))
            continue
        token = new_lease_token()
        expires = now + lease_seconds
        conn.execute(
            "UPDATE queue SET state = 'leased', attempts = attempts + 1, lease_token = ?, "
            "lease_expires_at = ?, due_at = ? WHERE id = ?",
            (token, expires, expires, msg_id),
        )
        delivery = Delivery(
            id=msg_id,
            topic=topic,
            value=value,
            attempt=attempts + 1,
            max_attempts=max_attempts,
            deliver_at=deliver_at,
            enqueued_at=enqueued_at,
            lease_token=token,
            lease_expires_at=expires,
            schedule=schedule,
            backoff_schedule=backoff,
        )
        return delivery, dead


def _dead_letter(conn: Any, msg_id: int, error: str, now: float) -> None:
    conn.execute(
        "UPDATE queue SET state = 'dead', last_error = ?, dead_at = ?, lease_token = NULL, "
        "lease_expires_at = NULL, due_at = NULL WHERE id = ?",
        (error, now, msg_id),
    )


def _write_undelivered_safely(write_undelivered: Any, keys_raw: str | None, value_json: str) -> None:
    keys = _keys_of(keys_raw)
    if keys:
        write_undelivered(keys, value_json)


def fail_delivery(
    conn: Any,
    delivery: Delivery,
    error: str,
    *,
    now: float,
    retry: bool,
    retry_in: float | None,
    write_undelivered: Any,
) -> FailOutcome:
    """Record a failed attempt: schedule the next by back-off, or dead-letter when exhausted."""
    row = conn.execute(
        "SELECT attempts, keys_if_undelivered, value FROM queue WHERE id = ? AND lease_token = ?",
        (delivery.id, delivery.lease_token),
    ).fetchone()
    if row is None:
        return "lost"
    attempts, keys_raw, value_json = row
    if retry and attempts < delivery.max_attempts:
        wait = delivery.backoff_schedule[attempts - 1] if retry_in is None else retry_in
        at = now + wait
        conn.execute(
            "UPDATE queue SET state = 'queued', deliver_at = ?, due_at = ?, last_error = ?, "
            "lease_token = NULL, lease_expires_at = NULL WHERE id = ?",
            (at, at, error, delivery.id),
        )
        return "retry"
    _dead_letter(conn, delivery.id, error, now)
    _write_undelivered_safely(write_undelivered, keys_raw, value_json)
    return "dead"


def row_to_message(row: Sequence[Any], paused_topics: Collection[str]) -> Message:
    """Build a :class:`Message` from a row, describing damage instead of raising on it."""
    (msg_id, topic, value_json, state, deliver_at, attempts, backoff_raw, _keys, last_error,
     enqueued_at, lease_expires_at, dedup_key, schedule, dead_at) = row
    corrupt = None
    try:
        value = load_value(value_json)
    except (TypeError, ValueError) as exc:
        value, corrupt = value_json, f"payload is not JSON: {exc}"
    try:
        max_attempts = len(_backoff_of(backoff_raw)) + 1
    except (TypeError, ValueError) as exc:
        max_attempts, corrupt = 0, f"backoff_schedule is unreadable: {exc}"
    return Message(
        id=msg_id,
        topic=topic,
        value=value,
        state=state,
        deliver_at=deliver_at,
        attempts=attempts,
        last_error=last_error,
        enqueued_at=enqueued_at,
        paused=topic in paused_topics or "*" in paused_topics,
        lease_expires_at=lease_expires_at,
        dedup_key=dedup_key,
        schedule=schedule,
        dead_at=dead_at,
        max_attempts=max_attempts,
        corrupt=corrupt,
    )


MESSAGE_COLUMNS = _MESSAGE_COLUMNS
