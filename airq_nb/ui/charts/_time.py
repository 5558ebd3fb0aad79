"""Time zones and time texts for the charts: the one place that turns UTC hours into wall time.

Readings are stored by UTC hour. A chart shows them in ``tz`` — ``"UTC"`` or
``"Europe/London"`` (GMT in winter, BST in summer) or any IANA zone — as naive wall times, because
Bokeh's datetime axis has no zone; every text also names the zone's abbreviation ("GMT", "BST").
Wall time repeats an hour when the clocks go back (01:00 BST, then 01:00 GMT, drawn at the
same place, told apart by their texts) and skips one when they go forward; UTC has neither.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from ..._errors import ConfigurationError

# Every time and span text of the charts comes from the one formatter.
from ..._format import age_text, span_text, time_text

__all__ = [
    "check_tz",
    "describe",
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
    """UTC instants as naive wall-clock times in ``tz``, which is what Bokeh's axis draws."""
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return index.tz_convert(tz).tz_localize(None)


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
