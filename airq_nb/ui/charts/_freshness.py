"""Data freshness: which hours of each series are missing, and when each reading was fetched."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, LabelSet

from ._figures import legend_above, legend_swatch, time_figure, x_range
from ._readings import NO_DATA
from ._series import Series, missing_runs
from ._time import describe, hour_columns, span_text, stamp_text
from ._view import ReadingsView

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

__all__ = [
    "draw_freshness",
    "freshness_columns",
    "freshness_html",
    "freshness_lines",
    "update_freshness",
]

STATUS_COLORS = {"present": "#74c476", "missing": "#de2d26"}
_STRIP = -0.25  # a strip sits below the middle of its row, its name above


def freshness_columns(view: ReadingsView, status: str) -> dict[str, Any]:
    """One row per (series, hour) with that status: where it goes, and when it was fetched."""
    rows: dict[str, list[Any]] = {k: [] for k in ("hour", "series", "time_text", "fetched")}
    for series in view.series:
        hourly = series.hourly
        missing = hourly.index.isin(series.missing_hours())
        part = hourly[missing] if status == "missing" else hourly[~missing]
        rows["hour"].extend(part.index)
        rows["series"].extend([series.label] * len(part))
        rows["time_text"].extend(stamp_text(part.index, view.tz))
        fetched = stamp_text(part["fetched_at"], view.tz)
        lags = (part["fetched_at"] - part.index.to_series(index=part.index)).dt.total_seconds()
        rows["fetched"].extend(
            "not fetched" if not when else f"{when} ({span_text(lag)} after the hour began)"
            for when, lag in zip(fetched, lags.fillna(0), strict=True)
        )
    hours = pd.DatetimeIndex(rows.pop("hour"), tz="UTC")
    # A cell spans its hour, less a gap (half as wide in a repeated hour).
    placed = hour_columns(hours, view.tz)
    return {
        "time": placed["time"],
        "cell_width": placed["width"] * 11 / 12,
        "row": [(label, _STRIP) for label in rows["series"]],
        **rows,
        "status": [status] * len(hours),
    }


def draw_freshness(view: ReadingsView, *, height: int | None = None) -> Figure:
    """A strip per series, a cell per hour: green when stored, red when missing."""
    labels = [s.label for s in view.series] or [NO_DATA]
    fig = time_figure(
        title="Data freshness: missing hours, and when each was fetched",
        name="freshness_chart", height=height or 110 + 44 * len(labels), y_label="",
        span=view.span, tz=view.tz, y_range=FactorRange(factors=list(reversed(labels))),
    )  # fmt: skip
    cells = []
    for status, color in STATUS_COLORS.items():
        legend_swatch(
            fig, f"hour {status}", y=(labels[0], _STRIP), color=color, marker="square", size=12
        )
        cds = ColumnDataSource(freshness_columns(view, status), name=f"freshness:{status}")
        cells.append(
            fig.rect(
                "time", "row", width="cell_width", height=0.35, source=cds, color=color,
                legend_label=f"hour {status}", name=f"cells:{status}",
            )
        )  # fmt: skip
    # Each strip's name just above it, inside the plot: as y-axis labels the long names
    # would widen the left margin of every chart aligned with this one.
    names = ColumnDataSource({"row": [(label, -0.05) for label in labels], "text": labels})
    fig.add_layout(
        LabelSet(
            x=4, x_units="screen", y="row", text="text", source=names, text_font_size="9pt",
            text_baseline="bottom", text_color="#333333", name="strip_names",
        )
    )  # fmt: skip
    fig.yaxis.visible = False
    fig.add_tools(
        HoverTool(
            renderers=cells,
            tooltips=[("series", "@series"), ("hour", "@time_text"), ("status", "@status"),
                      ("fetched", "@fetched")],
            attachment="horizontal",
        )
    )  # fmt: skip
    fig.ygrid.grid_line_color = None
    legend_above(fig)
    return fig


def update_freshness(
    fig: Figure, view: ReadingsView, models: Mapping[str, Any]
) -> tuple[Any, Any, None]:
    for status in STATUS_COLORS:
        models[f"freshness:{status}"].data = freshness_columns(view, status)
    return (*x_range(view.span, view.tz), None)


def _runs_text(series: Series, tz: str) -> str:
    runs = missing_runs(series.missing_hours())
    if not runs:
        return "none missing"
    parts = []
    for first, last in runs[:4]:
        (start,) = stamp_text([first], tz)
        count = int((last - first) / pd.Timedelta(hours=1)) + 1
        if count == 1:
            parts.append(start)
        else:
            (end,) = stamp_text([last], tz)
            # "2026-11-27 03:00 GMT to 05:00 GMT" within a day, both dates across midnight.
            end = end[11:] if start[:10] == end[:10] else end
            parts.append(f"{start} to {end} ({count} h)")
    more = f" and {len(runs) - 4} more gaps" if len(runs) > 4 else ""
    return "missing " + ", ".join(parts) + more


def freshness_lines(view: ReadingsView) -> list[str]:
    """Per series: hours stored of the window's, the missing hours, when last fetched."""
    lines = []
    total = len(view.span.hours)
    for series in view.series:
        stored = total - len(series.missing_hours())
        fetched = series.hourly["fetched_at"].dropna()
        last = describe(fetched.max() if len(fetched) else None, view.now, view.tz)
        lines.append(
            f"{series.label}: {stored} of {total} hours; {_runs_text(series, view.tz)}; "
            f"last fetched {last}"
        )
    return lines


def freshness_html(view: ReadingsView) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in freshness_lines(view))
    return f"<ul class='airq-freshness' style='margin:2px 0;font-size:12px'>{items}</ul>"
