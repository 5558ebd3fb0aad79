"""The published band tables of every index, as data: one :class:`BandTable` per
(index, version, pollutant, averaging). Pure Python, so the numbers are easy to check against
their sources (each is cited in ``docs/indices.md``).

A band's ``lower``/``upper`` are where it starts and ends on a chart's µg/m³ axis, after the
index's own rounding rule: the DAQI rounds a mean to whole µg/m³ halves up, so its band 2 of
PM2.5 (12–23) is drawn from 11.5 to 23.5; the EPA truncates PM2.5 to 0.1 µg/m³, so its
Moderate row 9.1–35.4 is drawn from 9.1 to 35.5; the EEA and WHO values are used as published.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DAQI_COLOURS",
    "DAQI_LOWER_BOUNDS",
    "EAQI_COLOURS",
    "EAQI_EDGES",
    "EPA_BREAKPOINTS",
    "EPA_CATEGORIES",
    "EPA_COLOURS",
    "WHO_LEVELS",
    "Band",
    "BandTable",
]


@dataclass(frozen=True)
class Band:
    """One band of one index table: its number, name and colour, and its µg/m³ span on a chart
    (``upper`` None for the open top band). Which band a value on an edge belongs to is the
    index's own rule, applied by :func:`airq_nb.indices.classify`."""

    value: int
    name: str
    colour: str
    lower: float
    upper: float | None
    #: The band's range as its source writes it, e.g. "12–23", "9.1–35.4", "≥71".
    range_text: str
    #: A short label for a narrow axis, e.g. "4" (DAQI band), "51–100" (AQI), "2" (EEA level).
    short: str


@dataclass(frozen=True)
class BandTable:
    """The bands of one (index, version, pollutant, averaging), lowest first."""

    index: str
    version: str
    pollutant: str
    #: "24h" (a 24-hour mean), "1h" (an hourly value) or "annual" (WHO annual means).
    averaging: str
    #: The index's name as a person knows it, e.g. "UK DAQI", "US EPA AQI (2024)".
    title: str
    bands: tuple[Band, ...]
    #: The chart's y axis reaches at least the lower edge of this band (0-based), so the
    #: first bands of concern are always in sight.
    floor_band: int = 3
    #: …and this far into it (0 its lower edge, 0.5 its middle).
    floor_fraction: float = 0.0

    @property
    def label(self) -> str:
        """The index and version as one name for columns and fields: "epa_2024"."""
        return f"{self.index}_{self.version}"

    @property
    def floor(self) -> float:
        """The least top a chart's y axis gets (µg/m³)."""
        band = self.bands[min(self.floor_band, len(self.bands) - 1)]
        if band.upper is None or not self.floor_fraction:
            return band.lower
        return band.lower + self.floor_fraction * (band.upper - band.lower)


# -- UK DAQI (Defra, 2013) ----------------------------------------------------------------

#: The lowest whole µg/m³ (24-hour mean) of DAQI bands 1–10 for each pollutant column.
DAQI_LOWER_BOUNDS: dict[str, tuple[int, ...]] = {
    "pm2_5": (0, 12, 24, 36, 42, 48, 54, 59, 65, 71),
    "pm10": (0, 17, 34, 51, 59, 67, 76, 84, 92, 101),
}
#: The colour UK-AIR gives each DAQI band, 1 (lightest green) to 10 (purple).
DAQI_COLOURS = (
    "#9cff9c", "#31ff00", "#31cf00", "#ffff00", "#ffcf00",
    "#ff9a00", "#ff6464", "#ff0000", "#990000", "#ce30ff",
)  # fmt: skip
DAQI_LEVELS = ((3, "Low"), (6, "Moderate"), (9, "High"), (10, "Very High"))


def daqi_level(number: int) -> str:
    """The DAQI band's level in words: Low (1–3), Moderate (4–6), High (7–9), Very High (10)."""
    return next(level for top, level in DAQI_LEVELS if number <= top)


