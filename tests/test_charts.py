"""Bokeh chart models inspected: series, WHO guideline lines, tooltips, gaps, empty stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from bokeh.embed import file_html
from bokeh.models import ColumnDataSource, GlyphRenderer, HoverTool, Label, Span
from bokeh.resources import INLINE

import airq_nb
from airq_nb.ui import charts

NOW = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)


def readings_frame(
    hours: int = 48, *, end: datetime = NOW, location: str = "London"
) -> pd.DataFrame:
    """A frame shaped like ``read_readings`` returns: UTC hourly index, its six columns."""
    index = pd.date_range(end=pd.Timestamp(end).floor("h"), periods=hours, freq="h", name="time")
    return pd.DataFrame(
        {
            "source": "open-meteo",
            "location": location,
            "pm2_5": np.linspace(4.0, 30.0, hours),
            "pm10": np.linspace(9.0, 61.0, hours),
            "aqi": pd.array([None] * hours, dtype="Int64"),
            "fetched_at": pd.Timestamp(end),
        },
        index=index,
    )


def only_source(fig) -> ColumnDataSource:
    sources = [s for s in fig.select({"type": ColumnDataSource}) if s.name.startswith("readings:")]
    assert len(sources) == 1
    return sources[0]


def data_renderers(fig) -> list[GlyphRenderer]:
    return [
        r for r in fig.renderers if isinstance(r, GlyphRenderer) and r.glyph.y in ("pm2_5", "pm10")
    ]


def test_readings_chart_draws_pm2_5_and_pm10_lines_with_a_hiding_legend():
    fig = charts.readings_chart(readings_frame(), now=NOW)
    lines = [r for r in data_renderers(fig) if type(r.glyph).__name__ == "Line"]
    assert sorted(r.glyph.y for r in lines) == ["pm10", "pm2_5"]
    assert sorted(item.label.value for item in fig.legend.items) == ["PM10", "PM2.5"]
    assert fig.legend.click_policy == "hide"
    # Each legend entry carries both the line and its markers, so a click hides both.
    assert all(len(item.renderers) == 2 for item in fig.legend.items)
    assert {"PanTool", "BoxZoomTool", "WheelZoomTool", "ResetTool"} <= {
        type(t).__name__ for t in fig.tools
    }


def test_readings_chart_has_who_2021_guidelines_at_15_and_45():
    fig = charts.readings_chart(readings_frame(), now=NOW)
    spans = {s.location: s for s in fig.select({"type": Span})}
    assert set(spans) == {15.0, 45.0}
    assert all(s.dimension == "width" for s in spans.values())
    labels = [lab.text for lab in fig.select({"type": Label}) if lab.name.startswith("who_label")]
    assert "WHO 24-h guideline PM2.5: 15 µg/m³" in labels
    assert "WHO 24-h guideline PM10: 45 µg/m³" in labels
    # The guidelines must be on screen even when the air is clean.
    clean = readings_frame().assign(pm2_5=2.0, pm10=3.0)
    assert charts.readings_chart(clean, now=NOW).y_range.end > 45


def test_readings_chart_hover_shows_time_and_both_values():
    fig = charts.readings_chart(readings_frame(), now=NOW)
    (hover,) = fig.select({"type": HoverTool})
    tips = dict(hover.tooltips)
    assert tips["time"] == "@time{%Y-%m-%d %H:%M} UTC"
    assert tips["PM2.5"].startswith("@pm2_5")
    assert tips["PM10"].startswith("@pm10")
    assert hover.formatters == {"@time": "datetime"}
    assert hover.renderers and all(r.glyph.y == "hover_y" for r in hover.renderers)


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


def test_two_locations_get_their_own_series():
    frame = pd.concat([readings_frame(5), readings_frame(5, location="Paris")]).sort_index()
    fig = charts.readings_chart(frame, now=NOW)
    names = sorted(s.name for s in fig.select({"type": ColumnDataSource}))
    assert names == ["readings:London · open-meteo", "readings:Paris · open-meteo"]
    assert "PM2.5 (Paris · open-meteo)" in {item.label.value for item in fig.legend.items}
    only_paris = charts.readings_chart(frame, now=NOW, location="Paris")
    assert only_source(only_paris).name == "readings:Paris · open-meteo"


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
    by_outcome = {
        s.name.split(":", 1)[1]: s.data
        for s in fig.select({"type": ColumnDataSource})
        if s.name.startswith("deliveries:")
    }
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


def test_delivery_chart_without_deliveries_says_so():
    fig = charts.delivery_chart(delivery_frame().iloc[:0], now=NOW)
    assert "no deliveries yet" in fig.title.text
    assert fig.select_one({"name": "no_data"}).visible


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


def test_live_chart_updates_in_place_as_readings_arrive(
    clocked_store, fake_clock, openmeteo_server
):
    from jupyter_bokeh import BokehModel

    store = clocked_store
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    live = charts.LiveChart(store)
    assert isinstance(live.model, BokehModel)
    assert "application/vnd.jupyter.widget-view+json" in live._repr_mimebundle_()
    assert "no data yet" in live.layout.children[0].title.text
    changes = []
    live.layout.document.on_change(changes.append)

    first = airq_nb.collect_now(store, source=source).stored
    live.refresh()
    chart = live.layout.children[0]
    assert "no data yet" not in chart.title.text
    cds = only_source(chart)
    assert np.isfinite(cds.data["pm2_5"]).sum() == first
    assert changes, "the document the BokehModel syncs saw no change"

    fake_clock.advance(2 * 3600)
    assert airq_nb.collect_now(store, source=source).stored == 2
    changes.clear()
    live.refresh()
    # Same figure, same data source: updated in place, nothing re-displayed.
    assert live.layout.children[0] is chart
    assert only_source(chart) is cds
    newest = pd.Timestamp(cds.data["time"][np.isfinite(cds.data["pm2_5"])][-1], tz="UTC")
    assert newest == pd.Timestamp(fake_clock.now(), unit="s", tz="UTC").floor("h")
    assert any(getattr(event, "attr", None) == "data" for event in changes)
    assert live.refreshes == 2


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
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    stored = airq_nb.collect_now(store, source=source).stored
    store.enqueue({"n": 1}, topic="collect", delay=1800)
    text = charts.stats_panel(store).text
    assert "s ago)" in text.split("Data last fetched")[1].split("</tr>")[0]
    assert f"Readings (7 days)</th><td>{stored}" in text
    assert "(in 30 min)" in text.split("Next delivery due")[1].split("</tr>")[0]
