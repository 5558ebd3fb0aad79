"""The store: one SQLite file holding the KV, the durable queue and the other parts' tables.

WAL mode, a busy timeout instead of "database is locked", and every write in a
``BEGIN IMMEDIATE`` transaction so several processes (kernels, papermill, the CLI) can
share one file. Tables are created with sqlite-utils.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlite_utils

from .._clock import Clock, SystemClock
from .._errors import (
    ConfigurationError,
    InvalidKeyError,
    InvalidValueError,
    MessageNotFoundError,
    StoreError,
)
from . import _queue
from ._json import dump_value, load_value
from ._keys import Key, decode_key, encode_key, prefix_range
from ._queue import DeadLettered, Delivery, FailOutcome, Message, PreparedMessage, QueueCounts

log = logging.getLogger("airq_nb.store")

__all__ = [
    "DEFAULT_DB_PATH",
    "AtomicOperation",
    "CommitResult",
    "Entry",
    "Store",
    "open_store",
]

#: Where the store lives when neither ``path`` nor ``AIRQ_NB_DB`` says otherwise.
DEFAULT_DB_PATH = Path("~/.local/share/airq_nb/airq.db")
#: How long a writer waits for another process's transaction before giving up.
DEFAULT_BUSY_TIMEOUT = 60.0
SCHEMA_VERSION = 2
_EXPIRY_SWEEP_SECONDS = 60.0

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


def _sql_limit(limit: int | None) -> int:
    """``limit`` for SQL's LIMIT (-1: no limit), refusing what is not a non-negative int."""
    if limit is None:
        return -1
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


@dataclass(frozen=True, slots=True)
class Entry:
    """A KV entry; ``value`` and ``versionstamp`` are ``None`` when the key is absent."""

    key: Key
    value: Any
    versionstamp: str | None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What an atomic commit did: ``ok`` is False when a check failed and nothing was written."""

    ok: bool
    versionstamp: str | None = None
    message_ids: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    """The store's file: the argument, else ``AIRQ_NB_DB``, else :data:`DEFAULT_DB_PATH`."""
    chosen = path if path is not None else os.environ.get("AIRQ_NB_DB") or DEFAULT_DB_PATH
    if not isinstance(chosen, str | os.PathLike):
        raise ConfigurationError(
            f"the store path must be a file path (str or Path), got {type(chosen).__name__}"
        )
    return Path(chosen).expanduser()


def open_store(
    path: str | os.PathLike[str] | None = None,
    *,
    clock: Clock | None = None,
    durability: Durability = "normal",
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
) -> Store:
    """Open (creating if needed) the store at ``path``, ``$AIRQ_NB_DB`` or the default path.

    ``durability="normal"`` (WAL with ``synchronous=NORMAL``) never corrupts the file and
    loses nothing when a process dies; a power cut may lose the last commits.
    ``"full"`` syncs every commit to disk as well.
    """
    return Store(resolve_path(path), clock=clock, durability=durability, busy_timeout=busy_timeout)


