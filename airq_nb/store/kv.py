"""The KV: get, list, set, delete and atomic operations over the ``kv`` table.

Keys are stored encoded (``_keys.py``) in a BLOB primary key, so a list is a range scan in
Deno's key order; values are JSON text. Every commit takes the next versionstamp from the
``meta`` counter, so versionstamps increase in commit order across processes.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import InvalidKeyError, InvalidValueError, StoreError
from . import _dialect, _queue
from ._connection import sql_limit
from ._json import dump_value, load_value
from ._keys import Key, decode_key, encode_key, prefix_range
from ._watch import KeyWatch

if TYPE_CHECKING:
    from ._queue import PreparedMessage

__all__ = [
    "AtomicOperation",
    "CommitResult",
    "Entry",
    "KvVerbs",
    "check_versionstamp",
    "list_entries",
    "load_kv_value",
]

_EXPIRY_SWEEP_SECONDS = 60.0
_VERSIONSTAMP = re.compile(r"[0-9a-fA-F]{20}")


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


def check_versionstamp(versionstamp: object) -> str | None:
    """``versionstamp`` as stored (20 lowercase hex digits), or None; anything else is refused."""
    if versionstamp is None:
        return None
    if not isinstance(versionstamp, str) or not _VERSIONSTAMP.fullmatch(versionstamp):
        raise InvalidValueError(
            "a versionstamp is None (the key must be absent) or 20 hex digits, as "
            f"Entry.versionstamp and CommitResult.versionstamp give, got {versionstamp!r}"
        )
    return versionstamp.lower()


def key_range(prefix: Key | None, start: Key | None, end: Key | None) -> tuple[bytes, bytes]:
    """The encoded keys ``list()`` scans, ``low <= key < high``, for its prefix/start/end.

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
    return low, high


def load_kv_value(key: Key, text: Any) -> Any:
    """The JSON value stored at ``key``; ``StoreError`` saying what to do if it is not JSON."""
    try:
        return load_value(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"the value stored at {key!r} is not JSON ({exc}); it was written behind "
            "airq_nb's back. Delete it with store.delete(key) or set it again."
        ) from None


def list_entries(
    store: Any,
    *,
    prefix: Key | None,
    start: Key | None,
    end: Key | None,
    limit: int | None,
    reverse: bool,
) -> list[Entry]:
    """``store.list`` on either backend: one range scan in Deno's key order, expired left out."""
    low, high = key_range(prefix, start, end)
    count = sql_limit(limit)
    order = "DESC" if reverse else "ASC"
    rows = _dialect.read(
        store,
        "SELECT key, value, versionstamp FROM kv WHERE key >= ? AND key < ? "
        f"AND (expires_at IS NULL OR expires_at > ?) ORDER BY key {order} LIMIT ?",
        # PostgreSQL's "no limit" is LIMIT NULL; SQLite's is -1.
        (low, high, store.now(), None if count < 0 and _dialect.is_postgres(store) else count),
    )
    entries = []
    for raw, value, stamp in rows:
        key = decode_key(bytes(raw))  # PostgreSQL's bytea comes back as a memoryview
        entries.append(Entry(key, load_kv_value(key, value), stamp))
    return entries


def combine(op: str, raw: bytes, stored_json: str | None, operand: int | float) -> str:
    """The JSON a ``sum``/``min``/``max`` of ``operand`` leaves at key ``raw`` holding
    ``stored_json`` (None when absent); refuses a stored value that is not a number."""
    current = None if stored_json is None else load_value(stored_json)
    if current is None:
        result = operand
    elif isinstance(current, bool) or not isinstance(current, int | float):
        raise InvalidValueError(
            f"{op}() needs a number at {decode_key(raw)!r}, found {type(current).__name__}"
            "; nothing was written"
        )
    elif op == "sum":
        result = current + operand
    else:
        result = min(current, operand) if op == "min" else max(current, operand)
    return dump_value(result)


class KvVerbs:
    """The store's KV verbs (a part of :class:`~airq_nb.Store`, which supplies the plumbing)."""

    _last_sweep = -math.inf

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

    def get(self, key: Key) -> Entry:
        """The entry at ``key``; its value and versionstamp are ``None`` if there is none."""
        rows = _dialect.read(  # either backend: PostgresStore.get is this method too
            self,
            "SELECT value, versionstamp FROM kv WHERE key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (encode_key(key), self.now()),
        )
        if not rows:
            return Entry(key, None, None)
        return Entry(key, load_kv_value(key, rows[0][0]), rows[0][1])

    def get_many(self, keys: Sequence[Key]) -> list[Entry]:
        """Entries for several keys, read in one consistent snapshot."""
        with self._reading() as conn:
            try:
                if conn.in_transaction:
                    return [self.get(key) for key in keys]
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
        return list_entries(self, prefix=prefix, start=start, end=end, limit=limit, reverse=reverse)

    def watch(self, keys: Sequence[Key]) -> KeyWatch:
        """The entries of up to 10 keys now, then again after each commit changing any of them.

        ``async for entries in store.watch([key, ...])`` (or a plain ``for`` in a thread);
        Deno KV's ``kv.watch``. See :class:`~airq_nb.store._watch.KeyWatch`.
        """
        return KeyWatch(self, keys)

    def atomic(self) -> AtomicOperation:
        """Start an atomic operation: checks, sets, deletes, sums and enqueues, all or nothing."""
        return AtomicOperation(self)

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

    def __init__(self, store: KvVerbs) -> None:
        self._store = store
        self._checks: list[tuple[bytes, str | None]] = []
        self._mutations: list[tuple[str, bytes, Any, float | None]] = []
        self._messages: list[PreparedMessage] = []

    def check(self, key: Key, versionstamp: str | None) -> AtomicOperation:
        """Require ``key`` to still have ``versionstamp`` (``None``: to still be absent)."""
        self._checks.append((encode_key(key), check_versionstamp(versionstamp)))
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

    def _apply(
        self,
        conn: Any,
        op: str,
        raw: bytes,
        payload: Any,
        expire_in: float | None,
        stamp: str,
        now: float,
    ) -> None:
        """Apply one mutation in the open transaction; ``conn`` takes ``?`` statements.

        The same on both backends; only :meth:`_upsert`, the row write, is each one's own.
        """
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
            value_json = combine(op, raw, None if row is None else row[0], payload)
        self._upsert(conn, raw, value_json, stamp, None if expire_in is None else now + expire_in)

    @staticmethod
    def _upsert(
        conn: sqlite3.Connection, raw: bytes, value_json: str, stamp: str, expires_at: float | None
    ) -> None:
        if expires_at is None:
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
                (raw, value_json, stamp, expires_at),
            )
