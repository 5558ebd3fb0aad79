"""24-hour means with their data capture: calendar days and rolling 24 hours, from hourly values.

One implementation for :func:`daily_means` (analysts, the CLI) and the charts. A mean counts
the hours it should cover, not the rows that happen to exist: an hour with no row and an
hour whose value is NULL are both missing. A mean is valid when its capture (hours present
÷ hours expected) is at least ``min_capture`` per cent, 75 by default — 18 of 24 hours, the
UK and EU rule, and openair's ``timeAverage(data.thresh = 75)`` test
``missing / length <= 1 - data.thresh``. A calendar day in a zone with clock changes has 23
or 25 hours; its expected hours are its real length, so it needs 18 of 23 or 19 of 25
(see docs/means.md). pandas is imported only when a mean is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    import pandas

    from .store import Store

__all__ = [
    "MEAN_KINDS",
    "MIN_CAPTURE",
    "daily_means",
    "hourly_capture",
    "hours_needed",
    "place_zone",
]

#: The default data-capture rule, in per cent of the hours a mean should cover.
MIN_CAPTURE = 75.0
#: ``calendar``: midnight to midnight in a zone; ``rolling``: an hour and the 23 before it.
MEAN_KINDS = ("calendar", "rolling")
_POLLUTANTS = ("pm2_5", "pm10")
_HOUR_NS = 3_600_000_000_000
#: Places whose own zone is known by name; others take their source's zone, else UTC.
_LONDON = "Europe/London"


def place_zone(location: str, readings: pandas.DataFrame | None = None) -> str:
    """The zone a place's calendar days are counted in: the zone its source names for it
    (an OpenAQ location's ``timezone``, kept in the readings' ``provenance``), else
    Europe/London for London and LAQN sites (``laqn:KF1``), else UTC (pass ``tz=`` to
    :func:`daily_means` to choose one)."""
    named = _provenance_zone(readings) if readings is not None else None
    if named:
        return named
    name = location.strip().lower()
    return _LONDON if name == "london" or name.startswith("laqn:") else "UTC"


def _provenance_zone(readings: pandas.DataFrame) -> str | None:
    """The newest ``timezone`` a place's readings' provenance names, if any."""
    if "provenance" not in readings:
        return None
    from zoneinfo import ZoneInfo

    for details in reversed(readings["provenance"].tolist()):
        zone = details.get("timezone") if isinstance(details, dict) else None
        if isinstance(zone, str) and zone:
            try:
                ZoneInfo(zone)
            except (ValueError, KeyError):  # not a zone this machine knows: UTC days
                return None
            return zone
    return None


def hours_needed(expected: int, min_capture: float = MIN_CAPTURE) -> int:
    """How many of ``expected`` hours a valid mean needs: 18 of 24, 18 of 23, 19 of 25."""
    check_capture(min_capture)
    # The small tolerance keeps 75 % of 24 at exactly 18, whatever the float rounding.
    return max(1, math.ceil(min_capture / 100 * expected - 1e-9))


def check_capture(min_capture: float) -> float:
    """``min_capture`` if it is a percentage (0–100), else a ConfigurationError saying so."""
    if (
        isinstance(min_capture, bool)
        or not isinstance(min_capture, int | float)
        or not 0 <= min_capture <= 100
    ):
        raise ConfigurationError(
            f"min_capture={min_capture!r}: give a percentage from 0 to 100, e.g. 75 "
            "(18 of 24 hours)"
        )
    return float(min_capture)


def _check_kind(mean: str) -> str:
    if mean not in MEAN_KINDS:
        raise ConfigurationError(f"mean={mean!r}: use 'calendar' or 'rolling'")
    return mean


def hourly_capture(
    values: pandas.Series,
    *,
    mean: str = "rolling",
    tz: str = "UTC",
    min_capture: float = MIN_CAPTURE,
    until: pandas.Timestamp | None = None,
) -> pandas.DataFrame:
    """The 24-hour mean each hour of ``values`` belongs to, with its capture.

    ``values`` is indexed by consecutive whole UTC hours (NaN where missing; an hour before
    the index is unknown, so missing). ``rolling``: the window of the hour and the 23 before
    it. ``calendar``: the hour's day, midnight to midnight in ``tz``, the same for each of
    its hours. Columns: ``mean`` (NaN unless valid), ``mean_of_present`` (the mean of the
    hours present, whatever the capture), ``hours_present``, ``hours_expected``,
    ``capture`` (%), ``valid``, ``partial`` (the day runs past ``until``, the newest hour
    there can be: it is not over yet) and ``start``/``end`` (UTC, end exclusive).
    """
    import numpy as np
    import pandas as pd

    _check_kind(mean)
    threshold = check_capture(min_capture)
    index = pd.DatetimeIndex(values.index)
    numbers = pd.Series(values.to_numpy(dtype="float64"), index=index)
    present_hour = numbers.notna()
    if mean == "rolling":
        count = present_hour.astype("int64").rolling(24, min_periods=1).sum().astype("int64")
        of_present = numbers.rolling(24, min_periods=1).mean()
        expected = pd.Series(24, index=index, dtype="int64")
        start = index - pd.Timedelta(hours=23)
        end = index + pd.Timedelta(hours=1)
        partial = np.zeros(len(index), dtype=bool)
    else:
        walls = index.tz_convert(tz).tz_localize(None).normalize()
        grouped = numbers.groupby(walls)
        count = grouped.transform("count").astype("int64")
        of_present = grouped.transform("mean")
        days = pd.DatetimeIndex(walls.unique())
        first, after = _day_bounds(days, tz)
        hours = (_ceil_hours(after) - _ceil_hours(first)).astype("int64")
        position = days.get_indexer(walls)
        expected = pd.Series(hours[position], index=index, dtype="int64")
        start = pd.DatetimeIndex(first[position])
        end = pd.DatetimeIndex(after[position])
        newest = index.max() if until is None else pd.Timestamp(until)
        partial = np.asarray(end > newest + pd.Timedelta(hours=1))
    needed = np.maximum(1, np.ceil(threshold / 100 * expected.to_numpy() - 1e-9))
    valid = count.to_numpy() >= needed
    return pd.DataFrame(
        {
            "mean": of_present.where(valid),
            "mean_of_present": of_present,
            "hours_present": count,
            "hours_expected": expected,
            "capture": 100 * count / expected,
            "valid": valid,
            "partial": partial,
            "start": start,
            "end": end,
        },
        index=index,
    )


def _day_bounds(days: Any, tz: str) -> tuple[Any, Any]:
    """Each local day's first and next day's first instant (UTC), from naive wall midnights."""
    import numpy as np
    import pandas as pd

    def instants(walls: Any) -> Any:
        # A midnight a clock change skips starts the day at the first instant after it; an
        # ambiguous one at its first occurrence, so the day holds every hour of its date.
        first_pass = np.ones(len(walls), dtype=bool)
        local = walls.tz_localize(tz, ambiguous=first_pass, nonexistent="shift_forward")
        return local.tz_convert("UTC")

    return instants(days), instants(days + pd.Timedelta(days=1))


def _ceil_hours(moments: Any) -> Any:
    """How many whole UTC hours begin before each instant (so a day's hour count is exact)."""
    import numpy as np

    nanos = np.asarray(moments.as_unit("ns").asi8, dtype="int64")
    return -(-nanos // _HOUR_NS)


def _to_utc(when: datetime | float | str | None) -> pandas.Timestamp | None:
    import pandas as pd

    if when is None:
        return None
    if isinstance(when, int | float) and not isinstance(when, bool):
        return pd.Timestamp(when, unit="s", tz="UTC")
    try:
        stamp = pd.Timestamp(when)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{when!r} is not a time; use an aware datetime, an ISO string such as "
            "'2026-12-01T00:00Z', or Unix seconds"
        ) from None
    if stamp.tzinfo is None:
        raise ConfigurationError(
            f"{when!r} has no time zone; pass an aware time, e.g. '2026-12-01T00:00Z'"
        )
    return stamp.tz_convert("UTC")


def daily_means(
    data: Store | pandas.DataFrame,
    *,
    mean: str = "calendar",
    tz: str | None = None,
    since: datetime | timedelta | float | str | None = None,
    until: datetime | float | str | None = None,
    location: Any = None,
    source: str | Sequence[str] | None = None,
    pollutant: str | Sequence[str] | None = None,
    min_capture: float = MIN_CAPTURE,
) -> pandas.DataFrame:
    """24-hour means per place, source and pollutant, each with the hours it had and needed.

    ``data`` is a store (read with :func:`airq_nb.read_readings`) or a DataFrame shaped as
    that returns. ``mean="calendar"``: one row per day, midnight to midnight in ``tz``
    (``None``: each place's own zone, :func:`place_zone`). ``mean="rolling"``: one row per
    hour, the mean of that hour and the 23 before it. ``since``/``until`` bound the days or
    hours reported (default: the oldest reading to the store's clock, or to the newest
    reading of a DataFrame); every hour in between counts, row or no row.

    Columns: ``location``, ``source``, ``pollutant``, ``tz``, ``day`` (the local date; the
    local date of the last hour for rolling means), ``start``/``end`` (UTC, end exclusive),
    ``mean`` (µg/m³; NaN unless valid), ``mean_of_present``, ``hours_present``,
    ``hours_expected`` (24; a calendar day at a clock change 23 or 25), ``capture`` (%),
    ``valid`` (capture ≥ ``min_capture`` %) and ``partial`` (a day not over at ``until``).
    """
    import pandas as pd

    from .store.reading_frames import read_readings

    _check_kind(mean)
    check_capture(min_capture)
    zone = _zone_name(tz)
    pollutants = _pollutants(pollutant)
    newest = _to_utc(until)
    if isinstance(data, pd.DataFrame):
        if isinstance(since, timedelta):
            raise ConfigurationError(
                "since= as a timedelta needs a store's clock; give a time for a DataFrame"
            )
        frame, cutoff = data, _to_utc(since)
    else:
        now = pd.Timestamp(data.clock.now(), unit="s", tz="UTC")
        cutoff = now - since if isinstance(since, timedelta) else _to_utc(since)
        newest = now if newest is None else newest
        # A day (or a window) starting before ``since`` is read whole.
        read_from = None if cutoff is None else cutoff.floor("h") - pd.Timedelta(hours=26)
        frame = read_readings(data, since=read_from, location=location, source=source)
    frame = _select(frame, location=location, source=source)
    columns = [
        "location", "source", "pollutant", "tz", "day", "start", "end", "mean",
        "mean_of_present", "hours_present", "hours_expected", "capture", "valid", "partial",
    ]  # fmt: skip
    if frame.empty:
        return pd.DataFrame({name: [] for name in columns})
    times = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True)).floor("h")
    frame = frame.set_axis(times)
    first = times.min() if cutoff is None else cutoff.ceil("h")
    last = (times.max() if newest is None else newest).floor("h")
    parts = []
    for (place, origin), part in frame.groupby(["location", "source"], sort=True):
        place_tz = zone or place_zone(str(place), part)
        hours = _span(first, last, mean=mean, tz=place_tz)
        for name in pollutants:
            raw = pd.to_numeric(part[name], errors="coerce") if name in part else None
            values = (
                pd.Series(float("nan"), index=hours)
                if raw is None
                else raw.astype("float64").groupby(level=0).mean().reindex(hours)
            )
            stats = hourly_capture(values, mean=mean, tz=place_tz, min_capture=min_capture,
                                   until=last)  # fmt: skip
            if mean == "calendar":
                stats = stats.drop_duplicates("start")
            stats = stats[(stats["end"] > first) & (stats.index <= last)]
            if mean == "rolling":
                stats = stats[stats.index >= first]
            stats = stats.assign(
                location=str(place), source=str(origin), pollutant=name, tz=place_tz,
                day=[t.date() for t in (stats["end"] - pd.Timedelta(hours=1)).dt.tz_convert(
                    place_tz)],
            )  # fmt: skip
            parts.append(stats)
    result = pd.concat(parts, ignore_index=True)[columns]
    return result.astype({"hours_present": "int64", "hours_expected": "int64"})


