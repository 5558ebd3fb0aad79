"""Bokeh charts of the readings and of delivery accuracy, loaded inline and updated in place.

Imported on demand (``from airq_nb.ui import charts``), never by ``import airq_nb``, so the core
package stays free of Bokeh. Every chart takes a DataFrame (as ``read_readings`` or
``read_delivery_log`` return it) or a store to read one from.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    Div,
    HoverTool,
    Label,
    LayoutDOM,
    Range1d,
    Span,
)
from bokeh.plotting import figure
from bokeh.resources import INLINE

from .._format import span_text
from ._refresh import PeriodicRefresh

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

    from ..store._sqlite import Store

__all__ = [
    "OUTCOME_COLORS",
    "WHO_PM2_5_24H",
    "WHO_PM10_24H",
    "LiveChart",
    "dashboard",
    "delivery_chart",
    "readings_chart",
    "setup_notebook",
    "stats_panel",
]

#: WHO 2021 air-quality guideline, 24-hour mean PM2.5 (µg/m³).
WHO_PM2_5_24H = 15.0
#: WHO 2021 air-quality guideline, 24-hour mean PM10 (µg/m³).
WHO_PM10_24H = 45.0

#: Marker colour of each delivery outcome in the accuracy chart.
OUTCOME_COLORS: dict[str, str] = {
    "ok": "#2ca02c",
    "retry": "#ff7f0e",
    "dead": "#d62728",
    "lost": "#9467bd",
    "released": "#7f7f7f",
}

_POLLUTANTS = (
    # column, legend name, colour, guideline
    ("pm2_5", "PM2.5", "#1f77b4", WHO_PM2_5_24H),
    ("pm10", "PM10", "#e6550d", WHO_PM10_24H),
)
_DASHES = ("solid", "dashed", "dotdash", "dotted")
_NO_DATA = "no data yet"
_TOOLS = "pan,xwheel_zoom,box_zoom,reset,save"
_HOUR = pd.Timedelta(hours=1)


def setup_notebook() -> None:
    """Load BokehJS into the notebook from the installed package (no CDN, works offline)."""
    from bokeh.io import output_notebook

    output_notebook(resources=INLINE, hide_banner=True)


# -- time helpers ---------------------------------------------------------------------------


def _now(now: datetime | float | None, store: Store | None) -> pd.Timestamp:
    if now is None:
        now = store.clock.now() if store is not None else datetime.now(UTC)
    if isinstance(now, int | float):
        return pd.Timestamp(now, unit="s", tz="UTC")
    stamp = pd.Timestamp(now)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _naive_utc(values: Any) -> pd.DatetimeIndex:
    """Bokeh draws datetimes without a zone; give it UTC wall time."""
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return index.tz_convert("UTC").tz_localize(None)


def _describe(moment: pd.Timestamp | None, now: pd.Timestamp) -> str:
    if moment is None or pd.isna(moment):
        return "never"
    seconds = (moment - now).total_seconds()
    amount = span_text(seconds)
    when = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"{when} (in {amount})" if seconds > 0 else f"{when} ({amount} ago)"


# -- readings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    start: pd.Timestamp
    end: pd.Timestamp


def _window(now: pd.Timestamp, days: float) -> _Window:
    """The ``days`` × 24 whole hours up to ``now``'s hour: the hours the collector keeps."""
    end = now.floor("h")
    # The same rule as the collector's first hour; one hour more would always be empty.
    return _Window(start=end - pd.Timedelta(days=days) + _HOUR, end=end)


def _read_readings(store: Store, window: _Window, location: str | None) -> pd.DataFrame:
    from airq_nb import read_readings

    return read_readings(store, since=window.start.to_pydatetime(), location=location)


