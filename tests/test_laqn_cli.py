"""``airq-nb --source laqn`` in real subprocesses against the fake LAQN API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import airq_nb


@pytest.fixture
def cli(db_path, laqn_server):
    env = {**os.environ, "AIRQ_NB_DB": str(db_path), "AIRQ_NB_LAQN_URL": laqn_server.url}
    for name in ("AIRQ_NB_SOURCE", "OPENWEATHER_API_KEY"):
        env.pop(name, None)

    def run(*args: str, extra_env: dict[str, str] | None = None):
        return subprocess.run(
            [sys.executable, "-m", "airq_nb", *args],
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def readings(db_path):
    with airq_nb.open_store(db_path) as store:
        return airq_nb.read_readings(store)


def test_collect_one_site(cli, db_path, laqn_server):
    result = cli("--source", "laqn", "collect", "--once", "--location", "laqn:MY7")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("laqn:MY7: stored 168 hours from laqn")
    frame = readings(db_path)
    assert set(frame["location"]) == {"laqn:MY7"} and set(frame["kind"]) == {"measured"}
    assert {site for site, *_ in laqn_server.data_requests()} == {"MY7"}


def test_laqn_from_the_environment_collects_kf1_and_my7_by_default(cli, db_path):
    result = cli("collect", "--json", extra_env={"AIRQ_NB_SOURCE": "laqn"})
    assert result.returncode == 0, result.stderr
    assert [r["location"] for r in json.loads(result.stdout)] == ["laqn:KF1", "laqn:MY7"]
    assert readings(db_path).groupby("location").size().to_dict() == {
        "laqn:KF1": 168,
        "laqn:MY7": 168,
    }


def test_several_locations_on_the_scheduler(cli, db_path):
    result = cli(
        "--source", "laqn", "run", "--until-idle", "--timeout", "30",
        "--location", "laqn:KF1", "--location", "laqn:CT3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "delivered 2, failed 0" in result.stdout
    frame = readings(db_path)
    assert set(frame["location"]) == {"laqn:KF1", "laqn:CT3"}
    assert frame[frame["location"] == "laqn:CT3"]["pm2_5"].isna().all()  # PM10 only


def test_a_gas_only_site_fails_with_one_line_naming_the_pm_site(cli, db_path):
    result = cli("--source", "laqn", "collect", "--location", "laqn:KC1")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "laqn:KC1" in line and "measures no PM2.5 or PM10" in line and "laqn:KF1" in line
    assert readings(db_path).empty


def test_lat_lon_with_several_locations_is_an_error(cli):
    result = cli("collect", "--location", "a", "--location", "b", "--lat", "1", "--lon", "2")
    assert result.returncode == 1 and "one --location" in result.stderr
