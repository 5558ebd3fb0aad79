"""The ``readings`` table and its change log: hourly PM2.5/PM10 per (source, location).

Store verbs the collector calls (it writes no SQL itself). Every row keeps its provenance:
the source, the location, the site or point it stands for, whether it was ``measured`` or
``modelled``, and when its current value was fetched. Upserting compares with what is
stored: a new hour is inserted, a changed value is updated and logged in
``reading_revisions`` (old, new, noticed at), and an unchanged hour is not written at all,
so a run that finds nothing new commits nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import ConfigurationError

if TYPE_CHECKING:
    import pandas

    from ._sqlite import Store

__all__ = [
    "DEFAULT_RETENTION",
    "KINDS",
    "Upserted",
    "delete_older_than",
    "first_missing_hour",
    "newest_fetch_time",
    "newest_reading_time",
    "read_readings",
    "read_revisions",
    "readings_summary",
    "upsert_readings",
    "utc_datetime",
]

HOUR = 3600
#: How long readings are kept; older ones are deleted by each collection run.
DEFAULT_RETENTION = timedelta(days=7)
#: What a reading can be: a measurement at a monitoring site, or a model's estimate.
KINDS = ("measured", "modelled")
#: The pollutants a reading carries, as column names.
POLLUTANTS = ("pm2_5", "pm10")
COLUMNS = ("location", "source", "kind", "pm2_5", "pm10", "fetched_at")


class _Reading(Protocol):
    """What upsert_readings needs of a reading (``airq_nb.Reading`` has it)."""

    @property
    def time(self) -> int: ...
    @property
    def pm2_5(self) -> float | None: ...
    @property
    def pm10(self) -> float | None: ...
    @property
    def aqi(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Upserted:
    """What an upsert wrote: hours inserted, hours whose values changed, values logged."""

    inserted: int
    revised: int
    revisions: int

    @property
    def written(self) -> int:
        """Hours written (new or changed); 0 means the batch changed nothing."""
        return self.inserted + self.revised


# -- schema -----------------------------------------------------------------------------------


# -- the collector's verbs --------------------------------------------------------------------


def newest_reading_time(store: Store, *, source: str, location: str) -> int | None:
    """Unix time of the newest stored hour for (``source``, ``location``), or None."""
    ((newest,),) = store.execute(
        "SELECT MAX(time) FROM readings WHERE source = ? AND location = ?", (source, location)
    )
    return None if newest is None else int(newest)


def newest_fetch_time(store: Store, *, source: str, location: str) -> float | None:
    """When a value of (``source``, ``location``) was last fetched and written, or None."""
    ((newest,),) = store.execute(
        "SELECT MAX(fetched_at) FROM readings WHERE source = ? AND location = ?",
        (source, location),
    )
    return newest


def first_missing_hour(
    store: Store, *, source: str, location: str, start: int, end: int
) -> int | None:
    """The earliest whole hour from ``start`` to ``end`` with no reading that has a value
    (missing, or both pm2_5 and pm10 null) for (``source``, ``location``), or None."""
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


def _same(old: float | None, new: float | None) -> bool:
    if old is None or new is None:
        return old is new
    return math.isclose(old, new, rel_tol=0.0, abs_tol=1e-9)


def upsert_readings(
    store: Store,
    readings: Iterable[_Reading],
    *,
    source: str,
    location: str,
    fetched_at: float,
    kind: str = "modelled",
    point: str | None = None,
) -> Upserted:
    """Insert new hours, update and log changed ones, leave unchanged ones untouched.

    A new hour with neither PM2.5 nor PM10 is not inserted.

    ``kind`` is ``"measured"`` or ``"modelled"``; ``point`` the site code or "lat,lon" the
    values stand for. Runs in the caller's transaction when there is one, so a batch lands
    whole or not at all. A changed value is logged in ``reading_revisions`` with the old and
    the new value and ``fetched_at`` as the time it was noticed.
    """
    if kind not in KINDS:
        raise ConfigurationError(f"kind must be one of {KINDS}, got {kind!r}")
    batch = {r.time: r for r in readings}
    inserted = revised = revisions = 0
    if not batch:
        return Upserted(0, 0, 0)
    with store.transaction() as conn:
        stored = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT time, pm2_5, pm10, aqi FROM readings "
                "WHERE source = ? AND location = ? AND time BETWEEN ? AND ?",
                (source, location, min(batch), max(batch)),
            )
        }
        new_rows, changed_rows, log = [], [], []
        for when, reading in sorted(batch.items()):
            values = (reading.pm2_5, reading.pm10, reading.aqi)
            old = stored.get(when)
            if old is None:
                # An hour without any value is not stored; a stored one may become empty
                # (a value withdrawn at ratification), which is a change like any other.
                if values[0] is not None or values[1] is not None:
                    new_rows.append((source, location, when, *values, fetched_at, kind, point))
                continue
            changed = [
                (name, before, after)
                for name, before, after in zip(POLLUTANTS, old[:2], values[:2], strict=True)
                if not _same(before, after)
            ]
            if not changed and old[2] == values[2]:
                continue
            changed_rows.append((*values, fetched_at, kind, point, source, location, when))
            log.extend(
                (when, source, location, name, before, after, fetched_at)
                for name, before, after in changed
            )
        if new_rows:
            conn.executemany(
                "INSERT INTO readings "
                "(source, location, time, pm2_5, pm10, aqi, fetched_at, kind, point) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )
        if changed_rows:
            conn.executemany(
                "UPDATE readings SET pm2_5 = ?, pm10 = ?, aqi = ?, fetched_at = ?, kind = ?, "
                "point = ? WHERE source = ? AND location = ? AND time = ?",
                changed_rows,
            )
        if log:
            conn.executemany(
                "INSERT INTO reading_revisions "
                "(time, source, location, pollutant, old, new, noticed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                log,
            )
        inserted, revised, revisions = len(new_rows), len(changed_rows), len(log)
    return Upserted(inserted, revised, revisions)


def delete_older_than(store: Store, cutoff: float) -> int:
    """Delete readings (and their logged revisions) for hours at or before ``cutoff``."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM reading_revisions WHERE time <= ?", (cutoff,))
        return conn.execute("DELETE FROM readings WHERE time <= ?", (cutoff,)).rowcount


