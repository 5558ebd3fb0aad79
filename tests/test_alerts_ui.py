"""The alerts in the notebooks: the panel's buttons and the chart's shading of firing periods.

A scripted series (``alert_scenario.Air``) is collected hour by hour through the real
collector at a FakeClock's time, so rules fire and resolve as in production; the panel's
buttons are pressed as a user presses them (``button.click()``), and its test button
sends to a loopback webhook.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from alert_scenario import Air

import airq_nb
from airq_nb.ui.charts._figures import named
from airq_nb.ui.charts._readings import draw_readings, update_readings
from airq_nb.ui.charts._time import wall
from airq_nb.ui.charts._view import read_view
from airq_nb.ui.widgets import AlertsPanel

pytestmark = pytest.mark.backends("sqlite", "postgres")
pytest_plugins = ["alert_channels"]

START = datetime(2026, 12, 1, 8, 5, tzinfo=UTC)


@pytest.fixture
def air(db_path, openmeteo_server, json_channel):
    clock = airq_nb.FakeClock(START)
    with airq_nb.open_store(db_path, clock=clock) as store:
        scripted = Air(store, clock, openmeteo_server)
        scripted.collect()
        yield scripted


def pm25() -> airq_nb.AlertRule:
    return airq_nb.AlertRule(
        "pm25", pollutant="pm2_5", above=35, location="London", notify=("team",)
    )


def _fire_for_two_hours(air: Air) -> None:
    airq_nb.set_alert_rule(air.store, pm25())
    air.next_hour(50)
    air.next_hour(60)
    air.next_hour(10)  # resolves
    air.next_hour(10)


def test_the_chart_shades_each_firing_period_and_its_hover_names_the_rule(air):
    _fire_for_two_hours(air)
    periods = airq_nb.alert_periods(air.store)
    assert len(periods) == 1
    view = read_view(air.store, location="London", tz="Europe/London")
    fig = draw_readings(view)
    band = named(fig)["alert_periods"].data
    assert list(band["rule"]) == ["pm25"]
    expected = wall(periods[["start", "end"]].iloc[0], "Europe/London")
    assert list(band["left"]) == [expected[0]] and list(band["right"]) == [expected[1]]
    assert any(item.label.value == "alert firing" for item in fig.legend[0].items)

    hover = named(fig)["readings_hover"].data
    firing = [t for t, a in zip(hover["time_text"], hover["alerts"], strict=True) if a != "none"]
    assert hover["alerts"].count("pm25") == len(firing) >= 2
    start, end = periods["start"].iloc[0], periods["end"].iloc[0]
    hours = view.span.hours
    inside = (hours < end) & (hours + pd.Timedelta(hours=1) > start)
    assert [a == "pm25" for a in hover["alerts"]] == list(inside)


def test_a_period_still_firing_runs_to_now_and_a_refresh_moves_it(air):
    airq_nb.set_alert_rule(air.store, pm25())
    view = read_view(air.store, location="London")
    fig = draw_readings(view)
    models = named(fig)
    assert models["alert_periods"].data["rule"] == []  # a rule, nothing fired yet
    air.next_hour(50)
    air.next_hour(55)
    view = read_view(air.store, location="London")
    update_readings(fig, view, models)
    band = models["alert_periods"].data
    assert list(band["rule"]) == ["pm25"]
    assert list(band["right"]) == list(wall([view.now], "UTC"))


def test_without_alert_rules_nothing_is_shaded_nor_in_the_legend(air):
    air.next_hour(50)
    fig = draw_readings(read_view(air.store))
    assert "alert_periods" not in named(fig)
    assert all(item.label.value != "alert firing" for item in fig.legend[0].items)


def test_another_places_periods_are_not_shaded(air):
    _fire_for_two_hours(air)
    fig = draw_readings(read_view(air.store, location="Paris"))
    assert named(fig)["alert_periods"].data["rule"] == []


def test_the_panel_lists_rules_with_state_and_saves_edits_and_deletes_them(air):
    panel = AlertsPanel(air.store, autostart=False)
    assert "pm25" not in panel.rules_html.value
    panel.form.boxes["name"].value = "pm25"
    panel.form.boxes["pollutant"].value = "pm2_5"
    panel.form.boxes["above"].value = "35"
    panel.form.boxes["location"].value = "London"
    panel.form.boxes["notify"].value = "team"
    panel.save_button.click()
    assert airq_nb.get_alert_rule(air.store, "pm25").above == 35
    assert "saved pm25" in panel.message.value

    air.next_hour(50)
    panel.refresh()
    assert "firing" in panel.rules_html.value
    assert "[FIRING]" not in panel.rules_html.value  # states, not messages
    assert "firing" in panel.history_html.value

    assert panel.edit_choice.value == "pm25"  # the saved rule stays chosen
    panel.edit_choice.value = ""  # a new rule: the form empties
    assert panel.form.boxes["above"].value == ""
    panel.edit_choice.value = "pm25"  # and back: the stored rule fills it
    assert panel.form.boxes["above"].value == "35.0"
    assert panel.form.boxes["notify"].value == "team"
    panel.form.boxes["above"].value = "fifty"
    panel.save_button.click()
    assert "#b00" in panel.message.value and "above" in panel.message.value
    assert airq_nb.get_alert_rule(air.store, "pm25").above == 35  # nothing stored

    panel.form.boxes["above"].value = "50"
    panel.save_button.click()
    assert airq_nb.get_alert_rule(air.store, "pm25").above == 50
    panel.delete_button.click()
    assert airq_nb.alert_rules(air.store) == []
    assert "pm25" not in panel.edit_choice.options


def test_the_panels_test_button_sends_to_the_channel_and_writes_history(air, json_channel):
    panel = AlertsPanel(air.store, autostart=False)
    buttons = {b.description: b for b in panel.test_box.children}
    assert set(buttons) == {"Test default", "Test team"}
    buttons["Test team"].click()
    posts = json_channel.wait_posts(1)
    assert "test" in posts[0]["title"].lower()
    assert "test notification sent to team" in panel.message.value
    assert "test sent" in panel.history_html.value
    # The channel's URL is never shown, only its name.
    assert json_channel.url not in panel.rules_html.value + panel.history_html.value


def test_the_panels_test_button_says_when_the_channel_refuses(air, monkeypatch):
    monkeypatch.setenv("AIRQ_NB_ALERT_BROKEN", "json://127.0.0.1:9/nobody")
    panel = AlertsPanel(air.store, autostart=False)
    broken = next(b for b in panel.test_box.children if b.description == "Test broken")
    broken.click()
    assert "#b00" in panel.message.value
    assert "127.0.0.1:9" not in panel.message.value
    frame = airq_nb.alert_history(air.store)
    assert (frame["channel"] == "broken").any()
