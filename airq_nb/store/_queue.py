"""The durable queue's rows: claiming, settling, failing and dead-lettering them, and reading them.

These functions work on an open connection inside the caller's transaction, so the store's
plain verbs (``queue.py``), its atomic operations (``kv.py``) and its management
(``queue_manager.py``) share one implementation. The models and input checks live in
``models.py``, inserts in ``_inserts.py``; both are importable from here too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from typing import Any

from ._dialect import SQLITE, Dialect
from ._inserts import (
    INSERT,
    add_messages,
    insert_many,
    insert_messages,
    insert_one,
    insert_params,
    insert_statement,
)
from ._json import load_value
from .models import (
    DEFAULT_BACKOFF_SCHEDULE,
    MAX_BACKOFF_ENTRIES,
    MAX_BACKOFF_SECONDS,
    MAX_DELAY_SECONDS,
    DeadLettered,
    Delivery,
    FailOutcome,
    Message,
    PreparedMessage,
    QueueCounts,
    backoff_of,
    check_backoff,
    check_claim_limit,
    check_delay,
    check_time,
    check_topic,
    check_topics,
    prepare_message,
)

__all__ = [
    "DEFAULT_BACKOFF_SCHEDULE",
    "INSERT",
    "MAX_BACKOFF_ENTRIES",
    "MAX_BACKOFF_SECONDS",
    "MAX_DELAY_SECONDS",
    "MESSAGE_COLUMNS",
    "DeadLettered",
    "Delivery",
    "FailOutcome",
    "Message",
    "PreparedMessage",
    "QueueCounts",
    "UndeliverableRow",
    "ack_rows",
    "add_messages",
    "backoff_of",
    "check_backoff",
    "check_claim_limit",
    "check_delay",
    "check_time",
    "check_topic",
    "check_topics",
    "claim_statement",
    "dead_letter_claimed",
    "delivery_from_claimed",
    "extend_rows",
    "fail_delivery",
    "insert_many",
    "insert_messages",
    "insert_one",
    "insert_params",
    "insert_statement",
    "new_lease_token",
    "prepare_message",
    "release_statement",
    "row_to_message",
    "topics_condition",
    "write_undelivered_safely",
]

MESSAGE_COLUMNS = (
    "id, topic, value, state, deliver_at, attempts, backoff_schedule, keys_if_undelivered, "
    "last_error, enqueued_at, lease_expires_at, dedup_key, schedule, dead_at"
)


def _keys_of(raw: str | None) -> list[bytes]:
    if raw is None:
        return []
    return [bytes.fromhex(item) for item in json.loads(raw)]


def new_lease_token() -> str:
    return os.urandom(8).hex()


# One statement leases the next due message: SQLite runs a writing statement under the
# write lock from its first step, so two consumers can never lease the same row, and the
# statement is its own commit (no BEGIN/COMMIT round trips on the hot path).
_CLAIM = (
    "UPDATE queue SET state = 'leased', attempts = attempts + 1, lease_token = ?, "
    "lease_expires_at = ?, due_at = ? WHERE id = ("
    # Queued messages are claimable up to a look-ahead horizon; an expired lease only once
    # it has really expired (never from a holder that still has a few ms left).
    "SELECT id FROM queue WHERE state IN ('queued', 'leased') AND due_at <= ? "
    "AND (state = 'queued' OR due_at <= ?) "
    "AND topic NOT IN (SELECT topic FROM paused_topics) "
    "AND NOT EXISTS (SELECT 1 FROM paused_topics WHERE topic = '*') {topics}"
    "ORDER BY due_at, id LIMIT 1{lock}) "
    "RETURNING id, topic, value, deliver_at, attempts, backoff_schedule, keys_if_undelivered, "
    "enqueued_at, schedule"
)
# The batch form: the same selection, ``LIMIT ?`` rows, one commit (the last parameter).
_CLAIM_MANY = _CLAIM.replace("WHERE id = (", "WHERE id IN (").replace("LIMIT 1{", "LIMIT ?{")


def claim_statement(
    topics: Sequence[str] | None, *, many: bool = False, dialect: Dialect = SQLITE
) -> str:
    """The statement that leases the next due message (of ``topics``, if given).

    With ``many`` it leases up to a number of messages given as its last parameter. On
    PostgreSQL the rows picked are locked, passing over those another consumer is
    leasing right now (``SKIP LOCKED``); the lock re-checks the conditions on the row's
    newest version, so two consumers never lease one message.
    """
    template = _CLAIM_MANY if many else _CLAIM
    return template.format(topics=topics_condition(topics), lock=dialect.skip_locked)


def topics_condition(topics: Sequence[str] | None) -> str:
    """``AND topic IN (?, ...) `` for ``topics`` (none when None; never true when empty,
    which PostgreSQL cannot spell ``IN ()``)."""
    if topics is None:
        return ""
    if not topics:
        return "AND 1 = 0 "
    return f"AND topic IN ({','.join('?' * len(topics))}) "


def release_statement(dialect: Dialect) -> str:
    """Give one leased message (``id``, ``lease_token``) back: due again, attempt not counted."""
    return (
        f"UPDATE queue SET state = 'queued', attempts = {dialect.greatest}(attempts - 1, 0), "
        "lease_token = NULL, lease_expires_at = NULL, due_at = deliver_at "
        "WHERE id = ? AND lease_token = ?"
    )


def ack_rows(conn: Any, deliveries: Sequence[Delivery]) -> set[int]:
    """Delete the messages whose leases are still held; returns their ids (others are lost)."""
    by_token: dict[str, list[int]] = {}
    for d in deliveries:
        by_token.setdefault(d.lease_token, []).append(d.id)
    acked: set[int] = set()
    for token, ids in by_token.items():
        for start in range(0, len(ids), 500):  # well under SQLite's variable limit
            chunk = ids[start : start + 500]
            rows = conn.execute(
                f"DELETE FROM queue WHERE lease_token = ? AND id IN ({','.join('?' * len(chunk))}) "
                "RETURNING id",
                [token, *chunk],
            ).fetchall()
            acked.update(row[0] for row in rows)
    return acked


def extend_rows(conn: Any, deliveries: Sequence[Delivery], expires: float) -> set[int]:
    """Renew the leases of ``deliveries`` until ``expires``; returns the ids whose lease was lost."""
    lost: set[int] = set()
    for d in deliveries:
        cursor = conn.execute(
            "UPDATE queue SET lease_expires_at = ?, due_at = ? WHERE id = ? AND lease_token = ?",
            (expires, expires, d.id, d.lease_token),
        )
        if cursor.rowcount != 1:
            lost.add(d.id)
    return lost


class UndeliverableRow(Exception):
    """A leased row that must become a dead letter instead of a delivery."""

    def __init__(self, dead: DeadLettered, *, write_undelivered: bool) -> None:
        super().__init__(dead.error)
        self.dead = dead
        self.msg_id = dead.id
        self.error = dead.error
        self.write_undelivered = write_undelivered


def _or_none(value: Any, kind: type) -> Any:
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def delivery_from_claimed(row: Sequence[Any], lease_token: str, expires: float) -> Delivery:
    """Turn the row the claim statement returned into a :class:`Delivery`.

    Raises :class:`UndeliverableRow` for a corrupt row, or for one whose lease expired on
    its last attempt (a consumer that keeps dying on it): those are dead-lettered.
    """
    (
        msg_id,
        topic,
        value_json,
        deliver_at,
        attempt,
        backoff_raw,
        keys_raw,
        enqueued_at,
        schedule,
    ) = row
    try:
        value = load_value(value_json)
        backoff = backoff_of(backoff_raw)
        _keys_of(keys_raw)
        attempt = int(attempt)
        deliver_at = float(deliver_at)
        enqueued_at = float(enqueued_at)
        if not isinstance(topic, str):
            raise ValueError(f"topic is {topic!r}")
        if schedule is not None and not isinstance(schedule, str):
            raise ValueError(f"schedule is {schedule!r}")
    except (TypeError, ValueError) as exc:
        dead = DeadLettered(
            msg_id,
            _or_none(topic, str),
            _or_none(schedule, str),
            _or_none(attempt, int),
            _or_none(deliver_at, float),
            f"corrupt queue row, not delivered: {exc}",
        )
        raise UndeliverableRow(dead, write_undelivered=False) from None
    max_attempts = len(backoff) + 1
    if attempt > max_attempts:
        error = (
            f"lease expired on attempt {max_attempts} of {max_attempts}: "
            "the consumer died or hung while handling it"
        )
        dead = DeadLettered(msg_id, topic, schedule, max_attempts, deliver_at, error)
        raise UndeliverableRow(dead, write_undelivered=True)
    return Delivery(
        id=msg_id,
        topic=topic,
        value=value,
        attempt=attempt,
        max_attempts=max_attempts,
        deliver_at=deliver_at,
        enqueued_at=enqueued_at,
        lease_token=lease_token,
        lease_expires_at=expires,
        schedule=schedule,
        backoff_schedule=backoff,
    )


def dead_letter_claimed(
    conn: Any,
    bad: UndeliverableRow,
    lease_token: str,
    now: float,
    write_undelivered: Any,
    *,
    lock: str = "",
) -> None:
    """Dead-letter a row this consumer just leased (in the open transaction).

    ``conn`` takes ``?`` statements; ``lock`` is the row lock PostgreSQL's concurrent
    writers need on the row read (``" FOR UPDATE"``), nothing on SQLite.
    """
    row = conn.execute(
        "SELECT keys_if_undelivered, value, backoff_schedule FROM queue "
        "WHERE id = ? AND lease_token = ?" + lock,
        (bad.msg_id, lease_token),
    ).fetchone()
    if row is None:
        return  # deleted or re-leased meanwhile: nothing of ours to dead-letter
    keys_raw, value_json, backoff_raw = row
    error = bad.error
    if bad.write_undelivered:
        error += write_undelivered_safely(write_undelivered, keys_raw, value_json)
        # The claim counted one attempt too many; show the attempts that really ran.
        conn.execute(
            "UPDATE queue SET attempts = ? WHERE id = ?",
            (len(backoff_of(backoff_raw)) + 1, bad.msg_id),
        )
    _dead_letter(conn, bad.msg_id, error, now)


def _dead_letter(conn: Any, msg_id: int, error: str, now: float) -> None:
    conn.execute(
        "UPDATE queue SET state = 'dead', last_error = ?, dead_at = ?, lease_token = NULL, "
        "lease_expires_at = NULL, due_at = NULL WHERE id = ?",
        (error, now, msg_id),
    )


def write_undelivered_safely(write_undelivered: Any, keys_raw: str | None, value_json: str) -> str:
    """Write a dead letter's value under its keys_if_undelivered; a note for its error if not."""
    try:
        keys = _keys_of(keys_raw)
    except (TypeError, ValueError) as exc:
        # A row damaged after it was claimed: dead-letter it anyway and say what was skipped.
        return f" (keys_if_undelivered unreadable, not written: {exc})"
    if keys:
        write_undelivered(keys, value_json)
    return ""


