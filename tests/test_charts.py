"""Bokeh chart models inspected: series, DAQI bands, guidelines, tooltips, gaps, zones, refresh."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from bokeh.embed import file_html
from bokeh.models import BoxAnnotation, ColumnDataSource, GlyphRenderer, HoverTool, Range1d
from bokeh.resources import INLINE

import airq_nb
from airq_nb.ui import charts

NOW = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
SUMMER = datetime(2026, 7, 1, 12, 30, tzinfo=UTC)


def readings_frame(
    hours: int = 48,
    *,
    end: datetime = NOW,
    location: str = "London",
    source: str = "open-meteo",
    kind: str | None = "modelled",
    pm2_5: float | np.ndarray | None = None,
    pm10: float | np.ndarray | None = None,
) -> pd.DataFrame:
    """A frame shaped like ``read_readings`` returns: UTC hourly index and its columns."""
    index = pd.date_range(end=pd.Timestamp(end).floor("h"), periods=hours, freq="h", name="time")
    frame = pd.DataFrame(
        {
            "location": location,
            "source": source,
            "pm2_5": np.linspace(4.0, 30.0, hours) if pm2_5 is None else pm2_5,
            "pm10": np.linspace(9.0, 61.0, hours) if pm10 is None else pm10,
            "fetched_at": pd.Timestamp(end),
        },
        index=index,
    )
    if kind is not None:
        frame.insert(2, "kind", kind)
    return frame


def sources(fig, prefix: str) -> dict[str, ColumnDataSource]:
    return {
        s.name.split(":", 1)[1]: s
        for s in fig.select({"type": ColumnDataSource})
        if (s.name or "").startswith(prefix)
    }


def only_source(fig) -> ColumnDataSource:
    (source,) = sources(fig, "readings:").values()
    return source


def data_renderers(fig) -> list[GlyphRenderer]:
    return [
        r
        for r in fig.renderers
        if isinstance(r, GlyphRenderer) and getattr(r.glyph, "y", None) in ("pm2_5", "pm10")
    ]


def legend_labels(fig) -> list[str]:
    return [item.label.value for item in fig.legend.items]


# -- hourly readings --------------------------------------------------------------------------


def test_readings_chart_draws_pm2_5_and_pm10_lines_with_a_hiding_legend():
    fig = charts.readings_chart(readings_frame(), now=NOW)
    lines = [r for r in data_renderers(fig) if type(r.glyph).__name__ == "Line"]
    assert sorted(r.glyph.y for r in lines) == ["pm10", "pm2_5"]
    assert sorted(legend_labels(fig)) == ["PM10", "PM2.5"]
    assert fig.legend.click_policy == "hide"
    # Above the plot, where it hides no data; each entry hides the line and its markers.
    assert fig.legend[0] in fig.above
    assert all(len(item.renderers) == 2 for item in fig.legend.items)
    assert {"PanTool", "BoxZoomTool", "WheelZoomTool", "ResetTool"} <= {
        type(t).__name__ for t in fig.tools
    }


def hover_of(fig) -> tuple[HoverTool, dict]:
    (hover,) = fig.select({"type": HoverTool})
    (bars,) = hover.renderers
    return hover, bars.data_source.data


def test_readings_chart_hover_shows_time_both_values_and_the_series():
    frame = readings_frame()
    frame.loc[frame.index[-2], "pm10"] = None
    fig = charts.readings_chart(frame, now=NOW)
    hover, data = hover_of(fig)
    assert hover.tooltips == [
        ("time", "@time_text"),
        ("PM2.5", "@pm2_5_0"),
        ("PM10", "@pm10_0"),
        ("series", "@series_0"),
    ]
    # One invisible bar per hour, the full height of the plot: the pointer anywhere in an
    # hour's column gets that hour's one tooltip, beside the pointer on the side with room.
    (bars,) = hover.renderers
    assert type(bars.glyph).__name__ == "VBar" and bars.glyph.width == "width"
    assert set(data["width"]) == {3_600_000}  # an hour, in ms
    assert bars.glyph.fill_alpha == 0 and bars.glyph.top > 1e6
    assert (hover.mode, hover.attachment, hover.point_policy) == (
        "mouse", "horizontal", "follow_mouse",
    )  # fmt: skip
    assert data["time_text"][-1] == "2026-11-28 12:00 UTC"
    assert pd.Timestamp(data["time"][-1]) == pd.Timestamp("2026-11-28 12:30")  # mid-hour
    assert data["pm2_5_0"][-1] == "30.0 µg/m³"
    assert data["pm10_0"][-2] == "no reading"
    assert set(data["series_0"]) == {"London · Open-Meteo (modelled)"}


def test_several_series_share_one_tooltip_per_hour_naming_each():
    frame = pd.concat(
        [readings_frame(5), readings_frame(5, location="x@$y", source="laqn", kind="measured")]
    )
    hover, _ = hover_of(charts.readings_chart(frame, now=NOW))
    assert isinstance(hover.tooltips, str)
    assert "London · Open-Meteo (modelled)" in hover.tooltips
    assert "PM2.5 @pm2_5_0 · PM10 @pm10_0" in hover.tooltips
    assert "PM2.5 @pm2_5_1 · PM10 @pm10_1" in hover.tooltips
    # A name is shown as text: neither a field ("@…", "$…") nor markup.
    assert "x&#64;&#36;y · LAQN (measured)" in hover.tooltips


def test_missing_hours_are_gaps_not_joined_lines():
    frame = readings_frame(48)
    missing = frame.index[20:25]
    fig = charts.readings_chart(frame.drop(missing), now=NOW)
    data = only_source(fig).data
    times = pd.DatetimeIndex(data["time"]).tz_localize("UTC")
    # Hourly over the whole seven-day window, so a missing hour is a NaN that breaks the line.
    assert len(times) == 7 * 24
    assert (np.diff(times) == pd.Timedelta(hours=1)).all()
    at = pd.Series(data["pm2_5"], index=times)
    assert at[missing].isna().all()
    assert at[frame.index[19]] == pytest.approx(frame["pm2_5"].iloc[19])
    assert at[frame.index[25]] == pytest.approx(frame["pm2_5"].iloc[25])
    assert at[: frame.index[0] - timedelta(hours=1)].isna().all()


def test_null_values_are_gaps_and_the_other_pollutant_still_shows():
    frame = readings_frame(10)
    frame.loc[frame.index[3], "pm2_5"] = None
    data = only_source(charts.readings_chart(frame, now=NOW)).data
    at_pm2_5 = pd.Series(data["pm2_5"], index=pd.DatetimeIndex(data["time"]).tz_localize("UTC"))
    at_pm10 = pd.Series(data["pm10"], index=at_pm2_5.index)
    assert np.isnan(at_pm2_5[frame.index[3]])
    assert at_pm10[frame.index[3]] == pytest.approx(frame["pm10"].iloc[3])


def test_empty_readings_say_no_data_yet():
    fig = charts.readings_chart(readings_frame().iloc[:0], now=NOW)
    assert "no data yet" in fig.title.text
    (label,) = fig.select({"name": "no_data"})
    assert label.visible and "no data yet" in label.text
    assert not data_renderers(fig)
    # It still renders: standalone HTML with the message and BokehJS inline, not from a CDN.
    page = file_html(fig, resources=INLINE)
    assert "no data yet" in page
    assert "cdn.bokeh.org" not in page


def test_a_single_reading_is_visible_as_a_marker():
    fig = charts.readings_chart(readings_frame(1), now=NOW)
    assert "no data yet" not in fig.title.text
    assert not fig.select_one({"name": "no_data"}).visible
    markers = [r for r in data_renderers(fig) if type(r.glyph).__name__ == "Scatter"]
    assert sorted(r.glyph.y for r in markers) == ["pm10", "pm2_5"]
    assert np.isfinite(only_source(fig).data["pm2_5"]).sum() == 1


def test_readings_older_than_the_window_are_left_out():
    frame = readings_frame(24 * 10)
    data = only_source(charts.readings_chart(frame, now=NOW, days=7)).data
    assert np.isfinite(data["pm2_5"]).sum() == 7 * 24  # the 168 hours up to now's


def test_the_window_is_the_hours_the_collector_keeps(clocked_store, openmeteo_server):
    # Seven days of retention keep exactly 168 hours; the chart shows those and no more, so
    # its first point is a reading, not an always-empty hour before the oldest kept one.
    source = airq_nb.OpenMeteoSource(base_url=openmeteo_server.url)
    assert airq_nb.collect_now(clocked_store, source=source).stored == 168
    data = only_source(charts.readings_chart(clocked_store, days=7)).data
    assert len(data["time"]) == 168
    assert np.isfinite(data["pm2_5"]).all()


def test_a_site_named_apart_from_its_code_is_named_in_legend_and_hover():
    site = readings_frame(30, location="laqn:KF1", source="laqn", kind="measured")
    site["site_name"] = "Kensington and Chelsea - North Ken"
    point = readings_frame(30)
    point["site_name"] = "London"  # a modelled point named as its location: no repeat
    fig = charts.readings_chart(pd.concat([site, point]).sort_index(), now=NOW)
    labels = legend_labels(fig)
    assert "PM10 · laqn:KF1 – Kensington and Chelsea - North Ken · LAQN (measured)" in labels
    assert "PM10 · London · Open-Meteo (modelled)" in labels
    hover, _ = hover_of(fig)
    assert "laqn:KF1 – Kensington and Chelsea - North Ken · LAQN (measured)" in hover.tooltips


def test_two_locations_get_their_own_series():
    frame = pd.concat([readings_frame(5), readings_frame(5, location="Paris")]).sort_index()
    fig = charts.readings_chart(frame, now=NOW)
    assert sorted(sources(fig, "readings:")) == ["London · open-meteo", "Paris · open-meteo"]
    assert "PM2.5 · Paris · Open-Meteo (modelled)" in legend_labels(fig)
    only_paris = charts.readings_chart(frame, now=NOW, location="Paris")
    assert only_source(only_paris).name == "readings:Paris · open-meteo"


def test_measured_and_modelled_side_by_side_name_their_source_in_legend_and_hover():
    frame = pd.concat(
        [
            readings_frame(30),
            readings_frame(30, location="laqn:KF1", source="laqn", kind="measured"),
        ]
    ).sort_index()
    fig = charts.readings_chart(frame, now=NOW)
    labels = legend_labels(fig)
    assert "PM2.5 · London · Open-Meteo (modelled)" in labels
    assert "PM10 · laqn:KF1 · LAQN (measured)" in labels
    hover, data = hover_of(fig)
    assert (set(data["series_0"]), set(data["series_1"])) == (
        {"London · Open-Meteo (modelled)"},
        {"laqn:KF1 · LAQN (measured)"},
    )
    assert "laqn:KF1 · LAQN (measured)" in hover.tooltips
    means = charts.daqi_chart(frame, now=NOW)
    assert {"London · Open-Meteo (modelled)", "laqn:KF1 · LAQN (measured)"} <= set(
        legend_labels(means)
    )
    dashes = {r.name.split(":", 2)[2]: r.glyph.line_dash for r in means.select({"type": GlyphRenderer}) if r.name.startswith("mean:")}  # fmt: skip
    assert dashes == {"London · open-meteo": [6], "laqn:KF1 · laqn": []}  # modelled dashed


def test_readings_without_a_kind_column_or_with_an_unknown_kind_name_no_kind():
    frame = readings_frame(5, kind=None)
    assert "kind" not in frame
    assert set(hover_of(charts.readings_chart(frame, now=NOW))[1]["series_0"]) == {
        "London · Open-Meteo"
    }
    odd = readings_frame(5, kind="guessed", source="somewhere-new")
    assert set(hover_of(charts.readings_chart(odd, now=NOW))[1]["series_0"]) == {
        "London · somewhere-new"
    }


def test_a_long_legend_wraps_into_rows_instead_of_running_off_the_canvas():
    frame = pd.concat(
        [readings_frame(5, location=f"laqn:S{n}", source="laqn", kind="measured") for n in range(3)]
    )
    fig = charts.readings_chart(frame, now=NOW)
    legend = fig.legend[0]
    assert len(legend.items) == 6
    assert legend.ncols < 6


# -- time zones -------------------------------------------------------------------------------


def test_times_in_europe_london_are_gmt_in_winter_and_bst_in_summer():
    winter_fig = charts.readings_chart(readings_frame(), now=NOW, tz="Europe/London")
    assert hover_of(winter_fig)[1]["time_text"][-1] == "2026-11-28 12:00 GMT"
    winter = only_source(winter_fig).data
    assert pd.Timestamp(winter["time"][-1]) == pd.Timestamp("2026-11-28 12:00")
    fig = charts.readings_chart(readings_frame(end=SUMMER), now=SUMMER, tz="Europe/London")
    summer = only_source(fig).data
    # Bokeh draws naive wall time: 12:00 UTC is drawn at 13:00 and said to be 13:00 BST.
    assert hover_of(fig)[1]["time_text"][-1] == "2026-07-01 13:00 BST"
    assert pd.Timestamp(summer["time"][-1]) == pd.Timestamp("2026-07-01 13:00")
    assert fig.xaxis[0].axis_label == "time (Europe/London, GMT/BST)"
    utc = charts.readings_chart(readings_frame(end=SUMMER), now=SUMMER)
    assert utc.xaxis[0].axis_label == "time (UTC)"


def test_an_unknown_zone_is_refused_with_what_to_pass():
    with pytest.raises(airq_nb.ConfigurationError, match="use 'UTC' or 'Europe/London'"):
        charts.readings_chart(readings_frame(), now=NOW, tz="London")


# -- 24-hour means and the DAQI ---------------------------------------------------------------


def means_of(fig, key: str = "London · open-meteo") -> pd.Series:
    data = sources(fig, "means:")[f"{fig.name.split(':')[1]}:{key}"].data
    return pd.Series(data["mean"], index=pd.DatetimeIndex(data["time"]).tz_localize("UTC"))


def test_daqi_chart_shades_the_ten_bands_at_half_below_their_whole_number_edges():
    fig = charts.daqi_chart(readings_frame(), "pm2_5", now=NOW)
    bands = [b for b in fig.select({"type": BoxAnnotation}) if (b.name or "").startswith("band:")]
    boxes = sorted(bands, key=lambda b: int(b.name.rsplit(":", 1)[1]))
    assert len(boxes) == 10
    # Band 1 reaches down to the frame's bottom edge, band 10 up to its top.
    assert boxes[0].top == 11.5 and not isinstance(boxes[0].bottom, float)
    assert [(b.bottom, b.top) for b in boxes[1:3]] == [(11.5, 23.5), (23.5, 35.5)]
    assert boxes[9].bottom == 70.5 and not isinstance(boxes[9].top, float)
    assert boxes[0].fill_color == charts.DAQI_COLORS[0]
    pm10 = charts.daqi_chart(readings_frame(), "pm10", now=NOW)
    edges = sorted(
        b.bottom
        for b in pm10.select({"type": BoxAnnotation})
        if (b.name or "").startswith("band:") and isinstance(b.bottom, float)
    )
    assert edges == [16.5, 33.5, 50.5, 58.5, 66.5, 75.5, 83.5, 91.5, 100.5]
    # The right-hand axis numbers each band in its middle, so the shading reads without the key.
    axis = fig.select_one({"name": "index_axis"})
    assert axis.major_label_overrides == {
        5.75: "1", 17.5: "2", 29.5: "3", 38.5: "4", 44.5: "5", 50.5: "6", 56.0: "7",
        61.5: "8", 67.5: "9", 75.5: "10",
    }  # fmt: skip


def test_daqi_chart_has_the_who_guideline_in_its_legend_not_over_the_data():
    for pollutant, guideline in (("pm2_5", 15), ("pm10", 45)):
        fig = charts.daqi_chart(readings_frame(), pollutant, now=NOW)
        (who,) = [r for r in fig.renderers if r.name == f"who:{pollutant}"]
        assert list(who.data_source.data["y"]) == [guideline]
        name = "PM2.5" if pollutant == "pm2_5" else "PM10"
        assert f"WHO 24-h guideline {name}: {guideline} µg/m³" in legend_labels(fig)
        assert fig.legend[0] in fig.above
        # Always in sight, even when the air is clean.
        assert fig.y_range.end > guideline


def test_rolling_24_hour_means_need_18_of_24_hours():
    frame = readings_frame(60, pm2_5=np.r_[np.full(36, 10.0), np.full(24, 22.0)], pm10=30.0)
    means = means_of(charts.daqi_chart(frame, now=NOW))
    hours = frame.index
    assert np.isnan(means[hours[16]])  # 17 hours so far
    assert means[hours[17]] == pytest.approx(10.0)  # the 18th hour: a mean
    assert means[hours[-1]] == pytest.approx(22.0)
    # Halfway through the change: 12 hours at 10 and 12 at 22.
    assert means[hours[47]] == pytest.approx(16.0)
    gappy = frame.drop(frame.index[-10:-3])  # 7 of the last 24 hours missing
    assert np.isnan(means_of(charts.daqi_chart(gappy, now=NOW))[hours[-1]])


def test_calendar_means_are_midnight_to_midnight_in_the_zone():
    # 14:00 UTC on 2026-07-02 to 12:00 UTC on 2026-07-04; BST days start at 23:00 UTC.
    index = pd.date_range("2026-07-02 14:00", "2026-07-04 12:00", freq="h", tz="UTC")
    values = np.where(index < pd.Timestamp("2026-07-03 23:00", tz="UTC"), 10.0, 30.0)
    frame = readings_frame(len(index), end=index[-1], pm2_5=values, pm10=values)
    now = index[-1].to_pydatetime()
    london = means_of(charts.daqi_chart(frame, now=now, tz="Europe/London", mean="calendar"))
    at = london.copy()
    at.index = index[-len(at) :] if len(at) < len(index) else at.index
    whole_day = pd.Timestamp("2026-07-03 12:00", tz="Europe/London").tz_convert("UTC")
    wall = whole_day.tz_convert("Europe/London").tz_localize(None).tz_localize("UTC")
    assert london[wall] == pytest.approx(10.0)
    # Today so far (since 00:00 BST) is all 30s: 14 hours of a day not over, no daily mean.
    assert np.isnan(london.iloc[-1])
    utc = means_of(charts.daqi_chart(frame, now=now, mean="calendar"))
    # In UTC, 2026-07-03 ends at midnight UTC and holds one 30: not a whole-10 day.
    assert utc[pd.Timestamp("2026-07-03 12:00", tz="UTC")] == pytest.approx((23 * 10 + 30) / 24)


def test_todays_band_is_stated_in_words_per_series():
    frame = pd.concat(
        [
            readings_frame(30, pm2_5=11.6, pm10=20.0),
            readings_frame(30, location="laqn:KF1", source="laqn", kind="measured",
                           pm2_5=72.0, pm10=30.0),
        ]
    ).sort_index()  # fmt: skip
    lines = charts.today_lines(charts.read_view(frame, now=NOW, tz="Europe/London"))
    by_series = {line.split(": ", 1)[0]: line for line in lines}
    london = by_series["London · Open-Meteo (modelled)"]
    # 11.6 rounds to 12: band 2 for PM2.5; PM10 20 is band 2; the worse of the two is the day's.
    assert london.startswith("London · Open-Meteo (modelled): Low (DAQI 2), 24-hour mean up to")
    assert "the 2026-11-28 12:00 GMT hour" in london
    assert "PM2.5 11.6 µg/m³ (DAQI 2; within the WHO guideline of 15)" in london
    assert "PM10 20.0 µg/m³ (DAQI 2; within the WHO guideline of 45)" in london
    kf1 = by_series["laqn:KF1 · LAQN (measured)"]
    assert kf1.startswith("laqn:KF1 · LAQN (measured): Very High (DAQI 10)")
    assert "PM2.5 72.0 µg/m³ (DAQI 10; above the WHO guideline of 15)" in kf1


def test_too_few_hours_for_a_mean_and_no_readings_are_said_plainly():
    short = charts.today_lines(charts.read_view(readings_frame(5), now=NOW))
    assert short == [
        "London · Open-Meteo (modelled): not known yet, a 24-hour mean needs 18 of its 24 "
        "hours; not enough readings"
    ]
    empty = charts.today_lines(charts.read_view(readings_frame().iloc[:0], now=NOW))
    assert empty == ["Air quality today: no data yet"]


def test_daqi_chart_hover_names_the_band_of_each_mean():
    fig = charts.daqi_chart(readings_frame(30, pm2_5=40.0), now=NOW)
    hover, data = hover_of(fig)
    assert dict(hover.tooltips)["24-h mean"] == "@mean_0"
    assert data["mean_0"][-1] == "40.0 µg/m³, Moderate (DAQI 4); 24 of 24 hours"
    assert data["mean_0"][0] == "no 24-h mean: 0 of 24 hours (0 %), needs 75 %"
    means = sources(fig, "means:")["pm2_5:London · open-meteo"].data
    assert means["band"][-1] == "Moderate (DAQI 4)"
    assert means["band"][0] == ""  # no mean, no band


# -- freshness --------------------------------------------------------------------------------


def test_freshness_shows_missing_hours_and_when_each_reading_was_fetched():
    frame = readings_frame(24 * 7)
    frame["fetched_at"] = frame.index + pd.Timedelta(minutes=5)
    missing = frame.index[100:103]
    fig = charts.freshness_chart(frame.drop(missing), now=NOW, tz="Europe/London")
    cells = sources(fig, "freshness:")
    assert len(cells["present"].data["time"]) == 165
    assert cells["missing"].data["time_text"] == [t.strftime("%Y-%m-%d %H:%M GMT") for t in missing]
    assert cells["present"].data["fetched"][0] == (
        f"{(frame.index[0] + pd.Timedelta(minutes=5)):%Y-%m-%d %H:%M} GMT "
        "(5 min after the hour began)"
    )
    assert cells["missing"].data["fetched"][0] == "not fetched"
    (line,) = charts.freshness_lines(charts.read_view(frame.drop(missing), now=NOW))
    first, last = missing[0], missing[-1]
    assert f"165 of 168 hours; missing {first:%Y-%m-%d %H:%M} UTC to {last:%H:%M} UTC (3 h)" in line
    assert "last fetched 2026-11-28 12:05 UTC (25 min ago)" in line
    # Both statuses keep a legend swatch even when no hour has that status.
    whole = charts.freshness_chart(frame, now=NOW)
    assert not len(sources(whole, "freshness:")["missing"].data["time"])
    swatch = whole.select_one({"name": "swatch:hour missing"})
    assert len(swatch.data_source.data["x"]) == 1
    assert "hour missing" in legend_labels(whole)


# -- delivery accuracy ------------------------------------------------------------------------


def delivery_frame() -> pd.DataFrame:
    scheduled = pd.date_range(end=pd.Timestamp(NOW).floor("h"), periods=4, freq="h")
    return pd.DataFrame(
        {
            "message_id": [1, 2, 2, 3],
            "topic": "collect",
            "schedule": "collect:London",
            "attempt": [1, 1, 2, 1],
            "scheduled_at": scheduled,
            "started_at": scheduled + pd.Timedelta(milliseconds=40),
            "finished_at": scheduled + pd.Timedelta(seconds=1),
            "outcome": ["ok", "retry", "ok", "dead"],
            "error": [None, "HTTP 500", None, "<script>alert(1)</script>"],
            "lateness_ms": [40.0, 12.5, 1500.0, 7.0],
        }
    )


def test_delivery_chart_plots_lateness_of_each_delivery_by_outcome():
    fig = charts.delivery_chart(delivery_frame(), now=NOW)
    by_outcome = {k: s.data for k, s in sources(fig, "deliveries:").items()}
    assert list(by_outcome["ok"]["lateness_ms"]) == [40.0, 1500.0]
    assert list(by_outcome["retry"]["lateness_ms"]) == [12.5]
    assert list(by_outcome["dead"]["error"]) == ["<script>alert(1)</script>"]
    assert len(by_outcome["lost"]["lateness_ms"]) == 0
    assert fig.legend.click_policy == "hide"
    (hover,) = fig.select({"type": HoverTool})
    tips = dict(hover.tooltips)
    assert tips["lateness"].startswith("@lateness_ms")
    assert tips["outcome"] == "@outcome"
    assert list(by_outcome["retry"]["outcome"]) == ["retry"]
    # Bokeh shows a field as text unless told "{safe}": error text cannot inject markup.
    assert tips["error"] == "@error"
    assert not fig.select_one({"name": "no_data"}).visible


def test_delivery_chart_spans_the_whole_window_with_a_swatch_for_every_outcome():
    fig = charts.delivery_chart(delivery_frame(), now=NOW, days=7)
    assert isinstance(fig.x_range, Range1d)
    assert pd.Timestamp(fig.x_range.start) == pd.Timestamp("2026-11-21 13:00")
    assert pd.Timestamp(fig.x_range.end) == pd.Timestamp("2026-11-28 13:00")
    assert legend_labels(fig) == list(charts.OUTCOME_COLORS)
    for item in fig.legend.items:
        # Bokeh draws no swatch for a glyph whose data is empty; each entry has one that isn't.
        drawn = [r for r in item.renderers if len(next(iter(r.data_source.data.values())))]
        assert drawn, item.label.value


def test_delivery_chart_without_deliveries_says_so():
    fig = charts.delivery_chart(delivery_frame().iloc[:0], now=NOW)
    assert "no deliveries yet" in fig.title.text
    assert fig.select_one({"name": "no_data"}).visible


# -- stores, dashboard and live refresh -------------------------------------------------------


def test_readings_chart_reads_the_store(store, openmeteo_server):
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    result = airq_nb.collect_now(store, source=source)
    assert result.stored > 0
    fig = charts.readings_chart(store)
    stored = airq_nb.read_readings(store)
    data = only_source(fig).data
    assert np.isfinite(data["pm2_5"]).sum() == len(stored)
    assert set(np.round(data["pm2_5"][np.isfinite(data["pm2_5"])], 2)) == set(
        np.round(stored["pm2_5"], 2)
    )


def test_readings_chart_of_an_empty_store_says_no_data_yet(store):
    assert "no data yet" in charts.readings_chart(store).title.text


def collect(store, server) -> int:
    source = airq_nb.source_from_env("open-meteo", base_url=server.url)
    return airq_nb.collect_now(store, source=source).stored


def test_live_chart_updates_in_place_as_readings_arrive(
    clocked_store, fake_clock, openmeteo_server
):
    from jupyter_bokeh import BokehModel

    store = clocked_store
    live = charts.LiveChart(store)
    assert isinstance(live.model, BokehModel)
    assert "application/vnd.jupyter.widget-view+json" in live._repr_mimebundle_()
    assert "no data yet" in live._figure("readings_chart").title.text
    changes = []
    live.layout.document.on_change(changes.append)

    first = collect(store, openmeteo_server)
    live.refresh()
    chart = live._figure("readings_chart")
    assert "no data yet" not in chart.title.text
    cds = only_source(chart)
    assert np.isfinite(cds.data["pm2_5"]).sum() == first
    assert "Low" in live._figure("today").text or "Moderate" in live._figure("today").text
    assert changes, "the document the BokehModel syncs saw no change"

    fake_clock.advance(2 * 3600)
    assert collect(store, openmeteo_server) == 2
    changes.clear()
    live.refresh()
    # Same figure, same data source: updated in place, nothing re-displayed.
    assert live._figure("readings_chart") is chart
    assert only_source(chart) is cds
    newest = pd.Timestamp(cds.data["time"][np.isfinite(cds.data["pm2_5"])][-1], tz="UTC")
    assert newest == pd.Timestamp(fake_clock.now(), unit="s", tz="UTC").floor("h")
    assert any(getattr(event, "attr", None) == "data" for event in changes)
    assert live.refreshes == 2


def test_zoom_and_pan_survive_the_hourly_refresh(clocked_store, fake_clock, openmeteo_server):
    store = clocked_store
    collect(store, openmeteo_server)
    live = charts.LiveChart(store)
    readings, pm10 = live._figure("readings_chart"), live._figure("daqi_chart:pm10")
    home_start = readings.x_range.start
    # The user zooms into one day of the readings chart (what BokehModel syncs back).
    zoom = (home_start + pd.Timedelta(days=2), home_start + pd.Timedelta(days=3))
    readings.x_range.update(start=zoom[0], end=zoom[1])
    readings.y_range.end = 12
    fake_clock.advance(3600)
    collect(store, openmeteo_server)
    live.refresh()
    assert (readings.x_range.start, readings.x_range.end) == zoom
    assert readings.y_range.end == 12
    # Reset goes to the newest window, an hour on.
    assert readings.x_range.reset_start == home_start + pd.Timedelta(hours=1)
    # A chart left alone follows the window.
    assert pm10.x_range.start == home_start + pd.Timedelta(hours=1)


def test_a_new_series_redraws_and_the_location_can_be_picked(store, openmeteo_server):
    from airq_nb.store.readings import upsert_readings

    collect(store, openmeteo_server)
    live = charts.LiveChart(store)
    assert charts.LAQN_ATTRIBUTION not in live._figure("attribution").text
    newest = int(airq_nb.read_readings(store).index.max().timestamp())
    kf1 = [airq_nb.Reading(time=newest - h * 3600, pm2_5=8.0, pm10=14.0) for h in range(30)]
    upsert_readings(store, kf1, source="laqn", location="laqn:KF1", fetched_at=newest)
    live.refresh()
    assert sorted(sources(live._figure("readings_chart"), "readings:")) == [
        "London · open-meteo",
        "laqn:KF1 · laqn",
    ]
    attribution = live._figure("attribution")
    assert attribution.visible
    assert "London Air Quality Network" in attribution.text
    assert "Open Government Licence v3.0" in attribution.text
    assert live.locations() == ["London", "laqn:KF1"]
    picker = charts.location_picker(live)
    assert list(picker.options) == ["All locations", "London", "laqn:KF1"]
    picker.value = "laqn:KF1"
    assert list(sources(live._figure("readings_chart"), "readings:")) == ["laqn:KF1 · laqn"]
    assert "laqn:KF1 · LAQN" in live.as_text()


def test_live_chart_refreshes_on_the_running_loop_until_stopped(store):
    async def scenario() -> int:
        live = charts.LiveChart(store, interval=0.02)
        live.start()
        await asyncio.sleep(0.2)
        live.stop()
        seen = live.refreshes
        await asyncio.sleep(0.1)
        assert live.refreshes == seen
        return seen

    assert asyncio.run(scenario()) >= 2


def test_stats_panel_says_what_was_fetched_and_what_is_due(store, openmeteo_server):
    empty = charts.stats_panel(store).text
    assert "Data last fetched</th><td>never" in empty
    assert "Last delivery</th><td>none yet" in empty
    stored = collect(store, openmeteo_server)
    store.enqueue({"n": 1}, topic="collect", delay=1800)
    text = charts.stats_panel(store).text
    fetched = text.split("Data last fetched")[1].split("</tr>")[0]
    assert fetched.endswith(" UTC (just now)</td>") or fetched.endswith(" s ago)</td>")
    assert f"Readings (7 days)</th><td>{stored}" in text
    assert "(in 30 min)" in text.split("Next delivery due")[1].split("</tr>")[0]


def test_save_report_writes_one_standalone_page(store, openmeteo_server, tmp_path):
    collect(store, openmeteo_server)
    path = charts.save_report(charts.dashboard(store, tz="Europe/London"), tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    assert "Is the air bad today?" in page
    assert "cdn.bokeh.org" not in page and len(page) > 500_000
