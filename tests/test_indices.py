"""airq_nb.indices against the sources' own numbers: every band edge of every published table,
and the worked examples and test vectors other projects publish (each cited where it is used;
docs/indices.md lists them). No expected value here is one we computed ourselves."""

from __future__ import annotations

import ast
import itertools
import math
import sys
from pathlib import Path

import pytest

import airq_nb
from airq_nb.indices import (
    INDICES,
    VERSIONS,
    band_table,
    classify,
    default_index,
    nowcast,
)
from airq_nb.indices._tables import EAQI_EDGES, EPA_BREAKPOINTS, WHO_LEVELS

# -- US EPA AQI: published worked examples ---------------------------------------------------

# hrbonz/python-aqi, test/test_epa.py ("examples from the EPA official doc"), 2012 breakpoints;
# 35.9 → 102 is the PM2.5 part of the EPA Technical Assistance Document's worked example
# (O3 0.077 ppm, PM2.5 35.9 µg/m³, CO 8.4 ppm → AQI 104).
PYTHON_AQI_2012_PM25 = [("9.3", 39), ("15", 57), ("49.5", 135), ("235.4", 285), ("35.9", 102)]

# bellrichm/weewx-aqi-xtype, bin/user/tests/test_epaaqi.py, values read off AirNow's AQI
# calculator (https://www.airnow.gov/aqi/aqi-calculator/) after the May 2024 revision; the
# last rows are above the top breakpoint, where AirNow extends the top row's line.
AIRNOW_CALCULATOR_2024 = {
    "pm2_5": [(0.0, 0), (5.0, 28), (23.0, 77), (40.0, 112), (100.0, 182), (200.0, 275),
              (300.0, 449), (400.0, 649), (600.0, 1047)],
    "pm10": [(0.0, 0), (25.0, 23), (100.0, 73), (200.0, 123), (300.0, 173), (400.0, 266),
             (475.0, 357), (550.0, 440), (700.0, 607)],
}  # fmt: skip


@pytest.mark.parametrize(("concentration", "aqi"), PYTHON_AQI_2012_PM25)
def test_epa_2012_examples_of_python_aqi_and_the_tad(concentration, aqi):
    result = classify(float(concentration), index="epa", pollutant="pm2_5", version="2012")
    assert (result.value, result.version) == (aqi, "2012")


@pytest.mark.parametrize("pollutant", ["pm2_5", "pm10"])
def test_epa_2024_matches_airnows_calculator_including_above_the_top(pollutant):
    got = [
        (c, classify(c, index="epa", pollutant=pollutant, version="2024").value)
        for c, _ in AIRNOW_CALCULATOR_2024[pollutant]
    ]
    assert got == AIRNOW_CALCULATOR_2024[pollutant]


def test_the_tad_example_is_unhealthy_for_sensitive_groups():
    result = classify(35.9, index="epa", version="2012")
    assert result.band == "Unhealthy for Sensitive Groups"
    assert result.colour == "#ff7e00"  # TAD: orange, RGB 255,126,0
    assert result.text == "Unhealthy for Sensitive Groups (US AQI 102)"


# -- US EPA AQI: every breakpoint of both versions --------------------------------------------

EPA_ROWS = [(version, pollutant, row) for (version, pollutant), rows in EPA_BREAKPOINTS.items()
            for row in rows]  # fmt: skip


@pytest.mark.parametrize(("version", "pollutant", "row"), EPA_ROWS)
def test_every_epa_breakpoint_gives_its_published_aqi(version, pollutant, row):
    c_low, c_high, i_low, i_high = row
    assert classify(c_low, index="epa", pollutant=pollutant, version=version).value == i_low
    assert classify(c_high, index="epa", pollutant=pollutant, version=version).value == i_high


