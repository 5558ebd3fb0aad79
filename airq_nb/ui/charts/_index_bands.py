"""Which index the charts show (by place, or as asked) and its bands: shading, the right-hand
axis, the key, and each series' newest value placed on it. The rules are airq_nb.indices'."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from bokeh.models import BoxAnnotation, FixedTicker, LinearAxis

from ...indices import IndexResult, band_table, classify, default_index, nowcast
from ...indices._classify import VERSIONS, check_version
from ...indices._tables import EPA_CATEGORIES, BandTable
from ._series import POLLUTANTS

if TYPE_CHECKING:
    from bokeh.plotting import figure as Figure

    from ...store import Store
    from ._series import Series

__all__ = [
    "INDEX_CHOICES",
    "IndexChoice",
    "choose_index",
    "draw_bands",
    "frame_coordinates",
    "index_key_html",
    "place_coordinates",
]

#: What a picker offers: (label, index, version); index None means "by place".
INDEX_CHOICES: tuple[tuple[str, str | None, str | None], ...] = (
    ("By place", None, None),
    ("UK DAQI", "daqi", "2013"),
    ("US EPA AQI 2024", "epa", "2024"),
    ("US EPA AQI 2012", "epa", "2012"),
    ("European AQI 2024", "eaqi", "2024"),
    ("European AQI 2017", "eaqi", "2017"),
    ("WHO 2021 (24-hour)", "who", "2021"),
)
_INTROS = {
    "daqi": "UK Daily Air Quality Index, 2013 bands (Low 1–3, Moderate 4–6, High 7–9, "
    "Very High 10)",
    "epa": "US EPA Air Quality Index {version} (Good 0–50, Moderate 51–100, Unhealthy for "
    "Sensitive Groups 101–150, Unhealthy 151–200, Very Unhealthy 201–300, Hazardous 301+)",
    "eaqi": "European Air Quality Index {version} (levels Good, Fair, Moderate, Poor, Very "
    "poor{extreme})",
    "who": "WHO 2021 air quality guidelines: the AQG level and interim targets 4 to 1",
}
_AXIS_LABELS = {"daqi": "DAQI band", "epa": "US AQI", "eaqi": "EEA level", "who": "WHO level"}


@dataclass(frozen=True)
class IndexChoice:
    """The index and version the charts show, and whether the place chose it."""

    index: str
    version: str
    #: True when no index was asked for and the places' default was used.
    by_place: bool = False

    def table(self, pollutant: str) -> BandTable:
        return band_table(self.index, pollutant=pollutant, version=self.version)

    @property
    def label(self) -> str:
        """Index and version as one name for exported columns: "epa_2024"."""
        return f"{self.index}_{self.version}"

    @property
    def title(self) -> str:
        return self.table("pm2_5").title

    @property
    def hourly(self) -> bool:
        """Whether the index places hourly values (EEA 2024) rather than 24-hour means."""
        return self.table("pm2_5").averaging == "1h"

    def place(self, pollutant: str, value: float | None) -> IndexResult | None:
        """The band of one value, as the charts place it: None when missing, and a negative
        value (measured data can dip below zero) as 0, as ``airq_nb.daqi`` does."""
        if value is None or not math.isfinite(value):
            return None
        return classify(max(float(value), 0.0), index=self.index, pollutant=pollutant,
                        version=self.version)  # fmt: skip

    def tag(self, result: IndexResult) -> str:
        """The value with its index, and the version where the index has several:
        "DAQI 4", "US AQI 77 (2024)", "EEA level 2 (2024)"."""
        many = len(VERSIONS[self.index]) > 1
        return f"{result.short} ({self.version})" if many else result.short

    def text(self, result: IndexResult) -> str:
        """The band in words with its index and version: "Moderate (DAQI 4)",
        "Moderate (US AQI 77, 2024)", "Fair (EEA level 2, 2024)"."""
        many = len(VERSIONS[self.index]) > 1
        return f"{result.band} ({result.short}, {self.version})" if many else result.text

    def values(self, series: Series, pollutant: str) -> pd.Series:
        """What the index places, hour by hour: hourly values (EEA 2024) or 24-hour means."""
        return series.hourly[pollutant if self.hourly else f"mean_{pollutant}"]

    def today(self, series: Series) -> dict[str, tuple[pd.Timestamp, float, IndexResult | None]]:
        """Per pollutant: the newest placed value's hour, the value and its band."""
        out = {}
        for pollutant in POLLUTANTS:
            known = self.values(series, pollutant).dropna()
            if not known.empty:
                value = float(known.iloc[-1])
                out[pollutant] = (known.index[-1], value, self.place(pollutant, value))
        return out

    def nowcast_text(self, series: Series) -> str:
        """For the EPA AQI: the NowCast AQI of the newest hour of each pollutant, or ""."""
        if self.index != "epa":
            return ""
        parts = []
        for pollutant, name in POLLUTANTS.items():
            hours = series.hourly[pollutant].to_numpy(dtype="float64")[-12:]
            value = nowcast([max(h, 0.0) if math.isfinite(h) else None for h in hours],
                            pollutant=pollutant)  # fmt: skip
            if value is not None:
                result = self.place(pollutant, value)
                assert result is not None
                parts.append(f"{name} {value:g} µg/m³ = {self.tag(result)}")
        return f"NowCast now: {', '.join(parts)}" if parts else ""

    @property
    def intro(self) -> str:
        """The index in words for the headline, e.g. "UK Daily Air Quality Index (Low 1–3, …)"."""
        extreme = ", Extremely poor" if len(self.table("pm2_5").bands) == 6 else ""
        text = _INTROS[self.index].format(version=self.version, extreme=extreme)
        if self.hourly:
            text += ", from hourly values"
        return text + (" — chosen by place" if self.by_place else "")


