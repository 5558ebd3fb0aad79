"""The charts drawn for the chosen index and version: bands, axis, key, hover, today's line,
the column named by index and version, and the default by place from a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from bokeh.models import BoxAnnotation, ColumnDataSource

import airq_nb
from airq_nb.ui import charts

NOW = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)


def frame(hours: int = 30, *, location: str = "London", pm2_5: float = 40.0, pm10: float = 25.0):
    index = pd.date_range(end=pd.Timestamp(NOW).floor("h"), periods=hours, freq="h", name="time")
    return pd.DataFrame(
        {"location": location, "source": "open-meteo", "kind": "modelled", "pm2_5": pm2_5,
         "pm10": pm10, "fetched_at": pd.Timestamp(NOW)},
        index=index,
    )  # fmt: skip


def bands(fig) -> list[BoxAnnotation]:
    found = [b for b in fig.select({"type": BoxAnnotation}) if (b.name or "").startswith("band:")]
    return sorted(found, key=lambda b: int(b.name.rsplit(":", 1)[1]))


def edge(value):
    """A band's numeric edge; None where it runs to the frame (Bokeh puts a Node there)."""
    return value if isinstance(value, int | float) else None


def bottoms(fig) -> list:
    return [edge(b.bottom) for b in bands(fig)]


def means(fig) -> dict:
    (cds,) = [
        s for s in fig.select({"type": ColumnDataSource}) if (s.name or "").startswith("means:")
    ]
    return cds.data


def test_epa_2024_bands_drawn_where_truncation_puts_them():
    fig = charts.daqi_chart(frame(), "pm2_5", now=NOW, index="epa")
    shown = bands(fig)
    assert bottoms(fig) == [None, 9.1, 35.5, 55.5, 125.5, 225.5]
    assert [edge(b.top) for b in shown] == [9.1, 35.5, 55.5, 125.5, 225.5, None]
    assert [b.fill_color for b in shown] == ["#00e400", "#ffff00", "#ff7e00", "#ff0000",
                                             "#8f3f97", "#7e0023"]  # fmt: skip
    assert "against the US EPA AQI (2024) bands" in fig.title.text
    axis = fig.select_one({"name": "index_axis"})
    # The AQI axis: each category's top AQI at the band's top edge.
    assert axis.axis_label == "US AQI"
    assert axis.major_label_overrides == {9.1: "50", 35.5: "100", 55.5: "150", 125.5: "200",
                                          225.5: "300"}  # fmt: skip
    # Good and half of Moderate are always in sight.
    assert fig.y_range.end == pytest.approx(max(22.3, 40.0 * 1.1), abs=1)
    data = means(fig)
    # 40.0 µg/m³ is AQI 112 on AirNow's 2024 calculator (bellrichm/weewx-aqi-xtype's vector).
    assert data["epa_2024"][-1] == 112
    assert data["band"][-1] == "Unhealthy for Sensitive Groups (US AQI 112, 2024)"


def test_epa_2012_is_a_different_table_and_says_so():
    fig = charts.daqi_chart(frame(), "pm2_5", now=NOW, index="epa", version="2012")
    assert bottoms(fig)[:3] == [None, 12.1, 35.5]
    assert "US EPA AQI (2012)" in fig.title.text
    assert "epa_2012" in means(fig) and "epa_2024" not in means(fig)


def test_european_aqi_2024_places_hourly_values_not_means():
    values = frame(30)
    values.loc[values.index[-1], "pm2_5"] = 95.0  # one bad hour: Very poor (90–140)
    fig = charts.daqi_chart(values, "pm2_5", now=NOW, index="eaqi")
    assert "PM2.5: hourly values against the European AQI (2024) bands" in fig.title.text
    data = means(fig)
    assert data["mean"][-1] == 95.0 and data["eaqi_2024"][-1] == 5
    assert data["band"][-1] == "Very poor (EEA level 5, 2024)"
    older = charts.daqi_chart(values, "pm2_5", now=NOW, index="eaqi", version="2017")
    assert "24-hour running mean against" in older.title.text  # 2017: 24-h running means
    assert bottoms(older) == [None, 10.0, 20.0, 25.0, 50.0]


