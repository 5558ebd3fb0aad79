"""Write an SQL dump of a store made by an older airq_nb, for tests/test_migrations.py.

Run it with the OLD code first on the path, from a checkout of a released commit:

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old .venv/bin/python tests/data/make_store_fixture.py out.sql

It uses only that release's public API (plus its readings module), so the file holds
exactly what that release writes: KV entries whose order changed with Deno's runtime key
order, queued and dead messages with keys_if_undelivered, a schedule, delivery-log rows
and readings. ``iterdump`` leaves out ``PRAGMA user_version``, so it is appended.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import sqlite3
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import airq_nb

KV_KEYS = [
    ("n", 0),
    ("n", 0.0),
    ("n", 1),
    ("n", 3.14),
    ("n", -(2**70)),
    ("n", 2**70),
    ("n", -1e300),
    ("n", -0.0),
    ("n", math.nan),
    ("n", False),
    ("n", True),
    ("n", "s"),
    ("n", b"b\x00"),
    ("m", 1, "nested", 2.5),
]


def _module(*names: str):  # the readings module moved between releases
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(names)


def main(out: Path) -> None:
    readings = _module("airq_nb.collector._readings", "airq_nb._readings")
    sources = _module("airq_nb.collector._sources", "airq_nb._sources")
    clock = airq_nb.FakeClock(1_700_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old.db"
        store = airq_nb.open_store(path, clock=clock)

        sched = airq_nb.Scheduler(store, clock=clock)
        ran: list[object] = []
        sched.listen_queue(ran.append, topic="hourly")
        sched.schedule("hourly", every=timedelta(hours=1), message={"what": "tick"})
        sched.run_now("hourly")
        asyncio.run(sched.run_until_idle())
        sched.close()
        assert ran, "the scheduler delivered nothing, so the delivery log is empty"

        for key in KV_KEYS:
            store.set(key, repr(key))
        store.set(("ttl", 1), "expires in 2033", expire_in=10 * 365 * 86400.0)

        doomed = store.enqueue("doomed", keys_if_undelivered=[("dead", 7)], backoff_schedule=[])
        delivery = store.claim(topics=["default"])
        assert delivery is not None and delivery.id == doomed
        assert store.fail(delivery, "boom") == "dead"
        store.enqueue(
            {"job": 1},
            delay=3600,
            keys_if_undelivered=[("failed", 1), ("failed", 2.5)],
            backoff_schedule=[1, 2],
        )
        store.enqueue("plain")
        # The newest message is acked, so the next id depends on the high-water mark.
        store.enqueue("acked", topic="acked")
        acked = store.claim(topics=["acked"])
        assert acked is not None and store.ack(acked)

        readings.ensure_readings_table(store)
        hour = 1_699_999_200
        readings.upsert_readings(
            store,
            [sources.Reading(hour, 12.5, 20.0), sources.Reading(hour + 3600, None, 7.0)],
            source="open-meteo",
            location="london",
            fetched_at=1_700_000_000.0,
        )
        store.close()

        conn = sqlite3.connect(path)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        lines = list(conn.iterdump())
        conn.close()
    lines.append(f"PRAGMA user_version = {version};")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    print(airq_nb.__file__, file=sys.stderr)
    main(Path(sys.argv[1]))
