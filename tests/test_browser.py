"""A real browser: JupyterLab on loopback driven by headless Chromium (Debian's, via Playwright).

Runs the queue notebook, sees the table, purges with its confirmation and sees the count
change; runs the charts notebook and sees the Bokeh canvas draw. Screenshots go to
``test-artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import playwright.sync_api as playwright_api
import pytest

import airq_nb

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"

# The label and value cells of Bokeh's tooltips, which live inside shadow roots.
TOOLTIP_ROWS = """(() => {
    const rows = [];
    const walk = (root) => {
        for (const el of root.querySelectorAll('*')) {
            if (el.matches('.bk-tooltip-row-label, .bk-tooltip-row-value')) rows.push(el.innerText);
            if (el.shadowRoot) walk(el.shadowRoot);
        }
    };
    walk(document);
    return rows;
})()"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    # On a developer's machine without Chromium, skip; in CI (scripts/test installs it) a
    # missing browser must fail loudly rather than pass by skipping.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium at /usr/bin (scripts/test installs it as root)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path, openmeteo_server, request) -> Iterator[tuple[str, Path]]:
    """JupyterLab serving a copy of the notebooks, its kernels using a store in tmp_path.

    The store holds a week of readings and four queued messages, or nothing at all when the
    test is parametrized with ``lab="empty"``.
    """
    root = tmp_path / "lab"
    root.mkdir()
    for name in ("collector", "queue", "charts"):
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", root)
    db = tmp_path / "airq.db"
    if getattr(request, "param", "seeded") == "seeded":
        with airq_nb.open_store(db) as store:
            source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
            airq_nb.collect_now(store, source=source)
            for n in range(3):
                store.enqueue({"n": n}, topic="collect", delay=3600)
            store.enqueue({"note": HOSTILE}, topic="other", delay=3600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_NB_", "OPENWEATHER"))}
    env.update(
        AIRQ_NB_DB=str(db),
        AIRQ_NB_SOURCE="open-meteo",
        AIRQ_NB_OPENMETEO_URL=openmeteo_server.url,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
    )
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--IdentityProvider.token=", "--ServerApp.password=",
            f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # CI containers run as root; Jupyter refuses that unless told.
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterLab did not start within 60 s"
            time.sleep(0.3)
        yield base, db
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()


@pytest.fixture
def page(lab, request) -> Iterator[object]:
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )  # fmt: skip
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            tab = context.new_page()
            tab.set_default_timeout(60_000)
            tab.requested = []  # every URL the page asked for, to prove nothing left the box
            tab.on("request", lambda request: tab.requested.append(request.url))
            yield tab
            # The last state, pass or fail, for a person to look at.
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"), full_page=True)
        finally:
            browser.close()


