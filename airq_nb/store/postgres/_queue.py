"""Queue SQL for PostgreSQL: insert, claim with ``FOR UPDATE SKIP LOCKED``, fail, dead-letter.

The validation and the row-to-delivery logic are the SQLite backend's (``store/_queue.py``);
only the statements differ (fail and dead-letter run the SQLite backend's own, with a
row lock). Functions taking ``conn`` run in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import _queue
from .._dialect import PgConnection
from .._queue import Delivery, FailOutcome, PreparedMessage, UndeliverableRow

__all__ = [
    "claim",
    "dead_letter_claimed",
    "fail_delivery",
    "insert_messages",
    "insert_one",
]

WriteUndelivered = Callable[[Sequence[bytes], str], None]

# Fail and dead-letter share their logic with SQLite (``store/_queue.py``); on PostgreSQL,
# where writers run side by side, the row they read must be locked until they commit.
_LOCK = " FOR UPDATE"

_COLUMNS = (
    "topic, value, state, deliver_at, due_at, attempts, backoff_schedule, "
    "keys_if_undelivered, enqueued_at, dedup_key, schedule"
)
_INSERT = f"INSERT INTO queue ({_COLUMNS}) VALUES (%s, %s, 'queued', %s, %s, 0, %s, %s, %s, %s, %s)"
_INSERT_RETURNING = _INSERT + " RETURNING id"
# A twin enqueued concurrently by another connection wins the unique index; we return its id.
_INSERT_DEDUP = (
    _INSERT + " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id"
)
# Many messages in one statement. Ids come from the identity column in the order of
# ORDER BY, so the sorted returned ids match the messages in order.
_INSERT_MANY = (
    f"INSERT INTO queue ({_COLUMNS}) "
    "SELECT topic, value, 'queued', at, at, 0, backoff, keys, %s, NULL, schedule "
    "FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], %s::text[], %s::text[]) "
    "WITH ORDINALITY AS m(topic, value, at, backoff, keys, schedule, n) ORDER BY n RETURNING id"
)


def insert_one(message: PreparedMessage, now: float) -> tuple[str, tuple[Any, ...]]:
    """The INSERT ... RETURNING id and its parameters for one message without a dedup key."""
    return _INSERT_RETURNING, _queue.insert_params(message, now)


def insert_messages(conn: Any, messages: Sequence[PreparedMessage], now: float) -> list[int]:
    """Insert messages in the open transaction; a live ``dedup_key`` twin's id is reused."""
    plain = [m for m in messages if m.dedup_key is None]
    if len(plain) == len(messages):
        rows = conn.execute(
            _INSERT_MANY,
            (
                now,
                [m.topic for m in messages],
                [m.value_json for m in messages],
                [now + m.delay for m in messages],
                [m.backoff_json for m in messages],
                [m.keys_json for m in messages],
                [m.schedule for m in messages],
            ),
        ).fetchall()
        return sorted(row[0] for row in rows)
    ids: list[int] = []
    for message in messages:
        if message.dedup_key is None:
            ids.append(conn.execute(*insert_one(message, now)).fetchone()[0])
        else:
            ids.append(_insert_deduplicated(conn, message, now))
    return ids


def _insert_deduplicated(conn: Any, message: PreparedMessage, now: float) -> int:
    key = message.dedup_key
    row = conn.execute(
        "SELECT id FROM queue WHERE dedup_key = %s AND state <> 'dead'", (key,)
    ).fetchone()
    if row is not None:
        return row[0]
    # A dead twin keeps its row for inspection but gives up the key.
    conn.execute(
        "UPDATE queue SET dedup_key = NULL WHERE dedup_key = %s AND state = 'dead'", (key,)
    )
    row = conn.execute(_INSERT_DEDUP, _queue.insert_params(message, now)).fetchone()
    if row is None:  # lost the race to another connection's enqueue of the same key
        row = conn.execute("SELECT id FROM queue WHERE dedup_key = %s", (key,)).fetchone()
    return row[0]


# Lease the next due messages. SKIP LOCKED passes over rows another consumer is leasing
# right now instead of waiting for it, and FOR UPDATE re-checks the conditions on the row's
# newest version, so two consumers never lease one message. Queued messages are claimable
# up to a look-ahead horizon; an expired lease only once it has really expired.
_CLAIM = (
    "WITH picked AS (SELECT id FROM queue "
    "WHERE state IN ('queued', 'leased') AND due_at <= %(horizon)s "
    "AND (state = 'queued' OR due_at <= %(now)s) "
    "AND topic NOT IN (SELECT topic FROM paused_topics) "
    "AND NOT EXISTS (SELECT 1 FROM paused_topics WHERE topic = '*') "
    "{topics}ORDER BY due_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "UPDATE queue q SET state = 'leased', attempts = q.attempts + 1, lease_token = %(token)s, "
    "lease_expires_at = %(expires)s, due_at = %(expires)s FROM picked WHERE q.id = picked.id "
    "RETURNING q.id, q.topic, q.value, q.deliver_at, q.attempts, q.backoff_schedule, "
    "q.keys_if_undelivered, q.enqueued_at, q.schedule"
)
_CLAIM_ANY = _CLAIM.format(topics="")
_CLAIM_TOPICS = _CLAIM.format(topics="AND topic = ANY(%(topics)s) ")


def claim(
    topics: Sequence[str] | None,
    *,
    limit: int,
    token: str,
    now: float,
    lookahead: float,
    expires: float,
) -> tuple[str, dict[str, Any]]:
    """The claim statement (filtered by topic when ``topics`` is given) and its parameters:
    lease up to ``limit`` messages due by ``now + lookahead`` to ``token`` until ``expires``."""
    statement = _CLAIM_ANY if topics is None else _CLAIM_TOPICS
    return statement, {
        "horizon": now + lookahead,
        "now": now,
        "topics": topics,
        "limit": limit,
        "token": token,
        "expires": expires,
    }


def dead_letter_claimed(
    conn: Any,
    bad: UndeliverableRow,
    lease_token: str,
    now: float,
    write_undelivered: WriteUndelivered,
) -> None:
    """Dead-letter a row this consumer just leased (in the open transaction), row locked."""
    _queue.dead_letter_claimed(
        PgConnection(conn), bad, lease_token, now, write_undelivered, lock=_LOCK
    )


def fail_delivery(
    conn: Any,
    delivery: Delivery,
    error: str,
    *,
    now: float,
    retry: bool,
    retry_in: float | None,
    write_undelivered: WriteUndelivered,
) -> FailOutcome:
    """Record a failed attempt (as :func:`airq_nb.store._queue.fail_delivery`), row locked."""
    return _queue.fail_delivery(
        PgConnection(conn),
        delivery,
        error,
        now=now,
        retry=retry,
        retry_in=retry_in,
        write_undelivered=write_undelivered,
        lock=_LOCK,
    )
