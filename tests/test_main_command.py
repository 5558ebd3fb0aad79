"""The README's main command, ``scripts/run``, run as a newcomer would run it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

import airq_nb

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "AIRQ_NB_DB": str(tmp_path / "main.db"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        **extra,
    }


def test_headless_main_job_collects_and_leaves_a_dated_output_notebook(tmp_path, openmeteo_server):
    env = _env(
        tmp_path,
        AIRQ_NB_SOURCE="open-meteo",
        AIRQ_NB_OPENMETEO_URL=openmeteo_server.url,
        AIRQ_NB_OUTPUT_DIR=str(tmp_path / "out"),
    )
    done = subprocess.run(
        [str(ROOT / "scripts" / "run"), "--headless"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (output,) = (tmp_path / "out").glob("collector-*Z.ipynb")
    text = "".join(
        out.get("text", "")
        for cell in nbformat.read(output, as_version=4).cells
        for out in cell.get("outputs", [])
    )
    assert "London from open-meteo: 1 collection run(s) delivered" in text
    with airq_nb.open_store(tmp_path / "main.db") as store:
        assert len(airq_nb.read_readings(store)) == 7 * 24


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_interactive_main_job_serves_jupyterlab_on_the_collector_notebook(tmp_path):
    port = _free_port()
    log = (tmp_path / "lab.log").open("wb")
    lab = subprocess.Popen(
        [
            str(ROOT / "scripts" / "run"),
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
        ],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert lab.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                # Opened on a file, Jupyter serves that file's folder (notebooks/).
                with urllib.request.urlopen(f"{base}/api/contents/collector.ipynb") as r:
                    notebook = json.load(r)
                break
            except urllib.error.HTTPError:
                raise
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "JupyterLab did not come up in 2 minutes"
                time.sleep(0.5)
        assert notebook["type"] == "notebook"
        sources = [cell["source"] for cell in notebook["content"]["cells"]]
        assert any("airq_nb.start_collector(" in source for source in sources)
        with urllib.request.urlopen(f"{base}/lab") as page:
            assert page.status == 200 and b"JupyterLab" in page.read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        log.close()