def test_the_published_breakpoint_tables():
    # EPA TAD (Sept 2018) Table 5 and the 2024 TAD / 40 CFR 58 App. G Table 2 (May 2024).
    pm25_2012 = [(0.0, 12.0), (12.1, 35.4), (35.5, 55.4), (55.5, 150.4), (150.5, 250.4),
                 (250.5, 350.4), (350.5, 500.4)]  # fmt: skip
    pm25_2024 = [(0.0, 9.0), (9.1, 35.4), (35.5, 55.4), (55.5, 125.4), (125.5, 225.4),
                 (225.5, 325.4)]  # fmt: skip
    pm10_2012 = [(0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 504), (505, 604)]
    pm10_2024 = [(0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 604)]
    assert [r[:2] for r in EPA_BREAKPOINTS[("2012", "pm2_5")]] == pm25_2012
    assert [r[:2] for r in EPA_BREAKPOINTS[("2024", "pm2_5")]] == pm25_2024
    assert [r[:2] for r in EPA_BREAKPOINTS[("2012", "pm10")]] == pm10_2012
    assert [r[:2] for r in EPA_BREAKPOINTS[("2024", "pm10")]] == pm10_2024
    # 2024 merged the two Hazardous rows into 301–500, for PM10 too.
    assert [r[2:] for r in EPA_BREAKPOINTS[("2024", "pm10")]][-1] == (301, 500)
    assert [r[2:] for r in EPA_BREAKPOINTS[("2012", "pm10")]][-2:] == [(301, 400), (401, 500)]


def test_pm10_above_aqi_300_changed_in_2024():
    # 505 µg/m³ is the 2012 table's "401" breakpoint; in 2024 it sits inside 425–604 → 301–500.
    assert classify(505, index="epa", pollutant="pm10", version="2012").value == 401
    assert classify(475, index="epa", pollutant="pm10", version="2024").value == 357  # AirNow
    assert classify(504, index="epa", pollutant="pm10", version="2012").value == 400
    assert classify(604, index="epa", pollutant="pm10", version="2024").value == 500


@pytest.mark.parametrize(
    ("version", "pollutant", "just_below", "truncated", "edge"),
    [("2024", "pm2_5", 9.09, 9.0, 9.1), ("2024", "pm2_5", 35.49, 35.4, 35.5),
     ("2012", "pm2_5", 12.09, 12.0, 12.1), ("2024", "pm10", 54.99, 54, 55),
     ("2024", "pm10", 424.9, 424, 425)],
)  # fmt: skip
def test_epa_truncates_before_the_lookup(version, pollutant, just_below, truncated, edge):
    # "truncated to 0.1 µg/m³ for PM2.5 and 1 µg/m³ for PM10" (AirNow, The AQI Equation 2024):
    # just below a breakpoint is looked up as the lower row's top, at that row's top AQI.
    below = classify(just_below, index="epa", pollutant=pollutant, version=version)
    top = classify(truncated, index="epa", pollutant=pollutant, version=version)
    at = classify(edge, index="epa", pollutant=pollutant, version=version)
    assert below.looked_up == truncated and below.value == top.value
    assert at.band_number == below.band_number + 1


def test_epa_version_none_is_2024_and_says_so():
    result = classify(12.0, index="epa")
    assert result.version == "2024" and result.label == "epa_2024"
    assert result.band == "Moderate"  # 12.0 is Good in 2012 (its top, AQI 50), Moderate in 2024
    assert classify(12.0, index="epa", version="2012").band == "Good"


# -- NowCast -----------------------------------------------------------------------------------

# The Omak, WA PM2.5 hours of 2015-08-21 00–11 from MazamaScience/AirMonitor's NowCast vignette
# (vignettes/articles/NowCast.Rmd, Example 1), newest first; bellrichm/weewx-aqi-xtype's
# bin/user/tests/unit/test_nowcast.py expects 54.8 for them.
OMAK_NEWEST_FIRST = [46.3, 27.4, 59.8, 129.2, 130.6, 215.4, 143.2, 93.7, 101.8, 49.3, 80.2, 123.3]
# weewx-aqi-xtype test_missing_middle_data: five missing hours in the middle → 164.7.
GAPPY_NEWEST_FIRST = [149.5, 149.9, 238.6, None, None, None, None, None, 763.8, 744.6, 734.0,
                      711.8]  # fmt: skip


