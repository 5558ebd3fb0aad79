"""One SQLite file shared safely: its connections, write transactions and error translation.

WAL mode, a busy timeout instead of "database is locked", and every write in a
``BEGIN IMMEDIATE`` transaction (or one self-committing statement) so several processes
(kernels, papermill, the CLI) can share one file. Writes go through one connection, reads
through a second, so a read never queues behind a write that waits out another process.
Opening runs the schema migrations (``_schema.py``).

``":memory:"`` is one in-memory database per process, shared by every store opened on it
and every thread, kept while one of those stores is open.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from .._errors import InvalidValueError, StoreClosedError, StoreError
from ._schema import migrate

log = logging.getLogger("airq_nb.store")

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "MEMORY",
    "Connection",
    "Durability",
    "call_listeners",
    "sql_limit",
    "subscribe",
]

#: How long a writer waits for another process's transaction before giving up.
DEFAULT_BUSY_TIMEOUT = 60.0
#: The path that means "this process's in-memory store".
MEMORY = ":memory:"

Durability = Literal["normal", "full"]

# SQLite primary result codes meaning "the file or its lock", not "the SQL is wrong".
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM, _SQLITE_READONLY = 5, 6, 7, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_PROTOCOL, _SQLITE_NOTADB = 15, 26
_ENVIRONMENTAL = frozenset(
    {
        _SQLITE_BUSY,
        _SQLITE_LOCKED,
        _SQLITE_NOMEM,
        _SQLITE_READONLY,
        _SQLITE_IOERR,
        _SQLITE_CORRUPT,
        _SQLITE_FULL,
        _SQLITE_CANTOPEN,
        _SQLITE_PROTOCOL,
        _SQLITE_NOTADB,
    }
)


def _is_environmental(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _ENVIRONMENTAL


def subscribe(
    listeners: list[Callable[[], None]], callback: Callable[[], None]
) -> Callable[[], None]:
    """Add ``callback`` to a store's queue-change ``listeners``; returns its unsubscriber."""
    listeners.append(callback)

    def unsubscribe() -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(callback)

    return unsubscribe


def call_listeners(listeners: list[Callable[[], None]]) -> None:
    """Call every queue-change listener of a store, after a commit that added work."""
    for callback in tuple(listeners):
        try:
            callback()
        except Exception:  # a listener's bug must not fail the write that already committed
            log.exception("an on_queue_change callback failed")


def sql_limit(limit: int | None) -> int:
    """``limit`` for SQL's LIMIT (-1: no limit), refusing what is not a non-negative int."""
    if limit is None:
        return -1
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