def _hourly_series(
    readings: pd.DataFrame, window: _Window, *, location: str | None, source: str | None
) -> dict[str, dict[str, Any]]:
    """One hourly column set per (location, source), reindexed so a missing hour is NaN.

    NaN breaks a Bokeh line, so an hour the collector missed shows as a gap, not a join.
    """
    hours = pd.date_range(window.start, window.end, freq="h")
    frame = readings
    if len(frame):
        frame = frame.copy()
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True)).floor("h")
        frame = frame[(frame.index >= window.start) & (frame.index <= window.end)]
        for column_name, wanted in (("location", location), ("source", source)):
            if wanted is not None and column_name in frame:
                frame = frame[frame[column_name] == wanted]
    groups: dict[str, dict[str, Any]] = {}
    if len(frame):
        keys = [c for c in ("location", "source") if c in frame]
        grouped = frame.groupby(keys, sort=True, dropna=False) if keys else [((), frame)]
        for key, part in grouped:
            key = key if isinstance(key, tuple) else (key,)
            label = " · ".join(str(k) for k in key if k is not None and not pd.isna(k))
            groups[label] = _columns(part, hours)
            groups[label]["series"] = [label] * len(hours)
    return groups


def _columns(part: pd.DataFrame, hours: pd.DatetimeIndex) -> dict[str, Any]:
    values = {}
    for name, *_ in _POLLUTANTS:
        raw = part[name] if name in part else pd.Series(np.nan, index=part.index)
        numbers = pd.to_numeric(raw, errors="coerce").astype("float64")
        # Two readings of the same hour (a re-fetch) are one value.
        values[name] = numbers.groupby(level=0).mean().reindex(hours).to_numpy()
    pm2_5, pm10 = values["pm2_5"], values["pm10"]
    with np.errstate(invalid="ignore"):
        both_missing = np.isnan(pm2_5) & np.isnan(pm10)
        top = np.where(both_missing, np.nan, np.fmax(pm2_5, pm10))
    return {
        "time": _naive_utc(hours),
        "pm2_5": pm2_5,
        "pm10": pm10,
        # An invisible marker at the higher value carries one tooltip per hour.
        "hover_y": top,
    }


def _y_end(groups: Mapping[str, Mapping[str, Any]]) -> float:
    top = max(WHO_PM10_24H, WHO_PM2_5_24H)
    for data in groups.values():
        finite = data["hover_y"][np.isfinite(data["hover_y"])]
        if finite.size:
            top = max(top, float(finite.max()))
    return math.ceil(top * 1.1)


def _readings_title(groups: Mapping[str, Any], days: float, location: str | None) -> str:
    where = f" in {location}" if location else ""
    text = f"PM2.5 and PM10{where}, last {days:g} days (µg/m³, hourly)"
    has_data = any(
        np.isfinite(data["hover_y"]).any() for data in groups.values() if len(data["hover_y"])
    )
    return text if has_data else f"{text}: {_NO_DATA}"


@dataclass(frozen=True)
class _ReadingsView:
    """What the readings chart shows, computed apart from drawing so a refresh skips Bokeh."""

    window: _Window
    groups: dict[str, dict[str, Any]]
    title: str
    y_end: float
    has_data: bool


def _readings_view(
    data: pd.DataFrame | Store,
    *,
    days: float,
    now: datetime | float | None,
    location: str | None,
    source: str | None,
) -> _ReadingsView:
    store = None if isinstance(data, pd.DataFrame) else data
    window = _window(_now(now, store), days)
    readings = data if store is None else _read_readings(store, window, location)
    groups = _hourly_series(readings, window, location=location, source=source)
    return _ReadingsView(
        window=window,
        groups=groups,
        title=_readings_title(groups, days, location),
        y_end=_y_end(groups),
        has_data=any(np.isfinite(d["hover_y"]).any() for d in groups.values()),
    )


def readings_chart(
    data: pd.DataFrame | Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    location: str | None = None,
    source: str | None = None,
    height: int = 360,
) -> Figure:
    """PM2.5 and PM10 over the last ``days`` with hover, pan/zoom and the WHO 24-h guidelines.

    ``data`` is a DataFrame as :func:`airq_nb.read_readings` returns it, or a store to read
    one from. Missing hours are gaps; with no readings the chart says "no data yet".
    """
    view = _readings_view(data, days=days, now=now, location=location, source=source)
    return _draw_readings(view, height=height)