def test_nowcast_omak_worked_example():
    assert nowcast(list(reversed(OMAK_NEWEST_FIRST))) == 54.8


def test_nowcast_leaves_missing_hours_out_of_both_sums():
    assert nowcast(list(reversed(GAPPY_NEWEST_FIRST))) == 164.7
    as_nan = [math.nan if v is None else v for v in reversed(GAPPY_NEWEST_FIRST)]
    assert nowcast(as_nan) == 164.7


def test_nowcast_needs_two_of_the_last_three_hours():
    # AirNow, "The NowCast for PM2.5 and PM10": "There is only 1 requirement for a valid
    # NowCast calculation: 2 of the past 3 hourly data points must be valid."
    hours = list(reversed(OMAK_NEWEST_FIRST))
    assert nowcast([*hours[:-2], None, None]) is None  # weewx-aqi-xtype test_beginning_none_data
    assert nowcast([*hours[:-3], None, hours[-2], None]) is None
    assert nowcast([*hours[:-1], None]) is not None  # c1 missing, c2 and c3 present: valid
    assert nowcast([*hours[:-2], None, hours[-1]]) is not None
    assert nowcast([10.0]) is None and nowcast([]) is None
    assert nowcast([10.0, 12.0]) is not None


def test_nowcast_of_steady_air_is_the_12_hour_mean():
    # Wikipedia / AirMonitor: with c_min = c_max, w = 1 and the NowCast is the 12-hour mean.
    assert nowcast([20.0] * 12) == 20.0
    assert nowcast([7.0] * 30) == 7.0  # only the last 12 hours count


def test_nowcast_truncates_pm10_to_whole_micrograms():
    assert nowcast([55.9] * 12, pollutant="pm10") == 55.0
    assert nowcast([55.96] * 12) == 55.9


# -- UK DAQI -----------------------------------------------------------------------------------

# Defra, "Daily Air Quality Index" (UK-AIR, 2013 bands): 24-hour mean µg/m³, bands 1–10.
DEFRA = {
    "pm2_5": [(0, 11), (12, 23), (24, 35), (36, 41), (42, 47), (48, 53), (54, 58), (59, 64),
              (65, 70), (71, None)],
    "pm10": [(0, 16), (17, 33), (34, 50), (51, 58), (59, 66), (67, 75), (76, 83), (84, 91),
             (92, 100), (101, None)],
}  # fmt: skip


@pytest.mark.parametrize("pollutant", ["pm2_5", "pm10"])
@pytest.mark.parametrize("band", range(1, 11))
def test_daqi_every_edge_through_classify(pollutant, band):
    lower, upper = DEFRA[pollutant][band - 1]
    assert classify(lower, index="daqi", pollutant=pollutant).value == band
    if upper is not None:
        assert classify(upper, index="daqi", pollutant=pollutant).value == band
        assert classify(upper + 0.49, index="daqi", pollutant=pollutant).value == band
        assert classify(upper + 0.5, index="daqi", pollutant=pollutant).value == band + 1


def test_daqi_result_names_the_2013_bands():
    result = classify(40.0, index="daqi")
    assert (result.band, result.version, result.text) == ("Moderate", "2013", "Moderate (DAQI 4)")
    assert result.looked_up == 40.0 and classify(11.5).looked_up == 12.0
    table = band_table("daqi", pollutant="pm10")
    assert [b.range_text for b in table.bands][:4] == ["0–16", "17–33", "34–50", "51–58"]


# -- European AQI ------------------------------------------------------------------------------

# EEA, European Air Quality Index (discomap.eea.europa.eu/map/AQI/Viewer, 2017): Good, Fair,
# Moderate, Poor, Very poor; and the revised index (airindex.eea.europa.eu, 2024), six levels.
EEA_PUBLISHED = {
    ("2017", "pm2_5"): ["0-10", "10-20", "20-25", "25-50", "50-800"],
    ("2017", "pm10"): ["0-20", "20-35", "35-50", "50-100", "100-1200"],
    ("2024", "pm2_5"): ["0-5", "5-15", "15-50", "50-90", "90-140", "140-800"],
    ("2024", "pm10"): ["0-15", "15-45", "45-120", "120-195", "195-270", "270-1200"],
}


