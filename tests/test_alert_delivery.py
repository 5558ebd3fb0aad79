"""Sending alerts through the queue to real loopback channels: retries, dead letters, secrets, tests.

A notification is a queue message on ``alerts.send``; these tests run the real scheduler
(``install_alerts`` + ``run_until_idle`` at a FakeClock's time) against a local webhook
taking Apprise's ``json://`` posts and a local aiosmtpd server taking ``mailto://`` mail.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

import airq_nb
import airq_nb.store.readings
from airq_nb.alerts import SEND_BACKOFF, SEND_TOPIC, install_alerts
from airq_nb.alerts._sending import deliver_notification
from airq_nb.collector._sources import Reading
from airq_nb.store import _dialect
from airq_nb.store.readings import upsert_readings

pytestmark = pytest.mark.backends("sqlite", "postgres")
pytest_plugins = ["alert_channels"]

START = datetime(2026, 12, 1, 9, 5, tzinfo=UTC)


@pytest.fixture
def clock() -> airq_nb.FakeClock:
    return airq_nb.FakeClock(START)


@pytest.fixture
def alerting(db_path, clock, json_channel):
    with airq_nb.open_store(db_path, clock=clock) as store:
        yield store


def reading(store, value: float, *, location: str = "London") -> None:
    hour = int(store.now() // 3600 * 3600)
    upsert_readings(
        store,
        [Reading(time=hour, pm2_5=value, pm10=10.0, aqi=None)],
        source="open-meteo",
        location=location,
        fetched_at=store.now(),
    )


def pm25(notify=("team",)) -> airq_nb.AlertRule:
    return airq_nb.AlertRule("pm25", pollutant="pm2_5", above=35, location="London", notify=notify)


def run(store, *, until: timedelta | None = None) -> airq_nb.RunSummary:
    async def go():
        scheduler = airq_nb.Scheduler(store)
        install_alerts(scheduler, store)
        try:
            return await scheduler.run_until_idle(until=until, timeout=60)
        finally:
            scheduler.close()

    return asyncio.run(go())


def sends(store) -> list[airq_nb.Message]:
    return store.queue.list(topic=SEND_TOPIC)


def test_one_message_per_channel_commits_with_the_transition(alerting, smtp_channel):
    airq_nb.set_alert_rule(alerting, pm25(notify=("team", "mail")))
    reading(alerting, 50)
    (transition,) = airq_nb.evaluate_alerts(alerting)
    assert (transition.before, transition.after, transition.transition) == ("ok", "firing", 1)
    queued = sends(alerting)
    assert sorted(m.value["channel"] for m in queued) == ["mail", "team"]
    assert all(m.dedup_key.endswith(f":London:1:{m.value['channel']}") for m in queued)
    # Evaluating again (another kernel, a papermill run) owes nothing more.
    assert airq_nb.evaluate_alerts(alerting) == []
    assert len(sends(alerting)) == 2


def test_mail_reaches_a_local_smtp_server(alerting, smtp_channel):
    airq_nb.set_alert_rule(alerting, pm25(notify=("mail",)))
    reading(alerting, 50)
    airq_nb.evaluate_alerts(alerting)
    run(alerting)
    (mail,) = smtp_channel.wait_messages(1)
    assert mail["Subject"] == "[FIRING] pm25 at London"
    assert mail["To"] == "ops@example.org"
    plain = next(part for part in mail.walk() if part.get_content_type() == "text/plain")
    assert "PM2.5 hourly value at London: 50.0 µg/m³" in plain.get_payload(decode=True).decode()


def test_a_channel_down_for_an_hour_gets_the_notification_once_it_is_back(alerting, json_channel):
    airq_nb.set_alert_rule(alerting, pm25())
    reading(alerting, 50)
    airq_nb.evaluate_alerts(alerting)
    json_channel.down = True
    run(alerting, until=timedelta(hours=1))
    # Attempts at 0, 10, 70, 370, 1270 and 3070 s all refused; the next is due at 6670 s.
    assert json_channel.refused == 6 and json_channel.posts == []
    (waiting,) = sends(alerting)
    assert waiting.state == "queued" and waiting.attempts == 6
    assert waiting.deliver_at == pytest.approx(START.timestamp() + sum(SEND_BACKOFF) + 10)
    json_channel.down = False
    run(alerting, until=timedelta(hours=1))
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    history = airq_nb.alert_history(alerting)
    assert list(history["event"]).count("failed") == 6
    assert list(history["event"]).count("sent") == 1
    assert sends(alerting) == []


def test_a_channel_down_too_long_dead_letters_then_redrives_once(alerting, json_channel):
    airq_nb.set_alert_rule(alerting, pm25())
    reading(alerting, 50)
    airq_nb.evaluate_alerts(alerting)
    json_channel.down = True
    run(alerting, until=timedelta(hours=3))
    (dead,) = alerting.queue.dead_letters(topic=SEND_TOPIC)
    assert dead.attempts == len(SEND_BACKOFF) + 1 == 7
    assert "AlertDeliveryError" in dead.last_error and "127.0.0.1" not in dead.last_error
    json_channel.down = False
    alerting.queue.redrive(dead.id)
    run(alerting)
    assert json_channel.titles() == ["[FIRING] pm25 at London"]


def test_a_missing_variable_at_send_time_dead_letters_at_once_with_the_fix(
    alerting, json_channel, monkeypatch
):
    airq_nb.set_alert_rule(alerting, pm25())
    reading(alerting, 50)
    airq_nb.evaluate_alerts(alerting)
    monkeypatch.delenv("AIRQ_NB_ALERT_TEAM")
    run(alerting)
    (dead,) = alerting.queue.dead_letters(topic=SEND_TOPIC)
    assert dead.attempts == 1 and "set AIRQ_NB_ALERT_TEAM" in dead.last_error
    assert list(airq_nb.alert_history(alerting)["event"])[-1] == "failed"
    monkeypatch.setenv("AIRQ_NB_ALERT_TEAM", json_channel.url)
    alerting.queue.redrive(dead.id)
    run(alerting)
    assert json_channel.titles() == ["[FIRING] pm25 at London"]


def test_a_redelivered_notification_that_was_sent_is_not_sent_again(alerting, json_channel):
    airq_nb.set_alert_rule(alerting, pm25())
    reading(alerting, 50)
    airq_nb.evaluate_alerts(alerting)
    (message,) = sends(alerting)
    deliver_notification(alerting, message.value)
    deliver_notification(alerting, message.value)  # a crash after the send, before the ack
    assert json_channel.titles() == ["[FIRING] pm25 at London"]


def test_secrets_in_channel_urls_never_reach_the_store_or_the_logs(
    alerting, json_channel, monkeypatch, caplog
):
    port = json_channel.url.split(":")[2].split("/")[0]
    monkeypatch.setenv("AIRQ_NB_ALERT_TEAM", f"json://alice:s3kr1t-token@127.0.0.1:{port}/hook")
    caplog.set_level(logging.DEBUG)
    airq_nb.set_alert_rule(alerting, pm25())
    reading(alerting, 50)
    airq_nb.evaluate_alerts(alerting)
    json_channel.down = True
    run(alerting, until=timedelta(minutes=2))  # failed attempts are recorded too
    json_channel.down = False
    run(alerting, until=timedelta(hours=1))
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    airq_nb.send_test_notification("team", store=alerting)
    assert "s3kr1t" not in caplog.text
    for table in ("alert_rules", "alert_state", "alert_history", "queue", "delivery_log", "kv"):
        for row in _dialect.read(alerting, f"SELECT * FROM {table}"):
            assert "s3kr1t" not in repr(row), table


def test_a_test_notification_says_it_is_a_test(alerting, json_channel, smtp_channel):
    assert {"team", "mail", "default"} <= set(airq_nb.alert_channels())
    airq_nb.send_test_notification("team", store=alerting)
    airq_nb.send_test_notification("MAIL")
    (post,) = json_channel.posts
    assert post["title"] == "[TEST] airq_nb test notification to channel 'team'"
    assert "This is a test notification" in post["message"] and post["type"] == "info"
    (mail,) = smtp_channel.wait_messages(1)
    assert mail["Subject"].startswith("[TEST]")
    assert list(airq_nb.alert_history(alerting)["event"]) == ["test sent"]
    json_channel.down = True
    with pytest.raises(airq_nb.AlertDeliveryError, match="channel 'team'"):
        airq_nb.send_test_notification("team", store=alerting)
    with pytest.raises(airq_nb.AlertChannelError, match="set AIRQ_NB_ALERT_NOBODY"):
        airq_nb.send_test_notification("nobody")
    assert list(airq_nb.alert_history(alerting)["event"]) == ["test sent", "test failed"]


def test_a_dead_letter_on_any_topic_fires_and_resolves(alerting, json_channel):
    airq_nb.set_alert_rule(alerting, airq_nb.AlertRule.dead_letters("dead", notify="team"))

    async def go():
        scheduler = airq_nb.Scheduler(alerting)
        scheduler.listen_queue(_always_fails, topic="reports")
        install_alerts(scheduler, alerting)
        scheduler.enqueue({"report": 1}, topic="reports")
        try:
            await scheduler.run_until_idle(timeout=60)
        finally:
            scheduler.close()

    asyncio.run(go())
    airq_nb.evaluate_alerts(alerting)
    run(alerting)
    assert json_channel.titles() == ["[FIRING] dead at reports"]
    assert "1 dead letter(s)" in json_channel.posts[0]["message"]
    alerting.queue.purge(state="dead", topic="reports")
    airq_nb.evaluate_alerts(alerting)
    run(alerting)
    assert json_channel.titles()[-1] == "[RESOLVED] dead at reports"


def _always_fails(message):
    raise airq_nb.Permanent("this report can never be made")


def test_states_and_periods_for_a_panel(alerting, json_channel, clock):
    airq_nb.set_alert_rule(alerting, pm25())
    reading(alerting, 50)
    airq_nb.evaluate_alerts(alerting)
    run(alerting)
    (state,) = airq_nb.alert_states(alerting)
    assert (state.rule, state.place, state.state, state.value) == ("pm25", "London", "firing", 50)
    assert state.since == START and state.firing_since == START
    assert (state.last_notification, state.last_send, state.last_send_channel) == (
        "FIRING", "sent", "team",
    )  # fmt: skip
    periods = airq_nb.alert_periods(alerting)
    assert periods["end"].isna().all() and periods["peak"].tolist() == [50.0]
    clock.advance(3600)
    reading(alerting, 70)
    airq_nb.evaluate_alerts(alerting)
    clock.advance(3600)
    reading(alerting, 10)
    airq_nb.evaluate_alerts(alerting)
    periods = airq_nb.alert_periods(alerting, rule="pm25")
    assert periods["peak"].tolist() == [70.0]
    assert periods["end"].tolist() == [START + timedelta(hours=2)]
    assert airq_nb.alert_states(alerting)[0].state == "ok"


def test_an_evaluation_with_nothing_to_do_writes_nothing(alerting, json_channel):
    reading(alerting, 50)
    before = alerting.data_version()
    assert airq_nb.evaluate_alerts(alerting) == []  # no rules
    airq_nb.set_alert_rule(alerting, pm25())
    airq_nb.evaluate_alerts(alerting)
    after = alerting.data_version()
    assert airq_nb.evaluate_alerts(alerting) == []
    assert alerting.data_version() == after != before


def test_history_is_kept_as_long_as_readings(alerting, json_channel, clock):
    from airq_nb.alerts._sending import after_collection
    from airq_nb.store.alerts import HistoryRow, record_history

    week = airq_nb.store.readings.DEFAULT_RETENTION.total_seconds()
    record_history(
        alerting,
        [
            HistoryRow(clock.now() - week - 60, "old", "London", "firing"),
            HistoryRow(clock.now() - week + 60, "recent", "London", "firing"),
        ],
    )
    after_collection(alerting)  # what each collection that stored something runs
    assert list(airq_nb.alert_history(alerting)["rule"]) == ["recent"]
