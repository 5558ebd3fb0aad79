"""The README's promises: its Python examples run, and its commands exist as written."""

from __future__ import annotations

import os
import re
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