@pytest.mark.parametrize(("version", "pollutant"), list(EEA_PUBLISHED))
def test_eaqi_tables_are_the_eeas(version, pollutant):
    table = band_table("eaqi", pollutant=pollutant, version=version)
    assert [b.range_text.replace("–", "-") for b in table.bands] == EEA_PUBLISHED[
        (version, pollutant)
    ]
    names = ["Good", "Fair", "Moderate", "Poor", "Very poor", "Extremely poor"]
    assert [b.name for b in table.bands] == names[: len(table.bands)]
    assert table.averaging == ("24h" if version == "2017" else "1h")


@pytest.mark.parametrize(("version", "pollutant"), list(EAQI_EDGES))
def test_eaqi_an_edge_value_is_in_the_lower_level(version, pollutant):
    for level, edge in enumerate(EAQI_EDGES[(version, pollutant)], start=1):
        at = classify(edge, index="eaqi", pollutant=pollutant, version=version)
        above = classify(edge + 0.01, index="eaqi", pollutant=pollutant, version=version)
        assert (at.value, above.value) == (level, level + 1)
    top = classify(5000, index="eaqi", pollutant=pollutant, version=version)
    assert top.value == len(EAQI_EDGES[(version, pollutant)]) + 1  # above the table: the top level


# -- WHO 2021 ----------------------------------------------------------------------------------


def test_who_2021_levels_are_table_0_1():
    # WHO global air quality guidelines (2021), Executive summary Table 0.1, µg/m³:
    # interim targets 1–4, then the AQG level.
    assert WHO_LEVELS[("24h", "pm2_5")] == (75, 50, 37.5, 25, 15)
    assert WHO_LEVELS[("24h", "pm10")] == (150, 100, 75, 50, 45)
    assert WHO_LEVELS[("annual", "pm2_5")] == (35, 25, 15, 10, 5)
    assert WHO_LEVELS[("annual", "pm10")] == (70, 50, 30, 20, 15)


@pytest.mark.parametrize(("averaging", "pollutant"), list(WHO_LEVELS))
def test_who_every_edge(averaging, pollutant):
    tops = list(reversed(WHO_LEVELS[(averaging, pollutant)]))
    for level, top in enumerate(tops, start=1):
        at = classify(top, index="who", pollutant=pollutant, averaging=averaging)
        above = classify(top + 0.1, index="who", pollutant=pollutant, averaging=averaging)
        assert (at.value, above.value) == (level, level + 1)
    assert classify(15.0, index="who").band == "Within the AQG level"
    assert classify(15.1, index="who").text == "Within interim target 4 (WHO IT-4)"


# -- tables for charts -------------------------------------------------------------------------


@pytest.mark.parametrize("index", list(INDICES))
@pytest.mark.parametrize("pollutant", ["pm2_5", "pm10"])
def test_every_table_is_contiguous_and_labelled_with_its_version(index, pollutant):
    for version in VERSIONS[index]:
        table = band_table(index, pollutant=pollutant, version=version)
        assert table.label == f"{index}_{version}"
        edges = [(b.lower, b.upper) for b in table.bands]
        assert edges[0][0] == 0 and edges[-1][1] is None
        assert all(a[1] == b[0] for a, b in itertools.pairwise(edges))
        for band in table.bands:  # the drawn edge starts the band it is drawn for
            assert classify(band.lower + 1e-9, index=index, pollutant=pollutant,
                            version=version).band_number == band.value  # fmt: skip


