"""The ``readings`` table: hourly PM2.5/PM10 per source and location, upserted, kept 7 days."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from ._sources import HOUR, Location, Reading

if TYPE_CHECKING:
    import pandas

    from ..store._sqlite import Store

__all__ = [
    "DEFAULT_RETENTION",
    "delete_older_than",
    "first_missing_hour",
    "newest_reading_time",
    "read_readings",
    "readings_summary",
    "upsert_readings",
    "utc_datetime",
]

#: How long readings are kept; older ones are deleted by each collection run.
DEFAULT_RETENTION = timedelta(days=7)
COLUMNS = ("source", "location", "pm2_5", "pm10", "aqi", "fetched_at")


def _has_table(store: Store) -> bool:
    return bool(
        store.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'")
    )


def newest_reading_time(store: Store, *, source: str, location: str) -> int | None:
    """Unix time of the newest stored hour for (``source``, ``location``), or None."""
    if not _has_table(store):
        return None
    ((newest,),) = store.execute(
        "SELECT MAX(time) FROM readings WHERE source = ? AND location = ?", (source, location)
    )
    return None if newest is None else int(newest)


def first_missing_hour(
    store: Store, *, source: str, location: str, start: int, end: int
) -> int | None:
    """The earliest whole hour from ``start`` to ``end`` with no reading that has a value
    (missing, or both pm2_5 and pm10 null) for (``source``, ``location``), or None."""
    if not _has_table(store):
        return start if start <= end else None
    rows = store.execute(
        "SELECT time FROM readings WHERE source = ? AND location = ? AND time BETWEEN ? AND ? "
        "AND (pm2_5 IS NOT NULL OR pm10 IS NOT NULL) ORDER BY time",
        (source, location, start, end),
    )
    expected = start
    for (when,) in rows:
        if when > expected:
            return expected
        if when == expected:
            expected += HOUR
    return expected if expected <= end else None


def upsert_readings(
    store: Store,
    readings: Iterable[Reading],
    *,
    source: str,
    location: Location | str,
    fetched_at: float,
) -> int:
    """Insert or update ``readings`` (one row per hour, however often fetched); returns how many.

    Runs in the caller's transaction when there is one, so a batch lands whole or not at all.
    """
    name = location.name if isinstance(location, Location) else location
    rows = [(source, name, r.time, r.pm2_5, r.pm10, r.aqi, fetched_at) for r in readings]
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO readings (source, location, time, pm2_5, pm10, aqi, fetched_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, location, time) DO UPDATE SET "
            "pm2_5 = excluded.pm2_5, pm10 = excluded.pm10, aqi = excluded.aqi, "
            "fetched_at = excluded.fetched_at",
            rows,
        )
    return len(rows)


def delete_older_than(store: Store, cutoff: float) -> int:
    """Delete readings for hours at or before ``cutoff`` (Unix seconds); returns how many."""
    with store.transaction() as conn:
        return conn.execute("DELETE FROM readings WHERE time <= ?", (cutoff,)).rowcount


def readings_summary(store: Store) -> list[dict[str, Any]]:
    """Per (source, location): how many hours are stored, the oldest and the newest (UTC)."""
    if not _has_table(store):
        return []
    rows = store.execute(
        "SELECT source, location, COUNT(*), MIN(time), MAX(time), MAX(fetched_at) "
        "FROM readings GROUP BY source, location ORDER BY location, source"
    )
    return [
        {
            "source": source,
            "location": location,
            "hours": count,
            "oldest": utc_datetime(oldest),
            "newest": utc_datetime(newest),
            "last_fetched": utc_datetime(fetched),
        }
        for source, location, count, oldest, newest, fetched in rows
    ]


def utc_datetime(when: float | None) -> datetime | None:
    """Unix seconds as an aware UTC datetime (None stays None), as results and summaries show."""
    return None if when is None else datetime.fromtimestamp(when, UTC)


def _to_unix(when: datetime | float | int | str) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ConfigurationError(
                f"since={when!r} has no time zone; pass an aware datetime, e.g. with tzinfo=UTC"
            )
        return when.timestamp()
    if isinstance(when, str):
        try:
            parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                f"since={when!r} is not an ISO time; use e.g. '2024-05-01T00:00Z'"
            ) from None
        return _to_unix(parsed)
    return float(when)


def read_readings(
    store: Store | None = None,
    *,
    since: datetime | timedelta | float | str | None = None,
    location: Location | str | Sequence[str] | None = None,
    source: str | None = None,
) -> pandas.DataFrame:
    """Stored readings as a DataFrame indexed by UTC hour ("time"), oldest first.

    Columns: source, location, pm2_5, pm10 (µg/m³), aqi (1–5 where the source gives one),
    fetched_at (UTC). ``since`` is an aware datetime, ISO string, Unix time, or a timedelta
    back from the store's clock; ``location`` a name, a :class:`Location` or several names.
    """
    import pandas as pd

    from ..store._sqlite import open_store

    if store is None:
        with open_store() as opened:
            return read_readings(opened, since=since, location=location, source=source)
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        cutoff = (
            store.clock.now() - since.total_seconds()
            if isinstance(since, timedelta)
            else _to_unix(since)
        )
        where.append("time >= ?")
        params.append(cutoff)
    if location is not None:
        names = (
            [location.name]
            if isinstance(location, Location)
            else [location]
            if isinstance(location, str)
            else list(location)
        )
        # An empty list selects nothing (and "IN ()" is not SQL).
        where.append(f"location IN ({','.join('?' * len(names))})" if names else "0")
        params.extend(names)
    if source is not None:
        where.append("source = ?")
        params.append(source)
    rows: list[tuple[Any, ...]] = []
    if _has_table(store):
        sql = "SELECT time, source, location, pm2_5, pm10, aqi, fetched_at FROM readings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = store.execute(sql + " ORDER BY time, location, source", params)
    frame = pd.DataFrame(rows, columns=["time", *COLUMNS])
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="s", utc=True)
    frame["fetched_at"] = pd.to_datetime(frame["fetched_at"].astype("float64"), unit="s", utc=True)
    for column in ("pm2_5", "pm10"):
        frame[column] = frame[column].astype("float64")
    frame["aqi"] = frame["aqi"].astype("Int64")
    frame["source"] = frame["source"].astype("object")
    frame["location"] = frame["location"].astype("object")
    return frame.set_index("time")
