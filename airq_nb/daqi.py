"""The UK Daily Air Quality Index (DAQI) for PM2.5 and PM10, and the WHO 2021 24-hour guidelines.

Pure Python (no pandas, no Bokeh) so the rule is easy to read and to test at every edge.

DEFRA publishes the PM bands in whole µg/m³ (PM2.5 band 1 is 0–11, band 2 is 12–23, …), which
leaves a 24-hour mean of, say, 11.6 unplaced. The rule here: **round the mean to the nearest
whole µg/m³, halves up, then look the whole number up** — 11.49 is 11 (band 1), 11.5 is 12
(band 2). So band *n* covers [lower − 0.5, next lower − 0.5) in unrounded µg/m³, which is also
where the charts draw its shading. A negative mean (measured data can dip below zero) is band 1;
a missing mean (NaN or None) has no band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
WHO_PM2_5_24H = 15.0
#: WHO 2021 air-quality guideline, 24-hour mean PM10 (µg/m³).
WHO_PM10_24H = 45.0
#: The WHO 24-hour guideline of each pollutant column.
WHO_24H: dict[str, float] = {"pm2_5": WHO_PM2_5_24H, "pm10": WHO_PM10_24H}

#: The lowest whole µg/m³ (24-hour mean) of DAQI bands 1–10 for each pollutant column.
DAQI_LOWER_BOUNDS: dict[str, tuple[int, ...]] = {
    "pm2_5": (0, 12, 24, 36, 42, 48, 54, 59, 65, 71),
    "pm10": (0, 17, 34, 51, 59, 67, 76, 84, 92, 101),
}

_LEVELS = ((3, "Low"), (6, "Moderate"), (9, "High"), (10, "Very High"))


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


def _level(index: int) -> str:
    return next(level for top, level in _LEVELS if index <= top)


def daqi_bands(pollutant: str) -> tuple[DaqiBand, ...]:
    """The ten bands of ``pollutant`` ("pm2_5" or "pm10"), band 1 first."""
    try:
        lowers = DAQI_LOWER_BOUNDS[pollutant]
    except KeyError:
        raise ValueError(
            f"no DAQI bands for {pollutant!r}; use one of {sorted(DAQI_LOWER_BOUNDS)}"
        ) from None
    uppers = [*(lower - 1 for lower in lowers[1:]), None]
    return tuple(
        DaqiBand(index=n, level=_level(n), lower=lower, upper=upper)
        for n, (lower, upper) in enumerate(zip(lowers, uppers, strict=True), start=1)
    )


def round_half_up(value: float) -> int:
    """``value`` to the nearest whole number, halves up (11.5 → 12), unlike Python's round."""
    return math.floor(value + 0.5)


def daqi_band(pollutant: str, mean: float | None) -> DaqiBand | None:
    """The DAQI band of a 24-hour mean of ``pollutant`` in µg/m³; None when the mean is missing."""
    bands = daqi_bands(pollutant)
    if mean is None or math.isnan(mean):
        return None
    whole = round_half_up(mean)
    return next(band for band in reversed(bands) if whole >= band.lower) if whole > 0 else bands[0]