def wait_for_connected_kernel(base: str, *, timeout: float = 60) -> None:
    """Wait until the notebook's kernel is up and the page is connected to it.

    Running cells before that makes Lab ask which kernel to use, and answering starts a
    second kernel that drops the queued cells.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/kernels", timeout=5) as reply:
            kernels = json.load(reply)
        if any(k["connections"] >= 1 and k["execution_state"] == "idle" for k in kernels):
            return
        time.sleep(0.3)
    raise AssertionError(f"no connected idle kernel within {timeout} s: {kernels}")


def open_and_run_all(page, base: str, name: str) -> None:
    page.goto(f"{base}/lab/tree/{name}.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    wait_for_connected_kernel(base)
    news = page.locator(".jp-toast-button", has_text="No")
    if news.count():
        news.first.click()  # the "Jupyter news?" toast would cover the screenshots
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator("li[data-command='runmenu:run-all']").click()


def test_queue_notebook_purge_with_confirmation_changes_the_count(lab, page):
    base, db = lab
    open_and_run_all(page, base, "queue")
    table = page.locator(".airq-queue-table")
    table.wait_for(timeout=20_000)
    summary = page.locator(".airq-queue-inspector .widget-html", has_text="messages").first
    page.wait_for_function(
        "() => document.querySelectorAll('.airq-queue-table .airq-select').length === 4"
    )
    assert "4 messages (4 queued)" in summary.inner_text()
    # The hostile payload is shown as text; neither its <img> nor its <script> ran.
    assert table.get_by_text("onerror", exact=False).count() >= 1
    assert page.locator(".airq-queue-table img").count() == 0
    assert page.title() != "pwned"
    page.screenshot(path=str(ARTIFACTS / "queue-before-purge.png"), full_page=True)

    page.get_by_role("button", name="Purge…").click()
    confirm = page.get_by_role("button", name="Yes, purge")
    confirm.wait_for()
    assert "Purge 4 messages?" in page.locator(".airq-queue-inspector").inner_text()
    page.screenshot(path=str(ARTIFACTS / "queue-purge-confirm.png"), full_page=True)
    with airq_nb.open_store(db) as store:
        assert store.queue.counts().total == 4  # asking deleted nothing
    confirm.click()
    page.locator(".airq-result", has_text="Purged 4 messages.").wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('.airq-queue-table .airq-select').length === 0"
    )
    assert "0 messages (empty)" in summary.inner_text()
    page.screenshot(path=str(ARTIFACTS / "queue-after-purge.png"), full_page=True)
    with airq_nb.open_store(db) as store:
        assert store.queue.counts().total == 0


def test_charts_notebook_renders_a_bokeh_canvas(lab, page):
    base, _ = lab
    open_and_run_all(page, base, "charts")
    # Bokeh 3 draws inside shadow roots; Playwright's CSS engine looks inside them.
    page.wait_for_function(
        """() => {
            const find = (root) => {
                for (const el of root.querySelectorAll('*')) {
                    if (el.tagName === 'CANVAS' && el.width > 300 && el.height > 150) return true;
                    if (el.shadowRoot && find(el.shadowRoot)) return true;
                }
                return false;
            };
            return find(document);
        }""",
        timeout=90_000,
    )
    canvases = page.locator(".jp-OutputArea canvas")
    assert canvases.count() >= 2  # the readings chart and the delivery-accuracy chart
    # The stats panel (a Bokeh Div, inside a shadow root that Playwright's locators pierce).
    page.get_by_text("Data last fetched").wait_for()
    assert page.get_by_text("Readings (7 days)").count() == 1
    page.wait_for_timeout(1000)  # let the glyphs paint before the screenshot
    page.screenshot(path=str(ARTIFACTS / "charts.png"), full_page=True)
    # Hovering the readings chart shows the hour and both values.
    page.locator(".bk-Figure").first.scroll_into_view_if_needed()
    box = page.locator(".bk-Figure").first.bounding_box()
    for step in range(4):
        page.mouse.move(
            box["x"] + box["width"] * (0.6 + step / 100), box["y"] + box["height"] * 0.6
        )
    page.wait_for_function(f"() => {TOOLTIP_ROWS}.some((text) => text.endsWith('µg/m³'))")
    rows = page.evaluate(TOOLTIP_ROWS)
    assert rows[:2][0] == "time:" and rows[1].endswith(" UTC")
    assert rows[2] == "PM2.5:" and rows[4] == "PM10:"
    page.screenshot(path=str(ARTIFACTS / "charts-hover.png"))
    page.get_by_text("Data last fetched").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "charts-stats.png"))
    # BokehJS came inline from the notebook: the page fetched nothing from anywhere else.
    offsite = [u for u in page.requested if not u.startswith((base, "data:", "blob:"))]
    assert offsite == []


@pytest.mark.parametrize("lab", ["empty"], indirect=True)
def test_collector_notebook_collects_in_the_background_and_shows_status(lab, page):
    base, db = lab
    open_and_run_all(page, base, "collector")
    status = page.locator(".airq-status")
    status.wait_for()
    # The first run is queued at once and delivered by the scheduler on the kernel's loop;
    # the panel refreshes itself (every 5 s) and shows the readings arriving.
    status.get_by_text("Readings London (open-meteo)").wait_for(timeout=60_000)
    assert "Last delivery" in status.inner_text()
    page.get_by_text("ok (").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "collector.png"), full_page=True)
    # The kernel is free while the collector runs in it.
    wait_for_connected_kernel(base, timeout=10)
    with airq_nb.open_store(db) as store:
        readings = airq_nb.read_readings(store)
        schedules = {info.name for info in airq_nb.scheduler_for(store).schedules()}
    assert len(readings) >= 24 * 6
    assert "collect:London" in schedules


@pytest.mark.parametrize("lab", ["empty"], indirect=True)
def test_charts_notebook_updates_in_place_when_readings_arrive(lab, page, openmeteo_server):
    base, db = lab
    copy = db.parent / "lab" / "charts.ipynb"
    notebook = nbformat.read(copy, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = parameters.source.replace("refresh_seconds = 30.0", "refresh_seconds = 1.0")
    assert "refresh_seconds = 1.0" in parameters.source
    nbformat.write(notebook, copy)

    open_and_run_all(page, base, "charts")
    readings_row = page.locator("table.airq-stats tr", has_text="Readings (7 days)")
    readings_row.wait_for()
    assert readings_row.inner_text().split()[-1] == "0"
    assert "no data yet" in page.locator("table.airq-stats").inner_text()
    outputs_before = page.locator(".jp-OutputArea-output").count()
    page.screenshot(path=str(ARTIFACTS / "charts-empty.png"))

    with airq_nb.open_store(db) as store:
        source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
        stored = airq_nb.collect_now(store, source=source).stored
    # The refresh task on the kernel's loop re-reads the store; no cell is run again.
    page.wait_for_function(
        """(stored) => {
            const find = (root) => {
                for (const el of root.querySelectorAll('table.airq-stats')) return el;
                for (const el of root.querySelectorAll('*')) {
                    const hit = el.shadowRoot && find(el.shadowRoot);
                    if (hit) return hit;
                }
                return null;
            };
            const table = find(document);
            return table && table.innerText.includes(stored.toLocaleString('en-US'));
        }""",
        arg=stored,
        timeout=30_000,
    )
    assert page.locator(".jp-OutputArea-output").count() == outputs_before
    assert "no data yet" not in page.locator("table.airq-stats").inner_text()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "charts-live.png"))
