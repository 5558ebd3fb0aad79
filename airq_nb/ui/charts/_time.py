"""Time zones and time texts for the charts: the one place that turns UTC hours into wall time.

Readings are stored by UTC hour. A chart shows them in ``tz`` — ``"UTC"`` or
``"Europe/London"`` (GMT in winter, BST in summer) or any IANA zone — as naive wall times, because
Bokeh's datetime axis has no zone; every text also names the zone's abbreviation ("GMT", "BST").
Wall time repeats an hour when the clocks go back (01:00 BST, then 01:00 GMT) and skips one
when they go forward; UTC has neither. The repeated hours are drawn as two distinct hours,
each half as wide, one after the other in the wall hour they share (01:00 BST from 01:00,
01:00 GMT from 01:30), so a line never doubles back; their texts tell them apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from ..._errors import ConfigurationError

# Every time and span text of the charts comes from the one formatter.
from ..._format import age_text, span_text, time_text

__all__ = [
    "check_tz",
    "describe",
    "hour_columns",
    "now_utc",
    "span_text",
    "stamp_text",
    "wall",
    "zone_label",
]


def check_tz(tz: str) -> str:
    """``tz`` if it names a time zone; otherwise a ConfigurationError saying what to pass."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"tz={tz!r} is not a time zone; use 'UTC' or 'Europe/London' (GMT/BST)"
        ) from None
    return tz


def now_utc(now: datetime | float | None, store: Any = None) -> pd.Timestamp:
    """``now`` (a datetime, Unix seconds, or None for the store's clock) as a UTC Timestamp."""
    if now is None:
        now = store.clock.now() if store is not None else datetime.now(UTC)
    if isinstance(now, int | float):
        return pd.Timestamp(now, unit="s", tz="UTC")
    stamp = pd.Timestamp(now)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def wall(values: Any, tz: str) -> pd.DatetimeIndex:
    """UTC instants as naive wall-clock times in ``tz``, which is what Bokeh's axis draws;
    the two passes through a repeated wall hour share it, each drawn at half speed."""
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns")
    naive = index.tz_convert(tz).tz_localize(None)
    once = naive.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    repeated = np.asarray(once.isna() & index.notna())
    if not repeated.any():
        return naive
    first_pass = naive[repeated].tz_localize(tz, ambiguous=np.ones(repeated.sum(), dtype=bool))
    second_pass = naive[repeated].tz_localize(tz, ambiguous=np.zeros(repeated.sum(), dtype=bool))
    fold = second_pass.asi8 - first_pass.asi8  # how far the clocks went back (ns)
    at = naive[repeated].asi8
    fold_start = at - at % fold  # the first wall instant of the repeated span
    into_fold = index[repeated].asi8 - first_pass.asi8 + (at - fold_start)
    moved = naive.asi8.copy()
    moved[repeated] = fold_start + into_fold // 2
    return pd.DatetimeIndex(moved.astype("datetime64[ns]"))


def hour_columns(hours: Any, tz: str) -> dict[str, Any]:
    """Where each UTC hour is drawn: its middle (``time``) and width in ms (``width``), so a
    bar covers the hour exactly (half as wide in a repeated hour, twice as wide across a
    skipped one)."""
    index = pd.DatetimeIndex(pd.to_datetime(hours, utc=True))
    starts = wall(index, tz).as_unit("ns").asi8
    ends = wall(index + pd.Timedelta(hours=1), tz).as_unit("ns").asi8
    middles = pd.DatetimeIndex(((starts + ends) // 2).astype("datetime64[ns]"))
    return {"time": middles, "width": (ends - starts) / 1e6}


def stamp_text(values: Any, tz: str, *, seconds: bool = False) -> list[str]:
    """Each instant as "2026-11-28 12:00 GMT" in ``tz`` ("" for a missing one)."""
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return [
        "" if pd.isna(moment) else time_text(moment, tz=tz, seconds=seconds) for moment in index
    ]


def zone_label(tz: str) -> str:
    """The zone as an axis label says it: "UTC", or "Europe/London, GMT/BST"."""
    if tz == "UTC":
        return "UTC"
    zone = ZoneInfo(tz)
    names = dict.fromkeys(
        datetime(2026, month, 1, 12, tzinfo=UTC).astimezone(zone).tzname() for month in (1, 7)
    )
    return f"{tz}, {'/'.join(n for n in names if n)}"


def describe(moment: pd.Timestamp | None, now: pd.Timestamp, tz: str) -> str:
    """ "2026-11-28 12:00 GMT (5 min ago)", "… (in 30 min)", or "never"."""
    if moment is None or pd.isna(moment):
        return "never"
    return f"{time_text(moment, tz=tz)} ({age_text(moment, now.timestamp())})"