def _x_range(window: _Window) -> tuple[Any, Any]:
    return _naive_utc([window.start])[0], _naive_utc([window.end + _HOUR])[0]


def _time_figure(
    *, title: str, name: str, height: int, y_label: str, x_label: str = "time (UTC)", **ranges: Any
) -> Figure:
    """A full-width figure over UTC time with pan, wheel zoom (on by default) and reset."""
    fig = figure(
        title=title,
        x_axis_type="datetime",
        height=height,
        sizing_mode="stretch_width",
        tools=_TOOLS,
        active_scroll="xwheel_zoom",
        name=name,
        **ranges,
    )
    fig.xaxis.axis_label = x_label
    fig.yaxis.axis_label = y_label
    return fig


def _draw_readings(view: _ReadingsView, *, height: int) -> Figure:
    window, groups = view.window, view.groups
    fig = _time_figure(
        title=view.title,
        name="readings_chart",
        height=height,
        y_label="µg/m³",
        x_range=Range1d(*_x_range(window)),
        y_range=Range1d(0, view.y_end),
    )
    first_of: dict[str, Any] = {}
    hover_renderers = []
    for number, (label, columns) in enumerate(groups.items()):
        cds = ColumnDataSource(columns, name=f"readings:{label}")
        dash = _DASHES[number % len(_DASHES)]
        for name, legend, color, _ in _POLLUTANTS:
            legend_label = legend if len(groups) == 1 else f"{legend} ({label})"
            line = fig.line(
                "time",
                name,
                source=cds,
                color=color,
                line_width=2,
                line_dash=dash,
                legend_label=legend_label,
                name=f"{name}:{label}",
            )
            # Markers make a single reading, or one isolated by gaps, visible at all.
            fig.scatter(
                "time",
                name,
                source=cds,
                color=color,
                size=4,
                legend_label=legend_label,
                name=f"{name}:{label}:markers",
            )
            first_of.setdefault(name, line)
        hover_renderers.append(
            fig.scatter("time", "hover_y", source=cds, alpha=0, size=5, name=f"hover:{label}")
        )
    fig.add_tools(
        HoverTool(
            renderers=hover_renderers,
            mode="vline",
            tooltips=[
                ("time", "@time{%Y-%m-%d %H:%M} UTC"),
                ("PM2.5", "@pm2_5{0.0} µg/m³"),
                ("PM10", "@pm10{0.0} µg/m³"),
                *([("series", "@series")] if len(groups) > 1 else []),
            ],
            formatters={"@time": "datetime"},
        )
    )
    for name, legend, color, guideline in _POLLUTANTS:
        span = Span(
            location=guideline,
            dimension="width",
            line_color=color,
            line_dash="dashed",
            line_width=1.5,
            line_alpha=0.8,
            name=f"who:{name}",
        )
        label = Label(
            x=6,
            x_units="screen",
            y=guideline,
            y_offset=3,
            text=f"WHO 24-h guideline {legend}: {guideline:g} µg/m³",
            text_color=color,
            text_font_size="9pt",
            # Readable where a series crosses it.
            background_fill_color="white",
            background_fill_alpha=0.8,
            name=f"who_label:{name}",
        )
        fig.add_layout(span)
        fig.add_layout(label)
        if name in first_of:
            # Hiding a series from the legend hides its guideline too.
            first_of[name].js_link("visible", span, "visible")
            first_of[name].js_link("visible", label, "visible")
    fig.add_layout(_no_data_label(view, text=f"{_NO_DATA}: start the collector"))
    if groups:
        _legend_above(fig)
    return fig


def _legend_above(fig: Figure) -> None:
    """A horizontal legend above the plot, where it hides no data; a click hides a series."""
    legend = fig.legend[0]
    fig.center.remove(legend)
    legend.update(click_policy="hide", orientation="horizontal", location="top_left")
    fig.add_layout(legend, "above")


