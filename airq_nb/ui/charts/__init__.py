"""Bokeh charts that say whether the air is bad, plus delivery accuracy, updated in place.

Imported on demand (``from airq_nb.ui import charts``), never by ``import airq_nb``, so the core
package stays free of Bokeh. Every chart takes a DataFrame (as ``read_readings`` or
``read_delivery_log`` return it) or a store to read one from, and a ``tz`` ("UTC" or
"Europe/London") for every time it shows. The index rules live in :mod:`airq_nb.indices`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from ...daqi import WHO_PM2_5_24H, WHO_PM10_24H
from ._daqi_chart import DAQI_COLORS, draw_daqi, today_lines
from ._dashboard import LAQN_ATTRIBUTION, LiveChart, dashboard
from ._delivery import OUTCOME_COLORS, delivery_chart
from ._freshness import draw_freshness, freshness_lines
from ._index_bands import INDEX_CHOICES
from ._notebook import index_picker, location_picker, save_report, setup_notebook, show_static
from ._readings import draw_readings
from ._stats import stats_panel
from ._view import read_view

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

    from ...store import Store

__all__ = [
    "DAQI_COLORS",
    "INDEX_CHOICES",
    "LAQN_ATTRIBUTION",
    "OUTCOME_COLORS",
    "WHO_PM2_5_24H",
    "WHO_PM10_24H",
    "LiveChart",
    "daqi_chart",
    "dashboard",
    "delivery_chart",
    "freshness_chart",
    "freshness_lines",
    "index_picker",
    "location_picker",
    "read_view",
    "readings_chart",
    "save_report",
    "setup_notebook",
    "show_static",
    "stats_panel",
    "today_lines",
]


def readings_chart(
    data: pd.DataFrame | Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    location: str | None = None,
    source: str | None = None,
    tz: str = "UTC",
    height: int = 340,
) -> Figure:
    """PM2.5 and PM10 hour by hour over the last ``days``, one series per (location, source).

    ``data`` is a DataFrame as :func:`airq_nb.read_readings` returns it, or a store to read
    one from. Missing hours are gaps; with no readings the chart says "no data yet".
    """
    view = read_view(data, days=days, now=now, location=location, source=source, tz=tz)
    return draw_readings(view, height=height)


def daqi_chart(
    data: pd.DataFrame | Store,
    pollutant: str = "pm2_5",
    *,
    days: float = 7,
    now: datetime | float | None = None,
    location: str | None = None,
    source: str | None = None,
    tz: str = "UTC",
    mean: str = "rolling",
    height: int = 300,
    index: str | None = None,
    version: str | None = None,
) -> Figure:
    """24-hour means of ``pollutant`` ("pm2_5" or "pm10") over the shaded bands of ``index``
    ("daqi", "epa", "eaqi", "who"; None: the one the places expect) in ``version`` (None: the
    newest), with the WHO 2021 24-hour guideline; ``mean`` is "rolling" or "calendar"."""
    view = read_view(
        data, days=days, now=now, location=location, source=source, tz=tz, mean=mean,
        index=index, version=version,
    )  # fmt: skip
    return draw_daqi(view, pollutant, height=height)


def freshness_chart(
    data: pd.DataFrame | Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    location: str | None = None,
    tz: str = "UTC",
) -> Figure:
    """One strip per series, one cell per hour: stored or missing, and when it was fetched."""
    return draw_freshness(read_view(data, days=days, now=now, location=location, tz=tz))
