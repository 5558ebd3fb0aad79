"""papermill runs each notebook in a real kernel against a temporary store and a local source."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

import airq_nb
from airq_nb._parameters import assigned_names, injected_parameters

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("collector", "queue", "charts", "alerts")

pytestmark = pytest.mark.kernel


def kernel_env(**extra: str) -> dict[str, str]:
    """The environment the papermill process (and so its kernel) runs with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_NB_", "OPENWEATHER"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def papermill(
    name: str, out_dir: Path, env: dict[str, str], **parameters: Any
) -> tuple[subprocess.CompletedProcess[str], nbformat.NotebookNode]:
    output = out_dir / f"{name}-out.ipynb"
    command = [
        sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{name}.ipynb"), str(output),
        "--kernel", "python3", "--no-progress-bar", "--cwd", str(out_dir),
    ]  # fmt: skip
    for key, value in parameters.items():
        command += ["-p", key, str(value)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    return done, nbformat.read(output, as_version=4)


def papermill_warnings(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What papermill itself warned about (e.g. "Unable to parse line 2"), from its log.

    ipykernel's own start-up notice ("[IPKernelApp] WARNING | Kernel is running over TCP")
    is the kernel's, not papermill's, and says nothing about the notebook.
    """
    return [
        line
        for line in done.stderr.splitlines()
        if not line.startswith("[IPKernelApp]")
        and ("Unable to parse" in line or "unknown parameter" in line or "warn" in line.lower())
    ]


def outputs(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def stream_text(notebook: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in outputs(notebook) if out.output_type == "stream")


def widget_views(notebook: nbformat.NotebookNode) -> list[str]:
    return [
        out["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for out in outputs(notebook)
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]


def widget_state(notebook: nbformat.NotebookNode) -> dict[str, Any]:
    return notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_clean_with_a_parameters_cell(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "db = " in tagged[0].source and "headless = " in tagged[0].source
    if name == "collector":
        assert "source = " in tagged[0].source and "location = " in tagged[0].source


def test_collector_headless_stores_readings_and_says_what_it_fetched(tmp_path, openmeteo_server):
    db = tmp_path / "airq.db"
    env = kernel_env(AIRQ_NB_OPENMETEO_URL=openmeteo_server.url, AIRQ_NB_SOURCE="open-meteo")
    done, notebook = papermill("collector", tmp_path, env, db=db, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert papermill_warnings(done) == []
    with airq_nb.open_store(db) as store:
        readings = airq_nb.read_readings(store)
    assert len(readings) >= 24 * 6
    assert set(readings["source"]) == {"open-meteo"}
    assert len(openmeteo_server.requests) == 1
    text = stream_text(notebook)
    assert "source open-meteo; location London" in text
    assert "London from open-meteo: 1 collection run(s) delivered; next run due" in text
    assert f"{len(readings)} hourly readings stored for London" in text
    with airq_nb.open_store(db) as store:
        (schedule,) = airq_nb.Scheduler(store).schedules()
    assert schedule.name == "collect:London" and schedule.last_outcome == "ok"
    assert schedule.next_run_at.minute == 0 and schedule.next_run_at.second == 0

    # A second scheduled run within the hour finds nothing due: no request, no new run.
    again, notebook = papermill("collector", tmp_path, env, db=db, headless=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "London from open-meteo: 0 collection run(s) delivered" in stream_text(notebook)
    assert len(openmeteo_server.requests) == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_collector_headless_fails_visibly_when_the_source_is_unreachable(tmp_path):
    db = tmp_path / "airq.db"
    env = kernel_env(
        AIRQ_NB_OPENMETEO_URL=f"http://127.0.0.1:{closed_port()}", AIRQ_NB_SOURCE="open-meteo"
    )
    done, notebook = papermill("collector", tmp_path, env, db=db, headless=True)
    assert done.returncode != 0
    assert "CollectionFailedError" in done.stderr
    errors = [out for out in outputs(notebook) if out.output_type == "error"]
    assert [e.ename for e in errors] == ["CollectionFailedError"]
    assert "SourceUnavailableError" in errors[0].evalue and "Open-Meteo" in errors[0].evalue
    assert "retried by back-off" in errors[0].evalue
    with airq_nb.open_store(db) as store:
        assert airq_nb.read_readings(store).empty


def test_queue_notebook_shows_the_messages_escaped(tmp_path):
    db = tmp_path / "airq.db"
    with airq_nb.open_store(db) as store:
        queued = store.enqueue({"station": "London"}, topic="collect", delay=600)
        hostile = store.enqueue({"note": "<script>alert(1)</script>"}, topic="other")
        before = [(m.id, m.state) for m in store.queue.list()]
    done, notebook = papermill(
        "queue", tmp_path, kernel_env(), db=db, headless=True, tz="Europe/London"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert papermill_warnings(done) == []
    text = stream_text(notebook)
    assert "2 messages (2 queued)" in text
    # The store-wide line, in the zone asked for (the hostile message is due at once).
    assert re.search(r"next delivery due: [-\d]{10} [:\d]{5} (GMT|BST) \(due now\)", text)
    assert f"id={queued}  topic=collect  state=queued  due=in 10 min" in text
    assert f"id={hostile}  topic=other" in text
    assert len(widget_views(notebook)) == 1
    # The table's cells as the browser would get them: escaped, never live markup.
    cells = [
        model["state"].get("value", "")
        for model in widget_state(notebook).values()
        if model["model_name"] == "HTMLModel"
    ]
    shown = "\n".join(v for v in cells if isinstance(v, str))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "<script>" not in shown
    with airq_nb.open_store(db) as store:
        assert [(m.id, m.state) for m in store.queue.list()] == before


def test_alerts_notebook_headless_lists_rules_states_channels_and_history(tmp_path, monkeypatch):
    db = tmp_path / "airq.db"
    secret = "json://127.0.0.1:9/hook?token=s3cret"
    monkeypatch.setenv("AIRQ_NB_ALERT_TEAM", secret)
    with airq_nb.open_store(db) as store:
        airq_nb.set_alert_rule(
            store,
            airq_nb.AlertRule(
                "pm25", pollutant="pm2_5", above=35, location="London", notify=("team",)
            ),
        )
    env = kernel_env(AIRQ_NB_ALERT_TEAM=secret)
    done, notebook = papermill("alerts", tmp_path, env, db=db, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert papermill_warnings(done) == []
    text = stream_text(notebook)
    assert "1 alert rule(s)" in text
    assert "rule=pm25" in text and "state=ok" in text
    assert "channels: team" in text
    # A channel's URL (its token) never lands in the saved notebook.
    assert "s3cret" not in (tmp_path / "alerts-out.ipynb").read_text()
    assert len(widget_views(notebook)) == 1


def test_charts_notebook_draws_the_stored_readings_inline(tmp_path, openmeteo_server):
    db = tmp_path / "airq.db"
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    with airq_nb.open_store(db) as store:
        stored = airq_nb.collect_now(store, source=source).stored
    assert stored > 0
    done, notebook = papermill("charts", tmp_path, kernel_env(), db=db, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    text = stream_text(notebook)
    assert f"London · open-meteo: {stored} hours with readings" in text
    assert "Data last fetched: " in text and "never" not in text.split("Data last fetched: ")[1]
    assert "London · Open-Meteo" in text and "(DAQI " in text  # today's band in words
    # Headless: no live widget (it would need a kernel) but an embedded Bokeh document.
    assert widget_views(notebook) == []
    bundles = json.dumps([out.get("data", {}) for out in outputs(notebook)])
    # BokehJS itself is in the notebook (inline resources), nothing is fetched from a CDN.
    assert "Bokeh" in bundles and len(bundles) > 500_000
    assert "cdn.bokeh.org" not in bundles
    (document,) = [
        out["data"]["text/html"]
        for out in outputs(notebook)
        if "Bokeh.embed" in out.get("data", {}).get("text/html", "")
    ]
    assert "WHO 24-h guideline PM2.5" in document


def test_charts_notebook_index_parameter_picks_the_bands(tmp_path, openmeteo_server):
    db = tmp_path / "airq.db"
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    with airq_nb.open_store(db) as store:
        assert airq_nb.collect_now(store, source=source).stored > 0
    done, notebook = papermill(
        "charts", tmp_path, kernel_env(), db=db, headless=True, index="epa", index_version="2012"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert papermill_warnings(done) == []
    text = stream_text(notebook)
    assert "(US AQI " in text and ", 2012)" in text and "(DAQI " not in text
    (document,) = [
        out["data"]["text/html"]
        for out in outputs(notebook)
        if "Bokeh.embed" in out.get("data", {}).get("text/html", "")
    ]
    assert "US EPA AQI (2012) bands" in document


def test_charts_notebook_on_an_empty_store_says_no_data_yet(tmp_path):
    db = tmp_path / "airq.db"
    done, notebook = papermill("charts", tmp_path, kernel_env(), db=db, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    text = stream_text(notebook)
    assert "no data yet" in text
    assert "no deliveries yet" in text


def test_collector_with_a_bad_location_says_how_to_write_one(tmp_path):
    done, notebook = papermill(
        "collector", tmp_path, kernel_env(), db=tmp_path / "airq.db", location="Paris",
        headless=True,
    )  # fmt: skip
    assert done.returncode != 0
    (error,) = [out for out in outputs(notebook) if out.output_type == "error"]
    assert error.ename == "ConfigurationError"
    assert "use 'London', an LAQN site such as 'laqn:KF1', an OpenAQ location" in (error.evalue)


def test_collector_headless_for_another_location(tmp_path, openmeteo_server):
    db = tmp_path / "airq.db"
    env = kernel_env(AIRQ_NB_OPENMETEO_URL=openmeteo_server.url, AIRQ_NB_SOURCE="open-meteo")
    done, _ = papermill(
        "collector", tmp_path, env, db=db, location="Paris, 48.8566, 2.3522", headless=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (request,) = openmeteo_server.requests
    assert (request.params["latitude"], request.params["longitude"]) == ("48.8566", "2.3522")
    with airq_nb.open_store(db) as store:
        assert set(airq_nb.read_readings(store)["location"]) == {"Paris"}


def test_openaq_from_the_collector_notebook_to_the_charts(tmp_path, openaq_server):
    """AIRQ_NB_SOURCE=openaq end to end: collected headless, charted with each provider's
    licence under the charts, and the key in no saved output."""
    db = tmp_path / "airq.db"
    env = kernel_env(
        AIRQ_NB_SOURCE="openaq", AIRQ_NB_OPENAQ_URL=openaq_server.url,
        OPENAQ_API_KEY=openaq_server.api_key,
    )  # fmt: skip
    done, collected = papermill("collector", tmp_path, env, db=db, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with airq_nb.open_store(db) as store:
        frame = airq_nb.read_readings(store)
    assert set(frame["source"]) == {"openaq"} and set(frame["location"]) == {"London"}
    assert set(frame["point"]) == {"2179/2178"} and set(frame["kind"]) == {"measured"}
    done, notebook = papermill("charts", tmp_path, env, db=db, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "London · openaq:" in stream_text(notebook)
    (document,) = [
        out["data"]["text/html"]
        for out in outputs(notebook)
        if "Bokeh.embed" in out.get("data", {}).get("text/html", "")
    ]
    assert "Measured data: OpenAQ (openaq.org)" in document
    assert "AURN: Open Government Licence v3.0 (attribution: Defra, UK-AIR)" in document
    for saved in (collected, notebook):
        assert openaq_server.api_key not in json.dumps(outputs(saved))


def test_collector_run_all_waits_for_the_first_collection(tmp_path, openmeteo_server):
    """Not headless, as "Run All" in JupyterLab: the last cell shows readings, not "none yet"."""
    db = tmp_path / "airq.db"
    env = kernel_env(AIRQ_NB_OPENMETEO_URL=openmeteo_server.url, AIRQ_NB_SOURCE="open-meteo")
    done, notebook = papermill(
        "collector", tmp_path, env, db=db, headless=False, wait_seconds=60,
        tz="Europe/London",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert papermill_warnings(done) == []
    text = stream_text(notebook)
    assert "No readings stored" not in text
    assert "hourly readings stored for London" in text
    assert re.search(r" (GMT|BST); the newest:", text)  # in the zone asked for
    assert len(widget_views(notebook)) == 1  # the collector's status panel
    panels = [
        model["state"]["value"]
        for model in widget_state(notebook).values()
        if "airq-status" in model["state"].get("_dom_classes", [])
    ]
    assert panels and "collect:London" in panels[-1] and "hourly readings" in panels[-1]


def test_collector_run_all_says_when_the_first_readings_will_arrive(tmp_path):
    """The source is down: the wait ends at the failed run, which says what and when next."""
    db = tmp_path / "airq.db"
    env = kernel_env(
        AIRQ_NB_OPENMETEO_URL=f"http://127.0.0.1:{closed_port()}", AIRQ_NB_SOURCE="open-meteo"
    )
    done, notebook = papermill("collector", tmp_path, env, db=db, headless=False, wait_seconds=30)
    assert done.returncode == 0, done.stderr[-3000:]
    text = stream_text(notebook)
    assert "No readings stored for London yet." in text
    assert "failed, will be retried" in text and "cannot reach Open-Meteo" in text
    assert "Readings stored: none yet: the first collection is due" in text


def test_every_notebook_runs_headless_on_a_postgresql_store(
    tmp_path, openmeteo_server, postgres_store_url
):
    # The same four notebooks, with db= a postgresql:// URL instead of a file.
    env = kernel_env(AIRQ_NB_OPENMETEO_URL=openmeteo_server.url, AIRQ_NB_SOURCE="open-meteo")
    done, notebook = papermill("collector", tmp_path, env, db=postgres_store_url, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "London from open-meteo: 1 collection run(s) delivered" in stream_text(notebook)
    with airq_nb.open_store(postgres_store_url) as store:
        stored = len(airq_nb.read_readings(store))
    assert stored >= 24 * 6
    done, notebook = papermill("charts", tmp_path, env, db=postgres_store_url, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"London · open-meteo: {stored} hours with readings" in stream_text(notebook)
    done, notebook = papermill("queue", tmp_path, env, db=postgres_store_url, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "collect:London" in stream_text(notebook)
    assert papermill_warnings(done) == []
    done, notebook = papermill("alerts", tmp_path, env, db=postgres_store_url, headless=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 alert rule(s)" in stream_text(notebook)


# -- parameters papermill was given that a notebook does not have -------------------------


def parameter_names(name: str) -> list[str]:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    return assigned_names(cell.source)


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_parameter_stops_the_run_naming_the_known_ones(name, tmp_path):
    """``-p db_path x.db`` (the name before ``db``) once ran against the default store."""
    default = tmp_path / "default.db"
    env = kernel_env(AIRQ_NB_DB=str(default), AIRQ_NB_SOURCE="open-meteo",
                     AIRQ_NB_OPENMETEO_URL=f"http://127.0.0.1:{closed_port()}")  # fmt: skip
    done, notebook = papermill(name, tmp_path, env, db_path=tmp_path / "x.db", headless=True)
    assert done.returncode != 0
    assert "Passed unknown parameter: db_path" in done.stderr  # papermill's own warning
    errors = [out for out in outputs(notebook) if out.output_type == "error"]
    assert [e.ename for e in errors] == ["UnknownParameterError"]
    known = ", ".join(parameter_names(name))
    assert errors[0].evalue == (
        "papermill was given db_path, which this notebook does not have (it would be ignored "
        "and the default used): db_path is now called db (-p db <value>). Its parameters "
        f"are: {known}"
    )
    # It stopped before any store was opened: neither the default nor the one meant.
    assert not default.exists() and not (tmp_path / "x.db").exists()
    executed = [c for c in notebook.cells if c.cell_type == "code" and c.execution_count]
    assert "check_notebook_parameters()" in executed[-1].source


def test_a_misspelt_parameter_is_named_with_the_likely_one(tmp_path):
    env = kernel_env(AIRQ_NB_DB=str(tmp_path / "default.db"))
    done, notebook = papermill("queue", tmp_path, env, hedless=True, tz="Europe/London")
    assert done.returncode != 0
    (error,) = [out for out in outputs(notebook) if out.output_type == "error"]
    assert "papermill was given hedless," in error.evalue
    assert "hedless: did you mean headless?" in error.evalue
    assert "Its parameters are: db, tz, headless" in error.evalue


@pytest.mark.parametrize("name", NAMES)
def test_the_check_comes_right_after_the_parameters_and_is_silent_when_run_by_hand(name):
    """As JupyterLab runs it (no injected cell): the check shows nothing and raises nothing;
    with a cell as papermill writes it (its own translator) a wrong name is caught."""
    from nbclient import NotebookClient
    from papermill.translators import PythonTranslator

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    (at,) = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    parameters, check = notebook.cells[at], notebook.cells[at + 1]
    assert check.source.endswith("airq_nb.check_notebook_parameters()")
    by_hand = nbformat.v4.new_notebook(cells=[parameters, check], metadata=notebook.metadata)
    NotebookClient(by_hand, kernel_name="python3", timeout=60).execute()
    assert [cell.outputs for cell in by_hand.cells] == [[], []]

    injected = nbformat.v4.new_code_cell(PythonTranslator.codify({"db": "x", "tzz": "UTC"}))
    run = nbformat.v4.new_notebook(cells=[parameters, injected, check], metadata=notebook.metadata)
    client = NotebookClient(run, kernel_name="python3", timeout=60, allow_errors=True)
    client.execute()
    (error,) = run.cells[2].outputs
    assert error.ename == "UnknownParameterError" and "tzz: did you mean tz?" in error.evalue


def test_injected_cells_are_read_as_papermill_writes_them():
    from papermill.translators import PythonTranslator

    source = PythonTranslator.codify({"db": "x.db", "days": 3, "headless": True, "tz": "UTC"})
    assert injected_parameters(source) == ["db", "days", "headless", "tz"]
    assert injected_parameters('# The store\ndb = ""') is None  # a parameters cell
    assert assigned_names("a = 1\nb: int = 2\nif a:\n    c = 3\na = 4") == ["a", "b"]
