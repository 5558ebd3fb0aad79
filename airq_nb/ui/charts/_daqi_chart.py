"""Is the air bad today? 24-hour means (or hourly values, for the European AQI 2024) against
the bands of the chosen index (UK DAQI, US EPA AQI, European AQI or WHO; see
``_index_bands``) and the WHO 2021 guidelines."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bokeh.models import ColumnDataSource, Range1d

from ...daqi import WHO_24H
from ...indices import IndexResult
from ...indices._tables import DAQI_COLOURS
from ._capture import capture_notes, draw_capture, today_means, update_capture
from ._figures import (
    SERIES_COLORS,
    hour_hover,
    legend_above,
    no_data_label,
    stacked_tooltip,
    time_figure,
    x_range,
    y_end,
)
from ._index_bands import IndexChoice, band_number_column, draw_bands, index_key_html
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
DAQI_COLORS = DAQI_COLOURS
#: Line colours of the series (dark, to read over the band shading).
_HOUR_TEXT = {"rolling": "24-hour running mean", "calendar": "daily mean"}


def daqi_columns(
    series: Series, pollutant: str, tz: str, choice: IndexChoice | None = None
) -> dict[str, Any]:
    """One series' 24-hour means of ``pollutant`` (hourly values for an hourly index), each
    hour's band in words, and its index value in a column named by index and version
    (e.g. ``daqi_2013``, ``epa_2024``)."""
    choice = choice or _DAQI
    means = choice.values(series, pollutant)
    results = [choice.place(pollutant, value) for value in means]
    return {
        "time": wall(means.index, tz),
        "time_text": stamp_text(means.index, tz),
        "mean": means.to_numpy(dtype="float64"),
        "band": ["" if r is None else choice.text(r) for r in results],
        choice.label: band_number_column(results),
        "series": [series.label] * len(means),
    }


def hover_columns(view: ReadingsView, pollutant: str) -> dict[str, Any]:
    """One row per hour, every series' 24-hour mean and its band as text, for one tooltip."""
    hours = view.span.hours
    columns: dict[str, Any] = {
        **hour_columns(hours, view.tz),
        "time_text": stamp_text(hours, view.tz),
    }
    choice = view.index
    missing = "no hourly value" if choice.hourly else "no 24-h mean"
    for number, series in enumerate(view.series):
        texts = []
        notes = capture_notes(series, pollutant)
        for value, note in zip(choice.values(series, pollutant), notes, strict=True):
            r = choice.place(pollutant, value)
            if choice.hourly:
                texts.append(missing if r is None else f"{value:.1f} µg/m³, {choice.text(r)}")
            else:
                texts.append(note if r is None else f"{value:.1f} µg/m³, {choice.text(r)}; {note}")
        columns[f"mean_{number}"] = texts
        columns[f"series_{number}"] = [series.label] * len(hours)
    return columns


def hover_tooltips(view: ReadingsView, pollutant: str) -> list[tuple[str, str]] | str:
    """The hour (the last of the 24 the mean covers), then each series' mean and band."""
    what = "hourly" if view.index.hourly else "24-h mean"
    if len(view.series) > 1:
        entries = [(series.label, f"@mean_{n}") for n, series in enumerate(view.series)]
        return stacked_tooltip(f"{what} {POLLUTANTS[pollutant]} up to @time_text", entries)
    rows = [("up to the hour", "@time_text")]
    if view.series:
        rows += [(what, "@mean_0"), ("series", "@series_0")]
    return rows


def _title(view: ReadingsView, pollutant: str) -> str:
    name, table = POLLUTANTS[pollutant], view.index.table(pollutant)
    what = "hourly values" if view.index.hourly else _HOUR_TEXT[view.mean]
    text = f"{name}: {what} against the {table.title} bands"
    return text if view.has_data else f"{text}: {NO_DATA}"


def _y_end(view: ReadingsView, pollutant: str) -> float:
    # At least up to the table's floor band (DAQI 5), so the first bands of concern are in sight.
    floor = view.index.table(pollutant).floor
    values = [view.index.values(s, pollutant).to_numpy() for s in view.series]
    return y_end(values, floor=floor)


