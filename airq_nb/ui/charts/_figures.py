"""Pieces every chart shares: a time figure over a window, the legend above, the no-data label."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import pandas as pd
from bokeh.models import ColumnDataSource, HoverTool, Label, Range1d
from bokeh.plotting import figure

from ._series import Window
from ._time import wall, zone_label

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

__all__ = [
    "SERIES_COLORS",
    "hour_hover",
    "legend_above",
    "legend_swatch",
    "named",
    "no_data_label",
    "stacked_tooltip",
    "time_figure",
    "value_text",
    "x_range",
    "y_end",
]

#: One colour per series (location and source), the same on every chart.
SERIES_COLORS = ("#08306b", "#000000", "#6a3d9a", "#8c510a", "#01665e", "#c51b7d")

_TOOLS = "pan,xwheel_zoom,box_zoom,reset,save"
_HOUR = pd.Timedelta(hours=1)
_LEGEND_ROW = 26  # px


def x_range(span: Window, tz: str) -> tuple[Any, Any]:
    """The window's first hour to the end of its last, as wall times in ``tz``."""
    start, end = wall([span.start, span.end + _HOUR], tz)
    return start, end


def y_end(values: list[Any], *, floor: float) -> float:
    """A y-axis top 10 % above the largest finite value, and never below ``floor``."""
    top = floor
    for array in values:
        finite = [v for v in array if v is not None and math.isfinite(v)]
        if finite:
            top = max(top, max(finite) * 1.1)
    return float(math.ceil(top))


def time_figure(
    *, title: str, name: str, height: int, y_label: str, span: Window, tz: str,
    x_label: str = "time", y_range: Any = None,
) -> Figure:  # fmt: skip
    """A full-width figure over the window's time in ``tz``, with pan, wheel zoom and reset."""
    fig = figure(
        title=title,
        x_axis_type="datetime",
        height=height,
        sizing_mode="stretch_width",
        tools=_TOOLS,
        active_scroll="xwheel_zoom",
        name=name,
        # The tools above the plot, beside the title, leave its whole width to the data.
        toolbar_location="above",
        x_range=Range1d(*x_range(span, tz)),
        **({"y_range": y_range} if y_range is not None else {}),
    )
    fig.xaxis.axis_label = f"{x_label} ({zone_label(tz)})"
    fig.yaxis.axis_label = y_label
    fig.toolbar.logo = None
    return fig


def legend_above(fig: Figure, *, row_chars: int = 70) -> None:
    """The legend in rows above the plot, where it hides no data; a click hides a series.

    Items go in as many rows as keep each row within about ``row_chars`` characters, so a
    long legend wraps instead of running off a chart beside JupyterLab's file browser at
    1000 px (about 560 px of canvas).
    """
    if not fig.legend:
        return
    legend = fig.legend[0]
    fig.center.remove(legend)
    widths = [len(str(item.label.value)) + 6 for item in legend.items]
    per_row = len(widths)
    while per_row > 1 and _widest_row(widths, per_row) > row_chars:
        per_row -= 1
    legend.update(
        click_policy="hide", orientation="horizontal", location="top_left",
        ncols=per_row, label_text_font_size="9pt", glyph_width=24, spacing=6, padding=4,
        margin=4,
    )  # fmt: skip
    fig.add_layout(legend, "above")
    # Each further row of legend gets its own height, so the plot itself keeps its size.
    fig.height += _LEGEND_ROW * (math.ceil(len(widths) / per_row) - 1)


def _widest_row(widths: list[int], per_row: int) -> int:
    # A horizontal legend with ncols sizes each column to its widest item.
    columns = [max(widths[c::per_row]) for c in range(per_row)]
    return sum(columns)


def legend_swatch(fig: Figure, label: str, *, y: Any = math.nan, **visuals: Any) -> None:
    """A one-point, never-drawn marker under ``label`` so its legend entry has a swatch even
    while its own data source is empty (Bokeh draws no swatch for an empty vectorised glyph)."""
    fig.scatter(x=[math.nan], y=[y], legend_label=label, name=f"swatch:{label}", **visuals)


def hour_hover(
    fig: Figure, source: ColumnDataSource, tooltips: list[tuple[str, str]] | str, *, name: str
) -> None:
    """One tooltip per hour, wherever the pointer is in that hour's column of the plot.

    An invisible bar spans each hour from the bottom of the plot to far above its top, so
    the pointer always hits exactly one hour (never a stack of tooltips for neighbouring
    hours or other series), and the tooltip follows the pointer, on the side with room,
    which keeps it on the canvas.
    """
    bars = fig.vbar(
        x="time", width="width", bottom=-1e9, top=1e9, source=source, fill_alpha=0,
        line_alpha=0, hover_fill_alpha=0.08, hover_fill_color="#000000", hover_line_alpha=0,
        name=name,
    )  # fmt: skip
    fig.add_tools(
        HoverTool(
            renderers=[bars], tooltips=tooltips, mode="mouse", point_policy="follow_mouse",
            attachment="horizontal",
        )
    )  # fmt: skip


def stacked_tooltip(heading: str, entries: list[tuple[str, str]]) -> str:
    """A tooltip template with each entry's label above its value, so several series fit in
    a narrow tooltip. Labels are our text, escaped (and ``@``/``$`` too, which Bokeh would
    read as fields); values are Bokeh field templates such as ``@pm2_5_0``."""

    def text(label: str) -> str:
        return html.escape(label).replace("@", "&#64;").replace("$", "&#36;")

    rows = "".join(
        f"<div style='margin-top:3px'><div style='color:#555'>{text(label)}</div>"
        f"<div>{value}</div></div>"
        for label, value in entries
    )
    return f"<div style='font-size:12px;max-width:260px'><b>{heading}</b>{rows}</div>"


def value_text(values: Any, *, unit: str = "µg/m³") -> list[str]:
    """Numbers as "12.3 µg/m³", a missing one as "no reading"."""
    return ["no reading" if not math.isfinite(v) else f"{v:.1f} {unit}" for v in values]


def named(fig: Figure) -> dict[str, Any]:
    """The figure's named models by name, found in one walk: Bokeh's ``select`` walks every
    model each time it is called, too slow to repeat for each data source on every refresh."""
    return {model.name: model for model in fig.references() if getattr(model, "name", None)}


def no_data_label(text: str, span: Window, tz: str, *, y: float, visible: bool) -> Label:
    """A grey message in the middle of the window, at height ``y`` in data units."""
    start, end = x_range(span, tz)
    return Label(
        x=start + (end - start) / 2, y=y, text=text, text_align="center",
        text_font_size="15pt", text_color="#666666", name="no_data", visible=visible,
    )  # fmt: skip
