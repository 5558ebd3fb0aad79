"""The hourly chart: PM2.5 and PM10 of every series, each hour as measured or modelled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool, Range1d

from ._figures import legend_above, no_data_label, time_figure, x_range, y_end
from ._series import POLLUTANTS, Series
from ._time import stamp_text, wall
from ._view import ReadingsView

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

__all__ = ["NO_DATA", "draw_readings", "readings_columns", "readings_title", "update_readings"]

NO_DATA = "no data yet"
COLORS = {"pm2_5": "#1f77b4", "pm10": "#e6550d"}
_DASHES = ("solid", "dashed", "dotdash", "dotted")
_Y_FLOOR = 20.0


def readings_columns(series: Series, tz: str) -> dict[str, Any]:
    """The hourly chart's data source of one series: a row per hour, NaN where none."""
    hourly = series.hourly
    values = {p: hourly[p].to_numpy(dtype="float64") for p in POLLUTANTS}
    with np.errstate(invalid="ignore"):
        both_missing = np.isnan(values["pm2_5"]) & np.isnan(values["pm10"])
        top = np.where(both_missing, np.nan, np.fmax(values["pm2_5"], values["pm10"]))
    return {
        "time": wall(hourly.index, tz),
        "time_text": stamp_text(hourly.index, tz),
        **values,
        # An invisible marker at the higher value carries one tooltip per hour.
        "hover_y": top,
        "series": [series.label] * len(hourly),
    }


def readings_title(view: ReadingsView) -> str:
    where = f" in {view.location}" if view.location else ""
    text = f"Hourly PM2.5 and PM10{where}, last {view.days:g} days (µg/m³)"
    return text if view.has_data else f"{text}: {NO_DATA}"


def _y_end(view: ReadingsView) -> float:
    return y_end([s.hourly[p].to_numpy() for s in view.series for p in POLLUTANTS], floor=_Y_FLOOR)


def draw_readings(view: ReadingsView, *, height: int = 340) -> Figure:
    """PM2.5 and PM10 hour by hour: colour is the pollutant, the dash pattern the series."""
    top = _y_end(view)
    fig = time_figure(
        title=readings_title(view), name="readings_chart", height=height, y_label="µg/m³",
        span=view.span, tz=view.tz, y_range=Range1d(0, top),
    )  # fmt: skip
    hover_renderers = []
    for number, series in enumerate(view.series):
        cds = ColumnDataSource(readings_columns(series, view.tz), name=f"readings:{series.key}")
        dash = _DASHES[number % len(_DASHES)]
        for pollutant, name in POLLUTANTS.items():
            legend = name if len(view.series) == 1 else f"{name} · {series.label}"
            fig.line(
                "time", pollutant, source=cds, color=COLORS[pollutant], line_width=2,
                line_dash=dash, legend_label=legend, name=f"{pollutant}:{series.key}",
            )  # fmt: skip
            # Markers make a single reading, or one isolated by gaps, visible at all.
            fig.scatter(
                "time", pollutant, source=cds, color=COLORS[pollutant], size=4,
                legend_label=legend, name=f"{pollutant}:{series.key}:markers",
            )  # fmt: skip
        hover_renderers.append(
            fig.scatter("time", "hover_y", source=cds, alpha=0, size=5, name=f"hover:{series.key}")
        )
    fig.add_tools(
        HoverTool(
            renderers=hover_renderers,
            mode="vline",
            tooltips=[
                ("time", "@time_text"),
                ("PM2.5", "@pm2_5{0.0} µg/m³"),
                ("PM10", "@pm10{0.0} µg/m³"),
                ("series", "@series"),
            ],
            # Beside the point, on the side with room: the tooltip stays on the canvas.
            attachment="horizontal",
            point_policy="follow_mouse",
        )
    )
    fig.add_layout(
        no_data_label(
            f"{NO_DATA}: start the collector", view.span, view.tz, y=top / 2,
            visible=not view.has_data,
        )
    )  # fmt: skip
    legend_above(fig)
    return fig


def update_readings(
    fig: Figure, view: ReadingsView, models: Mapping[str, Any]
) -> tuple[Any, Any, float]:
    """Put the view's data into a chart drawn for the same series; returns its home ranges."""
    for series in view.series:
        models[f"readings:{series.key}"].data = readings_columns(series, view.tz)
    fig.title.text = readings_title(view)
    models["no_data"].visible = not view.has_data
    return (*x_range(view.span, view.tz), _y_end(view))
