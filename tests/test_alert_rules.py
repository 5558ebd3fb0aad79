"""Alert rules: made, stored, listed and deleted; bad input refused with a typed error, nothing stored."""

from __future__ import annotations

import math

import pytest

import airq_nb
from airq_nb.alerts import TIMER_SCHEDULE
from airq_nb.scheduling.schedules import list_schedules
from airq_nb.store import _dialect

pytestmark = pytest.mark.backends("sqlite", "postgres")
pytest_plugins = ["alert_channels"]


def rule(**options):
    return airq_nb.AlertRule(
        "pm25-london", pollutant="pm2_5", above=35, location="London", **options
    )


def test_a_rule_is_stored_by_name_idempotently_and_round_trips(store, json_channel):
    first = rule(mean="24h", clear_below=30, for_hours=2, repeat_hours=6, quiet_hours="22:00-07:00")
    airq_nb.set_alert_rule(store, first)
    airq_nb.set_alert_rule(store, first)
    assert airq_nb.alert_rules(store) == [first]
    changed = rule(notify=("team",))
    airq_nb.set_alert_rule(store, changed)
    assert airq_nb.alert_rules(store) == [changed]
    assert airq_nb.get_alert_rule(store, "pm25-london") == changed
    # Every kind round-trips through the store.
    others = [
        airq_nb.AlertRule.daqi("daqi-high", band="High"),
        airq_nb.AlertRule.daqi("daqi-7", band=7, pollutant="pm10"),
        airq_nb.AlertRule.collection_failing("collect-failing", runs=3),
        airq_nb.AlertRule.stale_data("stale", hours=3, location="London"),
        airq_nb.AlertRule.dead_letters("dead", topic="collect"),
    ]
    for other in others:
        airq_nb.set_alert_rule(store, other)
    assert airq_nb.alert_rules(store) == sorted([changed, *others], key=lambda r: r.name)


def test_the_timer_is_registered_with_the_first_rule_and_removed_with_the_last(store, json_channel):
    assert TIMER_SCHEDULE not in {s.name for s in list_schedules(store)}
    airq_nb.set_alert_rule(store, rule())
    timer = {s.name: s for s in list_schedules(store)}[TIMER_SCHEDULE]
    assert timer.every.total_seconds() == 15 * 60
    airq_nb.delete_alert_rule(store, "pm25-london")
    assert TIMER_SCHEDULE not in {s.name for s in list_schedules(store)}
    assert airq_nb.alert_rules(store) == []
    with pytest.raises(airq_nb.AlertRuleNotFoundError, match="alert_rules"):
        airq_nb.delete_alert_rule(store, "pm25-london")
    with pytest.raises(airq_nb.AlertRuleNotFoundError):
        airq_nb.get_alert_rule(store, "pm25-london")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pollutant": "ozone"}, "unknown pollutant 'ozone'; write pollutant='pm2_5'"),
        ({"above": -1}, "above must be a finite number zero or more"),
        ({"above": math.inf}, "above must be a finite number"),
        ({"above": math.nan}, "above must be a finite number"),
        ({"above": "35"}, "above must be a number"),
        ({"clear_below": 40}, r"clear_below \(40\) is above above \(35\)"),
        ({"clear_below": -2}, "clear_below must be a finite number"),
        ({"mean": "week"}, "mean must be 'hour' or '24h'"),
        ({"for_hours": -1}, "for_hours must be a finite number"),
        ({"repeat_hours": 0}, "repeat_hours must be a finite number more than zero"),
        ({"quiet_hours": "10pm to 7am"}, 'write quiet hours as "HH:MM-HH:MM"'),
        ({"quiet_hours": "25:00-07:00"}, "is not a time of day"),
        ({"quiet_hours": "07:00-07:00"}, "starts when it ends"),
        ({"notify": ()}, "notify must name one or more channels"),
        ({"notify": ("bad channel!",)}, "notify must name one or more channels"),
    ],
)
def test_bad_air_rules_are_refused_with_what_to_write(options, message):
    settings = {"pollutant": "pm2_5", "above": 35, **options}
    with pytest.raises(airq_nb.InvalidAlertRuleError, match=message):
        airq_nb.AlertRule("r", **settings)


