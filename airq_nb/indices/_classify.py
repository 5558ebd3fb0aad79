"""Placing one concentration on one index: checking the input, the index's own rounding
(DAQI halves up to whole µg/m³, EPA truncation to 0.1 or 1 µg/m³) and its formula."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from numbers import Real

from .._errors import InvalidConcentrationError, UnknownIndexError
from ._tables import EPA_BREAKPOINTS, EPA_STEP, BandTable, build_table

__all__ = ["INDICES", "POLLUTANTS", "VERSIONS", "IndexResult", "band_table", "classify"]

#: Every index, with what it is.
INDICES: dict[str, str] = {
    "daqi": "UK Daily Air Quality Index (Defra, 2013)",
    "epa": "US EPA Air Quality Index",
    "eaqi": "European Air Quality Index (EEA)",
    "who": "WHO 2021 air quality guidelines and interim targets",
}
#: The versions of each index, oldest first; ``version=None`` means the last (newest).
VERSIONS: dict[str, tuple[str, ...]] = {
    "daqi": ("2013",),
    "epa": ("2012", "2024"),
    "eaqi": ("2017", "2024"),
    "who": ("2021",),
}
POLLUTANTS = ("pm2_5", "pm10")
#: What the averaging of each index's value is (WHO has two: 24-hour and annual).
_AVERAGINGS: dict[str, tuple[str, ...]] = {"who": ("24h", "annual")}
_INDEX_HINTS = {
    "eea": "eaqi",
    "eu": "eaqi",
    "us": "epa",
    "aqi": "epa",
    "usaqi": "epa",
    "uk": "daqi",
}
_POLLUTANT_HINTS = {"pm25": "pm2_5", "pm2.5": "pm2_5", "pm_2_5": "pm2_5", "pm_10": "pm10"}


def _check_index(index: object) -> str:
    if isinstance(index, str) and index in INDICES:
        return index
    known = ", ".join(repr(name) for name in INDICES)
    hint = _INDEX_HINTS.get(str(index).lower().replace("-", "").replace(" ", ""))
    tip = f"; did you mean {hint!r}?" if hint else ""
    raise UnknownIndexError(f"unknown index {index!r}: use one of {known}{tip}")


def check_version(index: str, version: object) -> str:
    """The version to use: ``version`` itself if the index has it, the newest for None."""
    versions = VERSIONS[index]
    if version is None:
        return versions[-1]
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if isinstance(text, str) and text in versions:
        return text
    known = ", ".join(repr(v) for v in versions)
    raise UnknownIndexError(
        f"index {index!r} has no version {version!r}: use one of {known}, "
        f"or None for the newest ({versions[-1]!r})"
    )


def check_pollutant(pollutant: object, *, index: str | None = None) -> str:
    """``pollutant`` when it is "pm2_5" or "pm10"; otherwise a typed error naming them."""
    if isinstance(pollutant, str) and pollutant in POLLUTANTS:
        return pollutant
    where = f"{index!r} has no table" if index else "no index has a table"
    hint = _POLLUTANT_HINTS.get(str(pollutant).lower())
    tip = f"; did you mean {hint!r}?" if hint else ""
    raise UnknownIndexError(f"{where} for pollutant {pollutant!r}: use 'pm2_5' or 'pm10'{tip}")


def _check_averaging(index: str, version: str, averaging: object) -> str:
    from ._tables import EAQI_AVERAGING

    allowed = _AVERAGINGS.get(index)
    if allowed is None:
        own = EAQI_AVERAGING[version] if index == "eaqi" else "24h"
        if averaging is None or averaging == own:
            return own
        raise UnknownIndexError(
            f"{index!r} {version} is defined for {own!r} values only, not averaging={averaging!r}"
        )
    if averaging is None:
        return allowed[0]
    if averaging in allowed:
        return str(averaging)
    known = ", ".join(repr(a) for a in allowed)
    raise UnknownIndexError(f"{index!r} has no averaging {averaging!r}: use one of {known}")


def band_table(
    index: str = "daqi",
    *,
    pollutant: str = "pm2_5",
    version: str | None = None,
    averaging: str | None = None,
) -> BandTable:
    """The bands of ``index`` for ``pollutant`` in ``version`` (None: the newest), to draw."""
    index = _check_index(index)
    version = check_version(index, version)
    pollutant = check_pollutant(pollutant, index=index)
    return build_table(index, version, pollutant, _check_averaging(index, version, averaging))


@dataclass(frozen=True)
class IndexResult:
    """One concentration placed on one index and version."""

    #: The DAQI band number 1–10, the EPA AQI number, the EEA level, or the WHO level
    #: (1 within the guideline … 6 above interim target 1).
    value: int
    #: The band's name: "Moderate", "Unhealthy for Sensitive Groups", "Fair", …
    band: str
    colour: str
    index: str
    #: The version actually used (never None): "2013", "2012"/"2024", "2017"/"2024", "2021".
    version: str
    pollutant: str
    #: "24h", "1h" or "annual": the averaging the index's table is defined for.
    averaging: str
    #: The band's position in its table, 1 first (for the EPA: Good 1 … Hazardous 6).
    band_number: int
    #: The concentration as given, and as the index's rule looked it up (DAQI: rounded to
    #: whole µg/m³ halves up; EPA: truncated to 0.1 or 1 µg/m³; EEA/WHO: unchanged).
    concentration: float
    looked_up: float

    @property
    def label(self) -> str:
        """The index and version as one name for columns and fields: "epa_2024"."""
        return f"{self.index}_{self.version}"

    @property
    def short(self) -> str:
        """The value with its index: "DAQI 4", "US AQI 57", "EEA level 2", "WHO IT-4"."""
        if self.index == "daqi":
            return f"DAQI {self.value}"
        if self.index == "epa":
            return f"US AQI {self.value}"
        if self.index == "eaqi":
            return f"EEA level {self.value}"
        table = band_table("who", pollutant=self.pollutant, averaging=self.averaging)
        return f"WHO {table.bands[self.value - 1].short}"

    @property
    def text(self) -> str:
        """The band in words with its index: "Moderate (DAQI 4)", "Moderate (US AQI 57)"."""
        return f"{self.band} ({self.short})"


def check_concentration(value: object) -> float:
    """``value`` as a float when it is a finite number >= 0; otherwise a typed error."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidConcentrationError(f"a concentration must be a number of µg/m³, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidConcentrationError(
            f"a concentration must be finite, got {value!r}; leave a missing hour out "
            "(or pass None to nowcast) instead of NaN"
        )
    if number < 0:
        raise InvalidConcentrationError(
            f"a concentration cannot be negative, got {value!r}; clip small negative "
            "readings to 0 first (max(value, 0)) if your instrument reports them"
        )
    return number


