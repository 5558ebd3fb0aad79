"""Data capture on the charts: means under 75 % hatched and faded, hours in the hover, today's
band never from a partial calendar day unsaid, and Europe/London's repeated autumn hour drawn
as two hours. The charts' means are airq_nb.means' (the same numbers as daily_means)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from bokeh.models import ColumnDataSource, HoverTool

import airq_nb
from airq_nb.store.readings import upsert_readings
from airq_nb.ui import charts

NOW = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
KEY = "London · open-meteo"

pytestmark = pytest.mark.backends("sqlite", "postgres")


def frame_of(hours: pd.DatetimeIndex, pm2_5, pm10=20.0, *, location="London") -> pd.DataFrame:
    return pd.DataFrame(
        {"location": location, "source": "open-meteo", "kind": "modelled", "pm2_5": pm2_5,
         "pm10": pm10, "fetched_at": hours.max()},
        index=hours.rename("time"),
    )  # fmt: skip


def hours_to(end: datetime, count: int) -> pd.DatetimeIndex:
    return pd.date_range(end=pd.Timestamp(end).floor("h"), periods=count, freq="h")


def source(fig, name: str) -> dict:
    (found,) = [s for s in fig.select({"type": ColumnDataSource}) if s.name == name]
    return found.data


def hover_data(fig) -> dict:
    (hover,) = fig.select({"type": HoverTool})
    (bars,) = hover.renderers
    return bars.data_source.data


def series_at(data: dict, column: str = "mean") -> pd.Series:
    return pd.Series(
        np.asarray(data[column], dtype="float64"), index=pd.DatetimeIndex(data["time"])
    )


def test_means_under_75_percent_are_hatched_faded_and_say_their_hours():
    hours = hours_to(NOW, 48)
    values = np.full(48, 12.0)
    frame = frame_of(hours, values).drop(hours[-10:-3])  # 7 of the last 24 hours missing
    fig = charts.daqi_chart(frame, "pm2_5", now=NOW)
    means = series_at(source(fig, f"means:pm2_5:{KEY}"))
    low = series_at(source(fig, f"low:pm2_5:{KEY}"))
    last = pd.Timestamp(hours[-1]).tz_localize(None)
    # The newest mean has 17 of 24 hours: no line, but the faded mean of the 17 and a hatch.
    assert np.isnan(means[last]) and low[last] == pytest.approx(12.0)
    # Where the mean is valid the faded line has nothing: the two never overlap.
    assert (np.isnan(low) | np.isnan(means)).all() and np.isfinite(means).any()
    spans = source(fig, "short:pm2_5")
    assert pd.Timestamp(spans["right"][-1]) == last + pd.Timedelta(hours=1)
    assert spans["text"][-1].startswith("London · Open-Meteo (modelled): no valid mean")
    (hatch,) = [r for r in fig.renderers if r.name == "short_spans:pm2_5"]
    assert hatch.glyph.hatch_pattern == "/" and hatch.glyph.fill_alpha == 0
    (faded,) = [r for r in fig.renderers if r.name == f"low_mean:pm2_5:{KEY}"]
    assert faded.glyph.line_alpha < 0.5 and faded.glyph.line_dash == [2, 4]  # dotted
    labels = [item.label.value for item in fig.legend.items]
    assert "hatched, faded: under 75 % of hours, no valid mean" in labels
    text = hover_data(fig)["mean_0"]
    assert text[-1] == "no 24-h mean: 17 of 24 hours (71 %), needs 75 %"
    assert text[-11] == "12.0 µg/m³, Low (DAQI 2); 24 of 24 hours"
    assert text[-10] == "12.0 µg/m³, Low (DAQI 2); 23 of 24 hours"


def test_a_null_value_is_a_missing_hour_like_a_missing_row():
    hours = hours_to(NOW, 40)
    values = np.linspace(5, 30, 40)
    holes = hours[-12:-5]
    no_rows = charts.daqi_chart(frame_of(hours, values).drop(holes), "pm2_5", now=NOW)
    nulls = frame_of(hours, values)
    nulls.loc[holes, "pm2_5"] = np.nan
    with_nulls = charts.daqi_chart(nulls, "pm2_5", now=NOW)
    for name in (f"means:pm2_5:{KEY}", f"low:pm2_5:{KEY}", "short:pm2_5"):
        left, right = source(no_rows, name), source(with_nulls, name)
        for column in left:
            assert (
                np.array_equal(np.asarray(left[column]), np.asarray(right[column]), equal_nan=True)
                if np.asarray(left[column]).dtype.kind == "f"
                else list(left[column]) == list(right[column])
            )
    assert hover_data(no_rows)["mean_0"] == hover_data(with_nulls)["mean_0"]


def test_calendar_today_is_banded_from_the_running_mean_and_says_so():
    # Yesterday (GMT) at 10 µg/m³ all day; today 80 from 00:00 to 12:00: 13 hours so far.
    hours = pd.date_range("2026-11-26 00:00", "2026-11-28 12:00", freq="h", tz="UTC")
    values = np.where(hours >= pd.Timestamp("2026-11-28", tz="UTC"), 80.0, 10.0)
    view = charts.read_view(frame_of(hours, values), now=NOW, tz="Europe/London", mean="calendar")
    (line,) = charts.today_lines(view)
    # The running mean: 11 hours of 10 and 13 of 80 is 47.9, rounded 48, DAQI 6; today's
    # 13 hours alone (80, DAQI 10) are not a daily mean.
    assert line == (
        "London · Open-Meteo (modelled): Moderate (DAQI 6), 24-hour running mean up to the "
        "2026-11-28 12:00 GMT hour (today is not over: so far 13 of its 24 hours, no daily "
        "mean yet): PM2.5 47.9 µg/m³ (DAQI 6; above the WHO guideline of 15); PM10 20.0 µg/m³ "
        "(DAQI 2; within the WHO guideline of 45)"
    )
    fig = charts.daqi_chart(
        frame_of(hours, values), "pm2_5", now=NOW, tz="Europe/London", mean="calendar"
    )
    text = hover_data(fig)["mean_0"]
    assert text[-1] == "80.0 µg/m³ so far 13 of 24 hours: no daily mean before the day is over"
    assert text[-14] == "10.0 µg/m³, Low (DAQI 1); 24 of 24 hours"
    # Once the day is over its own mean is today's: "mean of" that day.
    late = datetime(2026, 11, 27, 23, 40, tzinfo=UTC)
    (done,) = charts.today_lines(
        charts.read_view(frame_of(hours, values), now=late, tz="Europe/London", mean="calendar")
    )
    assert "Low (DAQI 2), mean of 2026-11-27: PM2.5 10.0 µg/m³ (DAQI 1;" in done


def test_the_charts_calendar_means_are_daily_means():
    hours = pd.date_range("2026-10-22 00:00", "2026-10-27 12:00", freq="h", tz="UTC")
    rng = np.random.default_rng(7)
    values = rng.uniform(3, 50, len(hours))
    frame = frame_of(hours, values)[rng.uniform(size=len(hours)) > 0.2]
    now = datetime(2026, 10, 27, 12, 30, tzinfo=UTC)
    view = charts.read_view(frame, now=now, tz="Europe/London", mean="calendar", days=4)
    (series,) = view.series
    daily = airq_nb.daily_means(frame, tz="Europe/London", pollutant="pm2_5", until=now)
    by_start = daily.set_index("start")
    for hour, mean in series.hourly["mean_pm2_5"].items():
        day = by_start[(by_start.index <= hour) & (by_start["end"] > hour)]
        assert len(day) == 1
        assert np.isclose(day["mean"].iloc[0], mean, equal_nan=True), hour
    # 2026-10-25, the 25-hour day, expects 25 hours in the chart as in daily_means.
    sunday = series.hourly.loc["2026-10-25 12:00", "expected_pm2_5"]
    assert sunday == 25 == daily.set_index("day").loc[pd.Timestamp("2026-10-25").date(),
                                                      "hours_expected"]  # fmt: skip


@pytest.mark.parametrize("change", ["2026-10-25 01:00", "2026-03-29 01:00"])
def test_hours_at_the_clock_changes_are_drawn_in_order_each_once(change):
    hours = pd.date_range(end=pd.Timestamp(change, tz="UTC") + pd.Timedelta(hours=6),
                          periods=40, freq="h")  # fmt: skip
    now = hours[-1].to_pydatetime()
    frame = frame_of(hours, np.linspace(5, 25, 40))
    fig = charts.readings_chart(frame, now=now, tz="Europe/London")
    (cds,) = [s for s in fig.select({"type": ColumnDataSource}) if s.name == f"readings:{KEY}"]
    drawn = pd.DatetimeIndex(cds.data["time"])
    assert drawn.is_monotonic_increasing and drawn.is_unique
    hover = hover_data(fig)
    texts, middles = hover["time_text"], pd.DatetimeIndex(hover["time"])
    assert middles.is_monotonic_increasing and middles.is_unique
    if change.startswith("2026-10"):
        # 01:00 BST, then 01:00 GMT: two hours at two places, each half an hour wide.
        first, second = texts.index("2026-10-25 01:00 BST"), texts.index("2026-10-25 01:00 GMT")
        assert second == first + 1
        assert [middles[first], middles[second]] == [
            pd.Timestamp("2026-10-25 01:15"), pd.Timestamp("2026-10-25 01:45")
        ]  # fmt: skip
        assert hover["width"][first] == hover["width"][second] == 1_800_000
        daqi = charts.daqi_chart(frame, now=now, tz="Europe/London")
        means = pd.DatetimeIndex(source(daqi, f"means:pm2_5:{KEY}")["time"])
        assert means.is_monotonic_increasing and means.is_unique
    else:
        # 00:00 GMT, then 02:00 BST: the hour between does not exist on the clock.
        at = texts.index("2026-03-29 00:00 GMT")
        assert texts[at + 1] == "2026-03-29 02:00 BST"
        assert hover["width"][at] == 7_200_000


def test_live_chart_refreshes_its_capture_in_place(db_path):
    clock = airq_nb.FakeClock(NOW.timestamp())
    with airq_nb.open_store(db_path, clock=clock) as store:
        start = int(pd.Timestamp(NOW).floor("h").timestamp()) - 14 * 3600
        hours = list(range(start, start + 15 * 3600, 3600))
        readings = [airq_nb.Reading(h, 9.0, 18.0) for h in hours]
        upsert_readings(store, readings, source="open-meteo", location="London",
                        fetched_at=NOW.timestamp())  # fmt: skip
        live = charts.LiveChart(store)
        fig = live._figure("daqi_chart:pm2_5")
        low = series_at(source(fig, f"low:pm2_5:{KEY}"))
        assert low.iloc[-1] == pytest.approx(9.0)  # 15 of 24 hours: no mean yet
        assert "no 24-h mean: 15 of 24 hours" in hover_data(fig)["mean_0"][-1]
        spans = fig.select_one({"name": "short:pm2_5"})
        clock.advance(9 * 3600)
        more = [airq_nb.Reading(hours[-1] + n * 3600, 9.0, 18.0) for n in range(1, 10)]
        upsert_readings(store, more, source="open-meteo", location="London",
                        fetched_at=clock.now())  # fmt: skip
        live.refresh()
        assert fig.select_one({"name": "short:pm2_5"}) is spans
        means = series_at(source(fig, f"means:pm2_5:{KEY}"))
        assert means.iloc[-1] == pytest.approx(9.0)  # 24 of 24 hours now
        assert "24 of 24 hours" in hover_data(fig)["mean_0"][-1]


def test_a_25_hour_day_at_the_start_of_the_window_counts_all_its_hours():
    # The window's first hour is 23:00 GMT on 25 October, a day that began 24 hours earlier.
    hours = pd.date_range("2026-10-23 00:00", "2026-10-26 22:00", freq="h", tz="UTC")
    now = datetime(2026, 10, 26, 22, 30, tzinfo=UTC)
    frame = frame_of(hours, 10.0)
    view = charts.read_view(frame, now=now, tz="Europe/London", mean="calendar", days=1)
    (series,) = view.series
    first = series.hourly.iloc[0]
    assert series.hourly.index[0] == pd.Timestamp("2026-10-25 23:00", tz="UTC")
    assert (first["present_pm2_5"], first["expected_pm2_5"]) == (25, 25)
    assert first["mean_pm2_5"] == 10.0
