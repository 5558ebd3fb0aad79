"""The KV: get, list, set, delete and atomic operations over the ``kv`` table.

Keys are stored encoded (``_keys.py``) in a BLOB primary key, so a list is a range scan in
Deno's key order; values are JSON text. Every commit takes the next versionstamp from the
``meta`` counter, so versionstamps increase in commit order across processes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .._errors import InvalidKeyError, InvalidValueError, StoreError
from . import _dialect, _queue
from ._json import dump_value, load_value
from ._keys import Key, decode_key, encode_key, prefix_range
from ._watch import KeyWatch
from .models import CommitResult, Entry

if TYPE_CHECKING:
    from ._dialect import Dialect
    from ._queue import PreparedMessage

__all__ = [
    "AtomicOperation",
    "CommitResult",
    "Entry",
    "KvVerbs",
    "check_versionstamp",
    "list_entries",
    "load_kv_value",
    "sql_limit",
]

_EXPIRY_SWEEP_SECONDS = 60.0
_VERSIONSTAMP = re.compile(r"[0-9a-fA-F]{20}")


def sql_limit(limit: int | None) -> int:
    """``limit`` for SQL's LIMIT (-1: no limit), refusing what is not a non-negative int."""
    if limit is None:
        return -1
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


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
        (low, high, store.now(), _dialect.dialect_of(store).limit(count)),
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


#: The row write of every KV mutation; SQLite and PostgreSQL spell upserts alike.
_UPSERT = (
    "INSERT INTO kv (key, value, versionstamp, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
    "versionstamp = excluded.versionstamp, expires_at = excluded.expires_at"
)
# Without an expiry: a NULL literal, as binding None costs sqlite3 an adapter lookup.
_UPSERT_NO_EXPIRY = (
    "INSERT INTO kv (key, value, versionstamp, expires_at) VALUES (?, ?, ?, NULL) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
    "versionstamp = excluded.versionstamp, expires_at = NULL"
)


class KvVerbs:
    """The store's KV verbs, the same on both backends.

    The backend supplies the plumbing: ``dialect``, ``now()``, ``execute`` (one read
    statement in its driver's placeholders), ``_tx()`` (a write transaction whose
    connection takes ``?`` statements), ``_queue_changed()``, and ``get_many`` (a
    consistent read is each backend's own).
    """

    _last_sweep = -math.inf

    if TYPE_CHECKING:  # supplied by the backend
        dialect: Dialect

        def now(self) -> float: ...

        def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

        def _tx(self) -> AbstractContextManager[Any]: ...

        def _queue_changed(self) -> None: ...

        def _prepare(
            self,
            value: Any,
            delay: float,
            topic: str,
            keys_if_undelivered: Sequence[Key],
            backoff_schedule: Sequence[float] | None,
            dedup_key: str | None,
            schedule: str | None,
        ) -> PreparedMessage: ...

    def _next_versionstamp(self, conn: Any) -> str:
        (counter,) = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE name = 'versionstamp' RETURNING value"
        ).fetchone()
        return f"{counter:020x}"

    def _sweep_expired(self, conn: Any, now: float) -> None:
        # Expired entries are invisible at once; the rows go in a sweep at most once a minute.
        if now - self._last_sweep >= _EXPIRY_SWEEP_SECONDS:
            conn.execute("DELETE FROM kv WHERE expires_at <= ?", (now,))
            self._last_sweep = now

    def get(self, key: Key) -> Entry:
        """The entry at ``key``; its value and versionstamp are ``None`` if there is none."""
        rows = _dialect.read(
            self,
            "SELECT value, versionstamp FROM kv WHERE key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (encode_key(key), self.now()),
        )
        if not rows:
            return Entry(key, None, None)
        return Entry(key, load_kv_value(key, rows[0][0]), rows[0][1])

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

    def _write_raw(self, conn: Any, keys: Sequence[bytes], value_json: str) -> None:
        """Write ``value_json`` under raw ``keys`` in the open transaction, one new versionstamp."""
        stamp = self._next_versionstamp(conn)
        conn.executemany(_UPSERT_NO_EXPIRY, [(key, value_json, stamp) for key in keys])

    def _undelivered_writer(self, conn: Any) -> Callable[[Sequence[bytes], str], None]:
        """How a dead letter's value is written under its keys, in ``conn``'s transaction."""
        return lambda keys, value_json: self._write_raw(conn, keys, value_json)


class _CheckFailed(Exception):
    """A check did not hold: roll back (releasing the counter lock) and report ok=False."""


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
        """Apply everything if every check holds; ``ok=False`` (and no write) otherwise.

        The versionstamp counter is bumped first: on PostgreSQL its row lock then keeps
        every other KV write out until this commit, so a check reads the newest committed
        state and cannot be raced (SQLite's write transaction excludes them already). A
        failed check rolls the whole transaction back.
        """
        store = self._store
        try:
            with store._tx() as conn:
                now = store.now()
                stamp = store._next_versionstamp(conn)
                if self._checks:
                    self._verify(conn, now)
                for op, raw, payload, expire_in in self._mutations:
                    self._apply(conn, op, raw, payload, expire_in, stamp, now)
                ids = _queue.add_messages(conn, self._messages, now, store.dialect)
                if self._mutations:
                    store._sweep_expired(conn, now)
        except _CheckFailed:
            return CommitResult(ok=False)
        if ids:
            store._queue_changed()
        return CommitResult(ok=True, versionstamp=stamp, message_ids=tuple(ids))

    def _verify(self, conn: Any, now: float) -> None:
        raws = list(dict.fromkeys(raw for raw, _ in self._checks))
        rows = conn.execute(
            f"SELECT key, versionstamp FROM kv WHERE key IN ({','.join('?' * len(raws))}) "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (*raws, now),
        ).fetchall()
        current = {bytes(raw): stamp for raw, stamp in rows}  # bytea: a memoryview
        for raw, expected in self._checks:
            if current.get(raw) != expected:
                raise _CheckFailed

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
        """Apply one mutation in the open transaction; ``conn`` takes ``?`` statements."""
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
        conn: Any, raw: bytes, value_json: str, stamp: str, expires_at: float | None
    ) -> None:
        if expires_at is None:
            conn.execute(_UPSERT_NO_EXPIRY, (raw, value_json, stamp))
        else:
            conn.execute(_UPSERT, (raw, value_json, stamp, expires_at))