def truncate(value: float, step: float) -> Decimal:
    """``value`` truncated (towards zero) to ``step`` (0.1 or 1), exactly, from its shortest
    decimal form: 35.49 → 35.4, 9.1 → 9.1 (no binary-float surprises)."""
    places = Decimal(1) if step == 1 else Decimal(repr(step))
    return Decimal(repr(value)).quantize(places, rounding=ROUND_FLOOR)


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def epa_aqi(version: str, pollutant: str, concentration: float) -> tuple[int, Decimal]:
    """The AQI of a concentration, and the truncated concentration it was computed from.

    The row whose breakpoints hold the truncated value, the EPA's linear formula, rounded to
    the nearest integer (halves up, as AirNow's ``Math.round``); above the top breakpoint the
    top row's line is extended, as AirNow's calculator does.
    """
    c = truncate(concentration, EPA_STEP[pollutant])
    rows = EPA_BREAKPOINTS[(version, pollutant)]
    low, high, i_low, i_high = next(
        (row for row in rows if Decimal(repr(row[0])) <= c <= Decimal(repr(row[1]))), rows[-1]
    )
    c_low, c_high = Fraction(Decimal(repr(low))), Fraction(Decimal(repr(high)))
    aqi = Fraction(i_high - i_low) / (c_high - c_low) * (Fraction(c) - c_low) + i_low
    return _round_half_up(aqi), c


def classify(
    concentration: float,
    *,
    index: str = "daqi",
    pollutant: str = "pm2_5",
    version: str | None = None,
    averaging: str | None = None,
) -> IndexResult:
    """Place ``concentration`` (µg/m³) of ``pollutant`` on ``index`` in ``version``.

    ``version=None`` uses the newest version, and the result says which. ``averaging`` is
    only for the WHO ("24h", the default, or "annual"); the other indices each have one.
    """
    table = band_table(index, pollutant=pollutant, version=version, averaging=averaging)
    value = check_concentration(concentration)
    if table.index == "daqi":
        looked_up: float = math.floor(value + 0.5)
        lowers = [0, *(int(band.lower + 0.5) for band in table.bands[1:])]
        number = max(n for n, lower in enumerate(lowers, start=1) if looked_up >= lower)
        result_value = number
    elif table.index == "epa":
        aqi, truncated = epa_aqi(table.version, table.pollutant, value)
        looked_up = float(truncated)
        bands = table.bands
        number = next(
            (b.value for b in bands if b.upper is not None and truncated < Decimal(repr(b.upper))),
            bands[-1].value,
        )
        result_value = aqi
    else:
        # EEA and WHO: a value on an edge belongs to the lower band ("exceeds" means above).
        looked_up = value
        number = next(
            (b.value for b in table.bands if b.upper is not None and value <= b.upper),
            table.bands[-1].value,
        )
        result_value = number
    band = table.bands[number - 1]
    return IndexResult(
        value=result_value, band=band.name, colour=band.colour, index=table.index,
        version=table.version, pollutant=table.pollutant, averaging=table.averaging,
        band_number=number, concentration=value, looked_up=float(looked_up),
    )  # fmt: skip
