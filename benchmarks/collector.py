"""How long the collector takes: a 7-day backfill, an hourly run, and reading 7 days back.

Everything is real except the API, which is the fake Open-Meteo / OpenWeatherMap server
from ``tests/fake_sources.py`` on 127.0.0.1 (so network latency is excluded, and the
numbers show our own cost: HTTP client, strict reply checks, the SQLite upsert).

Measured, median of ``--repeat`` fresh stores:

- backfill: first ``collect_once`` for a location (one request, 168 hours stored);
- hourly run: the next run an hour later (one request, one hour stored);
- up-to-date run: a run within the same hour (no request);
- read 7 days: ``read_readings`` of ``--locations`` locations × 168 hours.

Run: ``python benchmarks/collector.py`` (a few seconds) or ``--repeat 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_sources import FakeOpenMeteo, FakeOpenWeatherMap

import airq_nb

HOUR = 3600


def measure(source_name: str, repeat: int, locations: int) -> dict[str, float]:
    server = FakeOpenWeatherMap() if source_name == "openweathermap" else FakeOpenMeteo()
    server.start()
    timings: dict[str, list[float]] = {
        "backfill_ms": [],
        "hourly_run_ms": [],
        "up_to_date_run_ms": [],
        "read_7_days_ms": [],
    }
    try:
        source = airq_nb.source_from_env(
            source_name, base_url=server.url, api_key=getattr(server, "api_key", None)
        )
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as folder:
                clock = airq_nb.FakeClock(1_700_000_000)
                with airq_nb.open_store(Path(folder) / "airq.db", clock=clock) as store:
                    places = [
                        airq_nb.Location(f"place{n}", 51.0 + n / 100, 0.1) for n in range(locations)
                    ]
                    for n, place in enumerate(places):
                        started = time.perf_counter()
                        asyncio.run(airq_nb.collect_once(store, source=source, location=place))
                        if n == 0:
                            timings["backfill_ms"].append((time.perf_counter() - started) * 1e3)
                    started = time.perf_counter()
                    frame = airq_nb.read_readings(store)
                    timings["read_7_days_ms"].append((time.perf_counter() - started) * 1e3)
                    assert len(frame) == 168 * locations, len(frame)
                    clock.advance(HOUR)
                    started = time.perf_counter()
                    asyncio.run(airq_nb.collect_once(store, source=source, location=places[0]))
                    timings["hourly_run_ms"].append((time.perf_counter() - started) * 1e3)
                    started = time.perf_counter()
                    asyncio.run(airq_nb.collect_once(store, source=source, location=places[0]))
                    timings["up_to_date_run_ms"].append((time.perf_counter() - started) * 1e3)
    finally:
        server.stop()
    return {name: round(statistics.median(values), 2) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--locations", type=int, default=10)
    args = parser.parse_args()
    results = {
        name: measure(name, args.repeat, args.locations)
        for name in ("open-meteo", "openweathermap")
    }
    print(json.dumps({"locations": args.locations, "repeat": args.repeat, **results}, indent=2))


if __name__ == "__main__":
    main()