def _no_data_position(view: _ReadingsView) -> dict[str, Any]:
    middle = view.window.start + (view.window.end - view.window.start) / 2
    return {"x": _naive_utc([middle])[0], "y": view.y_end / 2, "visible": not view.has_data}


def _no_data_label(view: _ReadingsView, *, text: str) -> Label:
    return Label(
        text=text, text_align="center", text_font_size="16pt", text_color="#666666",
        name="no_data", **_no_data_position(view),
    )  # fmt: skip


# -- delivery accuracy -----------------------------------------------------------------------


def _read_delivery_log(store: Store, since: pd.Timestamp) -> pd.DataFrame:
    from airq_nb import read_delivery_log

    return read_delivery_log(store, since=since.to_pydatetime())


def _delivery_columns(log: pd.DataFrame, window: _Window) -> dict[str, dict[str, Any]]:
    """Columns per outcome: each outcome is its own legend entry that a click can hide."""
    frame = log
    if len(frame):
        frame = frame.copy()
        frame["scheduled_at"] = pd.to_datetime(frame["scheduled_at"], utc=True)
        frame = frame[frame["scheduled_at"] >= window.start]
    out = {}
    for outcome in OUTCOME_COLORS:
        part = frame[frame["outcome"] == outcome] if len(frame) else frame
        lateness = (
            pd.to_numeric(part["lateness_ms"], errors="coerce").astype("float64").to_numpy()
            if len(part)
            else np.array([], dtype="float64")
        )

        def text(name: str, part: pd.DataFrame = part) -> list[str]:
            if not len(part) or name not in part:
                return [""] * len(part)
            return [
                "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in part[name]
            ]

        out[outcome] = {
            "time": _naive_utc(part["scheduled_at"]) if len(part) else _naive_utc([]),
            "lateness_ms": lateness,
            "zero": np.zeros(len(part)),
            "outcome": [outcome] * len(part),
            "topic": text("topic"),
            "schedule": text("schedule"),
            "attempt": text("attempt"),
            "message_id": text("message_id"),
            "error": text("error"),
        }
    return out


def _delivery_title(columns: Mapping[str, Mapping[str, Any]], days: float) -> str:
    count = sum(len(c["lateness_ms"]) for c in columns.values())
    text = f"Delivery accuracy: lateness of each delivery, last {days:g} days (ms)"
    return text if count else f"{text}: no deliveries yet"


def _delivery_view(
    data: pd.DataFrame | Store, *, days: float, now: datetime | float | None
) -> dict[str, dict[str, Any]]:
    store = None if isinstance(data, pd.DataFrame) else data
    window = _window(_now(now, store), days)
    log = data if store is None else _read_delivery_log(store, window.start)
    return _delivery_columns(log, window)


def delivery_chart(
    data: pd.DataFrame | Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    height: int = 260,
) -> Figure:
    """Lateness (start − scheduled, ms) of each delivery, coloured by outcome.

    ``data`` is a DataFrame as :func:`airq_nb.read_delivery_log` returns it, or a store.
    """
    columns = _delivery_view(data, days=days, now=now)
    fig = _time_figure(
        title=_delivery_title(columns, days),
        name="delivery_chart",
        height=height,
        x_label="scheduled time (UTC)",
        y_label="lateness (ms)",
    )
    markers = []
    for outcome, color in OUTCOME_COLORS.items():
        cds = ColumnDataSource(columns[outcome], name=f"deliveries:{outcome}")
        fig.segment(
            "time",
            "zero",
            "time",
            "lateness_ms",
            source=cds,
            color=color,
            line_width=1,
            legend_label=outcome,
            name=f"stem:{outcome}",
        )
        markers.append(
            fig.scatter(
                "time",
                "lateness_ms",
                source=cds,
                color=color,
                size=7,
                legend_label=outcome,
                name=f"delivery:{outcome}",
            )
        )
    fig.add_tools(
        HoverTool(
            renderers=markers,
            tooltips=[
                ("scheduled", "@time{%Y-%m-%d %H:%M:%S} UTC"),
                ("lateness", "@lateness_ms{0,0.0} ms"),
                ("outcome", "@outcome"),
                ("topic", "@topic"),
                ("schedule", "@schedule"),
                ("attempt", "@attempt"),
                ("message", "@message_id"),
                ("error", "@error"),
            ],
            formatters={"@time": "datetime"},
        )
    )
    _legend_above(fig)
    fig.add_layout(
        Label(
            x=6,
            y=6,
            x_units="screen",
            y_units="screen",
            text="no deliveries yet",
            text_font_size="14pt",
            text_color="#666666",
            name="no_data",
            visible=not any(len(c["lateness_ms"]) for c in columns.values()),
        )
    )
    return fig


