"""The UK Daily Air Quality Index (DAQI) for PM2.5 and PM10, and the WHO 2021 24-hour guidelines.

The tables and the rule live in :mod:`airq_nb.indices` (every index, with versions); this
module keeps the DAQI's own small API for existing callers. Pure Python (no pandas, no Bokeh).

DEFRA publishes the PM bands in whole µg/m³ (PM2.5 band 1 is 0–11, band 2 is 12–23, …), which
leaves a 24-hour mean of, say, 11.6 unplaced. The rule here: **round the mean to the nearest
whole µg/m³, halves up, then look the whole number up** — 11.49 is 11 (band 1), 11.5 is 12
(band 2). So band *n* covers [lower − 0.5, next lower − 0.5) in unrounded µg/m³, which is also
where the charts draw its shading. A negative mean (measured data can dip below zero) is band 1;
a missing mean (NaN or None) has no band. (``airq_nb.indices.classify`` refuses both, so an
analyst sees them.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._errors import UnknownIndexError
from .indices._tables import DAQI_LOWER_BOUNDS, WHO_LEVELS, daqi_level

__all__ = [
    "DAQI_LOWER_BOUNDS",
    "WHO_24H",
    "WHO_PM2_5_24H",
    "WHO_PM10_24H",
    "DaqiBand",
    "daqi_band",
    "daqi_bands",
    "round_half_up",
]

#: WHO 2021 air-quality guideline, 24-hour mean PM2.5 (µg/m³).
WHO_PM2_5_24H = float(WHO_LEVELS[("24h", "pm2_5")][-1])
#: WHO 2021 air-quality guideline, 24-hour mean PM10 (µg/m³).
WHO_PM10_24H = float(WHO_LEVELS[("24h", "pm10")][-1])
#: The WHO 24-hour guideline of each pollutant column.
WHO_24H: dict[str, float] = {"pm2_5": WHO_PM2_5_24H, "pm10": WHO_PM10_24H}


@dataclass(frozen=True)
class DaqiBand:
    """One DAQI band of one pollutant: its number (1–10), level in words and µg/m³ range."""

    index: int
    level: str
    lower: int
    #: The highest whole µg/m³ in the band; None for band 10 (no upper end).
    upper: int | None

    @property
    def range_text(self) -> str:
        """The band's 24-hour mean range as DEFRA writes it: "12–23" or "≥71"."""
        return f"≥{self.lower}" if self.upper is None else f"{self.lower}–{self.upper}"

    @property
    def text(self) -> str:
        """The band in words, e.g. "Low (DAQI 2)"."""
        return f"{self.level} (DAQI {self.index})"


def daqi_bands(pollutant: str) -> tuple[DaqiBand, ...]:
    """The ten bands of ``pollutant`` ("pm2_5" or "pm10"), band 1 first."""
    try:
        lowers = DAQI_LOWER_BOUNDS[pollutant]
    except KeyError:
        raise UnknownIndexError(
            f"no DAQI bands for {pollutant!r}; use one of {sorted(DAQI_LOWER_BOUNDS)}"
        ) from None
    uppers = [*(lower - 1 for lower in lowers[1:]), None]
    return tuple(
        DaqiBand(index=n, level=daqi_level(n), lower=lower, upper=upper)
        for n, (lower, upper) in enumerate(zip(lowers, uppers, strict=True), start=1)
    )


def round_half_up(value: float) -> int:
    """``value`` to the nearest whole number, halves up (11.5 → 12), unlike Python's round."""
    return math.floor(value + 0.5)


def daqi_band(pollutant: str, mean: float | None) -> DaqiBand | None:
    """The DAQI band of a 24-hour mean of ``pollutant`` in µg/m³; None when the mean is missing."""
    from .indices import classify

    bands = daqi_bands(pollutant)
    if mean is None or math.isnan(mean):
        return None
    result = classify(max(float(mean), 0.0), index="daqi", pollutant=pollutant)
    return bands[result.value - 1]
