"""What the charts show, computed from a readings DataFrame with pandas alone (no Bokeh).

A *series* is one ``(location, source)`` pair, as ``read_readings`` defines it. For each one
this module builds the hourly values over the chart's window (a missing hour is NaN, so a line
breaks there), the 24-hour means, the DAQI band of the newest mean, and which hours are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..._errors import ConfigurationError
from ...daqi import WHO_24H
from ...means import hourly_capture, hours_needed

__all__ = [
    "LEAD",
    "MEAN_MIN_HOURS",
    "POLLUTANTS",
    "SOURCE_NAMES",
    "Series",
    "Window",
    "above_guideline",
    "build_series",
    "missing_runs",
    "series_label",
    "window",
]

#: Pollutant column → the name a chart shows.
POLLUTANTS: dict[str, str] = {"pm2_5": "PM2.5", "pm10": "PM10"}
#: Source id (as stored) → the name a person knows it by.
SOURCE_NAMES: dict[str, str] = {
    "open-meteo": "Open-Meteo",
    "openweathermap": "OpenWeatherMap",
    "laqn": "LAQN",
    "openaq": "OpenAQ",
}
#: A 24-hour mean needs this many of its 24 hours (75 % data capture, as UK practice asks:
#: the rule of :mod:`airq_nb.means`, which computes every mean here).
MEAN_MIN_HOURS = hours_needed(24)
_HOUR = pd.Timedelta(hours=1)
#: How far before the window the means look: the 23 hours of its first running mean, or
#: its first calendar day back to midnight (25 hours on the day the clocks go back).
LEAD = pd.Timedelta(hours=25)


@dataclass(frozen=True)
class Window:
    """The whole UTC hours a chart spans, ``start`` to ``end`` inclusive."""

    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def hours(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, self.end, freq="h", name="time")


def window(now: pd.Timestamp, days: float) -> Window:
    """The ``days`` × 24 whole hours up to ``now``'s hour: the hours the collector keeps."""
    end = now.floor("h")
    # The same rule as the collector's first hour; one hour more would always be empty.
    return Window(start=end - pd.Timedelta(days=days) + _HOUR, end=end)


def series_label(location: str, source: str, kind: str | None, site: str | None = None) -> str:
    """ "London · Open-Meteo (modelled)"; without a known kind, just "London · Open-Meteo";
    a site named apart from its code, "openaq:2178 – London Marylebone Road · OpenAQ (measured)"."""
    place = f"{location} – {site}" if site and site != location else location
    name = f"{place} · {SOURCE_NAMES.get(source, source)}"
    return f"{name} ({kind})" if kind in ("measured", "modelled") else name


@dataclass(frozen=True)
class Series:
    """One ``(location, source)`` pair's hourly values and 24-hour means over a window."""

    location: str
    source: str
    kind: str | None
    #: Index: every hour of the window (UTC). Columns: pm2_5, pm10 (NaN when missing),
    #: fetched_at (NaT when missing); per pollutant mean_<p> (the valid 24-hour mean),
    #: partial_<p> (the mean of the hours present, whatever the capture), present_<p>,
    #: expected_<p> and capture_<p> (%) of that mean, day_over_<p> (False while a
    #: calendar day is still running) and running_<p> (the valid 24-hour running mean,
    #: whichever ``mean`` the chart shows). See :func:`airq_nb.means.hourly_capture`.
    hourly: pd.DataFrame
    #: What the source's provenance asks to be shown with the data: for OpenAQ, each
    #: provider behind the series and the licences its data come under.
    credits: tuple[str, ...] = ()
    #: The site's own name when the readings give one (LAQN's, OpenAQ's), for the label.
    site: str | None = None

    @property
    def key(self) -> str:
        """A stable id, ``"London · open-meteo"``: names the series' Bokeh data sources."""
        return f"{self.location} · {self.source}"

    @property
    def label(self) -> str:
        return series_label(self.location, self.source, self.kind, self.site)

    def has_data(self) -> bool:
        return bool(self.hourly[list(POLLUTANTS)].notna().any(axis=None))

    def latest_mean(
        self, pollutant: str, *, column: str = "mean"
    ) -> tuple[pd.Timestamp, float] | None:
        """The newest hour with a valid 24-hour mean of ``pollutant``, and that mean
        (``column="running"``: the running mean, whichever mean the chart shows)."""
        means = self.hourly[f"{column}_{pollutant}"].dropna()
        return None if means.empty else (means.index[-1], float(means.iloc[-1]))

    def missing_hours(self) -> pd.DatetimeIndex:
        """The window's hours with neither PM2.5 nor PM10."""
        values = self.hourly[list(POLLUTANTS)]
        return self.hourly.index[values.isna().all(axis=1)]