def fail_delivery(
    conn: Any,
    delivery: Delivery,
    error: str,
    *,
    now: float,
    retry: bool,
    retry_in: float | None,
    write_undelivered: Any,
    lock: str = "",
) -> FailOutcome:
    """Record a failed attempt: schedule the next by back-off, or dead-letter when exhausted.

    ``conn`` takes ``?`` statements; ``lock`` as for :func:`dead_letter_claimed`.
    """
    row = conn.execute(
        "SELECT attempts, keys_if_undelivered, value FROM queue "
        "WHERE id = ? AND lease_token = ?" + lock,
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
    error += write_undelivered_safely(write_undelivered, keys_raw, value_json)
    _dead_letter(conn, delivery.id, error, now)
    return "dead"


def row_to_message(row: Sequence[Any], paused_topics: Collection[str]) -> Message:
    """Build a :class:`Message` from a row, describing damage instead of raising on it."""
    (
        msg_id,
        topic,
        value_json,
        state,
        deliver_at,
        attempts,
        backoff_raw,
        _keys,
        last_error,
        enqueued_at,
        lease_expires_at,
        dedup_key,
        schedule,
        dead_at,
    ) = row
    corrupt = None
    try:
        value = load_value(value_json)
    except (TypeError, ValueError) as exc:
        value, corrupt = value_json, f"payload is not JSON: {exc}"
    try:
        max_attempts = len(backoff_of(backoff_raw)) + 1
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