def test_epa_drawn_edges_follow_truncation():
    table = band_table("epa", pollutant="pm2_5", version="2024")
    assert [(b.lower, b.upper) for b in table.bands][:2] == [(0.0, 9.1), (9.1, 35.5)]
    assert [b.short for b in table.bands] == ["0–50", "51–100", "101–150", "151–200",
                                              "201–300", "301+"]  # fmt: skip


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"index": "eea"}, r"unknown index 'eea'.*'daqi'.*did you mean 'eaqi'"),
     ({"index": "epa", "version": "2016"}, r"no version '2016'.*'2012', '2024'.*None"),
     ({"index": "daqi", "version": "2024"}, r"no version '2024'.*'2013'"),
     ({"pollutant": "pm25"}, r"pollutant 'pm25'.*'pm2_5' or 'pm10'.*did you mean 'pm2_5'"),
     ({"pollutant": "no2", "index": "epa"}, r"'epa' has no table for pollutant 'no2'"),
     ({"index": "who", "averaging": "8h"}, r"no averaging '8h'.*'24h', 'annual'"),
     ({"index": "eaqi", "version": "2024", "averaging": "24h"}, r"'1h' values only")],
)  # fmt: skip
def test_unknown_names_get_a_typed_error_naming_the_known_ones(kwargs, message):
    with pytest.raises(airq_nb.UnknownIndexError, match=message) as caught:
        classify(10.0, **kwargs)
    assert isinstance(caught.value, airq_nb.AirqError) and isinstance(caught.value, ValueError)


def test_a_year_as_a_number_is_accepted():
    assert classify(10.0, index="epa", version=2012).version == "2012"


@pytest.mark.parametrize(
    ("value", "message"),
    [(-0.1, r"cannot be negative.*max\(value, 0\)"), (math.nan, r"finite.*None"),
     (math.inf, "finite"), ("12", "must be a number"), (True, "must be a number"),
     (None, "must be a number")],
)  # fmt: skip
def test_bad_concentrations_get_a_typed_error(value, message):
    with pytest.raises(airq_nb.InvalidConcentrationError, match=message):
        classify(value, index="epa")
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        with pytest.raises(airq_nb.InvalidConcentrationError, match="nowcast"):
            nowcast([10.0, value, 10.0])


# -- which index for which place -------------------------------------------------------------


@pytest.mark.parametrize(
    ("place", "expected"),
    [({"latitude": 51.5074, "longitude": -0.1278}, "daqi"),  # London
     ({"latitude": 55.953, "longitude": -3.189}, "daqi"),  # Edinburgh
     ({"latitude": 54.597, "longitude": -5.930}, "daqi"),  # Belfast
     ({"latitude": 53.350, "longitude": -6.260}, "eaqi"),  # Dublin
     ({"latitude": 48.857, "longitude": 2.352}, "eaqi"),  # Paris
     ({"latitude": 40.713, "longitude": -74.006}, "epa"),  # New York
     ({"latitude": 61.218, "longitude": -149.900}, "epa"),  # Anchorage
     ({"latitude": 28.614, "longitude": 77.209}, "epa"),  # Delhi: elsewhere, the EPA AQI
     ({"country": "gb"}, "daqi"), ({"country": "US"}, "epa"), ({"country": "DE"}, "eaqi"),
     ({"location": "laqn:KF1"}, "daqi"), ({"location": "London"}, "daqi"), ({}, "daqi")],
)  # fmt: skip
def test_default_index_by_place(place, expected):
    assert default_index(**place) == expected


def test_the_indices_are_pure_python():
    # Only the standard library and airq_nb's own errors: no pandas, numpy or drawing library.
    package = Path(airq_nb.__file__).parent / "indices"
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                imported.add(str(node.module).split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported


def test_the_examples_in_docs_indices_md_say_what_the_code_does():
    import re

    import airq_nb.indices as indices

    text = (Path(__file__).parents[1] / "docs" / "indices.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    checked = 0
    for line in block.splitlines():
        code, _, comment = line.partition("  # ")
        literal = re.match(r"('[^']*'|-?\d+(\.\d+)?)", comment.strip())
        if code.strip() and not code.startswith(("from", "#")) and literal:
            value = eval(code.strip(), vars(indices))  # our own docs examples
            assert repr(value) == literal.group(1), line
            checked += 1
    assert checked >= 4
