"""Connections to PostgreSQL: the pool, transactions that nest per thread, and our errors.

Single statements run in autocommit (one round trip: a claim, an ack, an enqueue is its own
transaction); :meth:`Connections.transaction` opens ``BEGIN`` ... ``COMMIT`` on one pooled
connection, and every store call the same thread makes inside it joins it, as with SQLite.
"""

from __future__ import annotations

import selectors
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors, sql
from psycopg.pq import ConnStatus

from ..._errors import InvalidValueError, StoreClosedError, StoreError

__all__ = ["Connections", "redact"]

#: How long a write waits for another connection's lock before giving up (as SQLite's busy timeout).
DEFAULT_LOCK_TIMEOUT = 60.0


def redact(url: str) -> str:
    """The URL with its password hidden, for error messages and ``repr``."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparsable PostgreSQL URL>"
    params.pop("password", None)
    host = params.get("host", "localhost")
    return f"postgresql://{params.get('user', '')}@{host}/{params.get('dbname', '')}"


def _check_idle(conn: psycopg.Connection[Any]) -> None:
    """Refuse a pooled connection the server has closed (a restart, an admin's kill).

    An idle connection that does not LISTEN has nothing to read unless the server hung up,
    so a zero-timeout poll of its socket finds a dead connection without a round trip.
    It is closed (the pool would otherwise take it back as it is) and the pool replaces it
    before a statement is lost on it.
    """
    if not conn.closed and conn.pgconn.status == ConnStatus.OK:
        # A selector, not select.select(), which refuses descriptors numbered 1024 and up.
        with selectors.DefaultSelector() as selector:
            selector.register(conn.pgconn.socket, selectors.EVENT_READ)
            if not selector.select(0):
                return
    conn.close()
    raise psycopg.OperationalError("the server closed this idle connection")


def _result(cursor: psycopg.Cursor[Any]) -> tuple[list[tuple[Any, ...]], int]:
    return (cursor.fetchall() if cursor.description is not None else []), cursor.rowcount


class Connections:
    """A pool of autocommit connections whose ``search_path`` is the store's schema."""

    def __init__(
        self, url: str, *, schema: str, pool_size: int, lock_timeout: float, connect_timeout: float
    ) -> None:
        self.url = url
        self.where = redact(url)
        self._schema = schema
        self._lock_timeout = lock_timeout
        self._local = threading.local()
        self._pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            url,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=pool_size,
            open=False,
            configure=self._configure,
            check=_check_idle,
            name=f"airq_nb:{schema}",
            # How long a call waits for a connection (all busy, or the server restarting).
            timeout=connect_timeout,
            reconnect_timeout=connect_timeout,
        )

    def open(self, timeout: float) -> None:
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise self.translate(exc) from exc

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
        # A queue table's statistics are nearly always stale (a burst of enqueues lands
        # between two autovacuum ANALYZEs), and then the planner answers a claim with a
        # bitmap scan of every due row and a sort: linear in the backlog, per claim. The
        # store's statements are all key or index-order lookups, for which the ordered
        # index scan is right whatever the statistics say.
        conn.execute("SET enable_bitmapscan TO off")
        # Like SQLite's busy timeout: wait for another writer's row lock, but not forever.
        conn.execute(
            sql.SQL("SET lock_timeout TO {}").format(
                sql.Literal(f"{int(self._lock_timeout * 1000)}ms")
            )
        )

    def close(self) -> None:
        self._pool.close()

    @property
    def in_transaction(self) -> bool:
        """True inside this thread's own :meth:`transaction`."""
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on an exception); nested use joins it."""
        joined = getattr(self._local, "conn", None)
        if joined is not None:
            yield joined
            return
        try:
            with self._pool.connection() as conn, conn.transaction():
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None
        except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            translated = self.translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def run(
        self, query: Any, params: Sequence[Any] | dict[str, Any] = ()
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement, in this thread's transaction if one is open (else autocommit).

        Returns its rows (empty for a statement without any) and its row count.
        """
        joined = getattr(self._local, "conn", None)
        try:
            if joined is not None:
                return _result(joined.execute(query, params))
            with self._pool.connection() as conn:
                return _result(conn.execute(query, params))
        except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            translated = self.translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def translate(self, exc: BaseException) -> BaseException:
        """Our error for a failure of the server, the network or a lock; SQL errors stay."""
        if isinstance(exc, psycopg_pool.PoolClosed):
            return StoreClosedError(
                f"the store at {self.where} is closed; open it again with open_store()"
            )
        if isinstance(exc, psycopg.DataError) and "NUL" in str(exc):
            return InvalidValueError(
                "a topic, dedup_key, schedule or filter contains a NUL character (\\x00), "
                "which PostgreSQL text cannot hold; nothing was written. Remove it."
            )
        if isinstance(exc, errors.LockNotAvailable):
            return StoreError(
                f"a row at {self.where} stayed locked by another connection's transaction for "
                f"more than {self._lock_timeout:g} s ({exc}); nothing was written. Try again; "
                "if it persists, look in pg_stat_activity for a long transaction."
            )
        if isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure):
            return StoreError(
                f"PostgreSQL at {self.where} aborted this transaction to resolve a conflict "
                f"with another one ({exc}); nothing was written. Try again."
            )
        if isinstance(exc, psycopg_pool.PoolTimeout):
            return StoreError(
                f"no connection to PostgreSQL at {self.where} could be had in time ({exc}): "
                f"either all {self._pool.max_size} of the store's connections stayed busy, or "
                "the server is unreachable. Nothing was written; try again."
            )
        if isinstance(exc, psycopg.OperationalError):
            return StoreError(
                f"lost or could not open the connection to PostgreSQL at {self.where} ({exc}). "
                "A write that was under way may or may not have been applied (messages are "
                "delivered at least once, so a redelivery is possible); the store reconnects "
                "by itself on the next call once the server is reachable."
            )
        return exc
