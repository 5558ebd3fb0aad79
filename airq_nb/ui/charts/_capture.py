"""Data capture on the 24-hour mean charts, and what today's band in words is a mean of.

A mean under the capture rule (75 %: 18 of 24 hours, :mod:`airq_nb.means`) is no mean: the
chart leaves its line out, draws the mean of the hours it had as a faded dotted line, and
hatches those hours in the series' colour; the hover says how many hours each mean had.
Today's calendar day is not over, so with ``mean="calendar"`` today's band comes from the
24-hour running mean, and the sentence says so and how many of today's hours there are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource

from ...means import MIN_CAPTURE
from ._figures import SERIES_COLORS
from ._series import POLLUTANTS, Series, missing_runs
from ._time import stamp_text, wall

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bokeh.plotting import figure as Figure

    from ._view import ReadingsView

__all__ = [
    "capture_notes",
    "draw_capture",
    "low_capture_columns",
    "short_runs_columns",
    "today_means",
    "update_capture",
]

_HOUR = pd.Timedelta(hours=1)
#: How the hatching and the faded line are told apart from a valid mean.
LOW_CAPTURE_LABEL = f"hatched, faded: under {MIN_CAPTURE:g} % of hours, no valid mean"


def _stats(series: Series, pollutant: str) -> tuple[Any, ...]:
    hourly = series.hourly
    return (
        hourly[f"mean_{pollutant}"].to_numpy(dtype="float64"),
        hourly[f"present_{pollutant}"].to_numpy(),
        hourly[f"expected_{pollutant}"].to_numpy(),
        hourly[f"day_over_{pollutant}"].to_numpy(dtype=bool),
        hourly[f"partial_{pollutant}"].to_numpy(dtype="float64"),
    )


def capture_notes(series: Series, pollutant: str) -> list[str]:
    """Per hour of the window, the hours its mean had: "23 of 24 hours"; for no valid mean,
    why: "no 24-h mean: 12 of 24 hours (50 %), needs 75 %"; for a day not over, "so far"."""
    notes = []
    for mean, present, expected, over, partial in zip(*_stats(series, pollutant), strict=True):
        hours = f"{int(present)} of {int(expected)} hours"
        if not over:
            hours = f"so far {hours}"
        if np.isfinite(mean):
            notes.append(hours)
        elif present and not over:
            notes.append(f"{partial:.1f} µg/m³ {hours}: no daily mean before the day is over")
        else:
            share = 100 * present / expected if expected else 0.0
            notes.append(f"no 24-h mean: {hours} ({share:.0f} %), needs {MIN_CAPTURE:g} %")
    return notes


def low_capture_columns(series: Series, pollutant: str, tz: str) -> dict[str, Any]:
    """The faded line: the mean of the hours present wherever the mean itself is not valid."""
    mean, present, expected, _, partial = _stats(series, pollutant)
    low = np.where(np.isfinite(mean), np.nan, partial)
    return {
        "time": wall(series.hourly.index, tz),
        "mean": low,
        "capture": 100 * present / np.maximum(expected, 1),
    }


def short_runs_columns(view: ReadingsView, pollutant: str) -> dict[str, Any]:
    """The hatched spans: each run of hours whose mean is not valid, per series, coloured as
    its series' line (``colors[n]`` for the n-th series)."""
    columns: dict[str, list[Any]] = {"left": [], "right": [], "color": [], "text": []}
    for number, series in enumerate(view.series):
        means = series.hourly[f"mean_{pollutant}"]
        for first, last in missing_runs(means.index[means.isna().to_numpy()]):
            left, right = wall([first, last + _HOUR], view.tz)
            (start, end) = stamp_text([first, last], view.tz)
            columns["left"].append(left)
            columns["right"].append(right)
            columns["color"].append(SERIES_COLORS[number % len(SERIES_COLORS)])
            columns["text"].append(f"{series.label}: no valid mean {start} to {end}")
    return columns


def draw_capture(fig: Figure, view: ReadingsView, pollutant: str) -> None:
    """Hatch the hours without a valid 24-hour mean and draw their faded partial means."""
    spans = ColumnDataSource(short_runs_columns(view, pollutant), name=f"short:{pollutant}")
    fig.quad(
        left="left", right="right", bottom=0, top=1e6, source=spans, fill_alpha=0,
        line_alpha=0, hatch_pattern="/", hatch_color="color", hatch_alpha=0.22,
        hatch_scale=10, level="underlay", legend_label=LOW_CAPTURE_LABEL,
        name=f"short_spans:{pollutant}",
    )  # fmt: skip
    for number, series in enumerate(view.series):
        cds = ColumnDataSource(
            low_capture_columns(series, pollutant, view.tz), name=f"low:{pollutant}:{series.key}"
        )
        fig.line(
            "time", "mean", source=cds, line_width=2, line_alpha=0.4, line_dash="dotted",
            color=SERIES_COLORS[number % len(SERIES_COLORS)], legend_label=LOW_CAPTURE_LABEL,
            name=f"low_mean:{pollutant}:{series.key}",
        )  # fmt: skip


def update_capture(view: ReadingsView, pollutant: str, models: Mapping[str, Any]) -> None:
    """Put a refreshed view's capture into a chart drawn by :func:`draw_capture`."""
    models[f"short:{pollutant}"].data = short_runs_columns(view, pollutant)
    for series in view.series:
        models[f"low:{pollutant}:{series.key}"].data = low_capture_columns(
            series, pollutant, view.tz
        )


def today_means(series: Series, view: ReadingsView) -> tuple[str, dict[str, tuple[Any, float]]]:
    """What today's band is a mean of, in words, and per pollutant that mean's hour and value.

    Rolling: the newest valid running mean. Calendar: the newest valid daily mean once its
    day is over; while today is not, the running mean, saying how many of today's hours
    there are so far (a band from a few hours of a day would not be a daily mean's).
    """
    hourly = series.hourly
    column = "mean"
    if view.mean == "calendar" and hourly.size and not hourly["day_over_pm2_5"].iloc[-1]:
        column = "running"
    means = {p: m for p in POLLUTANTS if (m := series.latest_mean(p, column=column))}
    if not means:
        return "", {}
    newest = max(hour for hour, _ in means.values())
    (until,) = stamp_text([newest], view.tz)
    if view.mean == "rolling":
        return f"24-hour mean up to the {until} hour", means
    if column == "mean":
        return f"mean of {until[:10]}", means
    present = max(int(hourly[f"present_{p}"].iloc[-1]) for p in POLLUTANTS)
    expected = int(hourly["expected_pm2_5"].iloc[-1])
    return (
        f"24-hour running mean up to the {until} hour (today is not over: so far {present} "
        f"of its {expected} hours, no daily mean yet)",
        means,
    )
