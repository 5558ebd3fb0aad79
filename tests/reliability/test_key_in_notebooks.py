"""The API key never appears in a papermill output notebook, its logs, or the store it wrote.

The collector notebook runs headless in a real kernel against the fake OpenWeatherMap: once
healthy, once with the server failing (HTTP 500), once with a wrong key (HTTP 401).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import airq_nb

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "collector.ipynb"

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("case", ["healthy", "server error", "wrong key"])
def test_collector_notebook_output_never_shows_the_api_key(
    tmp_path: Path, openweathermap_server, case: str
) -> None:
    server = openweathermap_server
    key = "wrong-secret-key-8c41d7" if case == "wrong key" else server.api_key
    if case == "server error":
        server.fail(500)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_NB_", "OPENWEATHER"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        AIRQ_NB_OPENWEATHER_URL=server.url,
        OPENWEATHER_API_KEY=key,
    )
    db, output = tmp_path / "airq.db", tmp_path / "collector-out.ipynb"
    done = subprocess.run(
        [
            sys.executable, "-m", "papermill", str(NOTEBOOK), str(output), "--kernel",
            "python3", "--no-progress-bar", "--cwd", str(tmp_path), "--log-output",
            "-p", "db", str(db), "-p", "source", "openweathermap", "-p", "headless", "True",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert (done.returncode == 0) is (case == "healthy"), done.stderr[-3000:]
    assert any(r.params.get("appid") == key for r in server.requests), "the key was never sent"

    written = [output, *tmp_path.glob("airq.db*")]
    leaks = [path.name for path in written if key.encode() in path.read_bytes()]
    leaks += [
        name for name, text in (("stdout", done.stdout), ("stderr", done.stderr)) if key in text
    ]
    assert leaks == []
    with airq_nb.open_store(db) as store:
        stored = len(airq_nb.read_readings(store))
    assert (stored > 0) is (case == "healthy")
