"""The periods an alert rule was firing, shaded on the hourly chart (``airq_nb.alert_periods``).

Each period is one translucent band from the hour it started firing to the hour it
resolved (to now while it still fires), behind the lines; the hour hover names the rules
firing then. The bands are a glyph on a data source, so a refresh moves them in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource

from ._time import wall

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

    from ._view import ReadingsView

__all__ = ["ALERT_COLOR", "alert_hour_text", "draw_alert_periods", "update_alert_periods"]

ALERT_COLOR = "#d62728"
#: Far above any reading: a band fills the chart's height whatever its y range.
_TOP = 1e9
_SOURCE = "alert_periods"


def _clipped(view: ReadingsView) -> pd.DataFrame:
    """The view's periods cut to its window; one still firing runs to the view's now."""
    periods = view.alerts
    if periods.empty:
        return periods
    start = view.span.start
    end = view.span.end + pd.Timedelta(hours=1)
    clipped = periods.assign(
        start=periods["start"].clip(lower=start),
        end=periods["end"].fillna(view.now).clip(upper=end),
    )
    return clipped[clipped["end"] > clipped["start"]]


def _columns(view: ReadingsView) -> dict[str, Any]:
    periods = _clipped(view)
    count = len(periods)
    return {
        "left": wall(periods["start"], view.tz) if count else [],
        "right": wall(periods["end"], view.tz) if count else [],
        "bottom": np.zeros(count),
        "top": np.full(count, _TOP),
        "rule": list(periods["rule"]) if count else [],
        "place": list(periods["place"]) if count else [],
    }


def draw_alert_periods(fig: Figure, view: ReadingsView) -> None:
    """Shade ``view``'s firing periods on ``fig`` (the hourly chart), under its lines; with
    no alert rules in the store, nothing is drawn (and no legend entry added)."""
    if not view.has_alert_rules:
        return
    cds = ColumnDataSource(_columns(view), name=_SOURCE)
    # The bands reach far above the readings; the chart's y range is fixed by them.
    fig.quad(
        left="left", right="right", bottom="bottom", top="top", source=cds,
        fill_color=ALERT_COLOR, fill_alpha=0.1, line_alpha=0, legend_label="alert firing",
        name="alert_periods:quads", level="underlay",
    )  # fmt: skip


def update_alert_periods(view: ReadingsView, models: Mapping[str, Any]) -> None:
    """Move the bands drawn by :func:`draw_alert_periods` to the view's periods."""
    source = models.get(_SOURCE)
    if source is not None:
        source.data = _columns(view)


def alert_hour_text(view: ReadingsView) -> list[str]:
    """For each hour of the window, the rules firing during it ("none" for none), for the hover."""
    hours = view.span.hours
    texts = ["none"] * len(hours)
    periods = _clipped(view)
    if periods.empty:
        return texts
    ends = hours + pd.Timedelta(hours=1)
    for row in periods.itertuples():
        during = np.flatnonzero((hours < row.end) & (ends > row.start))
        label = row.rule if view.location else f"{row.rule} ({row.place})"
        for i in during:
            texts[i] = label if texts[i] == "none" else f"{texts[i]}, {label}"
    return texts