def draw_daqi(view: ReadingsView, pollutant: str, *, height: int = 300) -> Figure:
    """The 24-hour means of ``pollutant``, one line per series, over the shaded bands of the
    view's index."""
    top = _y_end(view, pollutant)
    what = "hourly" if view.index.hourly else "24-h mean"
    fig = time_figure(
        title=_title(view, pollutant), name=f"daqi_chart:{pollutant}", height=height,
        y_label=f"{POLLUTANTS[pollutant]} {what} (µg/m³)", span=view.span, tz=view.tz,
        y_range=Range1d(0, top),
    )  # fmt: skip
    draw_bands(fig, view.index, pollutant)
    guideline = WHO_24H[pollutant]
    fig.hspan(
        y=[guideline], line_color="#333333", line_dash="dashed", line_width=1.5,
        legend_label=f"WHO 24-h guideline {POLLUTANTS[pollutant]}: {guideline:g} µg/m³",
        name=f"who:{pollutant}",
    )  # fmt: skip
    for number, series in enumerate(view.series):
        cds = ColumnDataSource(
            daqi_columns(series, pollutant, view.tz, view.index),
            name=f"means:{pollutant}:{series.key}",
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
        cds.data = daqi_columns(series, pollutant, view.tz, view.index)
    update_capture(view, pollutant, models)
    models[f"means_hover:{pollutant}"].data = hover_columns(view, pollutant)
    fig.title.text = _title(view, pollutant)
    models["no_data"].visible = not view.has_data
    return (*x_range(view.span, view.tz), _y_end(view, pollutant))


def _pollutant_text(
    pollutant: str, value: float, band: IndexResult | None, choice: IndexChoice
) -> str:
    name, guideline = POLLUTANTS[pollutant], WHO_24H[pollutant]
    side = "above" if above_guideline(pollutant, value) else "within"
    index = choice.tag(band) if band is not None else "no band"
    return f"{name} {value:.1f} µg/m³ ({index}; {side} the WHO guideline of {guideline:g})"


def _today(series: Series, view: ReadingsView) -> tuple[str, dict[str, Any]]:
    """What today's level is placed from (in words), and per pollutant its hour, value and
    band on the view's index: the newest hourly value (EEA 2024) or 24-hour mean."""
    choice = view.index
    if choice.hourly:
        today = choice.today(series)
        if not today:
            return "", {}
        (until,) = stamp_text([max(hour for hour, *_ in today.values())], view.tz)
        return f"hourly value of the {until} hour", today
    when, means = today_means(series, view)
    return when, {p: (hour, value, choice.place(p, value)) for p, (hour, value) in means.items()}


def _series_sentence(series: Series, view: ReadingsView) -> tuple[str, str]:
    """(the level in words, the details) for one series' newest 24-hour means."""
    when, today = _today(series, view)
    choice = view.index
    if not today:
        return (
            "not known yet",
            f"a 24-hour mean needs {MEAN_MIN_HOURS} of its 24 hours; not enough readings",
        )
    worst = max((band for *_, band in today.values() if band), key=lambda b: b.band_number)
    details = "; ".join(
        _pollutant_text(p, value, band, choice) for p, (_, value, band) in today.items()
    )
    now = choice.nowcast_text(series)
    return choice.text(worst), f"{when}: {details}" + (f"; {now}" if now else "")


def today_lines(view: ReadingsView) -> list[str]:
    """Today's band of each series in words on the view's index, e.g. "London · Open-Meteo
    (modelled): Low (DAQI 2), 24-hour mean to 2026-11-28 13:00 GMT: PM2.5 18.4 µg/m³ (DAQI 2;
    …)"; the EPA AQI adds the NowCast of the newest hour."""
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
        color = max(bands, key=lambda b: b.band_number).colour if bands else "#dddddd"
        rows.append(
            f"<li><b>{html.escape(series.label)}</b>: "
            f"<span style='background:{color};padding:0 4px;border-radius:3px'>"
            f"<b>{html.escape(level)}</b></span>, {html.escape(details)}</li>"
        )
    return (
        "<div class='airq-today'><b>Is the air bad today?</b> "
        f"{html.escape(view.index.intro)}, as of {html.escape(_as_of(view))}"
        f"<ul style='margin:4px 0'>{''.join(rows)}</ul></div>"
    )


def _as_of(view: ReadingsView) -> str:
    (now,) = stamp_text([view.now], view.tz)
    return now


def daqi_key_html(choice: IndexChoice | None = None) -> str:
    """The bands of both pollutants (of ``choice``; the DAQI by default) as coloured cells."""
    return index_key_html(choice or _DAQI)


_DAQI = IndexChoice("daqi", "2013")
