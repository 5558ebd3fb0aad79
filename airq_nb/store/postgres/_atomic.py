"""Atomic operations on PostgreSQL: the SQLite backend's builder, committed with PostgreSQL SQL.

``check``/``set``/``delete``/``sum``/``min``/``max``/``enqueue`` collect and validate the
operation exactly as on SQLite (they are inherited); only :meth:`PostgresAtomic.commit`
differs, and the row write (:meth:`PostgresAtomic._upsert`). It takes the versionstamp counter's row lock first, so every check reads the
newest committed state and no other KV write can commit between the check and this commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._dialect import PgConnection
from .._sqlite import AtomicOperation, CommitResult
from . import _queue as _pg_queue

if TYPE_CHECKING:
    from ._store import PostgresStore

__all__ = ["PostgresAtomic"]

_UPSERT = (
    "INSERT INTO kv (key, value, versionstamp, expires_at) VALUES (?, ?, ?, ?) "
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
                mutating = PgConnection(conn)  # the shared _apply writes ? statements
                for op, raw, payload, expire_in in self._mutations:
                    self._apply(mutating, op, raw, payload, expire_in, stamp, now)
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
    def _upsert(
        conn: Any, raw: bytes, value_json: str, stamp: str, expires_at: float | None
    ) -> None:
        conn.execute(_UPSERT, (raw, value_json, stamp, expires_at))
