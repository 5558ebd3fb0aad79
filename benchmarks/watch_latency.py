"""How soon ``store.watch`` shows a change made by another process, and what an idle watch costs.

Another process sets one key ``N`` times at random gaps (10–60 ms); each value carries the
time just before its commit. This process watches the key (``async for entries in
store.watch([key])``) and records, per yielded value, the time from that stamp to the
yield: commit, change signal, re-read and wake-up together. Beside it, the naive peer: a
loop that ``get``s the key every 100 ms (what a widget polling "often" does), measured the
same way. Then the CPU this process spends over 10 s with one watch open and nothing
changing (the change thread's cost).

Target (issue 19): p99 ≤ 50 ms on SQLite and on PostgreSQL. Run:
``python benchmarks/watch_latency.py`` (SQLite, plus PostgreSQL when ``AIRQ_NB_TEST_PG``
or ``--postgres URL`` names a server; about 40 s) or ``--quick``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import airq_nb

KEY = ("bench", "watched")
POLL_EVERY = 0.1

_WRITER = """
import json, random, sys, time, airq_nb
location, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
with airq_nb.open_store(location) as store:
    store.get(("bench", "warm-up"))
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(count):
        time.sleep(rng.uniform(0.010, 0.060))
        store.set(("bench", "watched"), {"n": n, "at": time.time()})
"""


def percentiles(samples_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99, ordered[-1]


def _writer(location: str, count: int, seed: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, location, str(count), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


async def watch_latencies(store: airq_nb.Store, location: str, count: int) -> tuple[list, int]:
    """Latencies (ms) of the values the watch yielded, and how many it coalesced away."""
    seen: list[float] = []
    numbers: set[int] = set()
    child = _writer(location, count, seed=1)
    async with store.watch([KEY]) as watch:
        await anext(watch)  # the current entry
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        async for (entry,) in watch:
            arrived = time.time()
            seen.append((arrived - entry.value["at"]) * 1000.0)
            numbers.add(entry.value["n"])
            if entry.value["n"] == count - 1:
                break
    child.wait(30)
    return seen, count - len(numbers)


async def poll_latencies(store: airq_nb.Store, location: str, count: int) -> tuple[list, int]:
    """The peer: ``get`` every POLL_EVERY seconds, a change seen at the first poll after it."""
    seen: list[float] = []
    numbers: set[int] = set()
    child = _writer(location, count, seed=1)
    last = store.get(KEY).versionstamp
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    while True:
        await asyncio.sleep(POLL_EVERY)
        entry = await asyncio.to_thread(store.get, KEY)
        if entry.versionstamp == last:
            continue
        last = entry.versionstamp
        seen.append((time.time() - entry.value["at"]) * 1000.0)
        numbers.add(entry.value["n"])
        if entry.value["n"] == count - 1:
            break
    child.wait(30)
    return seen, count - len(numbers)


async def idle_cpu(store: airq_nb.Store, seconds: float) -> float:
    """Percent of one core this process uses with a watch open and no change."""
    async with store.watch([KEY]) as watch:
        await anext(watch)
        waiting = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.5)
        start_cpu, start = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        used = time.process_time() - start_cpu
        elapsed = time.monotonic() - start
        waiting.cancel()
    return 100.0 * used / elapsed


def _row(backend: str, how: str, samples: list[float], coalesced: int, cpu: str) -> str:
    p50, p99, worst = percentiles(samples)
    return (
        f"| {backend} | {how} | {len(samples)} | {coalesced} | {p50:.1f} | {p99:.1f} | "
        f"{worst:.1f} | {cpu} |"
    )


async def bench(backend: str, location: str, count: int, idle_seconds: float) -> list[str]:
    with airq_nb.open_store(location) as store:
        store.delete(KEY)
        watched, watched_gone = await watch_latencies(store, location, count)
        cpu = await idle_cpu(store, idle_seconds)
        polled, polled_gone = await poll_latencies(store, location, count)
    return [
        _row(backend, "store.watch", watched, watched_gone, f"{cpu:.2f} %"),
        _row(backend, f"get() every {POLL_EVERY * 1000:.0f} ms (peer)", polled, polled_gone, "—"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 changes, 3 s idle")
    parser.add_argument("-n", type=int, default=300, help="changes per run (default 300)")
    parser.add_argument("--postgres", help="a postgresql:// URL (default: $AIRQ_NB_TEST_PG)")
    args = parser.parse_args()
    count, idle = (50, 3.0) if args.quick else (args.n, 10.0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows += asyncio.run(bench("SQLite", str(Path(folder) / "watch.db"), count, idle))
    url = args.postgres or os.environ.get("AIRQ_NB_TEST_PG")
    if url:
        schema = f"bench_watch_{uuid.uuid4().hex[:8]}"
        location = f"{url}{'&' if '?' in url else '?'}schema={schema}"
        try:
            rows += asyncio.run(bench("PostgreSQL", location, count, idle))
        finally:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"Another process sets one key {count} times, 10-60 ms apart; latency = yield time")
    print("minus the time stamped just before the commit. Idle CPU: this process, one watch")
    print(f"open, nothing changing, over {idle:g} s.\n")
    print("| backend | how | changes seen | coalesced | p50 ms | p99 ms | max ms | idle CPU |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
