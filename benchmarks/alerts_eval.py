"""How long evaluating the alert rules takes after a collection, on SQLite and PostgreSQL.

A store holds a week of hourly readings (168 hours) for 50 places and 1,000 rules (air
rules on PM2.5/PM10, hourly and 24-hour, at many thresholds; DAQI, stale-data and
collection rules). Each measured hour, one collection's worth of readings arrives (one new
hour per place, the series drifting so some rules fire and others resolve), then
``evaluate_alerts`` runs: it reads the newest 24 hours of every series, the rules and the
states, decides, and commits the changed states with their queued notifications. Two shapes:

- ``per-place``: each rule names one place (20 rules per place): 1,000 (rule, place) pairs;
- ``every-place``: each rule watches every place: 50,000 (rule, place) pairs.

Beside them, a calmer week for the every-place rules (``calm``): the air stays low and each
hour one place rises above the two lowest levels for that hour, so an evaluation makes
tens of transitions, not thousands; the drifting series stays the worst case.

Also timed: an idle evaluation (the 15-minute timer, no new data). Median and 90th
percentile of ``--hours`` evaluations; the first evaluation (which creates the states) is
not counted. Target: the per-place shape within 100 ms on SQLite.

Run: ``python benchmarks/alerts_eval.py`` (about a minute; ``--quick``: a few seconds).
Without ``AIRQ_NB_TEST_PG`` it starts a throwaway PostgreSQL as ``scripts/test`` does.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import airq_nb
from airq_nb.collector._sources import Reading
from airq_nb.store.readings import upsert_readings

ROOT = Path(__file__).resolve().parent.parent
HOUR = 3600
PLACES = [f"place{n:02d}" for n in range(50)]
START = 1_796_112_000  # 2026-12-01 08:00 UTC


def level(place: int, hour: int) -> float:
    """A PM2.5 series that drifts across the rules' thresholds over the day."""
    return 25 + 20 * math.sin(hour / HOUR / 5 + place) + place % 7


def calm(place: int, hour: int) -> float:
    """A PM2.5 series that stays low, but for one place an hour (a different one each hour)
    high enough that its PM10 (1.6 times it) is above the two lowest levels."""
    return 11.0 if (hour // HOUR) % len(PLACES) == place else 5.0 + place % 3


def rules(every_place: bool) -> list[airq_nb.AlertRule]:
    out = []
    for n in range(1000):
        where = None if every_place else PLACES[n % 50]
        kind = n % 10
        if kind < 7:
            out.append(
                airq_nb.AlertRule(
                    f"air-{n:04d}",
                    pollutant="pm2_5" if n % 2 else "pm10",
                    above=15 + n % 40,
                    clear_below=10 + n % 40,
                    mean="hour" if n % 3 else "24h",
                    for_hours=n % 3,
                    location=where,
                    notify=("team",),
                )
            )
        elif kind == 7:
            out.append(airq_nb.AlertRule.daqi(f"daqi-{n:04d}", band="Moderate", location=where))
        elif kind == 8:
            out.append(airq_nb.AlertRule.stale_data(f"stale-{n:04d}", hours=3, location=where))
        else:
            out.append(airq_nb.AlertRule.collection_failing(f"failing-{n:04d}", location=where))
    return out


def collect_hour(store: airq_nb.Store, hour: int, series: Any = level) -> None:
    with store.transaction():
        for p, place in enumerate(PLACES):
            upsert_readings(
                store,
                [Reading(time=hour, pm2_5=series(p, hour), pm10=series(p, hour) * 1.6, aqi=None)],
                source="open-meteo",
                location=place,
                fetched_at=store.now(),
            )


def measure(location: Any, every_place: bool, hours: int, series: Any = level) -> dict[str, float]:
    clock = airq_nb.FakeClock(START + 300)
    with airq_nb.open_store(location, clock=clock) as store:
        for p, place in enumerate(PLACES):
            upsert_readings(
                store,
                [
                    Reading(time=h, pm2_5=series(p, h), pm10=series(p, h) * 1.6, aqi=None)
                    for h in range(START - 167 * HOUR, START + 1, HOUR)
                ],
                source="open-meteo",
                location=place,
                fetched_at=clock.now(),
            )
        for rule in rules(every_place):
            airq_nb.set_alert_rule(store, rule)
        airq_nb.evaluate_alerts(store)  # creates the states: not counted
        after_collection, idle, transitions = [], [], []
        for n in range(1, hours + 1):
            clock.set(START + n * HOUR + 300)
            collect_hour(store, START + n * HOUR, series)
            started = time.perf_counter()
            made = airq_nb.evaluate_alerts(store)
            after_collection.append((time.perf_counter() - started) * 1000)
            transitions.append(len(made))
            clock.advance(15 * 60)
            started = time.perf_counter()
            airq_nb.evaluate_alerts(store)
            idle.append((time.perf_counter() - started) * 1000)
        pairs = sum(1 for _ in airq_nb.alert_states(store))
    return {
        "median_ms": statistics.median(after_collection),
        "p90_ms": sorted(after_collection)[int(0.9 * (len(after_collection) - 1))],
        "idle_ms": statistics.median(idle),
        "transitions": statistics.mean(transitions),
        "states": pairs,
    }


def _postgres_url(base: str) -> str:
    import psycopg

    params = psycopg.conninfo.conninfo_to_dict(base)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_alerts")
        conn.execute("CREATE DATABASE bench_alerts")
    return f"postgresql://{params.get('user', 'postgres')}@/bench_alerts?host={params['host']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=int, default=12, help="evaluations measured per row")
    parser.add_argument("--quick", action="store_true", help="3 hours per row")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args()
    if not args.sqlite_only and not os.environ.get("AIRQ_NB_TEST_PG"):
        script = f'. scripts/_postgres.sh && start_test_postgres && "{sys.executable}" "$@"'
        raise SystemExit(subprocess.call(["bash", "-c", script, "bash", *sys.argv], cwd=ROOT))
    hours = 3 if args.quick else args.hours
    os.environ.setdefault("AIRQ_NB_ALERT_TEAM", "json://127.0.0.1:9/bench")
    os.environ.setdefault("AIRQ_NB_ALERT_DEFAULT", "json://127.0.0.1:9/bench")
    print(
        "| backend | rules | (rule, place) pairs | after a collection: median | p90 | idle (timer) | transitions/evaluation | states stored |"
    )
    print("|---|---|---|---|---|---|---|---|")
    backends = ["sqlite"] if args.sqlite_only else ["sqlite", "postgres"]
    shapes = [
        ("1,000 per-place", "1,000", False, level),
        ("1,000 every-place", "50,000", True, level),
        ("1,000 every-place, calm series", "50,000", True, calm),
    ]
    for backend in backends:
        for shape, pairs, every_place, series in shapes:
            with tempfile.TemporaryDirectory() as folder:
                location: Any = (
                    Path(folder) / "alerts.db"
                    if backend == "sqlite"
                    else _postgres_url(os.environ["AIRQ_NB_TEST_PG"])
                )
                row = measure(location, every_place, hours, series)
            print(
                f"| {backend} | {shape} | {pairs} | {row['median_ms']:.1f} ms | "
                f"{row['p90_ms']:.1f} ms | {row['idle_ms']:.1f} ms | {row['transitions']:.0f} | "
                f"{row['states']:,} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
