"""Reading the delivery log back: one row per delivery attempt, as a pandas DataFrame.

The rows are written by the dispatcher in the same transaction as the ack or failure they
record; the table and its SQL belong to :mod:`airq_nb.store.delivery_log`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import InvalidValueError
from ..store.delivery_log import LOG_COLUMNS, LogEntry, read_log_rows

if TYPE_CHECKING:
    import pandas

    from ..store import Store

__all__ = ["LOG_COLUMNS", "LogEntry", "read_delivery_log", "utc"]

_TIME_COLUMNS = ("scheduled_at", "started_at", "finished_at")


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
        from ..store import open_store

        with open_store() as opened:
            return read_delivery_log(
                opened, since=since, schedule=schedule, topic=topic, limit=limit
            )
    sql_limit = _check_limit(limit)
    since_at = None if since is None else _since_as_unix(since, store.now())
    rows = read_log_rows(store, since=since_at, schedule=schedule, topic=topic, limit=sql_limit)
    frame = pandas.DataFrame.from_records(rows, columns=list(LOG_COLUMNS))
    for column in _TIME_COLUMNS:
        frame[column] = pandas.to_datetime(frame[column].astype("float64"), unit="s", utc=True)
    frame["lateness_ms"] = frame["lateness_ms"].astype("float64")
    frame["attempt"] = frame["attempt"].astype("int64")
    frame["message_id"] = frame["message_id"].astype("int64")
    return frame


def utc(ts: float | None) -> datetime | None:
    """Unix seconds as an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)
