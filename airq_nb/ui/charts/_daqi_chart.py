"""Is the air bad today? 24-hour means against the UK DAQI bands and the WHO 2021 guidelines."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bokeh.models import (
    BoxAnnotation,
    ColumnDataSource,
    FixedTicker,
    LinearAxis,
    Range1d,
)

from ...daqi import WHO_24H, DaqiBand, daqi_band, daqi_bands
from ._capture import capture_notes, draw_capture, today_means, update_capture
from ._figures import (
    hour_hover,
    legend_above,
    no_data_label,
    stacked_tooltip,
    time_figure,
    x_range,
    y_end,
)
from ._readings import NO_DATA
from ._series import MEAN_MIN_HOURS, POLLUTANTS, Series, above_guideline
from ._time import hour_columns, stamp_text, wall
from ._view import ReadingsView

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

__all__ = [
    "DAQI_COLORS",
    "daqi_columns",
    "daqi_key_html",
    "draw_daqi",
    "headline_html",
    "today_lines",
    "update_daqi",
]

#: The colour UK-AIR gives each DAQI band, 1 (lightest green) to 10 (purple).
DAQI_COLORS = (
    "#9cff9c", "#31ff00", "#31cf00", "#ffff00", "#ffcf00",
    "#ff9a00", "#ff6464", "#ff0000", "#990000", "#ce30ff",
)  # fmt: skip
#: Line colours of the series (dark, to read over the band shading).
SERIES_COLORS = ("#08306b", "#000000", "#6a3d9a", "#8c510a", "#01665e", "#c51b7d")
_HOUR_TEXT = {"rolling": "24-hour running mean", "calendar": "daily mean"}


def _band_edges(band: DaqiBand, bands: tuple[DaqiBand, ...]) -> tuple[float | None, float | None]:
    """Where a band's shading starts and ends: half a µg/m³ below its whole-number edges,
    because a mean is rounded halves-up before it is placed (see ``airq_nb.daqi``)."""
    bottom = None if band.index == 1 else band.lower - 0.5
    top = None if band.upper is None else bands[band.index].lower - 0.5
    return bottom, top


def _band_axis(fig: Figure, bands: tuple[DaqiBand, ...]) -> None:
    """A narrow right-hand axis numbering each band at its middle, 1 to 10 (the levels in
    words are in the headline and the key, which have the room)."""
    middles = {}
    for band in bands:
        bottom, top = _band_edges(band, bands)
        low = 0.0 if bottom is None else bottom
        high = low + 10 if top is None else top
        middles[(low + high) / 2] = str(band.index)
    axis = LinearAxis(
        ticker=FixedTicker(ticks=list(middles)), major_label_overrides=middles,
        axis_label="DAQI band", major_tick_line_color=None, minor_tick_line_color=None,
        major_label_text_font_size="9pt", name="daqi_axis",
    )  # fmt: skip
    fig.add_layout(axis, "right")


def daqi_columns(series: Series, pollutant: str, tz: str) -> dict[str, Any]:
    """One series' 24-hour means of ``pollutant``, with each hour's band in words."""
    means = series.hourly[f"mean_{pollutant}"]
    bands = [daqi_band(pollutant, value) for value in means]
    return {
        "time": wall(means.index, tz),
        "time_text": stamp_text(means.index, tz),
        "mean": means.to_numpy(dtype="float64"),
        "band": ["" if band is None else band.text for band in bands],
        "series": [series.label] * len(means),
    }


def hover_columns(view: ReadingsView, pollutant: str) -> dict[str, Any]:
    """One row per hour, every series' 24-hour mean and its band as text, for one tooltip."""
    hours = view.span.hours
    columns: dict[str, Any] = {
        **hour_columns(hours, view.tz),
        "time_text": stamp_text(hours, view.tz),
    }
    for number, series in enumerate(view.series):
        texts = []
        notes = capture_notes(series, pollutant)
        for value, note in zip(series.hourly[f"mean_{pollutant}"], notes, strict=True):
            band = daqi_band(pollutant, value)
            texts.append(note if band is None else f"{value:.1f} µg/m³, {band.text}; {note}")
        columns[f"mean_{number}"] = texts
        columns[f"series_{number}"] = [series.label] * len(hours)
    return columns


