"""Atomic operations on PostgreSQL: the SQLite backend's builder, committed with PostgreSQL SQL.

``check``/``set``/``delete``/``sum``/``min``/``max``/``enqueue`` collect and validate the
operation exactly as on SQLite (they are inherited); only :meth:`PostgresAtomic.commit`
differs. It takes the versionstamp counter's row lock first, so every check reads the
newest committed state and no other KV write can commit between the check and this commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._sqlite import AtomicOperation, CommitResult
from ..kv import combine
from . import _queue as _pg_queue

if TYPE_CHECKING:
    from ._store import PostgresStore

__all__ = ["PostgresAtomic"]

_UPSERT = (
    "INSERT INTO kv (key, value, versionstamp, expires_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
    "versionstamp = EXCLUDED.versionstamp, expires_at = EXCLUDED.expires_at"
)


class _CheckFailed(Exception):
    """A check did not hold: roll back (releasing the counter lock) and report ok=False."""


class PostgresAtomic(AtomicOperation):
    """Checks and mutations applied in one PostgreSQL transaction: all of them, or none."""

    _store: PostgresStore

    def commit(self) -> CommitResult:
        """Apply everything if every check holds; ``ok=False`` (and no write) otherwise."""
        store = self._store
        try:
            with store.transaction() as conn:
                now = store.now()
                stamp = store._next_versionstamp(conn)
                if self._checks:
                    self._verify(conn, now)
                for op, raw, payload, expire_in in self._mutations:
                    self._apply_pg(conn, op, raw, payload, expire_in, stamp, now)
                ids = _pg_queue.insert_messages(conn, self._messages, now) if self._messages else []
                if self._mutations:
                    store._sweep_expired(conn, now)
        except _CheckFailed:
            return CommitResult(ok=False)
        return CommitResult(ok=True, versionstamp=stamp, message_ids=tuple(ids))

    def _verify(self, conn: Any, now: float) -> None:
        rows = conn.execute(
            "SELECT key, versionstamp FROM kv WHERE key = ANY(%s) "
            "AND (expires_at IS NULL OR expires_at > %s)",
            ([raw for raw, _ in self._checks], now),
        ).fetchall()
        current = {bytes(raw): stamp for raw, stamp in rows}
        for raw, expected in self._checks:
            if current.get(raw) != expected:
                raise _CheckFailed

    @staticmethod
    def _apply_pg(
        conn: Any,
        op: str,
        raw: bytes,
        payload: Any,
        expire_in: float | None,
        stamp: str,
        now: float,
    ) -> None:
        if op == "delete":
            conn.execute("DELETE FROM kv WHERE key = %s", (raw,))
            return
        if op == "set":
            value_json = payload
        else:
            row = conn.execute(
                "SELECT value FROM kv WHERE key = %s AND (expires_at IS NULL OR expires_at > %s)",
                (raw, now),
            ).fetchone()
            value_json = combine(op, raw, None if row is None else row[0], payload)
        expires_at = None if expire_in is None else now + expire_in
        conn.execute(_UPSERT, (raw, value_json, stamp, expires_at))