def _daqi(pollutant: str) -> BandTable:
    lowers = DAQI_LOWER_BOUNDS[pollutant]
    bands = []
    for n, lower in enumerate(lowers, start=1):
        top = lowers[n] if n < len(lowers) else None
        text = f"≥{lower}" if top is None else f"{lower}–{top - 1}"
        bands.append(
            Band(
                value=n, name=daqi_level(n), colour=DAQI_COLOURS[n - 1],
                lower=0.0 if n == 1 else lower - 0.5,
                upper=None if top is None else top - 0.5,
                range_text=text, short=str(n),
            )
        )  # fmt: skip
    return BandTable(
        index="daqi", version="2013", pollutant=pollutant, averaging="24h",
        title="UK DAQI", bands=tuple(bands), floor_band=4,
    )  # fmt: skip


# -- US EPA AQI (2012 and 2024) ---------------------------------------------------------------

#: The AQI categories: (lowest AQI, highest AQI, name). The 2024 rule merged the two
#: Hazardous rows (301–400, 401–500) into one (301–500).
EPA_CATEGORIES = (
    (0, 50, "Good"),
    (51, 100, "Moderate"),
    (101, 150, "Unhealthy for Sensitive Groups"),
    (151, 200, "Unhealthy"),
    (201, 300, "Very Unhealthy"),
    (301, 500, "Hazardous"),
)
#: The colours of the EPA's Technical Assistance Document (RGB 0,228,0 … 126,0,35).
EPA_COLOURS = ("#00e400", "#ffff00", "#ff7e00", "#ff0000", "#8f3f97", "#7e0023")