class _SharedMemory:
    """The process's in-memory database: one connection and lock, counted by its stores.

    One connection (not a shared-cache URI per store) because shared-cache connections
    lock whole tables and fail at once (SQLITE_LOCKED) instead of waiting.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._users = 0
        self.conn: sqlite3.Connection | None = None
        self.lock = threading.RLock()
        self.listeners: list[Callable[[], None]] = []

    def acquire(self) -> sqlite3.Connection:
        with self._guard:
            if self.conn is None:
                self.conn = sqlite3.connect(MEMORY, isolation_level=None, check_same_thread=False)
                self.listeners = []
            self._users += 1
            return self.conn

    def release(self) -> None:
        with self._guard:
            self._users -= 1
            if self._users == 0 and self.conn is not None:
                self.conn.close()
                self.conn = None


_MEMORY = _SharedMemory()


def _closed_connection() -> sqlite3.Connection:
    # Stands in for a closed in-memory store's connection: every use raises "closed".
    conn = sqlite3.connect(MEMORY, check_same_thread=False)
    conn.close()
    return conn


class Connection:
    """The store's SQLite plumbing: open and migrate, transactions, reads, errors, close."""

    def __init__(self, path: Path, *, durability: Durability, busy_timeout: float) -> None:
        if durability not in ("normal", "full"):
            raise StoreError(f"durability must be 'normal' or 'full', got {durability!r}")
        self.path = path
        self.durability = durability
        self._busy_timeout = busy_timeout
        self._writer_thread: int | None = None
        self._closed = False
        self._in_memory = str(path) == MEMORY
        if self._in_memory:
            self._open_memory()
        else:
            self._open_file(path, durability, busy_timeout)

    def _open_memory(self) -> None:
        conn = _MEMORY.acquire()
        self._conn = self._reader = conn
        self._lock = self._read_lock = _MEMORY.lock
        self._queue_listeners = _MEMORY.listeners
        self.db = sqlite_utils.Database(conn)
        try:
            with self.transaction():
                migrate(conn, where="the in-memory store")
        except BaseException:
            self.close()
            raise

    def _open_file(self, path: Path, durability: Durability, busy_timeout: float) -> None:
        # Writes go through one connection under ``_lock``; reads through a second one under
        # ``_read_lock``, so a read (a widget refresh, status()) never queues behind a write
        # that is waiting out another process's lock. WAL lets the reader run meanwhile.
        self._lock = threading.RLock()
        self._read_lock = threading.RLock()
        self._queue_listeners: list[Callable[[], None]] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder for the store {path}: {exc}. "
                "Point AIRQ_NB_DB (or the path argument) at a writable location."
            ) from exc
        try:
            self._conn = sqlite3.connect(
                str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open {path} as an airq_nb store: {exc}. "
                "Point AIRQ_NB_DB (or the path argument) at a new or existing airq_nb file."
            ) from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {durability.upper()}")
            self.db = sqlite_utils.Database(self._conn)
            with self.transaction() as conn:
                migrate(conn, where=str(path))
            self._reader = sqlite3.connect(
                str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._reader.execute("PRAGMA query_only = ON")
            self._reader.execute(f"PRAGMA synchronous = {durability.upper()}")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(
                f"cannot open {path} as an airq_nb store: {exc}. "
                "Point AIRQ_NB_DB (or the path argument) at a new or existing airq_nb file."
            ) from exc
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing, waits out other writers.

        Nested use joins the outer transaction. Other parts of airq_nb (schedules, the
        delivery log, readings) use this to write their tables atomically with the queue.
        """
        with self._lock:
            try:
                joined = self._conn.in_transaction
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            if joined:
                yield self._conn
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            self._writer_thread = threading.get_ident()
            try:
                try:
                    yield self._conn
                except BaseException as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.Error) and _is_environmental(exc):
                        raise self._translate(exc) from exc
                    raise
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise self._translate(exc) from exc
            finally:
                self._writer_thread = None

    def _translate(self, exc: sqlite3.Error) -> Exception:
        """Our error for a failure of the file or of the lock; programming errors stay as they are."""
        if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
            return StoreClosedError(
                f"the store {self.path} is closed; open it again with open_store()"
            )
        if not _is_environmental(exc):
            return exc
        code = exc.sqlite_errorcode & 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StoreError(
                f"{self.path} stayed locked by another connection's write for more than "
                f"{self._busy_timeout:g} s ({exc}); nothing was written. Try again; if it "
                "persists, find the process holding a long transaction (e.g. a kernel stuck "
                "inside store.transaction()) or open the store with a larger busy_timeout."
            )
        if code == _SQLITE_READONLY:
            return StoreError(
                f"{self.path} is read-only ({exc}); airq_nb needs to write it and its -wal "
                "and -shm files: fix the permissions or choose another path."
            )
        if code == _SQLITE_FULL:
            return StoreError(f"the disk holding {self.path} is full ({exc}); free some space.")
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return StoreError(
                f"{self.path} is damaged or not an airq_nb store ({exc}). Restore it from a "
                "copy, or point AIRQ_NB_DB (or the path argument) at a new file."
            )
        return StoreError(
            f"cannot read or write {self.path} ({exc}); check that the disk and folder are "
            "reachable and writable."
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read statement (parameterised) and return all its rows.

        Inside this thread's own :meth:`transaction` it sees that transaction's writes;
        anywhere else it reads the last committed state without waiting for writers.
        """
        with self._reading() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if self._writer_thread == threading.get_ident():
            with self._lock:
                yield self._conn
        else:
            with self._read_lock:
                yield self._reader

    def _write(self, sql: str, params: Sequence[Any]) -> tuple[list[Any], sqlite3.Cursor]:
        """Run one write statement: its own commit, or part of the caller's open transaction.

        SQLite takes the write lock at the statement's first step (waiting out other
        writers), so one statement is as atomic as ``BEGIN IMMEDIATE`` ... ``COMMIT``, with
        two fewer round trips. Rows (of ``RETURNING``) are read to the end so it commits.
        """
        with self._lock:
            try:
                cursor = self._conn.execute(sql, params)
                return cursor.fetchall(), cursor
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def on_queue_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after this store adds deliverable work; returns an unsubscriber.

        SQLite tells a connection nothing about its own commits, so a scheduler in this
        process subscribes here to start a message enqueued by a notebook cell on time,
        rather than at its next ``data_version`` poll. Callbacks must be quick and
        thread-safe (they run on the writing thread).
        """
        return subscribe(self._queue_listeners, callback)

    def _queue_changed(self) -> None:
        call_listeners(self._queue_listeners)

    def data_version(self) -> int:
        """A number that changes whenever a commit changes the file (any process's, or ours).

        Cheap enough to poll: the scheduler uses it to notice work from other processes.
        """
        with self._read_lock:
            try:
                if self._in_memory:
                    # One connection for the whole process: its own change count serves.
                    return self._reader.total_changes
                return self._reader.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def close(self) -> None:
        """Close the store; using it afterwards raises :class:`StoreError`."""
        with self._lock, self._read_lock:
            if self._in_memory:
                if not self._closed:
                    self._closed = True
                    self._conn = self._reader = _closed_connection()
                    _MEMORY.release()
                return
            self._closed = True
            self._conn.close()
            self._reader.close()