def _span(first: Any, last: Any, *, mean: str, tz: str) -> Any:
    """The UTC hours to compute over: whole days around ``first``…``last``, or 23 hours more."""
    import pandas as pd

    if mean == "rolling":
        begin = first - pd.Timedelta(hours=23)
    else:
        wall = first.tz_convert(tz).tz_localize(None).normalize()
        (begin,), _ = _day_bounds(pd.DatetimeIndex([wall]), tz)
        begin = begin.ceil("h")
    return pd.date_range(begin, last, freq="h", name="time")


def _zone_name(tz: str | None) -> str | None:
    if tz is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"tz={tz!r} is not a time zone; use 'UTC', 'Europe/London', or None for each "
            "place's own zone"
        ) from None
    return tz


def _pollutants(pollutant: str | Sequence[str] | None) -> tuple[str, ...]:
    if pollutant is None:
        return _POLLUTANTS
    names = (pollutant,) if isinstance(pollutant, str) else tuple(pollutant)
    unknown = [name for name in names if name not in _POLLUTANTS]
    if unknown:
        raise ConfigurationError(f"pollutant {unknown[0]!r}: use 'pm2_5' or 'pm10'")
    return names


def _select(frame: pandas.DataFrame, *, location: Any, source: Any) -> pandas.DataFrame:
    """The rows of the wanted places and sources (a DataFrame given as ``data`` is filtered
    as the store's read would be)."""
    for column, wanted in (("location", location), ("source", source)):
        if wanted is None or column not in frame:
            continue
        names = [wanted] if isinstance(wanted, str) or hasattr(wanted, "name") else list(wanted)
        frame = frame[frame[column].isin([n if isinstance(n, str) else n.name for n in names])]
    for column in ("location", "source"):
        if column not in frame:
            frame = frame.assign(**{column: ""})
    return frame