def test_bad_rules_of_the_other_kinds_are_refused():
    with pytest.raises(airq_nb.InvalidAlertRuleError, match="unknown DAQI band 'Awful'"):
        airq_nb.AlertRule.daqi("d", band="Awful")
    with pytest.raises(airq_nb.InvalidAlertRuleError, match="an index from 1 to 10"):
        airq_nb.AlertRule.daqi("d", band=11)
    with pytest.raises(airq_nb.InvalidAlertRuleError, match="runs must be a whole number"):
        airq_nb.AlertRule.collection_failing("c", runs=0)
    with pytest.raises(airq_nb.InvalidAlertRuleError, match="hours must be a finite number"):
        airq_nb.AlertRule.stale_data("s", hours=-3)
    with pytest.raises(airq_nb.InvalidAlertRuleError, match="clear_below is for air rules"):
        airq_nb.AlertRule.stale_data("s", hours=3, clear_below=1)
    with pytest.raises(airq_nb.InvalidAlertRuleError, match="needs pollutant= and above="):
        airq_nb.AlertRule("r")
    with pytest.raises(airq_nb.InvalidAlertRuleError, match="alert rule name"):
        airq_nb.AlertRule("", pollutant="pm10", above=50)
    # Every one of them is an AirqError.
    assert issubclass(airq_nb.InvalidAlertRuleError, airq_nb.AirqError)


def test_unknown_place_is_refused_and_nothing_is_stored(store, json_channel):
    bad = airq_nb.AlertRule("r", pollutant="pm10", above=50, location="Atlantis")
    with pytest.raises(airq_nb.InvalidAlertRuleError, match=r"unknown place 'Atlantis'.*London"):
        airq_nb.set_alert_rule(store, bad)
    assert airq_nb.alert_rules(store) == []
    assert TIMER_SCHEDULE not in {s.name for s in list_schedules(store)}


def test_a_missing_channel_variable_is_refused_at_rule_creation(store, monkeypatch):
    monkeypatch.delenv("AIRQ_NB_ALERT_NOWHERE", raising=False)
    with pytest.raises(airq_nb.AlertChannelError, match="set AIRQ_NB_ALERT_NOWHERE"):
        airq_nb.set_alert_rule(store, rule(notify=("nowhere",)))
    assert airq_nb.alert_rules(store) == []


def test_a_malformed_apprise_url_is_refused_without_showing_it(store, monkeypatch):
    monkeypatch.setenv("AIRQ_NB_ALERT_BROKEN", "json://127.0.0.1:9/ok notaservice://tok3n@x")
    with pytest.raises(airq_nb.AlertChannelError, match="URL 2 of AIRQ_NB_ALERT_BROKEN") as caught:
        airq_nb.set_alert_rule(store, rule(notify=("broken",)))
    assert "tok3n" not in str(caught.value)
    assert airq_nb.alert_rules(store) == []


def test_a_rule_stores_channel_names_never_their_urls(store, json_channel):
    airq_nb.set_alert_rule(store, rule(notify=("team",)))
    ((definition,),) = _dialect.read(store, "SELECT definition FROM alert_rules")
    assert '"notify": ["team"]' in definition
    assert "127.0.0.1" not in definition and "json://" not in definition


def test_rules_describe_what_they_watch():
    assert rule(mean="24h").describe() == "PM2.5 24-hour mean above 35 µg/m³ at London"
    assert (
        airq_nb.AlertRule.daqi("d", band="high").describe()
        == "DAQI (PM2.5/PM10) High or worse at every place"
    )
    assert airq_nb.AlertRule.daqi("d", band="Very High").fire_above == 9
    assert airq_nb.AlertRule.daqi("d", band="Moderate").fire_above == 3
    assert airq_nb.AlertRule.collection_failing("c", runs=3).fire_above == 2
    assert rule(clear_below=30).clear_at == 30 and rule().clear_at == 35