#: Breakpoints per (version, pollutant): rows of (C_low, C_high, I_low, I_high), µg/m³
#: truncated (PM2.5 to 0.1, PM10 to 1) and AQI.
EPA_BREAKPOINTS: dict[tuple[str, str], tuple[tuple[float, float, int, int], ...]] = {
    ("2012", "pm2_5"): (
        (0.0, 12.0, 0, 50), (12.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
        (55.5, 150.4, 151, 200), (150.5, 250.4, 201, 300), (250.5, 350.4, 301, 400),
        (350.5, 500.4, 401, 500),
    ),
    ("2012", "pm10"): (
        (0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150), (255, 354, 151, 200),
        (355, 424, 201, 300), (425, 504, 301, 400), (505, 604, 401, 500),
    ),
    ("2024", "pm2_5"): (
        (0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
        (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500),
    ),
    ("2024", "pm10"): (
        (0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150), (255, 354, 151, 200),
        (355, 424, 201, 300), (425, 604, 301, 500),
    ),
}  # fmt: skip
#: The step a concentration is truncated to before it is looked up.
EPA_STEP = {"pm2_5": 0.1, "pm10": 1.0}


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}"


def _epa(version: str, pollutant: str) -> BandTable:
    rows = EPA_BREAKPOINTS[(version, pollutant)]
    bands = []
    for n, (low_aqi, high_aqi, name) in enumerate(EPA_CATEGORIES, start=1):
        mine = [row for row in rows if low_aqi <= row[2] <= high_aqi]
        c_low, c_high = mine[0][0], mine[-1][1]
        is_top = n == len(EPA_CATEGORIES)
        bands.append(
            Band(
                value=n, name=name, colour=EPA_COLOURS[n - 1], lower=float(c_low),
                upper=None if is_top else round(c_high + EPA_STEP[pollutant], 1),
                range_text=f"{_number(c_low)}–{_number(c_high)}",
                short=f"{low_aqi}–{high_aqi}" if not is_top else f"{low_aqi}+",
            )
        )  # fmt: skip
    return BandTable(
        index="epa", version=version, pollutant=pollutant, averaging="24h",
        title=f"US EPA AQI ({version})", bands=tuple(bands), floor_band=1, floor_fraction=0.5,
    )  # fmt: skip


# -- EEA European Air Quality Index (2017 and 2024) ------------------------------------------

#: The upper edges (µg/m³) of each level but the open top one, per (version, pollutant).
EAQI_EDGES: dict[tuple[str, str], tuple[float, ...]] = {
    ("2017", "pm2_5"): (10, 20, 25, 50),
    ("2017", "pm10"): (20, 35, 50, 100),
    ("2024", "pm2_5"): (5, 15, 50, 90, 140),
    ("2024", "pm10"): (15, 45, 120, 195, 270),
}
#: The EEA's level names, Good first.
EAQI_NAMES = ("Good", "Fair", "Moderate", "Poor", "Very poor", "Extremely poor")
#: The EEA's colours of its levels (RGB 80,240,230 … 125,33,129).
EAQI_COLOURS = ("#50f0e6", "#50ccaa", "#f0e641", "#ff5050", "#960032", "#7d2181")
#: The table's top as the EEA prints it (its last level ends there).
_EAQI_TOP = {"pm2_5": 800, "pm10": 1200}
#: The averaging of each version: 24-hour running means of PM in 2017, hourly values in 2024.
EAQI_AVERAGING = {"2017": "24h", "2024": "1h"}


def _eaqi(version: str, pollutant: str) -> BandTable:
    edges = EAQI_EDGES[(version, pollutant)]
    lowers = (0, *edges)
    bands = []
    for n, lower in enumerate(lowers, start=1):
        upper = edges[n - 1] if n <= len(edges) else None
        top = _EAQI_TOP[pollutant] if upper is None else upper
        bands.append(
            Band(
                value=n, name=EAQI_NAMES[n - 1], colour=EAQI_COLOURS[n - 1],
                lower=float(lower), upper=None if upper is None else float(upper),
                range_text=f"{_number(lower)}–{_number(top)}", short=str(n),
            )
        )  # fmt: skip
    return BandTable(
        index="eaqi", version=version, pollutant=pollutant, averaging=EAQI_AVERAGING[version],
        title=f"European AQI ({version})", bands=tuple(bands),
    )  # fmt: skip


# -- WHO 2021 air quality guidelines ---------------------------------------------------------

#: (interim target 1, 2, 3, 4, AQG level) per (averaging, pollutant), µg/m³ (WHO 2021,
#: Table 0.1 of the Global Air Quality Guidelines).
WHO_LEVELS: dict[tuple[str, str], tuple[float, ...]] = {
    ("24h", "pm2_5"): (75, 50, 37.5, 25, 15),
    ("24h", "pm10"): (150, 100, 75, 50, 45),
    ("annual", "pm2_5"): (35, 25, 15, 10, 5),
    ("annual", "pm10"): (70, 50, 30, 20, 15),
}
WHO_NAMES = (
    "Within the AQG level",
    "Within interim target 4",
    "Within interim target 3",
    "Within interim target 2",
    "Within interim target 1",
    "Above interim target 1",
)
#: Our colours (the WHO gives none): green for the guideline, to dark red above IT-1.
WHO_COLOURS = ("#1a9850", "#91cf60", "#d9ef8b", "#fee08b", "#fc8d59", "#d73027")


def _who(averaging: str, pollutant: str) -> BandTable:
    tops = tuple(reversed(WHO_LEVELS[(averaging, pollutant)]))  # AQG, IT-4, … IT-1
    lowers = (0, *tops)
    shorts = ("AQG", "IT-4", "IT-3", "IT-2", "IT-1", ">IT-1")
    bands = []
    for n, lower in enumerate(lowers, start=1):
        upper = tops[n - 1] if n <= len(tops) else None
        text = f">{_number(lower)}" if upper is None else f"{_number(lower)}–{_number(upper)}"
        bands.append(
            Band(
                value=n, name=WHO_NAMES[n - 1], colour=WHO_COLOURS[n - 1],
                lower=float(lower), upper=None if upper is None else float(upper),
                range_text=text, short=shorts[n - 1],
            )
        )  # fmt: skip
    return BandTable(
        index="who", version="2021", pollutant=pollutant, averaging=averaging,
        title="WHO 2021 guidelines", bands=tuple(bands), floor_band=2,
    )  # fmt: skip


def build_table(index: str, version: str, pollutant: str, averaging: str) -> BandTable:
    """The table of an already checked (index, version, pollutant, averaging)."""
    if index == "daqi":
        return _daqi(pollutant)
    if index == "epa":
        return _epa(version, pollutant)
    if index == "eaqi":
        return _eaqi(version, pollutant)
    return _who(averaging, pollutant)
