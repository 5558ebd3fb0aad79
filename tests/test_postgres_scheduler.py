"""The Scheduler and the CLI on PostgreSQL, beyond the contract suite both backends run.

The server restarted under a running Scheduler: the runtime reports a clear error, carries
on once the server is back, and no message is lost. The CLI works with ``AIRQ_NB_DB`` set to
the store's URL. (tests/test_scheduler*.py, test_schedules.py, test_collector*.py and
test_readings.py run on both backends; test_scheduler_processes.py runs two processes'
Schedulers on one PostgreSQL schema, one run per slot.)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from store_backends import behind_the_back
from test_postgres_processes import _restart_server

import airq_nb


def test_a_scheduler_delivering_across_a_server_restart_loses_nothing(
    postgres_store_url: str,
) -> None:
    total = 200
    handled: list[int] = []
    errors: list[str] = []

    async def main() -> None:
        with airq_nb.open_store(postgres_store_url) as store:
            sched = airq_nb.Scheduler(store, lease_seconds=2, poll_interval=0.2)

            def handler(n: int) -> None:
                time.sleep(0.002)
                handled.append(n)

            sched.listen_queue(handler, topic="work")
            sched.start()
            for n in range(total // 2):
                store.enqueue(n, topic="work")
            while not handled:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(_restart_server)
            for n in range(total // 2, total):
                while True:
                    try:
                        store.enqueue(n, topic="work")
                        break
                    except airq_nb.StoreError as exc:  # a connection the restart cut
                        errors.append(str(exc))
                        await asyncio.sleep(0.05)
            deadline = time.monotonic() + 60
            while len(set(handled)) < total and time.monotonic() < deadline:
                status = sched.status()
                if status.runtime_error:
                    errors.append(status.runtime_error)
                await asyncio.sleep(0.05)
            assert sched.running, "the runtime must outlive the restart"
            await sched.stop(grace=5)
            sched.close()
            log = airq_nb.read_delivery_log(store, topic="work")
            # Every message has its ok row, committed with its ack (read back after the restart).
            assert log[log["outcome"] == "ok"]["message_id"].nunique() == total
            assert store.queue.counts().total == 0

    asyncio.run(main())
    assert sorted(set(handled)) == list(range(total)), errors  # nothing lost
    for error in errors:
        assert "PostgreSQL" in error, error


def test_the_cli_runs_schedules_and_reports_on_a_postgresql_store(
    postgres_store_url: str, openmeteo_server
) -> None:
    env = {
        **os.environ,
        "AIRQ_NB_DB": postgres_store_url,
        "AIRQ_NB_OPENMETEO_URL": openmeteo_server.url,
    }
    for name in ("AIRQ_NB_SOURCE", "OPENWEATHER_API_KEY"):
        env.pop(name, None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airq_nb", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = cli("run", "--until-idle", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "delivered 1, failed 0" in result.stdout
    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert "London / open-meteo: 168 hours" in status.stdout
    assert "schema=" in status.stdout and "password" not in status.stdout
    listed = json.loads(cli("schedules", "--json").stdout)
    assert [s["name"] for s in listed] == ["collect:London"]
    with airq_nb.open_store(postgres_store_url) as store:
        assert len(airq_nb.read_readings(store)) == 168
        log = airq_nb.read_delivery_log(store)
        assert list(log["outcome"]) == ["ok"] and list(log["schedule"]) == ["collect:London"]


def test_a_schema_from_before_the_scheduler_tables_is_upgraded(postgres_store_url: str) -> None:
    with airq_nb.open_store(postgres_store_url) as store:
        store.enqueue({"kept": True}, topic="work")
        schema = store.schema
    # What a store written by the release before schema 2 looks like: KV and queue only.
    for statement in (
        "DROP TABLE schedules, delivery_log, readings, reading_revisions",
        f"COMMENT ON SCHEMA {schema} IS 'airq_nb schema 1'",
    ):
        behind_the_back(postgres_store_url, statement)
    with airq_nb.open_store(postgres_store_url) as store:
        sched = airq_nb.Scheduler(store)
        seen: list[object] = []
        sched.listen_queue(seen.append, topic="work")
        summary = asyncio.run(sched.run_until_idle(timeout=30))
        sched.close()
        assert summary.delivered == 1 and seen == [{"kept": True}]
        assert list(airq_nb.read_delivery_log(store)["outcome"]) == ["ok"]
        assert airq_nb.read_readings(store).empty
