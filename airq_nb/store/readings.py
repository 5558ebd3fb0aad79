"""The ``readings`` table and its change log: hourly PM2.5/PM10 per (source, location).

Store verbs the collector calls (it writes no SQL itself). Every row keeps its provenance:
the source, the location, the site or point it stands for, whether it was ``measured`` or
``modelled``, and when its current value was fetched. Upserting compares with what is
stored: a new hour is inserted, a changed value is updated and logged in
``reading_revisions`` (old, new, noticed at), and an unchanged hour is not written at all,
so a run that finds nothing new commits nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import ConfigurationError
from . import _dialect
from .reading_frames import POLLUTANTS, read_readings, read_revisions

if TYPE_CHECKING:
    from ._backend import Store

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
    ((newest,),) = _dialect.read(
        store,
        "SELECT MAX(time) FROM readings WHERE source = ? AND location = ?",
        (source, location),
    )
    return None if newest is None else int(newest)


def newest_fetch_time(store: Store, *, source: str, location: str) -> float | None:
    """When a value of (``source``, ``location``) was last fetched and written, or None."""
    ((newest,),) = _dialect.read(
        store,
        "SELECT MAX(fetched_at) FROM readings WHERE source = ? AND location = ?",
        (source, location),
    )
    return newest


def first_missing_hour(
    store: Store, *, source: str, location: str, start: int, end: int
) -> int | None:
    """The earliest whole hour from ``start`` to ``end`` with no reading that has a value
    (missing, or both pm2_5 and pm10 null) for (``source``, ``location``), or None."""
    rows = _dialect.read(
        store,
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
    site_name: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> Upserted:
    """Insert new hours, update and log changed ones, leave unchanged ones untouched.

    A new hour with neither PM2.5 nor PM10 is not inserted.

    ``kind`` is ``"measured"`` or ``"modelled"``; ``point`` the site code, OpenAQ location
    or "lat,lon" the values stand for, ``site_name``, ``latitude`` and ``longitude`` that
    site's or point's; ``details`` the source's own provenance (JSON), merged with each
    reading's ``details`` (per hour, e.g. OpenAQ's coverage) into the ``provenance`` column.
    Rows of the series stored before the site was known (``site_name`` NULL) get it too.
    Runs in the caller's transaction when there is one, so a batch lands whole or not at
    all. A changed value is logged in ``reading_revisions`` with the old and the new value
    and ``fetched_at`` as the time it was noticed.
    """
    if kind not in KINDS:
        raise ConfigurationError(f"kind must be one of {KINDS}, got {kind!r}")
    batch = {r.time: r for r in readings}
    inserted = revised = revisions = 0
    if not batch:
        return Upserted(0, 0, 0)
    with _dialect.transaction(store) as conn:
        _dialect.serialize(store, conn, f"airq_nb readings {source} {location}")
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
            where = (point, site_name, latitude, longitude, _provenance(details, reading))
            old = stored.get(when)
            if old is None:
                # An hour without any value is not stored; a stored one may become empty
                # (a value withdrawn at ratification), which is a change like any other.
                if values[0] is not None or values[1] is not None:
                    new_rows.append((source, location, when, *values, fetched_at, kind, *where))
                continue
            changed = [
                (name, before, after)
                for name, before, after in zip(POLLUTANTS, old[:2], values[:2], strict=True)
                if not _same(before, after)
            ]
            if not changed and old[2] == values[2]:
                continue
            changed_rows.append((*values, fetched_at, kind, *where, source, location, when))
            log.extend(
                (when, source, location, name, before, after, fetched_at)
                for name, before, after in changed
            )
        if new_rows:
            conn.executemany(
                "INSERT INTO readings (source, location, time, pm2_5, pm10, aqi, fetched_at, "
                "kind, point, site_name, latitude, longitude, provenance) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )
        if changed_rows:
            conn.executemany(
                "UPDATE readings SET pm2_5 = ?, pm10 = ?, aqi = ?, fetched_at = ?, kind = ?, "
                "point = ?, site_name = ?, latitude = ?, longitude = ?, provenance = ? "
                "WHERE source = ? AND location = ? AND time = ?",
                changed_rows,
            )
        if site_name is not None:
            # Rows from before schema step 10 (or a run that did not know the site yet).
            conn.execute(
                "UPDATE readings SET site_name = ?, latitude = ?, longitude = ? "
                "WHERE source = ? AND location = ? AND site_name IS NULL",
                (site_name, latitude, longitude, source, location),
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


def _provenance(details: Mapping[str, Any] | None, reading: _Reading) -> str | None:
    """The provenance column: the series' details and the reading's own, as JSON."""
    merged = {**(details or {}), **(getattr(reading, "details", None) or {})}
    return json.dumps(merged, sort_keys=True, separators=(",", ":")) if merged else None


def delete_older_than(store: Store, cutoff: float) -> int:
    """Delete readings (and their logged revisions) for hours at or before ``cutoff``."""
    with _dialect.transaction(store) as conn:
        conn.execute("DELETE FROM reading_revisions WHERE time <= ?", (cutoff,))
        return conn.execute("DELETE FROM readings WHERE time <= ?", (cutoff,)).rowcount


def readings_summary(store: Store) -> list[dict[str, Any]]:
    """Per (source, location): how many hours are stored, the oldest and the newest (UTC)."""
    rows = _dialect.read(
        store,
        "SELECT source, location, COUNT(*), MIN(time), MAX(time), MAX(fetched_at) "
        "FROM readings GROUP BY source, location ORDER BY location, source",
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
