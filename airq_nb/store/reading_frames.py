"""Reading the ``readings`` table and its change log back as pandas DataFrames.

The read side of :mod:`airq_nb.store.readings` (which writes them), apart so each module
has one job: :func:`read_readings` (the readings contract) and :func:`read_revisions`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from . import _dialect

if TYPE_CHECKING:
    import pandas

    from ._backend import Store

__all__ = ["COLUMNS", "POLLUTANTS", "read_readings", "read_revisions"]

#: The pollutants a reading carries, as column names.
POLLUTANTS = ("pm2_5", "pm10")
#: ``read_readings``' columns, the same for every source (``aqi`` follows when some row has one).
COLUMNS = (
    "location",
    "source",
    "kind",
    "pm2_5",
    "pm10",
    "fetched_at",
    "point",
    "site_name",
    "latitude",
    "longitude",
    "provenance",
)


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
        where.append(f"{column} IN ({','.join('?' * len(names))})" if names else "1 = 0")
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

    Oldest first. One schema for every source (docs/sources.md): ``location``, ``source``,
    ``kind`` ("measured" or "modelled"), ``pm2_5`` and ``pm10`` (µg/m³, NaN when missing),
    ``fetched_at`` (when the value was fetched, in ``tz``), ``point`` (the site code, the
    OpenAQ location id, or "lat,lon"), ``site_name``, ``latitude`` and ``longitude`` (of
    the site or point; None/NaN for rows stored before they were known), ``provenance`` (a
    dict of the source's own details, e.g. OpenAQ's provider, sensor ids and coverage, or
    None), and ``aqi`` (1–5) only when some row has one. ``since`` is an aware
    datetime, an ISO string, Unix seconds, or a timedelta back from the store's clock;
    ``location`` and ``source`` a name, a :class:`~airq_nb.Location`, or several of them;
    ``tz`` "UTC" (default), a zone name such as "Europe/London", or a tzinfo.
    """
    import pandas as pd

    from ._open import open_store

    zone = _zone(tz)
    if store is None:
        with open_store() as opened:
            return read_readings(opened, since=since, location=location, source=source, tz=tz)
    where, params = _filters(store, since, location, source)
    rows = _dialect.read(
        store,
        "SELECT time, location, source, kind, pm2_5, pm10, fetched_at, point, site_name, "
        "latitude, longitude, provenance, aqi FROM readings"
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
    for column in (*POLLUTANTS, "latitude", "longitude"):
        frame[column] = frame[column].astype("float64")
    for column in ("location", "source", "kind", "point", "site_name"):
        frame[column] = frame[column].astype("object")
    frame["provenance"] = pd.Series(
        [json.loads(text) if isinstance(text, str) else None for text in frame["provenance"]],
        index=frame.index,
        dtype="object",
    )
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

    from ._open import open_store

    zone = _zone(tz)
    if store is None:
        with open_store() as opened:
            return read_revisions(opened, since=since, location=location, source=source, tz=tz)
    where, params = _filters(store, since, location, source)
    columns = ["time", "location", "source", "pollutant", "old", "new", "noticed_at"]
    rows = _dialect.read(
        store,
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
