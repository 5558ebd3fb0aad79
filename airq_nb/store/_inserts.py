"""Inserting messages into the queue, each backend its fastest way.

SQLite gives a new message an id above every id ever used (its high-water mark, so ids
only grow even after deletes) and writes NULL literals for the options a plain message
leaves out; PostgreSQL takes ids from an identity column and inserts a batch in one
``unnest`` statement. A live message with the same ``dedup_key`` is reused on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._dialect import POSTGRES, SQLITE, Dialect
from .models import PreparedMessage

__all__ = [
    "INSERT",
    "add_messages",
    "insert_many_plain",
    "insert_messages",
    "insert_one",
    "insert_params",
    "insert_statement",
]

# The id expression: above every id in the table and every id ever deleted.
_NEXT_ID = (
    "(SELECT MAX(IFNULL((SELECT MAX(id) FROM queue), 0), value) + 1 "
    "FROM meta WHERE name = 'queue_high_water')"
)
_COLUMNS = (
    "topic, value, state, deliver_at, due_at, attempts, backoff_schedule, "
    "keys_if_undelivered, enqueued_at, dedup_key, schedule"
)
INSERT = (
    f"INSERT INTO queue (id, {_COLUMNS}) "
    f"VALUES ({_NEXT_ID}, ?, ?, 'queued', ?, ?, 0, ?, ?, ?, ?, ?)"
)
# Messages with no options spelled out: binding a None costs sqlite3 an adapter lookup,
# several times the cost of the NULL literal, and most messages have five of them.
_INSERT_PLAIN = (
    f"INSERT INTO queue (id, {_COLUMNS}) "
    f"VALUES ({_NEXT_ID}, ?, ?, 'queued', ?, ?, 0, NULL, NULL, ?, NULL, NULL)"
)
_INSERT_WITH_ID = (
    f"INSERT INTO queue (id, {_COLUMNS}) VALUES (?, ?, ?, 'queued', ?, ?, 0, ?, ?, ?, ?, ?)"
)
_INSERT_PLAIN_WITH_ID = (
    f"INSERT INTO queue (id, {_COLUMNS}) "
    "VALUES (?, ?, ?, 'queued', ?, ?, 0, NULL, NULL, ?, NULL, NULL)"
)


def _is_plain(message: PreparedMessage) -> bool:
    return (
        message.backoff_json is None
        and message.keys_json is None
        and message.dedup_key is None
        and message.schedule is None
    )


def insert_statement(message: PreparedMessage, now: float) -> tuple[str, tuple[Any, ...]]:
    """The INSERT (allocating a never-used id) and its parameters for one message at ``now``."""
    at = now + message.delay
    if _is_plain(message):
        return _INSERT_PLAIN, (message.topic, message.value_json, at, at, now)
    return INSERT, insert_params(message, now)


def insert_params(message: PreparedMessage, now: float) -> tuple[Any, ...]:
    """The parameters of :data:`INSERT`'s columns for one message at ``now`` (either backend)."""
    at = now + message.delay
    return (
        message.topic,
        message.value_json,
        at,
        at,
        message.backoff_json,
        message.keys_json,
        now,
        message.dedup_key,
        message.schedule,
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
        ids.append(conn.execute(*insert_statement(message, now)).lastrowid)
    return ids


# PostgreSQL: ids come from the identity column.
_PG_INSERT = f"INSERT INTO queue ({_COLUMNS}) VALUES (?, ?, 'queued', ?, ?, 0, ?, ?, ?, ?, ?)"
# A twin enqueued concurrently by another connection wins the unique index; we return its id.
_PG_INSERT_DEDUP = (
    _PG_INSERT + " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id"
)
# Many messages in one statement. Ids come from the identity column in the order of
# ORDER BY, so the sorted returned ids match the messages in order.
_PG_INSERT_MANY = (
    f"INSERT INTO queue ({_COLUMNS}) "
    "SELECT topic, value, 'queued', at, at, 0, backoff, keys, ?, NULL, schedule "
    "FROM unnest(?::text[], ?::text[], ?::float8[], ?::text[], ?::text[], ?::text[]) "
    "WITH ORDINALITY AS m(topic, value, at, backoff, keys, schedule, n) ORDER BY n RETURNING id"
)


def insert_one(
    message: PreparedMessage, now: float, dialect: Dialect
) -> tuple[str, tuple[Any, ...]]:
    """The INSERT ... RETURNING id of one message without a dedup key, and its parameters."""
    if dialect.identity_ids:
        return _PG_INSERT + " RETURNING id", insert_params(message, now)
    statement, params = insert_statement(message, now)
    return statement + " RETURNING id", params


def add_messages(
    conn: Any, messages: Sequence[PreparedMessage], now: float, dialect: Dialect = SQLITE
) -> list[int]:
    """Insert prepared messages in the open transaction (``conn`` takes ``?`` statements),
    each backend its fastest way; a live ``dedup_key`` twin's id is reused."""
    if not messages:
        return []
    if dialect.identity_ids:
        return _pg_insert_messages(conn, messages, now)
    if any(m.dedup_key is not None for m in messages):
        return insert_messages(conn, messages, now)
    return insert_many_plain(conn, messages, now)


def _pg_insert_messages(conn: Any, messages: Sequence[PreparedMessage], now: float) -> list[int]:
    if all(m.dedup_key is None for m in messages):
        rows = conn.execute(
            _PG_INSERT_MANY,
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
            ids.append(conn.execute(*insert_one(message, now, POSTGRES)).fetchone()[0])
        else:
            ids.append(_pg_insert_deduplicated(conn, message, now))
    return ids


def _pg_insert_deduplicated(conn: Any, message: PreparedMessage, now: float) -> int:
    key = message.dedup_key
    row = conn.execute(
        "SELECT id FROM queue WHERE dedup_key = ? AND state <> 'dead'", (key,)
    ).fetchone()
    if row is not None:
        return row[0]
    # A dead twin keeps its row for inspection but gives up the key.
    conn.execute("UPDATE queue SET dedup_key = NULL WHERE dedup_key = ? AND state = 'dead'", (key,))
    row = conn.execute(_PG_INSERT_DEDUP, insert_params(message, now)).fetchone()
    if row is None:  # lost the race to another connection's enqueue of the same key
        row = conn.execute("SELECT id FROM queue WHERE dedup_key = ?", (key,)).fetchone()
    return row[0]


def insert_many_plain(conn: Any, messages: Sequence[PreparedMessage], now: float) -> list[int]:
    """Fast path for messages without dedup keys: one ``executemany`` with ids given."""
    (first,) = conn.execute(f"SELECT {_NEXT_ID}").fetchone()
    if all(_is_plain(m) for m in messages):
        conn.executemany(
            _INSERT_PLAIN_WITH_ID,
            [
                (first + i, m.topic, m.value_json, now + m.delay, now + m.delay, now)
                for i, m in enumerate(messages)
            ],
        )
    else:
        conn.executemany(
            _INSERT_WITH_ID,
            [
                (
                    first + i,
                    m.topic,
                    m.value_json,
                    now + m.delay,
                    now + m.delay,
                    m.backoff_json,
                    m.keys_json,
                    now,
                    None,
                    m.schedule,
                )
                for i, m in enumerate(messages)
            ],
        )
    return list(range(first, first + len(messages)))
