"""The README's promises: its Python examples run, and its commands exist as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_python_examples_run(example, tmp_path):
    env = {**os.environ, "AIRQ_NB_DB": str(tmp_path / "readme.db")}
    done = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "every example prints what it shows"
    assert (tmp_path / "readme.db").exists()


def test_readme_has_examples_and_names_the_two_commands():
    assert len(EXAMPLES) >= 3
    assert "    scripts/run\n" in README and "    scripts/test\n" in README
    for script in ("scripts/run", "scripts/test"):
        assert os.access(ROOT / script, os.X_OK), script


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in ci if line.strip() and not line.startswith("#")]
    assert commands[-1] == "scripts/test"


def test_readme_cli_lines_parse():
    from airq_nb.cli import build_parser

    parser = build_parser()
    lines = re.findall(r"\.venv/bin/airq-nb ([a-z -]+?)(?:`|$)", README, flags=re.M)
    assert "run --until-idle" in lines and "run" in lines
    for line in lines:
        parser.parse_args(line.split())


def test_readme_cron_recipe_runs_as_written_in_a_fresh_checkout(tmp_path, openmeteo_server):
    line = next(ln.strip() for ln in README.splitlines() if ln.strip().startswith("5 * * * *"))
    command = line.removeprefix("5 * * * * ").replace("\\%", "%")  # crontab escapes %
    checkout = tmp_path / "airq_nb"
    (checkout / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "collector.ipynb", checkout / "notebooks")
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    env = {
        **os.environ,
        "AIRQ_NB_DB": str(tmp_path / "cron.db"),
        "AIRQ_NB_SOURCE": "open-meteo",
        "AIRQ_NB_OPENMETEO_URL": openmeteo_server.url,
    }
    done = subprocess.run(
        ["bash", "-c", command.replace("/path/to/airq_nb", str(checkout))],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, (checkout / "notebooks" / "out" / "cron.log").read_text()[-3000:]
    assert len(list((checkout / "notebooks" / "out").glob("collector-*Z.ipynb"))) == 1
    assert len(openmeteo_server.requests) == 1
