"""``airq-nb alerts list | history | test CHANNEL`` against a real store and a loopback channel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import airq_nb
from airq_nb.cli import main
from airq_nb.collector._sources import Reading
from airq_nb.store.readings import upsert_readings

pytestmark = pytest.mark.backends("sqlite", "postgres")
pytest_plugins = ["alert_channels"]


@pytest.fixture
def firing(db_path, json_channel):
    """A store with one rule firing at London (and its notification queued)."""
    with airq_nb.open_store(db_path) as store:
        hour = int(store.now() // 3600 * 3600)
        upsert_readings(
            store,
            [Reading(time=hour, pm2_5=80.0, pm10=20.0, aqi=None)],
            source="open-meteo",
            location="London",
            fetched_at=store.now(),
        )
        airq_nb.set_alert_rule(
            store,
            airq_nb.AlertRule(
                "pm25", pollutant="pm2_5", above=35, location="London", notify="team"
            ),
        )
        airq_nb.set_alert_rule(store, airq_nb.AlertRule.stale_data("stale", notify="team"))
        airq_nb.evaluate_alerts(store)
    return str(db_path)


def test_alerts_list_shows_each_rule_with_its_places_state(firing, capsys):
    assert main(["--db", firing, "alerts", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "RULE", "WATCHES", "PLACE", "STATE", "SINCE", "LAST", "NOTIFICATION", "NOTIFY",
    ]  # fmt: skip
    (pm25,) = [line for line in lines if line.startswith("pm25 ")]
    assert "PM2.5 hourly value above 35 µg/m³ at London" in pm25
    assert " firing " in pm25 and " FIRING " in pm25 and pm25.endswith("team")
    (stale,) = [line for line in lines if line.startswith("stale ")]
    assert " ok " in stale  # never moved: no state row, shown as ok
    assert main(["--db", firing, "alerts", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["rules"]] == ["pm25", "stale"]
    assert [s["state"] for s in data["states"]] == ["firing"]


def test_alerts_history_lists_transitions_and_sends(firing, capsys):
    assert main(["--db", firing, "alerts", "history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["AT", "RULE", "PLACE", "EVENT", "CHANNEL", "VALUE", "DETAIL"]
    assert " pm25  London  firing " in out[-2] and " queued  team " in out[-1]
    assert main(["--db", firing, "alerts", "history", "--rule", "stale", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_alerts_test_sends_to_the_channel_and_fails_in_one_line(
    firing, json_channel, capsys, monkeypatch
):
    assert main(["--db", firing, "alerts", "test", "team"]) == 0
    assert capsys.readouterr().out.strip() == "sent a test notification to channel 'team'"
    assert json_channel.titles() == ["[TEST] airq_nb test notification to channel 'team'"]
    monkeypatch.delenv("AIRQ_NB_ALERT_OPS", raising=False)
    assert main(["--db", firing, "alerts", "test", "ops"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("airq-nb: error: alert channel 'ops' has no URLs: set AIRQ_NB_ALERT_OPS")
    assert len(err.strip().splitlines()) == 1


def test_the_console_script_runs_alerts(firing, json_channel):
    done = subprocess.run(
        [sys.executable, "-m", "airq_nb", "--db", firing, "alerts", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pm25" in done.stdout and json_channel.url not in done.stdout


def test_collect_once_from_cron_evaluates_and_sends(db_path, json_channel, openmeteo_server):
    with airq_nb.open_store(db_path) as store:
        airq_nb.set_alert_rule(
            store,
            airq_nb.AlertRule(
                "pm25", pollutant="pm2_5", above=35, location="London", notify="team"
            ),
        )
    openmeteo_server.set_data(0, 2_000_000_000, pm2_5=80.0, pm10=20.0)
    done = subprocess.run(
        [sys.executable, "-m", "airq_nb", "--db", str(db_path), "--source", "open-meteo",
         "collect", "--once"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "AIRQ_NB_OPENMETEO_URL": openmeteo_server.url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json_channel.titles() == ["[FIRING] pm25 at London"]
    with airq_nb.open_store(db_path) as store:
        assert store.queue.list() == []
