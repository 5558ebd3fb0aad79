"""Alerts across real processes: SIGKILL between commit and send, several evaluators at once.

Exactly one notification per transition and channel: the state change and its queue
message commit together, so a process killed after the commit leaves the message for the
next scheduler, one killed while holding it loses its lease, and evaluators racing on
one store take turns.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import airq_nb
from airq_nb.alerts import SEND_TOPIC, install_alerts
from airq_nb.collector._sources import Reading
from airq_nb.store.readings import upsert_readings

pytestmark = pytest.mark.backends("sqlite", "postgres")
pytest_plugins = ["alert_channels"]

WORKER = Path(__file__).parent / "workers" / "alert_worker.py"


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _high_air(store, *rules: str) -> None:
    hour = int(store.now() // 3600 * 3600)
    upsert_readings(
        store,
        [Reading(time=hour, pm2_5=80.0, pm10=90.0, aqi=None)],
        source="open-meteo",
        location="London",
        fetched_at=store.now(),
    )
    for name in rules:
        airq_nb.set_alert_rule(
            store,
            airq_nb.AlertRule(name, pollutant="pm2_5", above=35, location="London", notify="team"),
        )


def _deliver(store) -> None:
    async def go():
        scheduler = airq_nb.Scheduler(store)
        install_alerts(scheduler, store)
        try:
            await scheduler.run_until_idle(timeout=60)
        finally:
            scheduler.close()

    asyncio.run(go())


def test_sigkill_after_the_commit_before_the_send_loses_and_duplicates_nothing(
    db_path, json_channel
):
    with airq_nb.open_store(db_path) as store:
        _high_air(store, "pm25")
        child = _worker("evaluate-and-die", db_path)
        out, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, err
        assert json.loads(out) == 1
        (queued,) = store.queue.list(topic=SEND_TOPIC)
        assert queued.state == "queued"
        # A restart (this process) evaluates again and delivers: one notification.
        assert airq_nb.evaluate_alerts(store) == []
        _deliver(store)
        assert json_channel.titles() == ["[FIRING] pm25 at London"]


def test_sigkill_while_holding_the_send_redelivers_it_once(db_path, json_channel):
    with airq_nb.open_store(db_path) as store:
        _high_air(store, "pm25")
        airq_nb.evaluate_alerts(store)
        child = _worker("claim-and-die", db_path)
        out, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, err
        assert json.loads(out) is True
        (held,) = store.queue.list(topic=SEND_TOPIC)
        assert held.state == "leased"
        time.sleep(1.2)  # the dead process's lease runs out
        _deliver(store)
        assert json_channel.titles() == ["[FIRING] pm25 at London"]
        assert store.queue.list(topic=SEND_TOPIC) == []


def test_evaluators_racing_in_four_processes_make_each_transition_once(db_path, json_channel):
    rules = [f"rule-{n:02d}" for n in range(30)]
    with airq_nb.open_store(db_path) as store:
        _high_air(store, *rules)
        store.set(("test", "go"), False)
        workers = [_worker("race", db_path, 5) for _ in range(4)]
        try:
            deadline = time.monotonic() + 60
            while len(store.list(prefix=("test", "ready"))) < len(workers):
                assert time.monotonic() < deadline, "the evaluators did not start"
                time.sleep(0.01)
            store.set(("test", "go"), True)
            outputs = [worker.communicate(timeout=120) for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        for worker, (_out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err
        assert sum(json.loads(out) for out, _err in outputs) == len(rules)
        queued = store.queue.list(topic=SEND_TOPIC)
        assert sorted(m.value["rule"] for m in queued) == rules
        history = airq_nb.alert_history(store)
        assert list(history["event"]).count("firing") == len(rules)
        _deliver(store)
        assert sorted(json_channel.titles()) == sorted(f"[FIRING] {r} at London" for r in rules)