# -- stats -----------------------------------------------------------------------------------


def _stats_rows(store: Store, now: pd.Timestamp, *, location: str | None) -> list[tuple[str, str]]:
    """The stats panel's lines as plain text: what was fetched, delivered and is due next."""
    from airq_nb import store_status

    readings = _read_readings(store, _window(now, 7), location)
    status = store_status(store)
    last_fetched = newest = None
    if len(readings):
        fetched = pd.to_datetime(readings["fetched_at"], utc=True, errors="coerce")
        last_fetched = fetched.max() if fetched.notna().any() else None
        newest = pd.DatetimeIndex(pd.to_datetime(readings.index, utc=True)).max()
    delivery = "none yet"
    if status.last_outcome is not None:
        delivery = str(status.last_outcome)
        if status.last_delivery_accuracy_ms is not None:
            delivery += f", started {status.last_delivery_accuracy_ms:,.0f} ms after it was due"
    next_due = pd.Timestamp(status.next_due) if status.next_due is not None else None
    return [
        ("Data last fetched", _describe(last_fetched, now)),
        ("Newest reading", _describe(newest, now) if newest is not None else _NO_DATA),
        ("Readings (7 days)", f"{len(readings):,}"),
        ("Last delivery", delivery),
        ("Last error", status.last_error or "none"),
        ("Next delivery due", _describe(next_due, now) if next_due is not None else "nothing due"),
        ("Backlog / dead letters", f"{status.backlog} / {status.dead_letters}"),
    ]


def _stats_html(store: Store, now: pd.Timestamp, *, location: str | None) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(name)}</th>"
        f"<td>{html.escape(value)}</td></tr>"
        for name, value in _stats_rows(store, now, location=location)
    )
    return f"<table class='airq-stats'>{cells}</table>"


def stats_panel(
    store: Store, *, now: datetime | float | None = None, location: str | None = None
) -> Div:
    """A small table: data last fetched, last delivery result, next delivery due."""
    return Div(text=_stats_html(store, _now(now, store), location=location), name="stats_panel")


def dashboard(
    store: Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    location: str | None = None,
) -> LayoutDOM:
    """The readings chart, the delivery-accuracy chart and the stats panel, one above another."""
    return column(
        readings_chart(store, days=days, now=now, location=location),
        delivery_chart(store, days=days, now=now),
        stats_panel(store, now=now, location=location),
        sizing_mode="stretch_width",
        name="dashboard",
    )


# -- live updates ----------------------------------------------------------------------------


def _move(axis_range: Range1d, start: Any, end: Any) -> None:
    """Set a range and where the Reset tool returns to, sending only what changed."""
    for attr, value in (("start", start), ("end", end), ("reset_start", start), ("reset_end", end)):
        if getattr(axis_range, attr) != value:
            setattr(axis_range, attr, value)


