"""The UK DAQI bands of PM2.5 and PM10 at every edge, and the rounding rule between them."""

from __future__ import annotations

import math

import pytest

from airq_nb.daqi import (
    DAQI_LOWER_BOUNDS,
    WHO_PM2_5_24H,
    WHO_PM10_24H,
    daqi_band,
    daqi_bands,
    round_half_up,
)

# DEFRA's published bands, 24-hour mean µg/m³, bands 1–10 (None: no upper end).
PUBLISHED = {
    "pm2_5": [(0, 11), (12, 23), (24, 35), (36, 41), (42, 47), (48, 53), (54, 58), (59, 64),
              (65, 70), (71, None)],
    "pm10": [(0, 16), (17, 33), (34, 50), (51, 58), (59, 66), (67, 75), (76, 83), (84, 91),
             (92, 100), (101, None)],
}  # fmt: skip
LEVELS = ["Low"] * 3 + ["Moderate"] * 3 + ["High"] * 3 + ["Very High"]


def test_who_2021_guidelines():
    assert (WHO_PM2_5_24H, WHO_PM10_24H) == (15.0, 45.0)


@pytest.mark.parametrize("pollutant", ["pm2_5", "pm10"])
def test_bands_are_defras_with_their_levels(pollutant):
    bands = daqi_bands(pollutant)
    assert [(b.lower, b.upper) for b in bands] == PUBLISHED[pollutant]
    assert [b.index for b in bands] == list(range(1, 11))
    assert [b.level for b in bands] == LEVELS
    assert bands[1].text == "Low (DAQI 2)"
    assert bands[9].range_text == f"≥{PUBLISHED[pollutant][9][0]}"


@pytest.mark.parametrize("pollutant", ["pm2_5", "pm10"])
@pytest.mark.parametrize("index", range(1, 11))
def test_every_band_edge(pollutant, index):
    lower, upper = PUBLISHED[pollutant][index - 1]
    assert daqi_band(pollutant, lower).index == index
    assert daqi_band(pollutant, float(lower)).index == index
    if upper is not None:
        assert daqi_band(pollutant, upper).index == index
        # Above the whole-number top but rounding down to it: still this band.
        assert daqi_band(pollutant, upper + 0.49).index == index
        # Half-way to the next band's lower edge rounds up into it.
        assert daqi_band(pollutant, upper + 0.5).index == index + 1
    if index > 1:
        assert daqi_band(pollutant, lower - 1).index == index - 1
        assert daqi_band(pollutant, lower - 0.5).index == index
        assert daqi_band(pollutant, lower - 0.51).index == index - 1


@pytest.mark.parametrize(
    ("mean", "index"),
    [(11.0, 1), (11.2, 1), (11.4999, 1), (11.5, 2), (11.7, 2), (12.0, 2), (23.5, 3),
     (70.49, 9), (70.5, 10), (500.0, 10)],
)  # fmt: skip
def test_a_mean_between_whole_numbers_is_rounded_half_up_first(mean, index):
    assert daqi_band("pm2_5", mean).index == index


def test_pm10_between_16_and_17():
    assert daqi_band("pm10", 16.49).index == 1
    assert daqi_band("pm10", 16.5).index == 2


def test_round_half_up_is_not_bankers_rounding():
    assert [round_half_up(v) for v in (0.5, 1.5, 2.5, 11.5, 12.5)] == [1, 2, 3, 12, 13]
    assert round(12.5) == 12  # what Python's round would have done


def test_negative_means_are_band_1_and_missing_means_have_none():
    assert daqi_band("pm2_5", -3.2).index == 1
    assert daqi_band("pm10", -0.4).index == 1
    assert daqi_band("pm2_5", math.nan) is None
    assert daqi_band("pm2_5", None) is None


def test_an_unknown_pollutant_says_which_ones_exist():
    with pytest.raises(ValueError, match=r"no DAQI bands for 'no2'.*'pm10', 'pm2_5'"):
        daqi_band("no2", 10)
    assert sorted(DAQI_LOWER_BOUNDS) == ["pm10", "pm2_5"]


def test_the_band_rule_needs_no_drawing_library():
    import subprocess
    import sys

    code = "import sys, airq_nb.daqi; print('bokeh' in sys.modules, 'ipywidgets' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