def place_coordinates(store: Store | None) -> dict[str, tuple[float, float]]:
    """Each collected place's (latitude, longitude), from the collector's schedules."""
    if store is None:
        return {}
    from ...scheduling.schedules import list_schedules

    out = {}
    for info in list_schedules(store):
        place = info.message.get("location") if isinstance(info.message, Mapping) else None
        if not isinstance(place, Mapping):
            continue
        latitude, longitude = place.get("latitude"), place.get("longitude")
        if isinstance(latitude, int | float) and isinstance(longitude, int | float):
            out[str(place.get("name"))] = (float(latitude), float(longitude))
    return out


def frame_coordinates(readings: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each location's (latitude, longitude) when the readings carry them: ``latitude`` and
    ``longitude`` columns, or a ``point`` of "latitude,longitude" (a site code is skipped)."""
    if "location" not in readings or not len(readings):
        return {}
    out: dict[str, tuple[float, float]] = {}
    for place, part in readings.groupby("location", sort=False):
        if {"latitude", "longitude"} <= set(part.columns):
            known = part[["latitude", "longitude"]].dropna()
            if len(known):
                out[str(place)] = (float(known.iloc[0, 0]), float(known.iloc[0, 1]))
                continue
        if "point" in part:
            for point in part["point"].dropna().astype(str):
                try:
                    latitude, longitude = (float(x) for x in point.split(","))
                except ValueError:
                    continue
                out[str(place)] = (latitude, longitude)
                break
    return out


def _place_default(location: str, coordinates: Mapping[str, tuple[float, float]]) -> str:
    if location in coordinates:
        latitude, longitude = coordinates[location]
        return default_index(latitude=latitude, longitude=longitude)
    return default_index(location=location)


def choose_index(
    locations: list[str],
    *,
    index: str | None = None,
    version: str | None = None,
    coordinates: Mapping[str, tuple[float, float]] | None = None,
) -> IndexChoice:
    """The index to show: ``index`` (and ``version``, None for the newest) when given, else
    the one most of ``locations`` expect (the UK DAQI when there are none)."""
    if index:
        table = band_table(index, version=version)
        return IndexChoice(index=table.index, version=table.version)
    defaults = Counter(_place_default(place, coordinates or {}) for place in locations)
    chosen = defaults.most_common(1)[0][0] if defaults else "daqi"
    return IndexChoice(index=chosen, version=check_version(chosen, None), by_place=True)


def draw_bands(fig: Figure, choice: IndexChoice, pollutant: str) -> None:
    """Shade the bands of ``choice`` behind a chart of ``pollutant`` and number them on a
    narrow right-hand axis, at each band's middle."""
    table = choice.table(pollutant)
    middles = {}
    for band in table.bands:
        fig.add_layout(
            BoxAnnotation(
                bottom=None if band.value == 1 else band.lower, top=band.upper,
                fill_color=band.colour, fill_alpha=0.3, line_alpha=0, level="underlay",
                name=f"band:{pollutant}:{band.value}",
            )
        )  # fmt: skip
        if choice.index == "epa":
            # An AQI axis: each category's top AQI at its top edge (compact, and how AQI reads).
            if band.upper is not None:
                middles[band.upper] = str(EPA_CATEGORIES[band.value - 1][1])
            continue
        high = band.lower + 10 if band.upper is None else band.upper
        middles[(band.lower + high) / 2] = band.short
    axis = LinearAxis(
        ticker=FixedTicker(ticks=list(middles)), major_label_overrides=middles,
        axis_label=_AXIS_LABELS[choice.index], major_tick_line_color=None,
        minor_tick_line_color=None, major_label_text_font_size="9pt", name="index_axis",
    )  # fmt: skip
    fig.add_layout(axis, "right")


def _text_colour(colour: str) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#ffffff"


def index_key_html(choice: IndexChoice) -> str:
    """The bands of both pollutants as a small table of coloured cells, with the rule."""
    rows = []
    for pollutant, name in POLLUTANTS.items():
        cells = "".join(
            f"<td style='background:{b.colour};padding:1px 5px;color:{_text_colour(b.colour)};"
            f"text-align:center' title='{b.name}'>{b.short}<br>{b.range_text}</td>"
            for b in choice.table(pollutant).bands
        )
        rows.append(f"<tr><th style='text-align:left;padding-right:6px'>{name}</th>{cells}</tr>")
    return (
        "<table class='airq-index-key' style='border-collapse:collapse;font-size:11px'>"
        f"<caption style='text-align:left'>{_caption(choice)}</caption>"
        f"{''.join(rows)}</table>"
    )


def _caption(choice: IndexChoice) -> str:
    what = "hourly µg/m³" if choice.hourly else "24-hour mean µg/m³"
    rule = {
        "daqi": "a mean is rounded to the nearest whole µg/m³, halves up",
        "epa": "PM2.5 truncated to 0.1 µg/m³, PM10 to 1 µg/m³; cells show AQI and µg/m³",
        "eaqi": "a value on an edge is in the lower level",
        "who": "a value on a level is within it",
    }[choice.index]
    return f"{choice.title} bands, {what} ({rule})"


def band_number_column(results: list[IndexResult | None]) -> list[Any]:
    """The index values of a column of results, NaN where there is none."""
    return [math.nan if r is None else r.value for r in results]
