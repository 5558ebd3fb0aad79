"""daily_means: calendar-day and rolling 24-hour means with their data capture, on both backends.

Gaps are made both ways the store can hold them: an hour with no row, and a row whose value
is NULL. The clock changes are Europe/London's of 2026 (29 March: a 23-hour day; 25
October: a 25-hour day). ``openair_day_means`` restates openair's ``timeAverage`` rule
(R/timeAverage.R: pad the series to every hour, cut it by day, keep a mean when
``sum(is.na(x)) / length(x) <= 1 - data.thresh``) to check ours against, on whole days.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

import airq_nb
from airq_nb.means import hourly_capture, hours_needed, place_zone
from airq_nb.store.readings import upsert_readings

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = 3600
LONDON = "Europe/London"


def unix(text: str) -> int:
    return int(pd.Timestamp(text).tz_convert("UTC").timestamp())


def put(store, hours, *, location="London", source="laqn", pm2_5=10.0, pm10=20.0):
    """One row per UTC hour in ``hours`` (Unix seconds); a None value is stored as NULL."""
    readings = [
        airq_nb.Reading(hour, pm2_5(hour) if callable(pm2_5) else pm2_5, pm10) for hour in hours
    ]
    upsert_readings(
        store, readings, source=source, location=location, fetched_at=hours[-1], kind="measured"
    )


def local_day(day: str, tz: str = LONDON) -> list[int]:
    """Every UTC hour of one local calendar day, as Unix seconds."""
    start = pd.Timestamp(day).tz_localize(tz)
    end = (pd.Timestamp(day) + pd.Timedelta(days=1)).tz_localize(tz)
    return list(range(int(start.timestamp()), int(end.timestamp()), HOUR))


def row(frame: pd.DataFrame, day: str, pollutant: str = "pm2_5") -> pd.Series:
    (match,) = frame[(frame["day"].astype(str) == day) & (frame["pollutant"] == pollutant)].index
    return frame.loc[match]


@pytest.fixture
def london_store(db_path):
    with airq_nb.open_store(db_path, clock=airq_nb.FakeClock(unix("2026-12-04T12:30Z"))) as store:
        yield store


def test_capture_counts_hours_with_no_row_and_null_values_alike(london_store):
    day = local_day("2026-12-02")  # GMT: the same as UTC
    # 18 hours as rows; 6 with no row at all: valid at exactly 75 %.
    put(london_store, day[:18])
    # The next day: 18 rows, but one holds NULL PM2.5 (and a PM10): 17 hours of PM2.5.
    nextday = local_day("2026-12-03")
    put(london_store, nextday[:17])
    put(london_store, nextday[17:18], pm2_5=None)
    means = airq_nb.daily_means(london_store, since="2026-12-02T00:00Z", until="2026-12-03T23:00Z")
    first, second = row(means, "2026-12-02"), row(means, "2026-12-03")
    assert (first["hours_present"], first["hours_expected"], first["capture"]) == (18, 24, 75.0)
    assert first["valid"] and first["mean"] == 10.0
    assert (second["hours_present"], second["valid"]) == (17, False)
    assert np.isnan(second["mean"]) and second["mean_of_present"] == 10.0
    assert second["capture"] == pytest.approx(100 * 17 / 24)
    # PM10 has the NULL row's value: 18 hours.
    assert row(means, "2026-12-03", "pm10")["hours_present"] == 18
    assert list(means.columns) == [
        "location", "source", "pollutant", "tz", "day", "start", "end", "mean",
        "mean_of_present", "hours_present", "hours_expected", "capture", "valid", "partial",
    ]  # fmt: skip


def test_days_after_the_last_reading_are_empty_days_not_absent(london_store):
    put(london_store, local_day("2026-12-01"))
    means = airq_nb.daily_means(london_store, pollutant="pm2_5")  # up to the store's clock
    assert means["day"].astype(str).tolist() == [
        "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"
    ]  # fmt: skip
    assert means["hours_present"].tolist() == [24, 0, 0, 0]
    assert means["valid"].tolist() == [True, False, False, False]
    # Today (2026-12-04, 12:30 by the clock) is not over: partial, out of its 24 hours.
    assert means["partial"].tolist() == [False, False, False, True]
    assert means["hours_expected"].tolist() == [24, 24, 24, 24]


def test_a_day_whose_data_start_late_counts_the_hours_before_as_missing(london_store):
    # openair pads only from the first row, so this day would be 100 %; here it is 14 of 24.
    put(london_store, local_day("2026-12-02")[10:])
    (day,) = airq_nb.daily_means(london_store, pollutant="pm2_5", until="2026-12-02T23:00Z")[
        ["hours_present", "hours_expected", "valid"]
    ].itertuples(index=False)
    assert tuple(day) == (14, 24, False)


@pytest.mark.parametrize(
    ("day", "length", "needed"),
    [("2026-03-29", 23, 18), ("2026-10-25", 25, 19), ("2026-03-28", 24, 18)],
)
def test_london_days_at_the_clock_changes_expect_their_real_hours(db_path, day, length, needed):
    hours = local_day(day)
    assert len(hours) == length
    clock = airq_nb.FakeClock(hours[-1] + 2 * HOUR)
    with airq_nb.open_store(db_path, clock=clock) as store:
        put(store, hours[:needed], location="laqn:KF1")
        put(store, hours[: needed - 1], location="London")
        means = airq_nb.daily_means(store, pollutant="pm2_5", since=hours[0])
    enough = means[(means["location"] == "laqn:KF1") & (means["day"].astype(str) == day)]
    short = means[(means["location"] == "London") & (means["day"].astype(str) == day)]
    assert enough["hours_expected"].tolist() == [length] == short["hours_expected"].tolist()
    assert enough["valid"].tolist() == [True] and short["valid"].tolist() == [False]
    assert enough["capture"].iloc[0] == pytest.approx(100 * needed / length)
    assert enough["tz"].tolist() == [LONDON]  # an LAQN site's days are London days
    # The same hours as UTC days: the day is 24 hours, from midnight UTC.
    utc = airq_nb.daily_means(_frame(hours[:needed]), tz="UTC", pollutant="pm2_5", until=hours[-1])
    assert set(utc["hours_expected"]) == {24}


def _frame(hours, values=10.0, *, location="London"):
    index = pd.to_datetime(hours, unit="s", utc=True)
    return pd.DataFrame(
        {"location": location, "source": "laqn", "pm2_5": values, "pm10": np.nan}, index=index
    )


def test_rolling_means_are_24_real_hours_across_both_clock_changes(db_path):
    for change in ("2026-03-29T01:00Z", "2026-10-25T01:00Z"):
        start = unix(change) - 30 * HOUR
        hours = list(range(start, start + 60 * HOUR, HOUR))
        values = {h: float(n) for n, h in enumerate(hours)}
        missing = set(hours[20:26])  # 6 hours with no row ...
        nulls = set(hours[26:27])  # ... and one with NULL: windows over all 7 fail
        with airq_nb.open_store(db_path, clock=airq_nb.FakeClock(hours[-1])) as store:
            present = [h for h in hours if h not in missing | nulls]
            put(store, present, location=change, pm2_5=values.__getitem__)
            put(store, sorted(nulls), location=change, pm2_5=None)
            rolling = airq_nb.daily_means(
                store, mean="rolling", location=change, pollutant="pm2_5", since=hours[0]
            )
        rolling = rolling.set_index("end")
        assert set(rolling["hours_expected"]) == {24}
        last_of = pd.to_datetime(hours, unit="s", utc=True) + pd.Timedelta(hours=1)
        # The window ending with the 27th hour holds 7 missing of 24: not valid.
        assert not rolling.loc[last_of[26], "valid"]
        assert rolling.loc[last_of[26], "hours_present"] == 17
        # 24 hours later every missing hour has left the window: 24 of 24.
        assert rolling.loc[last_of[50], "hours_present"] == 24
        assert rolling.loc[last_of[50], "mean"] == pytest.approx(np.mean(range(27, 51)))
        # The first window has only hours before the data: they are missing hours.
        assert rolling["hours_present"].iloc[0] == 1


def openair_day_means(values: pd.Series, tz: str, data_thresh: float) -> pd.DataFrame:
    """openair's timeAverage(avg.time = "day", data.thresh), restated: ``values`` padded to
    every hour, grouped by local date, a mean kept when the missing fraction is small enough."""
    local = values.tz_convert(tz)
    out = {}
    for day, part in local.groupby(local.index.date):
        missing = part.isna().sum() / len(part)
        out[day] = part.mean() if missing <= 1 - data_thresh / 100 else np.nan
    return pd.DataFrame({"mean": out})


@pytest.mark.parametrize("min_capture", [75, 90, 50, 100])
def test_calendar_means_agree_with_openair_on_whole_days(min_capture):
    rng = np.random.default_rng(18)
    # 2026-03-27 to 2026-03-31 and 2026-10-23 to 2026-10-27, whole London days, holes anywhere.
    for first, last in (("2026-03-27", "2026-03-31"), ("2026-10-23", "2026-10-27")):
        hours = pd.date_range(
            pd.Timestamp(first).tz_localize(LONDON),
            (pd.Timestamp(last) + pd.Timedelta(days=1)).tz_localize(LONDON),
            freq="h", inclusive="left",
        ).tz_convert("UTC")  # fmt: skip
        values = pd.Series(rng.uniform(2, 40, len(hours)), index=hours)
        values[rng.uniform(size=len(hours)) < 0.25] = np.nan
        ours = airq_nb.daily_means(
            _frame([int(t.timestamp()) for t in hours], values.to_numpy())[values.notna().to_numpy()],
            tz=LONDON, pollutant="pm2_5", since=hours[0], until=hours[-1],
            min_capture=min_capture,
        ).set_index("day")  # fmt: skip
        theirs = openair_day_means(values, LONDON, min_capture)
        assert list(ours.index) == list(theirs.index)
        np.testing.assert_allclose(ours["mean"], theirs["mean"], equal_nan=True)
        assert ours["valid"].sum() == theirs["mean"].notna().sum()


def test_the_capture_rule_is_configurable_and_checked():
    hours = pd.date_range("2026-12-01", periods=24, freq="h", tz="UTC")
    values = pd.Series(np.r_[np.full(12, 5.0), np.full(12, np.nan)], index=hours)
    half = hourly_capture(values, mean="calendar", min_capture=50).iloc[0]
    assert half["valid"] and half["mean"] == 5.0 and half["capture"] == 50.0
    assert not hourly_capture(values, mean="calendar").iloc[0]["valid"]
    # 0 %: any hour is enough, but an empty day has no mean.
    assert hourly_capture(values * np.nan, mean="calendar", min_capture=0).iloc[0]["valid"] == 0
    assert [hours_needed(n) for n in (23, 24, 25)] == [18, 18, 19]
    assert hours_needed(24, 100) == 24 and hours_needed(24, 0) == 1
    for bad in (120, -1, "75", True):
        with pytest.raises(airq_nb.ConfigurationError, match="percentage from 0 to 100"):
            airq_nb.daily_means(_frame([0]), min_capture=bad)


def test_bad_arguments_say_what_to_pass(london_store):
    with pytest.raises(airq_nb.ConfigurationError, match="'calendar' or 'rolling'"):
        airq_nb.daily_means(london_store, mean="weekly")
    with pytest.raises(airq_nb.ConfigurationError, match="'pm2_5' or 'pm10'"):
        airq_nb.daily_means(london_store, pollutant="o3")
    with pytest.raises(airq_nb.ConfigurationError, match="not a time zone"):
        airq_nb.daily_means(london_store, tz="London")
    with pytest.raises(airq_nb.ConfigurationError, match="no time zone"):
        airq_nb.daily_means(london_store, since=datetime(2026, 12, 1))
    assert airq_nb.daily_means(london_store).empty


def test_each_place_has_its_own_zone_unless_one_is_chosen(london_store):
    assert place_zone("London") == LONDON == place_zone("laqn:MY7")
    assert place_zone("Paris") == "UTC"
    summer = local_day("2026-07-01")
    frame = pd.concat([_frame(summer), _frame(summer, location="Paris")])
    by_place = airq_nb.daily_means(frame, pollutant="pm2_5", until=summer[-1])
    london = by_place[by_place["location"] == "London"]
    paris = by_place[by_place["location"] == "Paris"]
    # 00:00 BST is 23:00 UTC: one whole London day; in UTC days it straddles two.
    assert london["hours_present"].tolist() == [24]
    assert paris["hours_present"].tolist() == [1, 23]
    chosen = airq_nb.daily_means(frame, tz=LONDON, pollutant="pm2_5", until=summer[-1])
    assert set(chosen["tz"]) == {LONDON} and set(chosen["hours_present"]) == {24}
    assert str(london["start"].iloc[0]) == str(datetime(2026, 6, 30, 23, tzinfo=UTC))


def test_docs_state_the_rule_the_code_applies():
    from pathlib import Path

    text = " ".join((Path(__file__).parents[1] / "docs" / "means.md").read_text().split())
    for expected in (23, 25):
        assert f"**{hours_needed(expected)} of {expected}** hours" in text
    assert "18 of 24 hours" in text and f"{airq_nb.MIN_CAPTURE:g} % capture by default" in text
    assert "sum(is.na(x)) / length(x) <= 1 - data.thresh" in text


def test_the_command_line_prints_the_means_with_their_hours(london_store, db_path, capsys):
    import json

    from airq_nb.cli import main

    put(london_store, local_day("2026-12-02")[:18], location="laqn:KF1")
    put(london_store, local_day("2026-12-03")[:17], location="laqn:KF1")
    assert main(["means", "--db", str(db_path), "--location", "laqn:kf1",
                 "--pollutant", "pm2_5", "--since", "2026-12-02T00:00Z"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "LOCATION", "SOURCE", "POLLUTANT", "DAY", "MEAN", "HOURS", "CAPTURE", "VALID"
    ]  # fmt: skip
    rows = {line.split()[3]: line.split()[4:] for line in lines[1:]}
    assert rows["2026-12-02"] == ["10.0", "18/24", "75", "%", "yes"]
    assert rows["2026-12-03"] == ["-", "17/24", "71", "%", "no"]
    # The command's clock is the machine's: its today is the last row, not over yet.
    assert lines[-1].split()[4:] == ["-", "0/24", "so", "far", "0", "%", "no"]
    assert main(["means", "--db", str(db_path), "--json", "--min-capture", "70",
                 "--pollutant", "pm2_5", "--since", "2026-12-03T00:00Z"]) == 0  # fmt: skip
    third, *_, today = json.loads(capsys.readouterr().out)
    assert (third["day"], third["mean"], third["valid"]) == ("2026-12-03", 10.0, True)
    assert today["partial"] and today["hours_expected"] == 24
    assert main(["means", "--db", str(db_path), "--min-capture", "101"]) == 1
    assert "percentage from 0 to 100" in capsys.readouterr().err
