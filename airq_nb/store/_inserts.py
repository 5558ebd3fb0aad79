"""Inserting messages into the queue, each backend its fastest way.

SQLite gives a new message an id above every id ever used (its high-water mark, so ids
only grow even after deletes) and writes NULL literals for the options a plain message
leaves out; PostgreSQL takes ids from an identity column and inserts a batch in one
``unnest`` statement. A live message with the same ``dedup_key`` is reused on both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._dialect import POSTGRES, SQLITE, Dialect
from .models import PreparedMessage

__all__ = [
    "INSERT",
    "add_messages",
    "insert_many",
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
    return _deduplicated(conn, messages, lambda fresh: insert_many(conn, fresh, now))


#: Keys looked up per statement: well under SQLite's variable limit.
_KEYS_PER_STATEMENT = 500


def _live_twins(conn: Any, keys: Sequence[str]) -> dict[str, int]:
    """The id of the live (queued or leased) message holding each of ``keys``, if any.

    A dead message keeps its row for inspection but gives up its key here, so a new
    message can take it (the unique index allows one row per key: a dead row's key has no
    live twin). Either backend: ``conn`` takes ``?`` statements.
    """
    live: dict[str, int] = {}
    for start in range(0, len(keys), _KEYS_PER_STATEMENT):
        chunk = keys[start : start + _KEYS_PER_STATEMENT]
        marks = ",".join("?" * len(chunk))
        live.update(
            conn.execute(
                f"SELECT dedup_key, id FROM queue WHERE dedup_key IN ({marks}) AND state <> 'dead'",
                chunk,
            ).fetchall()
        )
        conn.execute(
            f"UPDATE queue SET dedup_key = NULL WHERE dedup_key IN ({marks}) AND state = 'dead'",
            chunk,
        )
    return live


def _deduplicated(
    conn: Any,
    messages: Sequence[PreparedMessage],
    insert: Callable[[list[PreparedMessage]], list[int]],
) -> list[int]:
    """The ids of ``messages``: a live twin's for a ``dedup_key`` already queued, the
    first one's for a key repeated in the batch, else a new one from ``insert(fresh)``
    (called once, with the messages to insert, in order)."""
    keys = list(dict.fromkeys(m.dedup_key for m in messages if m.dedup_key is not None))
    taken = _live_twins(conn, keys) if keys else {}
    fresh: list[PreparedMessage] = []
    seen: set[str] = set(taken)
    for message in messages:
        key = message.dedup_key
        if key is None or key not in seen:
            fresh.append(message)
            if key is not None:
                seen.add(key)
    new_ids = iter(insert(fresh) if fresh else ())
    ids: list[int] = []
    for message in messages:
        key = message.dedup_key
        if key is None:
            ids.append(next(new_ids))
        else:
            if key not in taken:
                taken[key] = next(new_ids)
            ids.append(taken[key])
    return ids


# PostgreSQL: ids come from the identity column.
_PG_INSERT = f"INSERT INTO queue ({_COLUMNS}) VALUES (?, ?, 'queued', ?, ?, 0, ?, ?, ?, ?, ?)"
# Many messages in one statement (the rows as PostgreSQL's ``Dialect.rows`` spells them,
# each with its place in the batch). Ids come from the identity column in the order of
# ORDER BY, so the sorted returned ids match the messages in order. A twin enqueued
# concurrently by another connection wins the unique index: that message returns no row.
_PG_INSERT_MANY = (
    f"INSERT INTO queue ({_COLUMNS}) SELECT u.column2, u.column3, 'queued', u.column4, "
    "u.column4, 0, u.column5, u.column6, ?, u.column7, u.column8 FROM {rows} AS u "
    "ORDER BY u.column1 "
    "ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id, dedup_key"
)
_PG_MANY_TYPES = ("integer", "text", "text", "real", "text", "text", "text", "text")


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
        return _deduplicated(conn, messages, lambda fresh: _pg_insert_many(conn, fresh, now))
    if any(m.dedup_key is not None for m in messages):
        return insert_messages(conn, messages, now)
    return insert_many(conn, messages, now)


def _pg_insert_many(conn: Any, messages: Sequence[PreparedMessage], now: float) -> list[int]:
    """Insert ``messages`` (no two with one ``dedup_key``) in one statement; their ids."""
    rows = conn.execute(
        _PG_INSERT_MANY.format(rows=POSTGRES.rows(_PG_MANY_TYPES, len(messages))),
        [
            now,
            *POSTGRES.row_params(
                [
                    (
                        n,
                        m.topic,
                        m.value_json,
                        now + m.delay,
                        m.backoff_json,
                        m.keys_json,
                        m.dedup_key,
                        m.schedule,
                    )
                    for n, m in enumerate(messages)
                ]
            ),
        ],
    ).fetchall()
    by_key = {key: msg_id for msg_id, key in rows if key is not None}
    plain = iter(sorted(msg_id for msg_id, key in rows if key is None))
    raced = [m.dedup_key for m in messages if m.dedup_key is not None and m.dedup_key not in by_key]
    if raced:  # lost the race to another connection's enqueue of the same key
        by_key.update(
            conn.execute(
                "SELECT dedup_key, id FROM queue WHERE dedup_key = ANY(?::text[])", (raced,)
            ).fetchall()
        )
    return [next(plain) if m.dedup_key is None else by_key[m.dedup_key] for m in messages]


def insert_many(conn: Any, messages: Sequence[PreparedMessage], now: float) -> list[int]:
    """SQLite: insert ``messages`` (no live twins, no two with one ``dedup_key``) in one
    ``executemany`` with ids given; their ids."""
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
                    m.dedup_key,
                    m.schedule,
                )
                for i, m in enumerate(messages)
            ],
        )
    return list(range(first, first + len(messages)))