class Store:
    """KV + durable queue in one SQLite file. Safe to share between threads and processes."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None = None,
        durability: Durability = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        if durability not in ("normal", "full"):
            raise StoreError(f"durability must be 'normal' or 'full', got {durability!r}")
        self.path = path
        self.clock: Clock = clock or SystemClock()
        self.durability = durability
        # Writes go through one connection under ``_lock``; reads through a second one under
        # ``_read_lock``, so a read (a widget refresh, status()) never queues behind a write
        # that is waiting out another process's lock. WAL lets the reader run meanwhile.
        self._lock = threading.RLock()
        self._read_lock = threading.RLock()
        self._writer_thread: int | None = None
        self._last_sweep = -math.inf
        self._busy_timeout = busy_timeout
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
            self._create_schema()
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
        self.queue = QueueManager(self)

    # -- plumbing -----------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self.transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer airq_nb (schema {version}, this one "
                    f"knows {SCHEMA_VERSION}); upgrade airq_nb to use it"
                )
            if version == SCHEMA_VERSION:
                return
            self.db["kv"].create(
                {"key": bytes, "value": str, "versionstamp": str, "expires_at": float},
                pk="key",
                not_null={"value", "versionstamp"},
                if_not_exists=True,
            )
            self.db["kv"].create_index(["expires_at"], if_not_exists=True)
            self.db["meta"].create({"name": str, "value": int}, pk="name", if_not_exists=True)
            self.db["meta"].insert({"name": "versionstamp", "value": 0}, ignore=True)
            self.db["paused_topics"].create(
                {"topic": str, "paused_at": float}, pk="topic", if_not_exists=True
            )
            self.db["queue"].create(
                {
                    "id": int,
                    "topic": str,
                    "value": str,
                    "state": str,
                    "deliver_at": float,
                    "due_at": float,
                    "attempts": int,
                    "backoff_schedule": str,
                    "keys_if_undelivered": str,
                    "last_error": str,
                    "enqueued_at": float,
                    "lease_token": str,
                    "lease_expires_at": float,
                    "dedup_key": str,
                    "schedule": str,
                    "dead_at": float,
                },
                pk="id",
                not_null={"topic", "value", "state", "deliver_at", "attempts", "enqueued_at"},
                defaults={"attempts": 0},
                if_not_exists=True,
            )
            # Partial indexes, which sqlite-utils cannot declare: only live messages are
            # scanned by claim, and a dedup key is unique among messages that have one.
            self._conn.execute(
                "CREATE INDEX IF NOT EXISTS queue_due ON queue (due_at) "
                "WHERE state IN ('queued', 'leased')"
            )
            self._conn.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS queue_dedup ON queue (dedup_key) "
                "WHERE dedup_key IS NOT NULL"
            )
            # Message ids are never reused, so a stale ack or a delivery-log row never points
            # at a newer message. AUTOINCREMENT would cost a sqlite_sequence write per
            # enqueue; instead the highest id ever deleted is remembered, only when the
            # newest row goes, and inserts start above it (see _queue.insert_statement).
            had_sequence = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
            ).fetchone()
            high_water = 0
            if had_sequence:  # a schema-1 file, whose queue used AUTOINCREMENT
                row = self._conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'queue'"
                ).fetchone()
                high_water = row[0] if row else 0
            self.db["meta"].insert({"name": "queue_high_water", "value": high_water}, ignore=True)
            self._conn.execute(
                """CREATE TRIGGER IF NOT EXISTS queue_high_water AFTER DELETE ON queue
                WHEN OLD.id > IFNULL((SELECT MAX(id) FROM queue), 0)
                BEGIN
                    UPDATE meta SET value = OLD.id
                    WHERE name = 'queue_high_water' AND value < OLD.id;
                END"""
            )
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
            return StoreError(f"the store {self.path} is closed; open it again with open_store()")
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
        self._queue_listeners.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._queue_listeners.remove(callback)

        return unsubscribe

    def _queue_changed(self) -> None:
        for callback in tuple(self._queue_listeners):
            try:
                callback()
            except Exception:  # a listener's bug must not fail the write that already committed
                log.exception("an on_queue_change callback failed")

    def data_version(self) -> int:
        """A number that changes whenever a commit changes the file (any process's, or ours).

        Cheap enough to poll: the scheduler uses it to notice work from other processes.
        """
        with self._read_lock:
            try:
                return self._reader.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another commit may have changed the file (True) or ``timeout`` passes."""
        from ._change_wait import wait_for_change

        return wait_for_change(self, timeout)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._conn.close()
            self._reader.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r}>"

    def now(self) -> float:
        return self.clock.now()

    def _next_versionstamp(self, conn: sqlite3.Connection) -> str:
        (counter,) = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE name = 'versionstamp' RETURNING value"
        ).fetchone()
        return f"{counter:020x}"

    def _sweep_expired(self, conn: sqlite3.Connection, now: float) -> None:
        # Expired entries are invisible at once; the rows go in a sweep at most once a minute.
        if now - self._last_sweep >= _EXPIRY_SWEEP_SECONDS:
            conn.execute("DELETE FROM kv WHERE expires_at <= ?", (now,))
            self._last_sweep = now

    # -- KV -----------------------------------------------------------------------------

    def get(self, key: Key) -> Entry:
        """The entry at ``key``; its value and versionstamp are ``None`` if there is none."""
        rows = self.execute(
            "SELECT value, versionstamp FROM kv WHERE key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (encode_key(key), self.now()),
        )
        if not rows:
            return Entry(key, None, None)
        return Entry(key, self._load_kv(key, rows[0][0]), rows[0][1])

    def _load_kv(self, key: Key, text: Any) -> Any:
        try:
            return load_value(text)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"the value stored at {key!r} is not JSON ({exc}); it was written behind "
                "airq_nb's back. Delete it with store.delete(key) or set it again."
            ) from None

    def get_many(self, keys: Sequence[Key]) -> list[Entry]:
        """Entries for several keys, read in one consistent snapshot."""
        with self._reading() as conn:
            if conn.in_transaction:
                return [self.get(key) for key in keys]
            try:
                conn.execute("BEGIN")
                try:
                    return [self.get(key) for key in keys]
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    def set(self, key: Key, value: Any, *, expire_in: float | None = None) -> CommitResult:
        """Store ``value`` (JSON) at ``key``; with ``expire_in`` seconds it disappears after that."""
        return self.atomic().set(key, value, expire_in=expire_in).commit()

    def delete(self, key: Key) -> None:
        """Remove ``key``; deleting a missing key is not an error."""
        self.atomic().delete(key).commit()

    def list(
        self,
        *,
        prefix: Key | None = None,
        start: Key | None = None,
        end: Key | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Entry]:
        """Entries in key order (Deno's): under ``prefix``, from ``start`` (inclusive) to ``end``.

        ``prefix`` selects the keys that extend it, not the prefix key itself, as in Deno.
        """
        if prefix is None and start is None and end is None:
            raise InvalidKeyError("list() needs a prefix, a start or an end; use prefix=() for all")
        low, high = b"", b"\xff"
        if prefix is not None:
            low, high = prefix_range(encode_key(prefix, allow_empty=True))
        if start is not None:
            low = max(low, encode_key(start))
        if end is not None:
            high = min(high, encode_key(end))
        order = "DESC" if reverse else "ASC"
        rows = self.execute(
            "SELECT key, value, versionstamp FROM kv WHERE key >= ? AND key < ? "
            f"AND (expires_at IS NULL OR expires_at > ?) ORDER BY key {order} LIMIT ?",
            (low, high, self.now(), _sql_limit(limit)),
        )
        entries = []
        for raw, value, stamp in rows:
            key = decode_key(raw)
            entries.append(Entry(key, self._load_kv(key, value), stamp))
        return entries

    def atomic(self) -> AtomicOperation:
        """Start an atomic operation: checks, sets, deletes, sums and enqueues, all or nothing."""
        return AtomicOperation(self)

    # -- queue: producing ---------------------------------------------------------------

    def enqueue(
        self,
        value: Any,
        *,
        delay: float = 0,
        topic: str = "default",
        keys_if_undelivered: Sequence[Key] = (),
        backoff_schedule: Sequence[float] | None = None,
        dedup_key: str | None = None,
        schedule: str | None = None,
    ) -> int:
        """Queue ``value`` (JSON, at most 64 KiB) for delivery after ``delay`` seconds; returns its id.

        ``backoff_schedule`` lists the seconds to wait before each retry (default
        ``[0.1, 1, 5, 30, 60]``). When every attempt fails, ``value`` is written under each
        of ``keys_if_undelivered``. A ``dedup_key`` shared with a message still queued
        returns that message's id instead of adding another.
        """
        prepared = self._prepare(
            value, delay, topic, keys_if_undelivered, backoff_schedule, dedup_key, schedule
        )
        now = self.now()
        if dedup_key is None:
            _rows, cursor = self._write(*_queue.insert_statement(prepared, now))
            message_id = cursor.lastrowid
        else:
            with self.transaction() as conn:
                message_id = _queue.insert_messages(conn, [prepared], now)[0]
        self._queue_changed()
        return message_id

    def _prepare(
        self,
        value: Any,
        delay: float,
        topic: str,
        keys_if_undelivered: Sequence[Key],
        backoff_schedule: Sequence[float] | None,
        dedup_key: str | None,
        schedule: str | None,
    ) -> PreparedMessage:
        if (
            delay == 0
            and type(delay) in (int, float)
            and topic == "default"
            and backoff_schedule is None
            and dedup_key is None
            and schedule is None
            and (keys_if_undelivered is None or keys_if_undelivered == ())
        ):
            # The common message (all defaults) skips the option checks: enqueue's hot path.
            return PreparedMessage(
                "default", dump_value(value, what="queue payload"), 0.0, None, None, None, None
            )
        if keys_if_undelivered is None:
            keys_if_undelivered = ()
        if isinstance(keys_if_undelivered, str | bytes) or (
            isinstance(keys_if_undelivered, tuple)
            and keys_if_undelivered
            and not isinstance(keys_if_undelivered[0], tuple)
        ):
            raise InvalidKeyError(
                "keys_if_undelivered is a list of keys, e.g. [('failed', 1)], not one key"
            )
        return _queue.prepare_message(
            value,
            delay=delay,
            topic=topic,
            keys_if_undelivered=[encode_key(key) for key in keys_if_undelivered],
            backoff_schedule=backoff_schedule,
            dedup_key=dedup_key,
            schedule=schedule,
        )

    # -- queue: consuming ---------------------------------------------------------------

    def claim(
        self,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
        lookahead: float = 0.0,
        on_dead_letter: Callable[[DeadLettered], None] | None = None,
    ) -> Delivery | None:
        """Lease the next due message (earliest first) to this consumer, or return ``None``.

        Until the lease expires no other consumer, in any process, gets the message; a
        consumer that dies loses it, and the message is delivered again. Corrupt rows met
        on the way are dead-lettered, never raised. ``lookahead`` seconds let a scheduler
        claim a queued message just before it is due (to start it on time); an expired
        lease is only ever taken once it has expired. ``on_dead_letter`` is called, inside
        the dead-lettering transaction, for each message dead-lettered on the way (so a
        consumer can log it atomically with it).
        """
        lease_seconds = _queue.check_delay(lease_seconds, what="lease_seconds")
        lookahead = _queue.check_delay(lookahead, what="lookahead")
        topic_list = _queue.check_topics(topics)
        sql = _queue.claim_statement(topic_list)
        now = self.now() if now is None else _check_time(now, what="now")
        expires = now + lease_seconds
        params = [now + lookahead, now, *(topic_list or ())]
        while True:
            token = _queue.new_lease_token()
            rows, _cursor = self._write(sql, [token, expires, expires, *params])
            if not rows:
                return None
            try:
                return _queue.delivery_from_claimed(rows[0], token, expires)
            except _queue.UndeliverableRow as bad:
                with self.transaction() as conn:
                    self._dead_letter_claimed(conn, bad, token, now, on_dead_letter)

    def claim_many(
        self,
        limit: int,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
        on_dead_letter: Callable[[DeadLettered], None] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due messages in one commit, earliest first.

        For a consumer draining a backlog: each message is leased exactly as by
        :meth:`claim` (ack, fail, extend or release each one), at a fraction of the commits.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidValueError(f"limit must be a positive integer, got {limit!r}")
        lease_seconds = _queue.check_delay(lease_seconds, what="lease_seconds")
        topic_list = _queue.check_topics(topics)
        sql = _queue.claim_statement(topic_list, many=True)
        now = self.now() if now is None else _check_time(now, what="now")
        expires = now + lease_seconds
        token = _queue.new_lease_token()
        with self.transaction() as conn:
            rows = conn.execute(
                sql, [token, expires, expires, now, now, *(topic_list or ()), limit]
            ).fetchall()
            deliveries: list[Delivery] = []
            for row in rows:
                try:
                    deliveries.append(_queue.delivery_from_claimed(row, token, expires))
                except _queue.UndeliverableRow as bad:
                    self._dead_letter_claimed(conn, bad, token, now, on_dead_letter)
        # RETURNING gives rows in no promised order; deliver earliest first, as claim() does.
        deliveries.sort(key=lambda d: (d.deliver_at, d.id))
        return deliveries

    def _dead_letter_claimed(
        self,
        conn: sqlite3.Connection,
        bad: _queue.UndeliverableRow,
        token: str,
        now: float,
        on_dead_letter: Callable[[DeadLettered], None] | None,
    ) -> None:
        _queue.dead_letter_claimed(
            conn,
            bad,
            token,
            now,
            lambda keys, value_json: self._write_raw(conn, keys, value_json),
        )
        if on_dead_letter is not None:
            on_dead_letter(bad.dead)

    def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """Ack several deliveries in one commit; returns how many leases were still held."""
        with self.transaction() as conn:
            return conn.executemany(
                "DELETE FROM queue WHERE id = ? AND lease_token = ?",
                [(d.id, d.lease_token) for d in deliveries],
            ).rowcount

    def ack(self, delivery: Delivery) -> bool:
        """Mark a delivery done (the message is removed). False if the lease was lost meanwhile."""
        _rows, cursor = self._write(
            "DELETE FROM queue WHERE id = ? AND lease_token = ?",
            (delivery.id, delivery.lease_token),
        )
        return cursor.rowcount == 1

    def ack_and_claim(
        self,
        delivery: Delivery,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
    ) -> tuple[bool, Delivery | None]:
        """Ack ``delivery`` and lease the next due message in one commit (half the commits
        of :meth:`ack` then :meth:`claim`, for a consumer working through a backlog).

        Returns what :meth:`ack` and :meth:`claim` would: whether the lease was still held,
        and the next delivery or ``None``.
        """
        lease_seconds = _queue.check_delay(lease_seconds, what="lease_seconds")
        topic_list = _queue.check_topics(topics)
        with self.transaction():
            acked = self.ack(delivery)
            return acked, self.claim(topics=topic_list, lease_seconds=lease_seconds, now=now)

    def fail(
        self,
        delivery: Delivery,
        error: str,
        *,
        retry: bool = True,
        retry_in: float | None = None,
        now: float | None = None,
    ) -> FailOutcome:
        """Record a failed attempt: ``"retry"`` (next attempt planned by back-off, or
        ``retry_in`` seconds), ``"dead"`` (attempts exhausted or ``retry=False``: now a dead
        letter, its value written under ``keys_if_undelivered``), or ``"lost"`` (the lease
        had expired and another consumer owns the message).
        """
        if retry_in is not None:
            retry_in = _queue.check_delay(retry_in, what="retry_in")
        now = self.now() if now is None else _check_time(now, what="now")
        with self.transaction() as conn:
            return _queue.fail_delivery(
                conn,
                delivery,
                str(error),
                now=now,
                retry=retry,
                retry_in=retry_in,
                write_undelivered=lambda keys, value_json: self._write_raw(conn, keys, value_json),
            )

    def extend_lease(
        self, delivery: Delivery, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        """Keep holding a message for ``lease_seconds`` more; False if the lease was lost."""
        now = self.now() if now is None else _check_time(now, what="now")
        expires = now + _queue.check_delay(lease_seconds, what="lease_seconds")
        _rows, cursor = self._write(
            "UPDATE queue SET lease_expires_at = ?, due_at = ? WHERE id = ? AND lease_token = ?",
            (expires, expires, delivery.id, delivery.lease_token),
        )
        return cursor.rowcount == 1

    def release(self, delivery: Delivery) -> bool:
        """Give a message back unhandled (e.g. on shutdown): due again now, attempt not counted."""
        _rows, cursor = self._write(
            "UPDATE queue SET state = 'queued', attempts = MAX(attempts - 1, 0), "
            "lease_token = NULL, lease_expires_at = NULL, due_at = deliver_at "
            "WHERE id = ? AND lease_token = ?",
            (delivery.id, delivery.lease_token),
        )
        return cursor.rowcount == 1

    def next_due(self, *, topics: Collection[str] | None = None) -> float | None:
        """When the next message becomes claimable (due, or its lease runs out); None if never."""
        sql = (
            "SELECT MIN(due_at) FROM queue WHERE state IN ('queued', 'leased') "
            "AND topic NOT IN (SELECT topic FROM paused_topics) "
            "AND NOT EXISTS (SELECT 1 FROM paused_topics WHERE topic = '*')"
        )
        params: list[Any] = []
        topic_list = _queue.check_topics(topics)
        if topic_list is not None:
            sql += f" AND topic IN ({','.join('?' * len(topic_list))})"
            params.extend(topic_list)
        ((due,),) = self.execute(sql, params)
        return None if due is None else float(due)

    def _write_raw(self, conn: sqlite3.Connection, keys: Sequence[bytes], value_json: str) -> None:
        stamp = self._next_versionstamp(conn)
        conn.executemany(
            "INSERT OR REPLACE INTO kv (key, value, versionstamp, expires_at) VALUES (?, ?, ?, NULL)",
            [(key, value_json, stamp) for key in keys],
        )


class AtomicOperation:
    """Checks and mutations applied in one transaction: all of them, or none.

    ``store.atomic().check(key, stamp).set(key, value).enqueue(msg).commit()``. A failed
    check makes ``commit()`` return ``CommitResult(ok=False)`` and write nothing.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._checks: list[tuple[bytes, str | None]] = []
        self._mutations: list[tuple[str, bytes, Any, float | None]] = []
        self._messages: list[PreparedMessage] = []

    def check(self, key: Key, versionstamp: str | None) -> AtomicOperation:
        """Require ``key`` to still have ``versionstamp`` (``None``: to still be absent)."""
        self._checks.append((encode_key(key), versionstamp))
        return self

    def set(self, key: Key, value: Any, *, expire_in: float | None = None) -> AtomicOperation:
        if expire_in is not None:
            expire_in = _queue.check_delay(expire_in, what="expire_in", limit=math.inf)
        self._mutations.append(("set", encode_key(key), dump_value(value), expire_in))
        return self

    def delete(self, key: Key) -> AtomicOperation:
        self._mutations.append(("delete", encode_key(key), None, None))
        return self

    def sum(self, key: Key, n: int | float) -> AtomicOperation:
        """Add ``n`` to the number at ``key`` (absent counts as the first value)."""
        return self._numeric("sum", key, n)

    def min(self, key: Key, n: int | float) -> AtomicOperation:
        """Keep the smaller of ``n`` and the number at ``key``."""
        return self._numeric("min", key, n)

    def max(self, key: Key, n: int | float) -> AtomicOperation:
        """Keep the larger of ``n`` and the number at ``key``."""
        return self._numeric("max", key, n)

    def _numeric(self, op: str, key: Key, n: int | float) -> AtomicOperation:
        if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n):
            raise InvalidValueError(f"{op}() takes a finite int or float, got {n!r}")
        self._mutations.append((op, encode_key(key), n, None))
        return self

    def enqueue(
        self,
        value: Any,
        *,
        delay: float = 0,
        topic: str = "default",
        keys_if_undelivered: Sequence[Key] = (),
        backoff_schedule: Sequence[float] | None = None,
        dedup_key: str | None = None,
        schedule: str | None = None,
    ) -> AtomicOperation:
        """Queue a message as part of this operation (see :meth:`Store.enqueue`)."""
        self._messages.append(
            self._store._prepare(
                value, delay, topic, keys_if_undelivered, backoff_schedule, dedup_key, schedule
            )
        )
        return self

    def commit(self) -> CommitResult:
        """Apply everything if every check holds; ``ok=False`` (and no write) otherwise."""
        store = self._store
        with store.transaction() as conn:
            now = store.now()
            for raw, expected in self._checks:
                row = conn.execute(
                    "SELECT versionstamp FROM kv WHERE key = ? "
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (raw, now),
                ).fetchone()
                if (row[0] if row else None) != expected:
                    return CommitResult(ok=False)
            stamp = store._next_versionstamp(conn)
            for op, raw, payload, expire_in in self._mutations:
                self._apply(conn, op, raw, payload, expire_in, stamp, now)
            if not self._messages:
                ids: list[int] = []
            elif any(m.dedup_key is not None for m in self._messages):
                ids = _queue.insert_messages(conn, self._messages, now)
            else:
                ids = _queue.insert_many_plain(conn, self._messages, now)
            if self._mutations:
                store._sweep_expired(conn, now)
        if ids:
            store._queue_changed()
        return CommitResult(ok=True, versionstamp=stamp, message_ids=tuple(ids))

    @staticmethod
    def _apply(
        conn: sqlite3.Connection,
        op: str,
        raw: bytes,
        payload: Any,
        expire_in: float | None,
        stamp: str,
        now: float,
    ) -> None:
        if op == "delete":
            conn.execute("DELETE FROM kv WHERE key = ?", (raw,))
            return
        if op == "set":
            value_json = payload
        else:
            row = conn.execute(
                "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (raw, now),
            ).fetchone()
            current = None if row is None else load_value(row[0])
            if current is None:
                result = payload
            elif isinstance(current, bool) or not isinstance(current, int | float):
                raise InvalidValueError(
                    f"{op}() needs a number at {decode_key(raw)!r}, found {type(current).__name__}"
                    "; nothing was written"
                )
            elif op == "sum":
                result = current + payload
            else:
                result = min(current, payload) if op == "min" else max(current, payload)
            value_json = dump_value(result)
        if expire_in is None:
            # A NULL literal: binding None costs sqlite3 an adapter lookup.
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, versionstamp, expires_at) "
                "VALUES (?, ?, ?, NULL)",
                (raw, value_json, stamp),
            )
        else:
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, versionstamp, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (raw, value_json, stamp, now + expire_in),
            )


class QueueManager:
    """See and manage the queue: list, get, delete, purge, pause, resume, dead letters, redrive."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _paused(self) -> set[str]:
        return {row[0] for row in self._store.execute("SELECT topic FROM paused_topics")}

    def list(
        self,
        *,
        state: str | None = None,
        topic: str | None = None,
        due_before: float | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages in delivery order, optionally filtered; corrupt rows are shown, not raised."""
        _check_state(state)
        where, params = _filters(state=state, topic=topic)
        if due_before is not None:
            where.append("deliver_at < ?")
            params.append(_check_time(due_before, what="due_before"))
        sql = f"SELECT {_queue.MESSAGE_COLUMNS} FROM queue"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY state = 'dead', deliver_at, id LIMIT ?"
        params.append(_sql_limit(limit))
        paused = self._paused()
        return [_queue.row_to_message(row, paused) for row in self._store.execute(sql, params)]

    def get(self, message_id: int) -> Message:
        """One message by id; raises :class:`MessageNotFoundError` if it is gone."""
        rows = self._store.execute(
            f"SELECT {_queue.MESSAGE_COLUMNS} FROM queue WHERE id = ?", (_check_id(message_id),)
        )
        if not rows:
            raise _not_found(message_id)
        return _queue.row_to_message(rows[0], self._paused())

    def delete(self, message_id: int) -> None:
        """Remove one message whatever its state; raises if there is no such message."""
        with self._store.transaction() as conn:
            cursor = conn.execute("DELETE FROM queue WHERE id = ?", (_check_id(message_id),))
        if cursor.rowcount == 0:
            raise _not_found(message_id)

    def purge(self, *, state: str | None = None, topic: str | None = None) -> int:
        """Delete every message (or those in ``state`` and/or ``topic``); returns how many."""
        _check_state(state)
        where, params = _filters(state=state, topic=topic)
        sql = "DELETE FROM queue" + (" WHERE " + " AND ".join(where) if where else "")
        with self._store.transaction() as conn:
            return conn.execute(sql, params).rowcount

    def pause(self, topic: str | None = None) -> None:
        """Stop delivering ``topic`` (all topics if None); its messages stay queued."""
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO paused_topics (topic, paused_at) VALUES (?, ?)",
                ("*" if topic is None else _queue.check_topic(topic), self._store.now()),
            )

    def resume(self, topic: str | None = None) -> None:
        """Deliver ``topic`` again; with None, lift every pause."""
        with self._store.transaction() as conn:
            if topic is None:
                conn.execute("DELETE FROM paused_topics")
            else:
                conn.execute(
                    "DELETE FROM paused_topics WHERE topic = ?", (_queue.check_topic(topic),)
                )
        self._store._queue_changed()

    def paused_topics(self) -> tuple[str, ...]:
        """Paused topics; ``"*"`` means everything is paused."""
        return tuple(sorted(self._paused()))

    def dead_letters(self, *, topic: str | None = None, limit: int | None = None) -> list[Message]:
        """Messages whose attempts ran out, with their last error."""
        return self.list(state="dead", topic=topic, limit=limit)

    def redrive(self, message_id: int, *, delay: float = 0) -> None:
        """Send a dead letter back to the queue with its attempts reset."""
        _check_id(message_id)
        delay = _queue.check_delay(delay)
        at = self._store.now() + delay
        with self._store.transaction() as conn:
            row = conn.execute("SELECT state FROM queue WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise _not_found(message_id)
            if row[0] != "dead":
                raise InvalidValueError(
                    f"message {message_id} is {row[0]}, not dead; only dead letters are re-driven"
                )
            conn.execute(
                "UPDATE queue SET state = 'queued', attempts = 0, deliver_at = ?, due_at = ?, "
                "dead_at = NULL WHERE id = ?",
                (at, at, message_id),
            )
        self._store._queue_changed()

    def redrive_all(self, *, topic: str | None = None) -> int:
        """Re-drive every dead letter (of ``topic``); returns how many."""
        now = self._store.now()
        where, params = _filters(state="dead", topic=topic)
        with self._store.transaction() as conn:
            count = conn.execute(
                "UPDATE queue SET state = 'queued', attempts = 0, deliver_at = ?, due_at = ?, "
                f"dead_at = NULL WHERE {' AND '.join(where)}",
                [now, now, *params],
            ).rowcount
        self._store._queue_changed()
        return count

    def counts(self) -> QueueCounts:
        """Messages per state, overall and per topic, and the paused topics."""
        by_state: dict[str, int] = {}
        by_topic: dict[str, dict[str, int]] = {}
        for topic, state, count in self._store.execute(
            "SELECT topic, state, COUNT(*) FROM queue GROUP BY topic, state"
        ):
            by_state[state] = by_state.get(state, 0) + count
            by_topic.setdefault(topic, {})[state] = count
        return QueueCounts(by_state, by_topic, tuple(sorted(self._paused())))


_STATES = ("queued", "leased", "dead")


def _check_state(state: str | None) -> None:
    if state is not None and state not in _STATES:
        raise InvalidValueError(f"state must be one of {', '.join(_STATES)}; got {state!r}")


def _check_id(message_id: object) -> int:
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise InvalidValueError(
            f"message ids are integers (Message.id, Delivery.id), got {message_id!r}"
        )
    if not -(2**63) <= message_id < 2**63:
        raise _not_found(message_id)  # SQLite ids are 64-bit: no message can have this one
    return message_id


def _check_time(when: object, *, what: str) -> float:
    if isinstance(when, bool) or not isinstance(when, int | float) or math.isnan(when):
        raise InvalidValueError(f"{what} is a Unix time in seconds (a number), got {when!r}")
    return float(when)


def _filters(*, state: str | None, topic: str | None) -> tuple[list[str], list[Any]]:
    if topic is not None and not isinstance(topic, str):
        raise InvalidValueError(f"topic must be a string, got {topic!r}")
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if topic is not None:
        where.append("topic = ?")
        params.append(topic)
    return where, params


def _not_found(message_id: int) -> MessageNotFoundError:
    return MessageNotFoundError(
        f"no queue message {message_id}: it was delivered, deleted or never existed; "
        "store.queue.list() shows what is queued"
    )