def hover_tooltips(view: ReadingsView, pollutant: str) -> list[tuple[str, str]] | str:
    """The hour (the last of the 24 the mean covers), then each series' mean and band."""
    if len(view.series) > 1:
        entries = [(series.label, f"@mean_{n}") for n, series in enumerate(view.series)]
        return stacked_tooltip(f"24-h mean {POLLUTANTS[pollutant]} up to @time_text", entries)
    rows = [("up to the hour", "@time_text")]
    if view.series:
        rows += [("24-h mean", "@mean_0"), ("series", "@series_0")]
    return rows


def _title(view: ReadingsView, pollutant: str) -> str:
    name = POLLUTANTS[pollutant]
    text = f"{name}: {_HOUR_TEXT[view.mean]} against the DAQI bands"
    return text if view.has_data else f"{text}: {NO_DATA}"


def _y_end(view: ReadingsView, pollutant: str) -> float:
    # At least up to band 5, so the Low bands and the first Moderate one are always in sight.
    floor = daqi_bands(pollutant)[4].lower - 0.5
    return y_end([s.hourly[f"mean_{pollutant}"].to_numpy() for s in view.series], floor=floor)


def draw_daqi(view: ReadingsView, pollutant: str, *, height: int = 300) -> Figure:
    """The 24-hour means of ``pollutant``, one line per series, over the shaded DAQI bands."""
    top = _y_end(view, pollutant)
    fig = time_figure(
        title=_title(view, pollutant), name=f"daqi_chart:{pollutant}", height=height,
        y_label=f"{POLLUTANTS[pollutant]} 24-h mean (µg/m³)", span=view.span, tz=view.tz,
        y_range=Range1d(0, top),
    )  # fmt: skip
    bands = daqi_bands(pollutant)
    for band in bands:
        bottom, band_top = _band_edges(band, bands)
        fig.add_layout(
            BoxAnnotation(
                bottom=bottom, top=band_top, fill_color=DAQI_COLORS[band.index - 1],
                fill_alpha=0.3, line_alpha=0, level="underlay",
                name=f"band:{pollutant}:{band.index}",
            )
        )  # fmt: skip
    _band_axis(fig, bands)
    guideline = WHO_24H[pollutant]
    fig.hspan(
        y=[guideline], line_color="#333333", line_dash="dashed", line_width=1.5,
        legend_label=f"WHO 24-h guideline {POLLUTANTS[pollutant]}: {guideline:g} µg/m³",
        name=f"who:{pollutant}",
    )  # fmt: skip
    for number, series in enumerate(view.series):
        cds = ColumnDataSource(
            daqi_columns(series, pollutant, view.tz), name=f"means:{pollutant}:{series.key}"
        )
        fig.line(
            "time", "mean", source=cds, line_width=2.5,
            color=SERIES_COLORS[number % len(SERIES_COLORS)],
            # Modelled estimates dashed, measured values solid.
            line_dash="dashed" if series.kind == "modelled" else "solid",
            legend_label=series.label, name=f"mean:{pollutant}:{series.key}",
        )  # fmt: skip
    draw_capture(fig, view, pollutant)
    hover = ColumnDataSource(hover_columns(view, pollutant), name=f"means_hover:{pollutant}")
    hour_hover(fig, hover, hover_tooltips(view, pollutant), name=f"hover:{pollutant}")
    fig.add_layout(no_data_label(NO_DATA, view.span, view.tz, y=top / 2, visible=not view.has_data))
    legend_above(fig)
    return fig


def update_daqi(
    fig: Figure, view: ReadingsView, pollutant: str, models: Mapping[str, Any]
) -> tuple[Any, Any, float]:
    """Put the view's means into a chart drawn for the same series; returns its home ranges."""
    for series in view.series:
        cds = models[f"means:{pollutant}:{series.key}"]
        cds.data = daqi_columns(series, pollutant, view.tz)
    update_capture(view, pollutant, models)
    models[f"means_hover:{pollutant}"].data = hover_columns(view, pollutant)
    fig.title.text = _title(view, pollutant)
    models["no_data"].visible = not view.has_data
    return (*x_range(view.span, view.tz), _y_end(view, pollutant))


