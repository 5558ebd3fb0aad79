"""The delivery log: one row per delivery attempt (scheduled, started, finished, outcome, error).

Written by the scheduler in the same transaction as the ack or failure it records, kept for
a configurable period, and read back as a pandas DataFrame for status and charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import InvalidValueError

if TYPE_CHECKING:
    import sqlite3

    import pandas

    from ..store._sqlite import Store

__all__ = [
    "LOG_COLUMNS",
    "LogEntry",
    "prune_delivery_log",
    "read_delivery_log",
    "table_exists",
    "utc",
    "write_log_entry",
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
_TIME_COLUMNS = ("scheduled_at", "started_at", "finished_at")


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


def table_exists(store: Store, name: str) -> bool:
    return bool(
        store.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    )


def write_log_entry(conn: sqlite3.Connection, entry: LogEntry) -> None:
    """Insert one row in the caller's open transaction."""
    conn.execute(
        "INSERT INTO delivery_log (message_id, topic, schedule, attempt, scheduled_at, "
        "started_at, finished_at, outcome, error, lateness_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.message_id,
            entry.topic,
            entry.schedule,
            entry.attempt,
            entry.scheduled_at,
            entry.started_at,
            entry.finished_at,
            entry.outcome,
            entry.error,
            entry.lateness_ms,
        ),
    )


def prune_delivery_log(conn: sqlite3.Connection, *, older_than: float) -> int:
    """Delete rows that finished before ``older_than`` (Unix seconds); returns how many."""
    return conn.execute("DELETE FROM delivery_log WHERE finished_at < ?", (older_than,)).rowcount


def _since_as_unix(since: Any, now: float) -> float:
    """``since`` as Unix seconds; a timedelta means that long *before* ``now``."""
    if isinstance(since, timedelta):
        return now - since.total_seconds()
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise InvalidValueError("since must be an aware datetime (e.g. with tzinfo=UTC)")
        return since.timestamp()
    if isinstance(since, bool) or not isinstance(since, int | float) or not math.isfinite(since):
        raise InvalidValueError(
            f"since must be an aware datetime, a timedelta (that long ago) or Unix seconds, "
            f"got {since!r}"
        )
    return float(since)


def _check_limit(limit: Any) -> int:
    if limit is None:
        return -1
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


def read_delivery_log(
    store: Store | None = None,
    *,
    since: datetime | timedelta | float | None = None,
    schedule: str | None = None,
    topic: str | None = None,
    limit: int | None = None,
) -> pandas.DataFrame:
    """Delivery attempts, oldest first, as a DataFrame (times tz-aware UTC, lateness in ms).

    ``since`` is an aware datetime, a timedelta (that long ago) or Unix seconds; ``limit``
    keeps the newest rows. Without ``store`` the default store (``AIRQ_NB_DB``) is read.
    """
    import pandas

    if store is None:
        from ..store._sqlite import open_store

        with open_store() as opened:
            return read_delivery_log(
                opened, since=since, schedule=schedule, topic=topic, limit=limit
            )
    sql_limit = _check_limit(limit)
    since_at = None if since is None else _since_as_unix(since, store.now())
    rows: list[tuple[Any, ...]] = []
    if table_exists(store, "delivery_log"):
        where: list[str] = []
        params: list[Any] = []
        if since_at is not None:
            where.append("finished_at >= ?")
            params.append(since_at)
        if schedule is not None:
            where.append("schedule = ?")
            params.append(schedule)
        if topic is not None:
            where.append("topic = ?")
            params.append(topic)
        sql = f"SELECT {', '.join(LOG_COLUMNS)} FROM delivery_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(sql_limit)
        rows = store.execute(sql, params)[::-1]
    frame = pandas.DataFrame.from_records(rows, columns=list(LOG_COLUMNS))
    for column in _TIME_COLUMNS:
        frame[column] = pandas.to_datetime(frame[column].astype("float64"), unit="s", utc=True)
    frame["lateness_ms"] = frame["lateness_ms"].astype("float64")
    frame["attempt"] = frame["attempt"].astype("int64")
    frame["message_id"] = frame["message_id"].astype("int64")
    return frame


def utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)