def test_today_line_and_headline_name_the_index_and_the_nowcast():
    view = charts.read_view(frame(), now=NOW, index="epa")
    (line,) = charts.today_lines(view)
    assert line.startswith(
        "London · Open-Meteo (modelled): Unhealthy for Sensitive Groups (US AQI 112, 2024), "
        "24-hour mean"
    )
    assert "PM2.5 40.0 µg/m³ (US AQI 112 (2024); above the WHO guideline of 15)" in line
    # Steady air: the NowCast is the 12-hour mean (40.0), the same AQI.
    assert "NowCast now: PM2.5 40 µg/m³ = US AQI 112 (2024)" in line
    from airq_nb.ui.charts._daqi_chart import headline_html

    html = headline_html(view)
    assert "US EPA Air Quality Index 2024 (Good 0–50" in html and "#ff7e00" in html


def test_the_key_shows_the_chosen_table():
    from airq_nb.ui.charts._index_bands import IndexChoice, index_key_html

    key = index_key_html(IndexChoice("eaqi", "2024"))
    assert "European AQI (2024) bands, hourly µg/m³" in key
    assert "140–800" in key and "270–1200" in key and "#7d2181" in key


def test_an_unknown_index_in_a_chart_is_a_typed_error():
    with pytest.raises(airq_nb.UnknownIndexError, match="did you mean 'eaqi'"):
        charts.daqi_chart(frame(), now=NOW, index="eea")


@pytest.mark.parametrize(
    ("place", "latitude", "longitude", "expected"),
    [("Paris", 48.857, 2.352, "eaqi"), ("New York", 40.713, -74.006, "epa"),
     ("Leeds", 53.800, -1.549, "daqi")],
)  # fmt: skip
def test_the_index_follows_the_collected_place(
    store, openmeteo_server, place, latitude, longitude, expected
):
    location = airq_nb.Location(place, latitude, longitude)
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    assert airq_nb.collect_now(store, source=source, location=location).stored > 0
    scheduler = airq_nb.Scheduler(store)
    scheduler.schedule(
        f"collect:{place}", every=timedelta(hours=1), topic="collect",
        message={"location": location.as_dict(), "source": "open-meteo"},
    )  # fmt: skip
    scheduler.close()
    live = charts.LiveChart(store)
    assert (live.view.index.index, live.view.index.by_place) == (expected, True)
    assert "chosen by place" in live._figure("today").text
    # Overridden in place, as the Index menu does.
    live.set_index("who")
    assert live.view.index.index == "who"
    assert "WHO 2021 guidelines bands" in live._figure("daqi_chart:pm2_5").title.text
    assert "WHO" in live.as_text()
    live.set_index(None)
    assert live.view.index.index == expected


def test_coordinates_in_the_readings_choose_the_index():
    paris = frame(location="Paris").assign(point="48.8566,2.3522")
    assert charts.read_view(paris, now=NOW).index.index == "eaqi"
    boston = frame(location="Boston").assign(latitude=42.36, longitude=-71.06)
    assert charts.read_view(boston, now=NOW).index.index == "epa"
    site = frame(location="laqn:KF1").assign(point="KF1")  # a site code, no coordinates
    assert charts.read_view(site, now=NOW).index.index == "daqi"
    # Mixed places: the index most of them expect.
    mixed = pd.concat([paris, frame(location="Lyon").assign(point="45.76,4.84"), boston])
    assert charts.read_view(mixed, now=NOW).index.index == "eaqi"


def test_the_index_menu_lists_every_version_and_redraws_the_live_chart(store, openmeteo_server):
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    assert airq_nb.collect_now(store, source=source).stored > 0
    live = charts.LiveChart(store, index="epa")
    menu = charts.index_picker(live)
    labels = [label for label, _ in menu.options]
    assert labels == ["By place", "UK DAQI", "US EPA AQI 2024", "US EPA AQI 2012",
                      "European AQI 2024", "European AQI 2017", "WHO 2021 (24-hour)"]  # fmt: skip
    assert menu.value == "epa:2024"  # version None shows as the newest
    menu.value = "eaqi:2017"
    assert (live.view.index.index, live.view.index.version) == ("eaqi", "2017")
    assert "European AQI (2017)" in live._figure("daqi_chart:pm10").title.text
    menu.value = ""
    assert live.view.index.by_place and live.view.index.index == "daqi"  # London
