"""``airq-nb`` / ``python -m airq_nb`` in real subprocesses: output, exit status, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import airq_nb

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def cli(db_path, openmeteo_server, openweathermap_server):
    """Run the CLI against a fresh store and the fake servers; returns CompletedProcess."""
    env = {
        **os.environ,
        "AIRQ_NB_DB": str(db_path),
        "AIRQ_NB_OPENMETEO_URL": openmeteo_server.url,
        "AIRQ_NB_OPENWEATHER_URL": openweathermap_server.url,
    }
    for name in ("AIRQ_NB_SOURCE", "OPENWEATHER_API_KEY"):
        env.pop(name, None)

    def run(*args: str, extra_env: dict[str, str] | None = None, module: bool = True):
        command = [sys.executable, "-m", "airq_nb"] if module else [str(VENV_BIN / "airq-nb")]
        return subprocess.run(
            [*command, *args],
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def one_line_error(result) -> str:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("airq-nb: error: ")
    return lines[0]


def readings(db_path, **filters):
    with airq_nb.open_store(db_path) as store:
        return airq_nb.read_readings(store, **filters)


def test_collect_once_stores_a_backfill_and_exits_0(cli, db_path, openmeteo_server):
    result = cli("collect", "--once")
    assert result.returncode == 0, result.stderr
    assert "London: stored 168 hours from open-meteo" in result.stdout
    assert len(readings(db_path)) == 168
    again = cli("collect", "--once")
    assert again.returncode == 0 and "up to date" in again.stdout
    assert len(openmeteo_server.requests) == 1


def test_console_script_and_options_after_the_command(cli, tmp_path, openweathermap_server):
    assert shutil.which("airq-nb", path=str(VENV_BIN))
    other = tmp_path / "other.db"
    result = cli(
        "collect",
        "--once",
        "--db",
        str(other),
        "--source",
        "openweathermap",
        "--location",
        "Paris",
        "--lat",
        "48.85",
        "--lon",
        "2.35",
        extra_env={"OPENWEATHER_API_KEY": openweathermap_server.api_key},
        module=False,
    )
    assert result.returncode == 0, result.stderr
    frame = readings(other)
    assert set(frame["location"]) == {"Paris"} and set(frame["source"]) == {"openweathermap"}
    assert float(openweathermap_server.requests[0].params["lat"]) == 48.85


def test_invalid_key_fails_with_one_line_that_hides_the_key(cli, db_path):
    result = cli("--source", "openweathermap", "collect", "--once", extra_env={
        "OPENWEATHER_API_KEY": "bad-key-77aa99"
    })  # fmt: skip
    line = one_line_error(result)
    assert "OPENWEATHER_API_KEY" in line and "rejected the API key" in line
    assert "bad-key-77aa99" not in result.stderr + result.stdout
    assert readings(db_path).empty


def test_malformed_reply_fails_with_one_line_and_writes_nothing(cli, db_path, openmeteo_server):
    openmeteo_server.malform("html")
    line = one_line_error(cli("collect", "--once"))
    assert "HTML page instead of JSON" in line
    assert readings(db_path).empty


def test_bad_options_are_errors(db_path, capsys):
    # In-process (the same main() the console script calls) to keep the suite quick.
    from airq_nb.cli import main

    def error_of(*args: str) -> str:
        status = main(["--db", str(db_path), *args])
        err = capsys.readouterr().err
        assert status == 1 and len(err.splitlines()) == 1
        return err

    assert "needs --lat and --lon" in error_of("collect", "--location", "Paris")
    assert "both --lat and --lon" in error_of("collect", "--lat", "1")
    for usage_error in (["frobnicate"], ["--source", "purpleair", "collect"], ["queue"]):
        with pytest.raises(SystemExit) as info:
            main(usage_error)
        assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"airq-nb {airq_nb.__version__}"


def test_run_until_idle_registers_the_schedule_and_collects(cli, db_path, openmeteo_server):
    result = cli("run", "--until-idle", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "delivered 1, failed 0" in result.stdout
    assert len(readings(db_path)) == 168
    schedules = cli("schedules")
    assert schedules.returncode == 0
    assert "collect:London" in schedules.stdout and "every 1:00:00" in schedules.stdout
    # Within the same hour nothing more is due: the schedule's next slot is the next hour.
    again = cli("run", "--until-idle", "--timeout", "30")
    assert again.returncode == 0 and "delivered 0" in again.stdout
    assert len(openmeteo_server.requests) == 1
    listed = json.loads(cli("schedules", "--json").stdout)
    assert listed[0]["name"] == "collect:London" and listed[0]["topic"] == "collect"


def test_run_until_idle_reports_a_failed_run(cli, openmeteo_server):
    openmeteo_server.fail(400, body={"error": True, "reason": "Latitude must be in range"})
    result = cli("run", "--until-idle", "--timeout", "30")
    assert "Latitude must be in range" in one_line_error(result)
    assert "dead-lettered 1" in result.stdout


def test_status_shows_the_collector_first_then_the_store(cli, db_path):
    cli("collect", "--once")
    with airq_nb.open_store(db_path) as store:
        store.enqueue({"n": 1}, topic="unrelated")
        delivery = store.claim(topics=["unrelated"])
        store.fail(delivery, "unrelated boom", retry=False)
    result = cli("status")
    assert result.returncode == 0
    collector, store_wide = result.stdout.split("\nstore ")
    # The collector's own status first; an unrelated topic's dead letter is not its.
    assert collector.startswith("collector:\n  Schedule:")
    assert "London (open-meteo)" in collector and "168 hours" in collector
    assert "last collection London / open-meteo: ok" in collector
    assert "unrelated" not in collector
    assert "Backlog:       0 due, 0 queued, 0 leased, 1 dead letters" in store_wide
    assert "London / open-meteo: 168 hours" in store_wide
    only = cli("status", "--collector")
    assert only.returncode == 0 and only.stdout.startswith("collector:\n  Schedule:")
    assert "London (open-meteo)" in only.stdout and "\nstore " not in only.stdout
    data = json.loads(cli("status", "--json").stdout)
    assert data["readings"][0]["hours"] == 168
    assert data["status"]["dead_letters"] == 1
    assert data["collector"]["readings"] == 168 and data["collector"]["dead_letters"] == 0


# On PostgreSQL too: db_path is then a postgresql:// URL, given as $AIRQ_NB_DB and as --db.
@pytest.mark.backends("sqlite", "postgres")
def test_queue_commands(cli, db_path, tmp_path):
    with airq_nb.open_store(db_path) as store:
        keep = store.enqueue({"n": 1}, topic="reports", delay=3600)
        other = store.enqueue({"n": 2}, topic="reports", delay=3600)
        dead = store.enqueue({"n": 3}, topic="collect")
        delivery = store.claim(topics=["collect"])
        assert store.fail(delivery, "boom: it broke", retry=False) == "dead"

    listing = cli("queue", "list")
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()[1:]] == [
        str(keep),
        str(other),
        str(dead),
    ]
    assert "boom: it broke" in listing.stdout
    elsewhere = {"AIRQ_NB_DB": str(tmp_path / "other.db")}
    by_option = cli("--db", str(db_path), "queue", "list", extra_env=elsewhere)
    assert by_option.stdout == listing.stdout
    dead_only = json.loads(cli("queue", "list", "--state", "dead", "--json").stdout)
    assert [m["id"] for m in dead_only] == [dead]

    assert cli("queue", "redrive", str(dead)).returncode == 0
    assert cli("queue", "delete", str(other)).returncode == 0
    assert "no queue message" in one_line_error(cli("queue", "delete", str(other)))
    assert "only dead letters" in one_line_error(cli("queue", "redrive", str(keep)))

    assert cli("queue", "pause", "reports").returncode == 0
    assert "queued (paused)" in cli("queue", "list", "--topic", "reports").stdout
    with airq_nb.open_store(db_path) as store:
        assert store.queue.get(dead).state == "queued"
        assert store.queue.paused_topics() == ("reports",)
    assert cli("queue", "resume").returncode == 0

    refused = cli("queue", "purge", "--topic", "reports")
    assert "would delete 1 message(s) with topic=reports" in one_line_error(refused)
    purged = cli("queue", "purge", "--topic", "reports", "--yes")
    assert purged.returncode == 0 and "purged 1" in purged.stdout
    with airq_nb.open_store(db_path) as store:
        assert [m.id for m in store.queue.list()] == [dead]
        assert store.queue.paused_topics() == ()


def test_run_as_a_service_collects_and_stops_cleanly_on_sigterm(db_path, openmeteo_server):
    import signal
    import time

    env = {**os.environ, "AIRQ_NB_DB": str(db_path), "AIRQ_NB_OPENMETEO_URL": openmeteo_server.url}
    env.pop("OPENWEATHER_API_KEY", None)
    env.pop("AIRQ_NB_SOURCE", None)
    service = subprocess.Popen(
        [sys.executable, "-m", "airq_nb", "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not db_path.exists() or readings(db_path).empty):
            time.sleep(0.1)
        assert len(readings(db_path)) == 168
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=20) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        service.stderr.close()
    with airq_nb.open_store(db_path) as store:
        assert store.queue.counts().by_state.get("leased", 0) == 0


def test_fake_api_env_selects_openweathermap_in_a_subprocess(
    fake_api_env, db_path, openweathermap_server
):
    env = {**os.environ, **fake_api_env, "AIRQ_NB_DB": str(db_path)}
    env.pop("AIRQ_NB_SOURCE", None)
    done = subprocess.run(
        [sys.executable, "-m", "airq_nb", "collect", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "from openweathermap" in done.stdout
    assert len(openweathermap_server.requests) == 1


def test_unusable_base_url_is_a_configuration_error(cli):
    line = one_line_error(cli("collect", extra_env={"AIRQ_NB_OPENMETEO_URL": "notaurl"}))
    assert "must start with http:// or https://" in line


def test_deeply_nested_reply_fails_with_one_line(cli, db_path, openmeteo_server):
    openmeteo_server.malform("deep")
    line = one_line_error(cli("collect", "--once"))
    assert "nested too deeply" in line and "Traceback" not in line
    assert readings(db_path).empty


class _BrokenSource:
    """A third-party source with a bug: it raises something that is no SourceError."""

    name = "broken"

    async def fetch(self, location, *, start, end):
        raise KeyError("pm2_5")


@pytest.mark.parametrize("debug", [None, "1"])
def test_an_unexpected_error_is_one_line_unless_debugging(db_path, capsys, monkeypatch, debug):
    from airq_nb.cli import main
    from airq_nb.collector import _sources

    monkeypatch.setitem(_sources.SOURCES, "broken", lambda url, key, timeout: _BrokenSource())
    monkeypatch.setenv("AIRQ_NB_SOURCE", "broken")
    if debug is None:
        monkeypatch.delenv("AIRQ_NB_DEBUG", raising=False)
    else:
        monkeypatch.setenv("AIRQ_NB_DEBUG", debug)
    assert main(["--db", str(db_path), "collect", "--once"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("airq-nb: error: unexpected KeyError: 'pm2_5'")
    if debug is None:
        assert len(err) == 1 and "AIRQ_NB_DEBUG=1" in err[0]
    else:
        assert err[0] == "Traceback (most recent call last):" and len(err) > 2


def _every_parser(parser):
    """``parser`` and each of its subcommands' parsers, depth first."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _every_parser(child)


def test_every_commands_help_prints(cli):
    # A "%" in any help text breaks argparse's formatting of that page (and of the parent's).
    from airq_nb.cli import build_parser

    pages = [p.format_help() for p in _every_parser(build_parser())]
    assert len(pages) > 10 and all("usage:" in page for page in pages)
    done = cli("--help", module=False)
    assert done.returncode == 0, done.stderr
    assert "means" in done.stdout and "alerts" in done.stdout


def test_means_and_alerts_on_an_empty_store_say_what_to_do_next(cli):
    done = cli("means")
    assert done.returncode == 0, done.stderr
    assert "collect some first (airq-nb collect)" in done.stdout
    done = cli("alerts", "list")
    assert done.returncode == 0, done.stderr
    assert "no alert rules; add one with airq_nb.set_alert_rule" in done.stdout