class LiveChart(PeriodicRefresh):
    """The dashboard as a widget that :meth:`refresh` updates in place, without re-running a cell.

    Display it in a notebook (it renders through jupyter_bokeh's ``BokehModel``), then call
    :meth:`start` to refresh every ``interval`` seconds from a task on the kernel's event loop.
    """

    def __init__(
        self,
        store: Store,
        *,
        days: float = 7,
        location: str | None = None,
        interval: float = 60.0,
    ) -> None:
        self.store = store
        self.days = days
        self.location = location
        self.interval = interval
        self.layout = dashboard(store, days=days, location=location)
        self._index()
        self._model: Any = None
        self.refreshes = 0

    @property
    def model(self) -> Any:
        """The ``jupyter_bokeh.BokehModel`` widget (created on first use)."""
        if self._model is None:
            from jupyter_bokeh import BokehModel

            self._model = BokehModel(self.layout, combine_events=True)
        return self._model

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.model._repr_mimebundle_(**kwargs)

    def _index(self) -> None:
        """Find the models a refresh updates, once: Bokeh's ``select`` walks every model."""
        readings, delivery, _ = self.layout.children
        self._readings_sources = {
            cds.name: cds
            for cds in readings.select({"type": ColumnDataSource})
            if cds.name.startswith("readings:")
        }
        self._readings_label = readings.select_one({"name": "no_data"})
        self._ranges = (readings.x_range.start, readings.x_range.end, readings.y_range.end)
        self._delivery_sources = {
            outcome: delivery.select_one({"name": f"deliveries:{outcome}"})
            for outcome in OUTCOME_COLORS
        }
        self._delivery_label = delivery.select_one({"name": "no_data"})

    def refresh(self, *, now: datetime | float | None = None) -> None:
        """Read the store again and update the charts' data, titles and ranges in place."""
        readings, delivery, stats = self.layout.children
        view = _readings_view(
            self.store, days=self.days, now=now, location=self.location, source=None
        )
        if {f"readings:{name}" for name in view.groups} != self._readings_sources.keys():
            # A new location or source appeared: the series change, so swap the whole chart.
            self.layout.children[0] = _draw_readings(view, height=readings.height)
            self._index()
        else:
            for name, columns in view.groups.items():
                self._readings_sources[f"readings:{name}"].data = columns
            readings.title.text = view.title
            ranges = (*_x_range(view.window), view.y_end)
            if ranges != self._ranges:
                # Only when the window moved on (hourly) or the data outgrew the axis, so a
                # user's pan and zoom survive the refreshes in between.
                _move(readings.x_range, ranges[0], ranges[1])
                _move(readings.y_range, 0, ranges[2])
                self._ranges = ranges
            self._readings_label.update(**_no_data_position(view))
        columns = _delivery_view(self.store, days=self.days, now=now)
        for outcome, cds in self._delivery_sources.items():
            cds.data = columns[outcome]
        delivery.title.text = _delivery_title(columns, self.days)
        self._delivery_label.visible = not any(len(c["lateness_ms"]) for c in columns.values())
        stats.text = _stats_html(self.store, _now(now, self.store), location=self.location)
        self.refreshes += 1

    def as_text(self) -> str:
        """What the charts show, as plain text, for headless runs and logs."""
        readings, delivery, _ = self.layout.children
        lines = [readings.title.text]
        for name, cds in self._readings_sources.items():
            hours = int(np.isfinite(cds.data["hover_y"]).sum())
            lines.append(f"  {name.split(':', 1)[1]}: {hours} hours with readings")
        lines.append(delivery.title.text)
        for outcome, cds in self._delivery_sources.items():
            if len(cds.data["lateness_ms"]):
                lines.append(f"  {outcome}: {len(cds.data['lateness_ms'])} deliveries")
        now = _now(None, self.store)
        lines.extend(
            f"{name}: {value}"
            for name, value in _stats_rows(self.store, now, location=self.location)
        )
        return "\n".join(lines)

    def _report(self, error: BaseException) -> None:
        stats = self.layout.children[2]
        stats.text = f"<p>refresh failed: {html.escape(repr(error))}; trying again</p>"