def _pollutant_text(pollutant: str, value: float, band: DaqiBand | None) -> str:
    name, guideline = POLLUTANTS[pollutant], WHO_24H[pollutant]
    side = "above" if above_guideline(pollutant, value) else "within"
    index = f"DAQI {band.index}" if band is not None else "no band"
    return f"{name} {value:.1f} µg/m³ ({index}; {side} the WHO guideline of {guideline:g})"


def _today(series: Series, view: ReadingsView) -> tuple[str, dict[str, Any]]:
    """What today's means are (in words), and per pollutant their hour, value and band."""
    when, means = today_means(series, view)
    return when, {p: (hour, value, daqi_band(p, value)) for p, (hour, value) in means.items()}


def _series_sentence(series: Series, view: ReadingsView) -> tuple[str, str]:
    """(the level in words, the details) for one series' newest 24-hour means."""
    when, today = _today(series, view)
    if not today:
        return (
            "not known yet",
            f"a 24-hour mean needs {MEAN_MIN_HOURS} of its 24 hours; not enough readings",
        )
    worst = max((band for *_, band in today.values() if band), key=lambda b: b.index)
    details = "; ".join(_pollutant_text(p, value, band) for p, (_, value, band) in today.items())
    return worst.text, f"{when}: {details}"


def today_lines(view: ReadingsView) -> list[str]:
    """Today's DAQI band of each series in words, e.g. "London · Open-Meteo (modelled): Low
    (DAQI 2), 24-hour mean to 2026-11-28 13:00 GMT: PM2.5 18.4 µg/m³ (DAQI 2; …)"."""
    if not view.series:
        return [f"Air quality today: {NO_DATA}"]
    lines = []
    for series in view.series:
        level, details = _series_sentence(series, view)
        lines.append(f"{series.label}: {level}, {details}")
    return lines


def headline_html(view: ReadingsView) -> str:
    """Today's band of each series as HTML, the level in bold and in its band's colour."""
    if not view.series:
        return f"<div class='airq-today'><b>Air quality today:</b> {NO_DATA}</div>"
    rows = []
    for series in view.series:
        level, details = _series_sentence(series, view)
        _, today = _today(series, view)
        bands = [band for *_, band in today.values() if band]
        color = DAQI_COLORS[max(b.index for b in bands) - 1] if bands else "#dddddd"
        rows.append(
            f"<li><b>{html.escape(series.label)}</b>: "
            f"<span style='background:{color};padding:0 4px;border-radius:3px'>"
            f"<b>{html.escape(level)}</b></span>, {html.escape(details)}</li>"
        )
    return (
        "<div class='airq-today'><b>Is the air bad today?</b> "
        "UK Daily Air Quality Index (Low 1–3, Moderate 4–6, High 7–9, Very High 10), "
        f"as of {html.escape(_as_of(view))}"
        f"<ul style='margin:4px 0'>{''.join(rows)}</ul></div>"
    )


def _as_of(view: ReadingsView) -> str:
    (now,) = stamp_text([view.now], view.tz)
    return now


def daqi_key_html() -> str:
    """The DAQI bands of both pollutants as a small table of coloured cells."""
    rows = []
    for pollutant, name in POLLUTANTS.items():
        cells = "".join(
            f"<td style='background:{DAQI_COLORS[b.index - 1]};padding:1px 5px;"
            f"color:{'#ffffff' if b.index >= 8 else '#000000'};"
            f"text-align:center' title='{b.level}'>{b.index}<br>{b.range_text}</td>"
            for b in daqi_bands(pollutant)
        )
        rows.append(f"<tr><th style='text-align:left;padding-right:6px'>{name}</th>{cells}</tr>")
    return (
        "<table class='airq-daqi-key' style='border-collapse:collapse;font-size:11px'>"
        "<caption style='text-align:left'>DAQI bands, 24-hour mean µg/m³ "
        "(a mean is rounded to the nearest whole µg/m³, halves up)</caption>"
        f"{''.join(rows)}</table>"
    )
