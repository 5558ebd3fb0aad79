"""The hourly chart: PM2.5 and PM10 of every series, each hour as measured or modelled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bokeh.models import ColumnDataSource, Range1d

from ._alert_shading import alert_hour_text, draw_alert_periods, update_alert_periods
from ._figures import (
    hour_hover,
    legend_above,
    no_data_label,
    stacked_tooltip,
    time_figure,
    value_text,
    x_range,
    y_end,
)
from ._series import POLLUTANTS, Series
from ._time import hour_columns, stamp_text, wall
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
    return {"time": wall(hourly.index, tz), **values}


def hover_columns(view: ReadingsView) -> dict[str, Any]:
    """One row per hour of the window, with every series' values as text, for one tooltip."""
    hours = view.span.hours
    columns: dict[str, Any] = {
        # The middle of the hour and its width, where its hover bar is drawn.
        **hour_columns(hours, view.tz),
        "time_text": stamp_text(hours, view.tz),
    }
    for number, series in enumerate(view.series):
        for pollutant in POLLUTANTS:
            columns[f"{pollutant}_{number}"] = value_text(series.hourly[pollutant])
        columns[f"series_{number}"] = [series.label] * len(hours)
    if view.has_alert_rules:
        columns["alerts"] = alert_hour_text(view)
    return columns


def hover_tooltips(view: ReadingsView) -> list[tuple[str, str]] | str:
    """Time, PM2.5, PM10 and the series as a table for one series; for several, the time
    and then each series' name above its two values."""
    alerts = [("alerts firing", "@alerts")] if view.has_alert_rules else []
    if len(view.series) > 1:
        return stacked_tooltip(
            "@time_text",
            [
                (series.label, f"PM2.5 @pm2_5_{n} · PM10 @pm10_{n}")
                for n, series in enumerate(view.series)
            ]
            + alerts,
        )
    rows = [("time", "@time_text")]
    if view.series:
        rows += [("PM2.5", "@pm2_5_0"), ("PM10", "@pm10_0"), ("series", "@series_0")]
    return rows + alerts


def readings_title(view: ReadingsView) -> str:
    where = f" in {view.location}" if view.location else ""
    text = f"Hourly PM2.5 and PM10{where} (µg/m³), last {view.days:g} days"
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
    draw_alert_periods(fig, view)
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
    hover = ColumnDataSource(hover_columns(view), name="readings_hover")
    hour_hover(fig, hover, hover_tooltips(view), name="hover:readings")
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
    models["readings_hover"].data = hover_columns(view)
    update_alert_periods(view, models)
    fig.title.text = readings_title(view)
    models["no_data"].visible = not view.has_data
    return (*x_range(view.span, view.tz), _y_end(view))