def readings_summary(store: Store) -> list[dict[str, Any]]:
    """Per (source, location): how many hours are stored, the oldest and the newest (UTC)."""
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


# -- reading them back ------------------------------------------------------------------------


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


def _filters(
    store: Store,
    since: datetime | timedelta | float | str | None,
    location: Any,
    source: str | Sequence[str] | None,
) -> tuple[str, list[Any]]:
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
    for column, wanted in (("location", location), ("source", source)):
        if wanted is None:
            continue
        names = [_name(wanted)] if isinstance(wanted, str) or hasattr(wanted, "name") else []
        if not names:
            names = [_name(w) for w in wanted]
        # An empty list selects nothing (and "IN ()" is not SQL).
        where.append(f"{column} IN ({','.join('?' * len(names))})" if names else "0")
        params.extend(names)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _name(value: Any) -> str:
    # A Location (anything with a name) or its name.
    return value if isinstance(value, str) else str(value.name)


def _zone(tz: Any) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(tz, str):
        return tz
    if tz.upper() in ("UTC", "GMT", "Z"):
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"tz={tz!r} is not a time zone; use 'UTC' or a name such as 'Europe/London'"
        ) from None


def read_readings(
    store: Store | None = None,
    *,
    since: datetime | timedelta | float | str | None = None,
    location: Any = None,
    source: str | Sequence[str] | None = None,
    tz: Any = "UTC",
) -> pandas.DataFrame:
    """Stored readings as a DataFrame indexed by hour (``time``, start of the hour, in ``tz``).

    Oldest first. Columns: ``location``, ``source``, ``kind`` ("measured" or "modelled"),
    ``pm2_5`` and ``pm10`` (µg/m³, NaN when missing), ``fetched_at`` (when the value was
    fetched, in ``tz``), and ``aqi`` (1–5) only when some row has one. ``since`` is an aware
    datetime, an ISO string, Unix seconds, or a timedelta back from the store's clock;
    ``location`` and ``source`` a name, a :class:`~airq_nb.Location`, or several of them;
    ``tz`` "UTC" (default), a zone name such as "Europe/London", or a tzinfo.
    """
    import pandas as pd

    from ._sqlite import open_store

    zone = _zone(tz)
    if store is None:
        with open_store() as opened:
            return read_readings(opened, since=since, location=location, source=source, tz=tz)
    where, params = _filters(store, since, location, source)
    rows = store.execute(
        "SELECT time, location, source, kind, pm2_5, pm10, fetched_at, aqi FROM readings"
        + where
        + " ORDER BY time, location, source",
        params,
    )
    frame = pd.DataFrame(rows, columns=["time", *COLUMNS, "aqi"])
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), unit="s", utc=True)
    frame["fetched_at"] = pd.to_datetime(frame["fetched_at"].astype("float64"), unit="s", utc=True)
    if zone is not UTC:
        frame["time"] = frame["time"].dt.tz_convert(zone)
        frame["fetched_at"] = frame["fetched_at"].dt.tz_convert(zone)
    for column in POLLUTANTS:
        frame[column] = frame[column].astype("float64")
    for column in ("location", "source", "kind"):
        frame[column] = frame[column].astype("object")
    if frame["aqi"].notna().any():
        frame["aqi"] = frame["aqi"].astype("Int64")
    else:
        frame = frame.drop(columns="aqi")
    return frame.set_index("time")


def read_revisions(
    store: Store | None = None,
    *,
    since: datetime | timedelta | float | str | None = None,
    location: Any = None,
    source: str | Sequence[str] | None = None,
    tz: Any = "UTC",
) -> pandas.DataFrame:
    """The change log: each stored value a later fetch changed, oldest hour first.

    Columns: ``time`` (the hour, in ``tz``), ``location``, ``source``, ``pollutant``
    ("pm2_5" or "pm10"), ``old`` and ``new`` (µg/m³, NaN for a value that was missing) and
    ``noticed_at`` (when the run that saw the change fetched it). Filters as
    :func:`read_readings`; ``since`` applies to the hour.
    """
    import pandas as pd

    from ._sqlite import open_store

    zone = _zone(tz)
    if store is None:
        with open_store() as opened:
            return read_revisions(opened, since=since, location=location, source=source, tz=tz)
    where, params = _filters(store, since, location, source)
    columns = ["time", "location", "source", "pollutant", "old", "new", "noticed_at"]
    rows = store.execute(
        f"SELECT {', '.join(columns)} FROM reading_revisions"
        + where
        + " ORDER BY time, location, source, noticed_at, id",
        params,
    )
    frame = pd.DataFrame(rows, columns=columns)
    for column, kind in (("time", "int64"), ("noticed_at", "float64")):
        frame[column] = pd.to_datetime(frame[column].astype(kind), unit="s", utc=True)
        if zone is not UTC:
            frame[column] = frame[column].dt.tz_convert(zone)
    for column in ("old", "new"):
        frame[column] = frame[column].astype("float64")
    for column in ("location", "source", "pollutant"):
        frame[column] = frame[column].astype("object")
    return frame
