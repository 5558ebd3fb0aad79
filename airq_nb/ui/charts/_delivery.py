"""Delivery accuracy: how late each delivery of a scheduled message started, by outcome."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, HoverTool, Label

from ...scheduling.delivery_log import read_delivery_log
from ._figures import legend_above, legend_swatch, time_figure, x_range
from ._series import Window, window
from ._time import check_tz, now_utc, stamp_text, wall

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

    from ...store import Store

__all__ = ["OUTCOME_COLORS", "DeliveryView", "delivery_chart", "read_deliveries", "update_delivery"]

#: Marker colour of each delivery outcome in the accuracy chart.
OUTCOME_COLORS: dict[str, str] = {
    "ok": "#2ca02c",
    "retry": "#ff7f0e",
    "dead": "#d62728",
    "lost": "#9467bd",
    "released": "#7f7f7f",
}
_NONE_YET = "no deliveries yet"


@dataclass(frozen=True)
class DeliveryView:
    span: Window
    days: float
    tz: str
    #: Columns per outcome: each outcome is its own legend entry that a click can hide.
    columns: dict[str, dict[str, Any]]

    @property
    def count(self) -> int:
        return sum(len(c["lateness_ms"]) for c in self.columns.values())


def _text(part: pd.DataFrame, name: str) -> list[str]:
    if name not in part:
        return [""] * len(part)
    return [
        "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in part[name]
    ]


def _columns(log: pd.DataFrame, span: Window, tz: str) -> dict[str, dict[str, Any]]:
    frame = log.copy()
    if len(frame):
        frame["scheduled_at"] = pd.to_datetime(frame["scheduled_at"], utc=True)
        frame = frame[frame["scheduled_at"] >= span.start]
    out = {}
    for outcome in OUTCOME_COLORS:
        part = frame[frame["outcome"] == outcome] if len(frame) else frame.iloc[:0]
        scheduled = part["scheduled_at"] if len(part) else []
        out[outcome] = {
            "time": wall(scheduled, tz),
            "time_text": stamp_text(scheduled, tz, seconds=True),
            "lateness_ms": (
                pd.to_numeric(part["lateness_ms"], errors="coerce").to_numpy(dtype="float64")
                if len(part)
                else np.array([], dtype="float64")
            ),
            "zero": np.zeros(len(part)),
            "outcome": [outcome] * len(part),
            **{name: _text(part, name) for name in ("topic", "schedule", "attempt", "error")},
            "message_id": _text(part, "message_id"),
        }
    return out


def read_deliveries(
    data: pd.DataFrame | Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    tz: str = "UTC",
) -> DeliveryView:
    """The deliveries of the last ``days`` from a ``read_delivery_log`` frame or a store."""
    check_tz(tz)
    store = None if isinstance(data, pd.DataFrame) else data
    span = window(now_utc(now, store), days)
    log = data if store is None else read_delivery_log(store, since=span.start.to_pydatetime())
    return DeliveryView(span=span, days=days, tz=tz, columns=_columns(log, span, tz))


def _title(view: DeliveryView) -> str:
    text = f"Delivery lateness (ms), last {view.days:g} days"
    return text if view.count else f"{text}: {_NONE_YET}"


def delivery_chart(
    data: pd.DataFrame | Store | DeliveryView,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    tz: str = "UTC",
    height: int = 240,
) -> Figure:
    """Lateness (start − scheduled, ms) of each delivery over the whole window, by outcome.

    ``data`` is a DataFrame as :func:`airq_nb.read_delivery_log` returns it, or a store.
    """
    view = (
        data if isinstance(data, DeliveryView) else read_deliveries(data, days=days, now=now, tz=tz)
    )
    fig = time_figure(
        title=_title(view), name="delivery_chart", height=height, y_label="lateness (ms)",
        span=view.span, tz=view.tz, x_label="scheduled time",
    )  # fmt: skip
    # Two invisible points keep the lateness axis at least 0–10 ms: with no deliveries at all
    # Bokeh could not size it, and drew the chart without its axes.
    fig.scatter(x=list(x_range(view.span, view.tz)), y=[0, 10], alpha=0, name="y_floor")
    markers = []
    for outcome, color in OUTCOME_COLORS.items():
        legend_swatch(fig, outcome, color=color, size=7)
        cds = ColumnDataSource(view.columns[outcome], name=f"deliveries:{outcome}")
        fig.segment(
            "time", "zero", "time", "lateness_ms", source=cds, color=color, line_width=1,
            legend_label=outcome, name=f"stem:{outcome}",
        )  # fmt: skip
        markers.append(
            fig.scatter(
                "time", "lateness_ms", source=cds, color=color, size=7, legend_label=outcome,
                name=f"delivery:{outcome}",
            )
        )  # fmt: skip
    fig.add_tools(
        HoverTool(
            renderers=markers,
            tooltips=[
                ("scheduled", "@time_text"),
                ("lateness", "@lateness_ms{0,0.0} ms"),
                ("outcome", "@outcome"),
                ("topic", "@topic"),
                ("schedule", "@schedule"),
                ("attempt", "@attempt"),
                ("message", "@message_id"),
                ("error", "@error"),
            ],
            attachment="horizontal",
        )
    )
    legend_above(fig)
    fig.add_layout(
        Label(
            x=6, y=6, x_units="screen", y_units="screen", text=_NONE_YET, text_font_size="14pt",
            text_color="#666666", name="no_data", visible=not view.count,
        )
    )  # fmt: skip
    return fig


def update_delivery(
    fig: Figure, view: DeliveryView, models: Mapping[str, Any]
) -> tuple[Any, Any, None]:
    """Put the view's deliveries into the chart; returns its home x range."""
    for outcome in OUTCOME_COLORS:
        models[f"deliveries:{outcome}"].data = view.columns[outcome]
    fig.title.text = _title(view)
    models["no_data"].visible = not view.count
    return (*x_range(view.span, view.tz), None)
