"""The alert tables' writes: many rows in a few statements, and numbers renewed without a move."""

from __future__ import annotations

import math

import pytest

import airq_nb
from airq_nb.collector._sources import Reading
from airq_nb.store import alerts as table
from airq_nb.store.alerts import HistoryRow
from airq_nb.store.readings import upsert_readings

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = 3600
START = 1_796_112_000  # 2026-12-01 08:00 UTC


def test_history_rows_written_in_bulk_read_back_exactly(store: airq_nb.Store) -> None:
    rows = [
        HistoryRow(
            at=START + n + 0.1 + 0.2,
            rule=f'rule-{n % 7} ‘quoted’ "and" \\ back',
            place="laqn:KF1" if n % 2 else "London, {braces} [1]",
            event="queued",
            transition=None if n % 3 == 0 else n,
            channel=None if n % 5 == 0 else "team",
            value=None if n % 4 == 0 else n / 3,
            detail=None if n % 6 == 0 else f"peak {n / 7!r}",
        )
        for n in range(2500)  # more than one statement's rows
    ]
    table.record_history(store, rows)
    assert table.read_history(store) == [row.as_tuple() for row in rows]


def test_history_rows_keep_infinite_numbers_and_take_nan(store: airq_nb.Store) -> None:
    numbers = [math.inf, -math.inf, math.nan, 1.5]
    table.record_history(
        store, [HistoryRow(START, "r", "London", "firing", value=v, detail="x") for v in numbers]
    )
    values = [row[6] for row in table.read_history(store)]
    assert values[0] == math.inf and values[1] == -math.inf and values[3] == 1.5
    assert values[2] is None or math.isnan(values[2])  # SQLite stores a NaN as NULL


def _hour(store: airq_nb.Store, hour: int, pm2_5: float) -> None:
    upsert_readings(
        store,
        [Reading(time=START + hour * HOUR, pm2_5=pm2_5, pm10=None, aqi=None)],
        source="open-meteo",
        location="London",
        fetched_at=store.now(),
    )


def test_a_firing_pair_renews_its_number_and_peak_without_moving(
    db_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRQ_NB_ALERT_TEAM", "json://127.0.0.1:9/alerts")
    clock = airq_nb.FakeClock(START + 300)
    with airq_nb.open_store(db_path, clock=clock) as store:
        _hour(store, 0, 10)
        airq_nb.set_alert_rule(
            store,
            airq_nb.AlertRule(
                "pm25", pollutant="pm2_5", above=35, location="London", notify=("team",)
            ),
        )
        seen = []
        for hour, level in enumerate([50, 62, 41, 41, 20], start=1):
            clock.set(START + hour * HOUR + 300)
            _hour(store, hour, level)
            made = airq_nb.evaluate_alerts(store)
            (state,) = airq_nb.alert_states(store)
            seen.append((len(made), state.state, state.value, state.peak, state.transitions))
            clock.advance(15 * 60)
            assert airq_nb.evaluate_alerts(store) == []  # the timer: nothing new
        assert seen == [
            (1, "firing", 50, 50, 1),
            (0, "firing", 62, 62, 1),
            (0, "firing", 41, 62, 1),
            (0, "firing", 41, 62, 1),
            (1, "ok", 20, 62, 2),
        ]
        assert list(airq_nb.alert_history(store)["event"]) == [
            "firing",
            "queued",
            "resolved",
            "queued",
        ]
        assert store.queue.counts().by_topic["alerts.send"]["queued"] == 2
