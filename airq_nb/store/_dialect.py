"""One spelling of SQL for both backends: ``?`` placeholders, run on SQLite or PostgreSQL.

The schedules, delivery-log and readings verbs write their SQL once, in the subset both
databases understand (``?`` placeholders, ``<> 0`` for flags, ``TRUE``), and run it through
:func:`read` and :func:`transaction` here. On a SQLite store these are the store's own
``execute`` and ``transaction``, untouched; on a PostgreSQL store the statements get
psycopg's ``%s`` placeholders and the connection gets the ``execute``/``executemany``
shape of ``sqlite3``'s, so the verbs' code is the same on both.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "PgConnection",
    "for_update",
    "is_postgres",
    "pg_sql",
    "read",
    "serialize",
    "transaction",
    "wrap",
]


def is_postgres(store: object) -> bool:
    """Whether ``store`` is a :class:`~airq_nb.store.postgres.PostgresStore`."""
    return getattr(store, "dialect", "sqlite") == "postgres"


def for_update(store: object, table: str, *, skip_locked: bool = False) -> str:
    """A row-locking clause for a SELECT in a write transaction: none on SQLite.

    SQLite's write transaction already excludes every other writer; on PostgreSQL, where
    writers run side by side at READ COMMITTED, the rows a compare-and-set reads must be
    locked so that a second writer waits for (or, with ``skip_locked``, passes over) them
    and then sees the first one's outcome.
    """
    if not is_postgres(store):
        return ""
    return f" FOR UPDATE OF {table}" + (" SKIP LOCKED" if skip_locked else "")


def serialize(store: object, conn: Any, name: str) -> None:
    """Make writers of ``name`` (e.g. one series of readings) take turns until they commit.

    Nothing to do on SQLite, whose write transactions take turns already; on PostgreSQL a
    transaction-scoped advisory lock, so two read-compare-write passes never interleave.
    """
    if is_postgres(store):
        schema = getattr(store, "schema", "")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"{schema}:{name}",))


@functools.lru_cache(maxsize=512)
def pg_sql(statement: str) -> str:
    """``statement`` with psycopg's placeholders: ``?`` becomes ``%s``, a literal ``%`` ``%%``.

    The shared statements hold no ``?`` inside string literals.
    """
    return statement.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection in an open transaction, with ``sqlite3.Connection``'s calls."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        return self.raw.execute(pg_sql(statement), params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> Any:
        """Run one statement per parameter row (psycopg pipelines them)."""
        cursor = self.raw.cursor()
        rows = list(rows)
        if rows:
            cursor.executemany(pg_sql(statement), rows)
        return cursor


def read(store: Any, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on either backend and return its rows."""
    if is_postgres(store):
        return store.execute(pg_sql(statement), params)
    return store.execute(statement, params)


@contextmanager
def transaction(store: Any) -> Iterator[Any]:
    """The store's write transaction; the connection takes ``?`` statements on either backend."""
    with store.transaction() as conn:
        yield PgConnection(conn) if is_postgres(store) else conn


def wrap(store: Any, conn: Any) -> Any:
    """``conn`` (from ``store.transaction()``) as a connection taking ``?`` statements."""
    if is_postgres(store) and not isinstance(conn, PgConnection):
        return PgConnection(conn)
    return conn
