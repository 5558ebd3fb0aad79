"""The ``delivery_log`` table: one row per delivery attempt, and the status reads around it.

The scheduler writes rows in the same transaction as the ack, retry or dead letter they
record (see :mod:`airq_nb.store._batch`); ``airq_nb.read_delivery_log`` and status read them
back through the verbs here. This module is the table's one owner: no SQL about it lives
anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _dialect

if TYPE_CHECKING:
    from ._backend import Store

__all__ = [
    "LOG_COLUMNS",
    "LogEntry",
    "due_backlog",
    "last_delivery",
    "prune_delivery_log",
    "read_log_rows",
    "write_log_entries",
    "write_log_rows",
]

LOG_COLUMNS = (
    "message_id",
    "topic",
    "schedule",
    "attempt",
    "scheduled_at",
    "started_at",
    "finished_at",
    "outcome",
    "error",
    "lateness_ms",
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One finished delivery attempt; times are Unix seconds."""

    message_id: int
    topic: str
    schedule: str | None
    attempt: int
    scheduled_at: float
    started_at: float
    finished_at: float
    outcome: str
    error: str | None
    #: False for a message dead-lettered while being claimed: no handler ran, no lateness.
    ran: bool = True

    @property
    def lateness_ms(self) -> float | None:
        """How long after its scheduled time the attempt started (None if none started)."""
        return (self.started_at - self.scheduled_at) * 1000.0 if self.ran else None


def write_log_entries(conn: Any, entries: Iterable[LogEntry]) -> None:
    """Insert rows in the caller's open transaction (one statement for the batch)."""
    write_log_rows(
        conn,
        [
            (
                e.message_id,
                e.topic,
                e.schedule,
                e.attempt,
                e.scheduled_at,
                e.started_at,
                e.finished_at,
                e.outcome,
                e.error,
                e.lateness_ms,
            )
            for e in entries
        ],
    )


def write_log_rows(conn: Any, rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert rows given as :data:`LOG_COLUMNS` tuples (the scheduler's hot path: no objects)."""
    conn.executemany(
        "INSERT INTO delivery_log (message_id, topic, schedule, attempt, scheduled_at, "
        "started_at, finished_at, outcome, error, lateness_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def prune_delivery_log(conn: Any, *, older_than: float) -> int:
    """Delete rows that finished before ``older_than`` (Unix seconds); returns how many."""
    return conn.execute("DELETE FROM delivery_log WHERE finished_at < ?", (older_than,)).rowcount


def read_log_rows(
    store: Store,
    *,
    since: float | None,
    schedule: str | None,
    topic: str | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """Rows as :data:`LOG_COLUMNS` tuples, oldest first; ``limit`` (-1: all) keeps the newest."""
    where: list[str] = []
    params: list[Any] = []
    for column, op, value in (
        ("finished_at", ">=", since),
        ("schedule", "=", schedule),
        ("topic", "=", topic),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    sql = f"SELECT {', '.join(LOG_COLUMNS)} FROM delivery_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    # PostgreSQL's "no limit" is LIMIT NULL; SQLite's is -1.
    params.append(None if limit < 0 and _dialect.is_postgres(store) else limit)
    return _dialect.read(store, sql, params)[::-1]


def last_delivery(store: Store) -> tuple[str | None, float | None, str | None]:
    """The newest row's outcome, the newest lateness (ms) and the newest error recorded."""

    def newest(column: str, condition: str = "TRUE") -> Any:
        rows = _dialect.read(
            store, f"SELECT {column} FROM delivery_log WHERE {condition} ORDER BY id DESC LIMIT 1"
        )
        return rows[0][0] if rows else None

    # Rows of messages dead-lettered without running (no start) have no lateness.
    return (
        newest("outcome"),
        newest("lateness_ms", "lateness_ms IS NOT NULL"),
        newest("error", "error IS NOT NULL"),
    )


def due_backlog(store: Store, *, now: float) -> int:
    """How many queued messages are already due (waiting for a consumer) at ``now``."""
    ((count,),) = _dialect.read(
        store, "SELECT COUNT(*) FROM queue WHERE state = 'queued' AND deliver_at <= ?", (now,)
    )
    return int(count)
