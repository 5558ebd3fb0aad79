"""Alerts end to end: a scripted series from a fake source, the collector's scheduler, real channels.

Each test collects hour by hour at a FakeClock's time through ``collect_until_idle`` (which
evaluates the rules and sends), and checks what the loopback webhook received: exactly one
notification per transition and channel, at the times docs/alerts.md promises.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alert_scenario import Air

import airq_nb

pytestmark = pytest.mark.backends("sqlite", "postgres")
pytest_plugins = ["alert_channels"]

#: 08:05 UTC on a winter day (GMT): five minutes after an hour, as a cron job runs.
START = datetime(2026, 12, 1, 8, 5, tzinfo=UTC)


@pytest.fixture
def clock() -> airq_nb.FakeClock:
    return airq_nb.FakeClock(START)


@pytest.fixture
def air(db_path, clock, openmeteo_server, json_channel):
    with airq_nb.open_store(db_path, clock=clock) as store:
        scripted = Air(store, clock, openmeteo_server)
        scripted.collect()  # the first run backfills a week of clean air
        yield scripted


def pm25(**options) -> airq_nb.AlertRule:
    return airq_nb.AlertRule(
        "pm25", pollutant="pm2_5", above=35, location="London", notify=("team",), **options
    )


def events(store, *names: str) -> list[str]:
    frame = airq_nb.alert_history(store)
    return [e for e in frame["event"] if not names or e in names]


def test_fires_once_while_high_and_resolves_once_with_duration_and_peak(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25())
    air.next_hour(50)
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    fired = json_channel.posts[0]
    assert fired["type"] == "failure"
    assert "PM2.5 hourly value at London: 50.0 µg/m³" in fired["message"]
    assert "Firing since 2026-12-01 09:05 GMT" in fired["message"]
    air.next_hour(62)
    air.next_hour(41)
    assert len(json_channel.posts) == 1  # still firing: nothing more
    air.next_hour(20)
    assert json_channel.titles() == ["[FIRING] pm25 at London", "[RESOLVED] pm25 at London"]
    resolved = json_channel.posts[1]
    assert resolved["type"] == "success"
    assert "back to 20.0 µg/m³" in resolved["message"]
    assert (
        "It fired for 3 h 00 min, from 2026-12-01 09:05 GMT to 2026-12-01 12:05 GMT"
        in (resolved["message"])
    )
    assert "peak 62.0 µg/m³" in resolved["message"]
    assert events(air.store, "firing", "resolved", "sent") == ["firing", "sent", "resolved", "sent"]
    periods = airq_nb.alert_periods(air.store)
    assert periods[["rule", "place", "peak"]].values.tolist() == [["pm25", "London", 62.0]]
    assert periods["start"][0] == datetime(2026, 12, 1, 9, 5, tzinfo=UTC)
    assert periods["end"][0] == datetime(2026, 12, 1, 12, 5, tzinfo=UTC)


def test_flapping_sends_one_notification_per_transition_and_hysteresis_holds(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25())
    airq_nb.set_alert_rule(
        air.store,
        airq_nb.AlertRule(
            "pm25-hysteresis", pollutant="pm2_5", above=35, clear_below=25, location="London",
            notify=("team",),
        ),
    )  # fmt: skip
    for value in (40, 30, 40, 30, 40, 30):
        air.next_hour(value)
    plain = [t for t in json_channel.titles() if " pm25 at" in t]
    assert plain == ["[FIRING] pm25 at London", "[RESOLVED] pm25 at London"] * 3
    held = [t for t in json_channel.titles() if "hysteresis" in t]
    assert held == ["[FIRING] pm25-hysteresis at London"]  # 30 never clears below 25
    air.next_hour(25)  # at or below clear_below: resolved
    assert json_channel.titles()[-1] == "[RESOLVED] pm25-hysteresis at London"


def test_a_pending_that_never_completes_sends_nothing(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25(for_hours=3))
    air.next_hour(40)  # 09:05 pending
    air.next_hour(40)  # 10:05 pending for 1 hour of the 3
    air.next_hour(20)  # 11:05 (2 hours): the condition ended first
    air.next_hour(20)
    assert json_channel.posts == []
    assert events(air.store, "pending", "cleared", "firing") == ["pending", "cleared"]


def test_a_pending_fires_after_for_hours(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25(for_hours=3))
    for _ in range(3):
        air.next_hour(40)
    assert json_channel.posts == []
    air.next_hour(40)  # 3 hours after pending began
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    (state,) = airq_nb.alert_states(air.store)
    assert state.state == "firing" and state.last_notification == "FIRING"


def test_a_revised_value_ends_a_pending_and_never_re_sends(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25(for_hours=2))
    air.next_hour(40)
    # The source revises that hour down and has not published the next one yet.
    air.set(20, hours_ago=0)
    air.next_hour(None)
    assert events(air.store, "pending", "cleared") == ["pending", "cleared"]
    assert len(airq_nb.read_revisions(air.store)) == 1
    # Firing, then a revision of the hour that fired: no second FIRING.
    airq_nb.set_alert_rule(air.store, pm25())
    air.next_hour(40)
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    air.set(45, hours_ago=0)
    air.next_hour(None)
    air.next_hour(44)
    assert json_channel.titles() == ["[FIRING] pm25 at London"]


def test_repeat_interval_while_firing(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25(repeat_hours=2))
    for _ in range(5):
        air.next_hour(50)
    assert json_channel.titles() == [
        "[FIRING] pm25 at London",
        "[FIRING] pm25 at London (still firing)",
        "[FIRING] pm25 at London (still firing)",
    ]
    air.next_hour(10)
    assert json_channel.titles()[-1] == "[RESOLVED] pm25 at London"


def _steps_to(air, hour_utc: int, value) -> None:
    while datetime.fromtimestamp(air.clock.now(), UTC).hour != hour_utc:
        air.next_hour(value)


def test_quiet_hours_across_midnight_wait_then_send_merged(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25(quiet_hours="22:00-07:00"))
    _steps_to(air, 21, 5)
    air.next_hour(50)  # 22:05: fires inside quiet hours
    _steps_to(air, 6, 50)  # 06:05 (GMT): still quiet
    assert json_channel.posts == []
    assert "held" in events(air.store)
    air.next_hour(50)  # 07:05: quiet hours are over
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    assert "Firing since 2026-12-01 22:05 GMT" in json_channel.posts[0]["message"]


def test_quiet_hours_an_alert_that_resolved_meanwhile_sends_nothing(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25(quiet_hours="22:00-07:00"))
    _steps_to(air, 23, 5)
    air.next_hour(50)  # 00:05 fires
    air.next_hour(50)
    air.next_hour(10)  # 02:05 resolves
    _steps_to(air, 8, 10)
    assert json_channel.posts == []
    assert events(air.store, "firing", "resolved") == ["firing", "resolved"]


def test_quiet_hours_a_resolve_of_an_alert_sent_before_them_is_sent_at_their_end(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25(quiet_hours="22:00-07:00"))
    _steps_to(air, 20, 5)
    air.next_hour(50)  # 21:05: fires and is sent
    air.next_hour(50)
    air.next_hour(10)  # 23:05: resolved in quiet hours
    _steps_to(air, 6, 10)
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    air.next_hour(10)  # 07:05
    assert json_channel.titles() == ["[FIRING] pm25 at London", "[RESOLVED] pm25 at London"]


@pytest.mark.parametrize(
    ("start", "last_quiet_utc", "first_loud_utc"),
    [
        # 25 Oct 2026, BST ends at 01:00 UTC: 07:00 London is 07:00 UTC.
        (datetime(2026, 10, 24, 20, 5, tzinfo=UTC), 6, 7),
        # 29 Mar 2026, BST starts at 01:00 UTC: 07:00 London is 06:00 UTC.
        (datetime(2026, 3, 28, 20, 5, tzinfo=UTC), 5, 6),
    ],
    ids=["bst-to-gmt", "gmt-to-bst"],
)
def test_quiet_hours_across_the_clock_change_end_at_london_seven(
    db_path, openmeteo_server, json_channel, start, last_quiet_utc, first_loud_utc
):
    clock = airq_nb.FakeClock(start)
    with airq_nb.open_store(db_path, clock=clock) as store:
        air = Air(store, clock, openmeteo_server)
        air.collect()
        airq_nb.set_alert_rule(store, pm25(quiet_hours="22:00-07:00"))
        _steps_to(air, 23, 5)  # 23:05 UTC is in the quiet hours either side of the change
        air.next_hour(50)
        _steps_to(air, last_quiet_utc, 50)
        assert json_channel.posts == []
        air.next_hour(50)
        assert datetime.fromtimestamp(clock.now(), UTC).hour == first_loud_utc
        assert json_channel.titles() == ["[FIRING] pm25 at London"]


def test_stale_data_and_failing_collection_fire_without_new_data_and_resolve(
    air, json_channel, openmeteo_server
):
    airq_nb.set_alert_rule(
        air.store, airq_nb.AlertRule.stale_data("stale", hours=3, notify=("team",))
    )
    airq_nb.set_alert_rule(
        air.store, airq_nb.AlertRule.collection_failing("failing", runs=2, notify=("team",))
    )
    openmeteo_server.fail(500)  # every request, until reset
    air.next_hour(failing_ok=True)  # 09:05: newest reading (08:00) 1 h old; 1 failed run
    assert json_channel.posts == []
    air.next_hour(failing_ok=True)  # 10:05: 2 failed runs in a row (seen by the next timer)
    air.next_hour(failing_ok=True)  # 11:05: newest reading 3.1 h old
    assert sorted(json_channel.titles()) == [
        "[FIRING] failing at London",
        "[FIRING] stale at London",
    ]
    stale = next(p for p in json_channel.posts if "stale" in p["title"])
    assert "newest reading at London: 3.1 h old" in stale["message"]
    openmeteo_server.reset()
    air.next_hour()
    assert sorted(json_channel.titles()[2:]) == [
        "[RESOLVED] failing at London",
        "[RESOLVED] stale at London",
    ]


def test_after_downtime_only_the_current_state_counts(air, json_channel):
    airq_nb.set_alert_rule(air.store, pm25())
    air.next_hour(50)
    # Three days down; meanwhile the air was clean and dirty again. Nothing is replayed.
    for hours_ago in range(1, 72):
        air.values[air.hour + 72 * 3600 - hours_ago * 3600] = 10.0 if hours_ago > 5 else 50.0
    air.clock.advance(72 * 3600)
    air.set(50)
    air.collect()
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    air.next_hour(10)
    assert json_channel.titles() == ["[FIRING] pm25 at London", "[RESOLVED] pm25 at London"]


def test_daqi_band_rule_on_the_24_hour_mean(air, json_channel):
    airq_nb.set_alert_rule(
        air.store, airq_nb.AlertRule.daqi("daqi", band="High", location="London", notify="team")
    )
    for _ in range(24):
        air.next_hour(60)  # the 24-hour mean climbs to 60 µg/m³: DAQI 8 (High)
    assert json_channel.titles() == ["[FIRING] daqi at London"]
    assert "UK DAQI at London: DAQI 7" in json_channel.posts[0]["message"]


def test_a_dead_lettered_collection_fires_at_once_and_resolves_on_success(
    db_path, clock, openweathermap_server, json_channel
):
    with airq_nb.open_store(db_path, clock=clock) as store:
        airq_nb.set_alert_rule(
            store, airq_nb.AlertRule.collection_failing("failing", runs=3, notify="team")
        )
        wrong = airq_nb.OpenWeatherMapSource(api_key="wrong", base_url=openweathermap_server.url)
        with pytest.raises(airq_nb.CollectionFailedError, match="dead letter"):
            asyncio.run(airq_nb.collect_until_idle(store, source=wrong, timeout=60))
        clock.advance(15 * 60)  # the timer sees the dead letter: one run, not three
        asyncio.run(airq_nb.collect_until_idle(store, source=wrong, timeout=60))
        assert json_channel.titles() == ["[FIRING] failing at London"]
        assert "3 failed run(s)" in json_channel.posts[0]["message"]
        right = airq_nb.OpenWeatherMapSource(
            api_key=openweathermap_server.api_key, base_url=openweathermap_server.url
        )
        clock.advance(3600)
        asyncio.run(airq_nb.collect_until_idle(store, source=right, timeout=60))
        assert json_channel.titles()[-1] == "[RESOLVED] failing at London"
