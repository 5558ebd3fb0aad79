"""What really differs between the backends' SQL, in one object: :class:`Dialect`.

Every verb writes its SQL once, with ``?`` placeholders, in the subset SQLite and
PostgreSQL both understand (``ON CONFLICT ... DO UPDATE``, ``RETURNING``, ``IN (...)``).
Only a few things have no common spelling, and each store names them in its ``dialect``:
"no limit" (SQLite rejects ``LIMIT NULL``, PostgreSQL ``LIMIT -1``), ``MAX(a, b)`` versus
``GREATEST``, where a new message's id comes from, the row locks PostgreSQL's concurrent
writers need (SQLite has one writer), and text that cannot hold a NUL. On a PostgreSQL
store the statements get psycopg's ``%s`` placeholders and the connection the
``execute``/``executemany`` shape of ``sqlite3``'s (:class:`PgConnection`).

The module functions (:func:`read`, :func:`transaction`, :func:`for_update`, ...) are
what the table modules call with a store.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "PgConnection",
    "for_update",
    "is_postgres",
    "pg_sql",
    "read",
    "serialize",
    "transaction",
    "wrap",
    "write_rows",
]


@functools.lru_cache(maxsize=1024)
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


@dataclass(frozen=True, slots=True)
class Dialect:
    """The spellings and locks one backend's SQL needs; everything else is shared."""

    #: ``"sqlite"`` or ``"postgres"``.
    name: str
    #: One writer at a time (SQLite's write lock): no row locks are needed, and a writer
    #: may queue behind another process's transaction (so held leases are renewed first).
    single_writer: bool
    #: What ``LIMIT ?`` is given for "no limit".
    no_limit: int | None
    #: The two-argument maximum: ``MAX(a, b)`` or ``GREATEST(a, b)``.
    greatest: str
    #: A new message's id: SQLite computes one above every id ever used (its high-water
    #: mark); PostgreSQL's identity column hands them out.
    identity_ids: bool
    #: Appended to a SELECT whose rows a compare-and-set then writes.
    row_lock: str
    #: Appended to the SELECT of a claim: pass over rows another consumer is leasing.
    skip_locked: str
    #: Whether text columns can hold a NUL character.
    text_holds_nul: bool
    #: Most rows one statement of :func:`write_rows` takes: SQLite's ``VALUES`` list stays
    #: well under its limit of 32,766 parameters; PostgreSQL's one parameter has none (and
    #: one statement joins the rows with a table once, not once per thousand).
    rows_per_statement: int | None

    def sql(self, statement: str) -> str:
        """``statement`` (``?`` placeholders) as this backend's driver takes it."""
        return statement if self.name == "sqlite" else pg_sql(statement)

    def limit(self, count: int) -> int | None:
        """``count`` for ``LIMIT ?``; a negative count means no limit."""
        return self.no_limit if count < 0 else count

    def text(self, value: str) -> str:
        """``value`` as a text column can hold it (a NUL spelled ``\\x00`` where it cannot)."""
        return value if self.text_holds_nul else value.replace("\x00", "\\x00")

    def for_update(self, table: str, *, skip_locked: bool = False) -> str:
        """A row lock on ``table``'s rows a SELECT reads in a write transaction."""
        if self.single_writer:
            return ""
        return f" FOR UPDATE OF {table}" + (" SKIP LOCKED" if skip_locked else "")

    def rows(self, types: Sequence[str], count: int) -> str:
        """A relation of ``count`` rows for FROM, its columns ``column1``, ``column2``, ...
        of ``types`` ("text", "real", "integer"); its parameters are :meth:`row_params`.

        SQLite: a ``VALUES`` list. PostgreSQL: the rows as one JSON parameter, which psycopg
        sends several times faster than a list per column or thousands of placeholders
        (read as jsonb: parsed once, where each ``->>`` of json parses its row again).
        """
        if self.name == "sqlite":
            one = f"({', '.join('?' * len(types))})"
            return f"(VALUES {', '.join([one] * count)})"
        columns = ", ".join(
            f"CAST(e->>{n} AS {_PG_TYPES[kind]}) AS column{n + 1}" for n, kind in enumerate(types)
        )
        return f"(SELECT {columns} FROM jsonb_array_elements(CAST(? AS jsonb)) AS e)"

    def row_params(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """The parameters of :meth:`rows` for ``rows``."""
        if self.name == "sqlite":
            return [value for row in rows for value in row]
        try:
            return [json.dumps(rows, allow_nan=False)]
        except ValueError:  # JSON has no NaN or infinity: float8 reads them from text
            return [json.dumps([[_pg_number(value) for value in row] for row in rows])]

    def wrap(self, conn: Any) -> Any:
        """``conn`` (from a store's ``transaction()``) as a connection taking ``?`` statements."""
        if self.name == "sqlite" or isinstance(conn, PgConnection):
            return conn
        return PgConnection(conn)


def _pg_number(value: Any) -> Any:
    """``value``, a NaN or an infinity spelled as PostgreSQL's float8 reads it."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


_PG_TYPES = {"text": "text", "real": "float8", "integer": "int8"}
SQLITE = Dialect(
    name="sqlite",
    single_writer=True,
    no_limit=-1,
    greatest="MAX",
    identity_ids=False,
    row_lock="",
    skip_locked="",
    text_holds_nul=True,
    rows_per_statement=1000,
)
POSTGRES = Dialect(
    name="postgres",
    single_writer=False,
    no_limit=None,
    greatest="GREATEST",
    identity_ids=True,
    row_lock=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    text_holds_nul=False,
    rows_per_statement=None,
)


def dialect_of(store: object) -> Dialect:
    """The store's :class:`Dialect` (SQLite's for an object that names none)."""
    found = getattr(store, "dialect", SQLITE)
    return found if isinstance(found, Dialect) else SQLITE


def is_postgres(store: object) -> bool:
    """Whether ``store`` keeps its data on a PostgreSQL server."""
    return dialect_of(store).name == "postgres"


def for_update(store: object, table: str, *, skip_locked: bool = False) -> str:
    """A row-locking clause for a SELECT in a write transaction: none on SQLite.

    SQLite's write transaction already excludes every other writer; on PostgreSQL, where
    writers run side by side at READ COMMITTED, the rows a compare-and-set reads must be
    locked so that a second writer waits for (or, with ``skip_locked``, passes over) them
    and then sees the first one's outcome.
    """
    return dialect_of(store).for_update(table, skip_locked=skip_locked)


def serialize(store: object, conn: Any, name: str) -> None:
    """Make writers of ``name`` (e.g. one series of readings) take turns until they commit.

    Nothing to do with a single writer (SQLite); on PostgreSQL a transaction-scoped
    advisory lock, so two read-compare-write passes never interleave.
    """
    if not dialect_of(store).single_writer:
        schema = getattr(store, "schema", "")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"{schema}:{name}",))


def write_rows(
    store: object, conn: Any, statement: str, types: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Run ``statement`` for many ``rows`` (of ``types``) in a few statements (one on
    PostgreSQL): its ``{rows}`` is the relation :meth:`Dialect.rows` spells, e.g. ``INSERT
    INTO t (a, b) SELECT * FROM {rows} AS u`` (an ``executemany`` costs PostgreSQL a round
    trip a row)."""
    dialect = dialect_of(store)
    step = dialect.rows_per_statement or max(len(rows), 1)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        conn.execute(
            statement.format(rows=dialect.rows(types, len(chunk))), dialect.row_params(chunk)
        )


def read(store: Any, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on either backend and return its rows."""
    return store.execute(dialect_of(store).sql(statement), params)


@contextmanager
def transaction(store: Any) -> Iterator[Any]:
    """The store's write transaction; the connection takes ``?`` statements on either backend."""
    with store.transaction() as conn:
        yield dialect_of(store).wrap(conn)


def wrap(store: Any, conn: Any) -> Any:
    """``conn`` (from ``store.transaction()``) as a connection taking ``?`` statements."""
    return dialect_of(store).wrap(conn)