def _numbers(part: pd.DataFrame, column: str) -> pd.Series:
    raw = part[column] if column in part else pd.Series(np.nan, index=part.index)
    return pd.to_numeric(raw, errors="coerce").astype("float64")


def _kind(part: pd.DataFrame) -> str | None:
    """The series' kind when the readings say one; an older store without ``kind`` says none."""
    if "kind" not in part:
        return None
    kinds = {k for k in part["kind"].dropna().astype(str)}
    return kinds.pop() if len(kinds) == 1 else None


def _site(part: pd.DataFrame) -> str | None:
    """The newest site name the readings give (``site_name``), if any."""
    if "site_name" not in part:
        return None
    names = part["site_name"].dropna().astype(str)
    names = names[names.str.strip() != ""]
    return str(names.iloc[-1]).strip() if len(names) else None


def _credits(part: pd.DataFrame) -> tuple[str, ...]:
    """ "Provider: licence" lines from the readings' provenance (OpenAQ names both)."""
    if "provenance" not in part:
        return ()
    lines: dict[str, None] = {}
    for details in part["provenance"]:
        if isinstance(details, dict) and details.get("provider"):
            licences = "; ".join(str(text) for text in details.get("licenses") or ())
            lines[f"{details['provider']}: {licences or 'licence not stated by OpenAQ'}"] = None
    return tuple(lines)


def _mean_columns(values: pd.Series, pollutant: str, *, mean: str, tz: str) -> dict[str, Any]:
    """A pollutant's 24-hour means with their capture, as ``Series.hourly`` columns."""
    stats = hourly_capture(values, mean=mean, tz=tz)
    running = stats if mean == "rolling" else hourly_capture(values, mean="rolling", tz=tz)
    return {
        f"mean_{pollutant}": stats["mean"],
        f"partial_{pollutant}": stats["mean_of_present"],
        f"present_{pollutant}": stats["hours_present"],
        f"expected_{pollutant}": stats["hours_expected"],
        f"capture_{pollutant}": stats["capture"],
        f"day_over_{pollutant}": ~stats["partial"],
        f"running_{pollutant}": running["mean"],
    }


def build_series(
    readings: pd.DataFrame,
    span: Window,
    *,
    location: str | None = None,
    source: str | None = None,
    mean: str = "rolling",
    tz: str = "UTC",
) -> list[Series]:
    """One :class:`Series` per ``(location, source)`` in ``readings``, sorted by label.

    ``readings`` is shaped as ``read_readings`` returns it; rows up to ``LEAD`` before the
    window count towards its first 24-hour means. Two readings of one hour (a re-fetch) are one.
    """
    if mean not in ("rolling", "calendar"):
        raise ConfigurationError(f"mean={mean!r}: use 'rolling' or 'calendar'")
    frame = readings
    if not len(frame):
        return []
    frame = frame.copy()
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True)).floor("h")
    frame = frame[(frame.index >= span.start - LEAD) & (frame.index <= span.end)]
    for column, wanted in (("location", location), ("source", source)):
        if wanted is not None and column in frame:
            frame = frame[frame[column] == wanted]
    if "location" not in frame:
        frame["location"] = ""
    if "source" not in frame:
        frame["source"] = ""
    hours = span.hours
    # Hours before the window, so the window's first hour has a whole 24-h mean.
    calc_hours = pd.date_range(span.start - LEAD, span.end, freq="h", name="time")
    out = []
    for (place, origin), part in frame.groupby(["location", "source"], sort=True):
        columns: dict[str, Any] = {}
        for pollutant in POLLUTANTS:
            values = _numbers(part, pollutant).groupby(level=0).mean().reindex(calc_hours)
            columns[pollutant] = values
            columns.update(_mean_columns(values, pollutant, mean=mean, tz=tz))
        fetched = (
            pd.to_datetime(part["fetched_at"], utc=True, errors="coerce")
            if "fetched_at" in part
            else pd.Series(pd.NaT, index=part.index, dtype="datetime64[ns, UTC]")
        )
        columns["fetched_at"] = fetched.groupby(level=0).max().reindex(calc_hours)
        hourly = pd.DataFrame(columns, index=calc_hours).reindex(hours)
        out.append(
            Series(
                location=str(place),
                source=str(origin),
                kind=_kind(part),
                hourly=hourly,
                credits=_credits(part),
                site=_site(part),
            )
        )
    return sorted(out, key=lambda s: s.label)


def missing_runs(hours: pd.DatetimeIndex) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Consecutive missing hours as (first, last) pairs, oldest first."""
    runs: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for hour in hours:
        if runs and hour - runs[-1][1] == _HOUR:
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return runs


def above_guideline(pollutant: str, value: float) -> bool:
    """Whether a 24-hour mean is above the WHO 2021 guideline (equal is within it)."""
    return value > WHO_24H[pollutant]
