"""A real browser: JupyterLab on loopback driven by headless Chromium (Debian's, via Playwright).

Runs the queue notebook, sees the table, purges with its confirmation and sees the count
change; runs the charts notebook and sees the Bokeh canvas draw. Screenshots go to
``test-artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import nbformat
import playwright.sync_api as playwright_api
import pytest
from alert_channels import JsonReceiver

import airq_nb
from airq_nb.store.readings import upsert_readings

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
# Where the 1000 px screenshots go for a person to look at (AIRQ_NB_SHOTS overrides).
SHOTS = Path(os.environ.get("AIRQ_NB_SHOTS", ARTIFACTS))
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


def fail_at_length(value: object) -> None:
    raise ValueError("Traceback: " + "boom " * 60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path, openmeteo_server, request, monkeypatch) -> Iterator[tuple[str, Path]]:
    """JupyterLab serving a copy of the notebooks, its kernels using a store in tmp_path.

    The store holds a week of readings and four queued messages, or nothing at all when the
    test is parametrized with ``lab="empty"``; ``lab="wide"`` adds a message whose topic and
    payload are long unbroken words; ``lab="alerts"`` adds an alert rule that is firing,
    and a channel ``team`` (a loopback webhook: ``request.node.alert_receiver``);
    ``lab="openaq"`` adds a week measured at OpenAQ location 2178 (a fake v3 API).
    """
    root = tmp_path / "lab"
    root.mkdir()
    for name in ("collector", "queue", "charts", "alerts"):
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", root)
    db = tmp_path / "airq.db"
    kind = getattr(request, "param", "seeded")
    receiver = None
    if kind == "alerts":
        receiver = request.node.alert_receiver = JsonReceiver()
        monkeypatch.setenv("AIRQ_NB_ALERT_TEAM", receiver.url)
    if kind in ("seeded", "wide", "alerts", "openaq"):
        with airq_nb.open_store(db) as store:
            source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
            airq_nb.collect_now(store, source=source)
            if kind == "openaq":
                fake = request.getfixturevalue("openaq_server")
                openaq = airq_nb.OpenAQSource(api_key=fake.api_key, base_url=fake.url)
                airq_nb.collect_now(
                    store, source=openaq, location=airq_nb.Location.parse("openaq:2178")
                )
            for n in range(3):
                store.enqueue({"n": n}, topic="collect", delay=3600)
            store.enqueue({"note": HOSTILE}, topic="other", delay=3600)
            if kind == "wide":
                # Long unbroken texts: the cells that could push past their columns.
                long_topic = "topic-" + "x" * 120
                store.enqueue({"word": "y" * 400}, topic=long_topic, delay=3600)
                # A dead letter with a long error, and a schedule for the schedules table.
                scheduler = airq_nb.Scheduler(store)
                scheduler.listen_queue(fail_at_length, topic="jobs")
                store.enqueue({"n": 9}, topic="jobs", backoff_schedule=[])
                scheduler.schedule("collect:London", every=timedelta(hours=1), topic="collect")
                asyncio.run(scheduler.run_until_idle(timeout=30))
                scheduler.close()
    if kind == "alerts":
        # The rule started firing 20 hours ago (evaluated then, on a clock set back), so
        # the charts have a period to shade; it is still firing now.
        with airq_nb.open_store(db, clock=airq_nb.FakeClock(time.time() - 20 * 3600)) as store:
            airq_nb.set_alert_rule(
                store,
                airq_nb.AlertRule(
                    "pm25-high", pollutant="pm2_5", above=1, location="London",
                    notify=("team",),
                ),
            )  # fmt: skip
            assert [t.after for t in airq_nb.evaluate_alerts(store)] == ["firing"]
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
        **({"AIRQ_NB_ALERT_TEAM": receiver.url} if receiver is not None else {}),
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
        if receiver is not None:
            receiver.close()


@pytest.fixture
def page(lab, request) -> Iterator[object]:
    ARTIFACTS.mkdir(exist_ok=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
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
    kernels: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/kernels", timeout=5) as reply:
                kernels = json.load(reply)
        except urllib.error.HTTPError:
            # jupyter_server answers 500 to a listing taken while a kernel is starting (its
            # last_activity is not set yet); the next poll sees it.
            time.sleep(0.3)
            continue
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


@pytest.mark.parametrize("lab", ["alerts"], indirect=True)
def test_alerts_notebook_shows_the_firing_rule_and_its_test_button_sends(lab, page, request):
    base, db = lab
    receiver = request.node.alert_receiver
    page.set_viewport_size({"width": 1000, "height": 900})
    open_and_run_all(page, base, "alerts")
    panel = page.locator(".airq-alerts")
    panel.wait_for(timeout=60_000)
    panel.get_by_text("pm25-high").first.wait_for()
    rules = " ".join(panel.inner_text().split())
    assert "firing" in rules and "London" in rules
    assert receiver.url not in page.content()  # the channel by name, never its URL
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "alerts-1000.png"))
    panel.get_by_role("button", name="Test team").click()
    page.get_by_text("test notification sent to team").wait_for(timeout=30_000)
    (post,) = receiver.wait_posts(1)
    assert "test" in post["title"].lower()
    page.get_by_text("Add, edit or delete a rule", exact=True).click()
    panel.get_by_role("button", name="Save rule").wait_for()
    page.screenshot(path=str(SHOTS / "alerts-1000-form.png"))
    with airq_nb.open_store(db) as store:
        assert "test sent" in set(airq_nb.alert_history(store)["event"])


def charts_at_1000(page, base: str):
    """Run the charts notebook at 1000 px; its first figure, scrolled into view and drawn."""
    page.set_viewport_size({"width": 1000, "height": 900})
    open_and_run_all(page, base, "charts")
    page.get_by_text("Data last fetched").wait_for(timeout=90_000)
    figure = page.locator(".bk-Figure").first
    figure.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    return figure


@pytest.mark.parametrize("lab", ["alerts"], indirect=True)
def test_charts_notebook_shades_the_hours_a_rule_was_firing(lab, page):
    base, _ = lab
    figure = charts_at_1000(page, base)
    page.screenshot(path=str(SHOTS / "charts-1000-alert-shading.png"))
    # The hour hover near the right end (inside the firing period) names the rule.
    box = figure.bounding_box()
    for step in range(4):
        page.mouse.move(
            box["x"] + box["width"] * (0.9 + step / 100), box["y"] + box["height"] * 0.6
        )
    page.wait_for_function(f"() => {TOOLTIP_ROWS}.some((text) => text.endsWith('µg/m³'))")
    rows = page.evaluate(TOOLTIP_ROWS)
    # All locations are shown: the rule is named with its place.
    assert rows[rows.index("alerts firing:") + 1] == "pm25-high (London)", rows
    page.screenshot(path=str(SHOTS / "charts-1000-alert-hover.png"))


@pytest.mark.parametrize("lab", ["openaq"], indirect=True)
def test_charts_notebook_draws_openaq_measurements_with_each_providers_licence(lab, page):
    base, _ = lab
    charts_at_1000(page, base)
    # Today's line names the site behind the OpenAQ id.
    page.get_by_text("openaq:2178 – London Marylebone Road · OpenAQ (measured)").first.wait_for()
    page.screenshot(path=str(SHOTS / "charts-1000-openaq.png"))
    credit = page.get_by_text("AURN: Open Government Licence v3.0").first
    assert "Defra, UK-AIR" in credit.inner_text()
    credit.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "charts-1000-openaq-credit.png"))


@pytest.mark.parametrize("lab", ["empty"], indirect=True)
def test_collector_notebook_collects_in_the_background_and_shows_status(lab, page):
    base, db = lab
    page.set_viewport_size({"width": 1000, "height": 900})
    with airq_nb.open_store(db) as store:
        # Another topic's trouble must not show in the collector's panel.
        store.enqueue({"n": 1}, topic="nobody-listens")
    open_and_run_all(page, base, "collector")
    status = page.locator(".airq-status")
    status.wait_for()
    # The first run is queued at once and delivered by the scheduler on the kernel's loop;
    # the panel refreshes itself (every 5 s) and shows the readings arriving.
    status.get_by_text("hourly readings").wait_for(timeout=60_000)
    text = status.inner_text()
    assert "collect:London, every 1.0 h" in text
    assert "Last run" in text and "Next run" in text and "Newest reading" in text
    assert "Outcome\tok" in text or "Outcome ok" in " ".join(text.split())
    assert "nobody-listens" not in text
    # "Run All" waited for the first collection: the last cell printed readings.
    page.get_by_text("hourly readings stored for London").wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "collector-1000-end.png"))
    status.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "collector-1000.png"))
    page.screenshot(path=str(ARTIFACTS / "collector.png"), full_page=True)
    # The kernel is free while the collector runs in it.
    wait_for_connected_kernel(base, timeout=10)
    with airq_nb.open_store(db) as store:
        readings = airq_nb.read_readings(store)
        schedules = {info.name for info in airq_nb.scheduler_for(store).schedules()}
    assert len(readings) >= 24 * 6
    assert "collect:London" in schedules


# Every queue-table cell that pokes out of its grid column, and every cut button label.
LAYOUT_PROBLEMS = """(() => {
    const problems = [];
    const table = document.querySelector('.airq-queue-table');
    const columns = getComputedStyle(table).gridTemplateColumns.split(' ').length;
    const cells = Array.from(table.children);
    cells.forEach((cell, i) => {
        const box = cell.getBoundingClientRect();
        const next = (i % columns) < columns - 1 ? cells[i + 1] : null;
        if (next && box.right > next.getBoundingClientRect().left + 0.5) {
            problems.push(`cell ${i} overlaps the next (${box.right} > ${next.getBoundingClientRect().left})`);
        }
        for (const el of [cell, ...cell.querySelectorAll('*')]) {
            const style = getComputedStyle(el);
            const clipped = style.overflow === 'hidden' || style.overflowX === 'hidden';
            if (el.scrollWidth > el.clientWidth + 1 && !clipped && el.clientWidth > 0) {
                problems.push(`cell ${i} <${el.tagName}> overflows: ${el.scrollWidth} > ${el.clientWidth}`);
            }
            if (el.getBoundingClientRect().right > box.right + 0.5) {
                // Wider than the cell is fine only if something between it and the cell
                // clips it (the cell's ellipsis); otherwise it is drawn over the next column.
                let clipper = el.parentElement;
                while (clipper !== cell && getComputedStyle(clipper).overflow !== 'hidden') {
                    clipper = clipper.parentElement;
                }
                if (getComputedStyle(clipper).overflow !== 'hidden') {
                    problems.push(`cell ${i} <${el.tagName}> sticks out`);
                }
            }
        }
    });
    for (const button of document.querySelectorAll('.airq-queue-inspector button')) {
        if (button.offsetParent === null) continue;  // hidden (the purge confirmation)
        if (button.scrollWidth > button.clientWidth + 1) {
            problems.push(`button "${button.innerText}" is cut: ${button.scrollWidth} > ${button.clientWidth}`);
        }
    }
    const inspector = document.querySelector('.airq-queue-inspector');
    if (inspector.scrollWidth > inspector.clientWidth + 1) {
        problems.push(`the inspector is wider than its output: ${inspector.scrollWidth} > ${inspector.clientWidth}`);
    }
    const box = document.querySelector('.airq-table-box');
    const scrolls = getComputedStyle(box).overflowX;
    if (box.scrollWidth > box.clientWidth + 1 && !['auto', 'scroll'].includes(scrolls)) {
        problems.push(`the table is wider than its box and does not scroll (${scrolls})`);
    }
    return problems;
})()"""


@pytest.mark.parametrize("lab", ["wide"], indirect=True)
def test_queue_table_fits_at_1000_px_and_says_what_pause_pauses(lab, page):
    base, db = lab
    page.set_viewport_size({"width": 1000, "height": 900})
    open_and_run_all(page, base, "queue")
    page.wait_for_function(
        "() => document.querySelectorAll('.airq-queue-table .airq-select').length === 6"
    )
    page.locator(".jp-DirListing").first.wait_for()  # the file browser is open beside it
    page.wait_for_timeout(500)
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    page.locator(".airq-queue-table").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "queue-1000-table.png"))
    # At 1000 px every column is on screen (long texts end in "…", whole in their title).
    assert table_box_widths(page)[0] <= table_box_widths(page)[1]
    assert page.locator(".airq-queue-table .airq-head", has_text="payload").is_visible()
    # Pause says what it pauses, and the scope picker is on screen.
    pause = page.get_by_role("button", name="Pause all topics")
    assert pause.is_visible()
    scope = page.locator(".airq-queue-inspector .widget-dropdown", has_text="pause")
    assert scope.is_visible()
    shown = scope.bounding_box()
    assert shown["x"] >= 0 and shown["x"] + shown["width"] <= 1000
    # The store-wide line names the next delivery and the last one with its time.
    store_line = page.locator(".airq-store-status").inner_text()
    assert "next delivery due: " in store_line
    assert "last delivery: failed, now a dead letter (jobs) at " in store_line
    # The schedules list shows the collector's schedule, and later its paused delivery.
    schedules = page.locator(".airq-schedules")
    assert "collect:London" in schedules.inner_text()
    page.screenshot(path=str(SHOTS / "queue-1000.png"))

    # Select all, see a whole payload, export the list as CSV (no server round-trip).
    page.locator(".airq-select-all input").check()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.airq-queue-table .airq-select input'))"
        ".every((box) => box.checked)"
    )
    with page.expect_download() as download:
        page.locator("a.airq-csv").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.count("\n") == 7 and "y" * 400 in csv_text
    page.locator(".airq-select-all input").uncheck()
    # The kernel unticks the rows; tick one only after that, or its echo would untick it.
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.airq-queue-table .airq-select input'))"
        ".every((box) => !box.checked)"
    )
    page.locator(".airq-queue-table .airq-select input").first.check()
    page.get_by_role("button", name="View payload").click()
    page.locator(".airq-payload pre").first.wait_for()
    assert page.title() != "pwned"

    # Pausing one topic: the button and the result line name it.
    page.locator(".airq-queue-inspector select").nth(2).select_option(label="topic collect")
    page.get_by_role("button", name="Pause topic collect").click()
    page.locator(".airq-result", has_text="Paused delivery of topic collect.").wait_for()
    page.get_by_role("button", name="Resume topic collect").wait_for()
    with airq_nb.open_store(db) as store:
        assert store.queue.paused_topics() == ("collect",)
    schedules.get_by_text("topic paused").wait_for()
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    page.screenshot(path=str(SHOTS / "queue-1000-paused.png"))
    page.locator(".airq-payload").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "queue-1000-payload.png"))
    # Narrower still, the table scrolls sideways inside its box rather than overlap.
    page.set_viewport_size({"width": 800, "height": 900})
    page.wait_for_timeout(500)
    scroll_width, client_width = table_box_widths(page)
    assert scroll_width > client_width
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    page.locator(".airq-queue-table").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "queue-800-scrolls.png"))


def table_box_widths(page) -> tuple[int, int]:
    """The queue table box's scrollWidth and clientWidth (wider content means it scrolls)."""
    return tuple(
        page.evaluate(
            "(() => { const b = document.querySelector('.airq-table-box');"
            " return [b.scrollWidth, b.clientWidth]; })()"
        )
    )


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


# Each line of a cell's editor that is wider than the editor (it would scroll sideways).
EDITOR_OVERFLOWS = """(cell) => {
    const scroller = cell.querySelector('.cm-scroller');
    const limit = scroller.getBoundingClientRect().right;
    return Array.from(cell.querySelectorAll('.cm-line'))
        .filter((line) => {
            const range = document.createRange();
            range.selectNodeContents(line);
            return range.getBoundingClientRect().right > limit + 0.5;
        })
        .map((line) => line.innerText);
}"""


def test_every_line_of_the_notebooks_fits_at_1000_px_beside_the_file_browser(lab, page):
    base, _ = lab
    page.set_viewport_size({"width": 1000, "height": 900})
    for name in ("collector", "queue", "charts", "alerts"):
        # ?reset: a fresh workspace, so the notebook opened before is not restored beside it.
        page.goto(f"{base}/lab/tree/{name}.ipynb?reset")
        page.locator(".jp-Notebook .jp-CodeCell .cm-line").first.wait_for()
        page.locator(".jp-DirListing").first.wait_for()  # the file browser is open beside it
        news = page.locator(".jp-toast-button", has_text="No")
        if news.count():
            news.first.click()
        page.wait_for_timeout(500)
        cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
        assert page.locator(".jp-NotebookPanel").count() == 1
        parameters = cells.filter(has_text="headless = ").first
        assert "db = " in parameters.inner_text()
        page.screenshot(path=str(SHOTS / f"{name}-parameters-1000.png"))
        for index in range(cells.count()):
            cell = cells.nth(index)
            cell.scroll_into_view_if_needed()
            assert cell.evaluate(EDITOR_OVERFLOWS) == [], f"{name} code cell {index}"


# The readings chart's view in the page (BokehJS's index of views), and its x range.
READINGS_RANGE = """() => {
    const view = window.Bokeh && Bokeh.index.query_one(
        (v) => v.model && v.model.name === 'readings_chart');
    if (!view) return null;
    const r = view.model.x_range, box = view.el.getBoundingClientRect();
    return {start: r.start, end: r.end, reset_start: r.reset_start,
            box: [box.x, box.y, box.width, box.height]};
}"""
PM10_START = """() => Bokeh.index.query_one(
    (v) => v.model && v.model.name === 'daqi_chart:pm10').model.x_range.start"""


def test_a_zoom_in_the_browser_survives_the_refresh_when_an_hour_passes(lab, page):
    base, db = lab
    copy = db.parent / "lab" / "charts.ipynb"
    offset = db.parent / "clock-offset"
    offset.write_text("0")
    notebook = nbformat.read(copy, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = parameters.source.replace("refresh_seconds = 30.0", "refresh_seconds = 1.0")
    (setup,) = [c for c in notebook.cells if "open_store(db or None)" in c.source]
    # The kernel's clock runs ahead by what the test writes to a file: an hour passes on demand.
    setup.source = setup.source.replace(
        "store = airq_nb.open_store(db or None)",
        "from pathlib import Path\n\n"
        "class Ahead(airq_nb.SystemClock):\n"
        "    def now(self):\n"
        f"        return super().now() + float(Path({str(offset)!r}).read_text())\n\n"
        "store = airq_nb.open_store(db or None, clock=Ahead())",
    )
    assert "clock=Ahead()" in setup.source and "refresh_seconds = 1.0" in parameters.source
    nbformat.write(notebook, copy)

    page.set_viewport_size({"width": 1000, "height": 900})
    open_and_run_all(page, base, "charts")
    page.wait_for_function(f"() => ({READINGS_RANGE})() !== null", timeout=90_000)
    page.evaluate(
        "() => Bokeh.index.query_one((v) => v.model && v.model.name === 'readings_chart')"
        ".el.scrollIntoView({block: 'center'})"
    )
    # Both menus drawn, then let the charts paint and the widget's sync settle: a zoom made
    # while the page is still wiring the widgets up does not reach the kernel.
    page.locator(".widget-dropdown", has_text="Index").locator("select").wait_for()
    page.wait_for_timeout(3000)
    home = page.evaluate(READINGS_RANGE)
    x, y, width, height = home["box"]
    # Zoom with the mouse wheel over the middle of the plot (the chart's active scroll tool).
    page.mouse.move(x + width * 0.5, y + height * 0.55)
    for _ in range(3):
        page.mouse.wheel(0, -200)
        page.wait_for_timeout(100)
    page.wait_for_function(
        f"(home) => {{ const r = ({READINGS_RANGE})(); "
        "return r.end - r.start < 0.8 * (home.end - home.start); }",
        arg=home,
    )
    page.wait_for_timeout(2000)  # the widget sends the new range to the kernel
    zoomed = page.evaluate(READINGS_RANGE)
    pm10_before = page.evaluate(PM10_START)

    # An hour passes and a new reading arrives; the 1 s refresh task re-reads the store.
    offset.write_text("3600")
    with airq_nb.open_store(db) as store:
        newest = int(airq_nb.read_readings(store).index.max().timestamp())
        upsert_readings(
            store,
            [airq_nb.Reading(time=newest + 3600, pm2_5=40.0, pm10=60.0)],
            source="open-meteo",
            location="London",
            fetched_at=newest + 3600,
        )
    # The refresh reached the page: Reset now goes to the new window, and the PM10 chart,
    # left alone, moved on by the hour.
    page.wait_for_function(
        f"(old) => ({READINGS_RANGE})().reset_start > old", arg=home["reset_start"], timeout=30_000
    )
    page.wait_for_function(f"(old) => ({PM10_START})() > old", arg=pm10_before, timeout=30_000)
    page.wait_for_timeout(2500)  # two more refreshes
    after = page.evaluate(READINGS_RANGE)
    page.screenshot(path=str(SHOTS / "charts-zoom-after-refresh.png"))
    assert (after["start"], after["end"]) == (zoomed["start"], zoomed["end"])


DAQI_PM2_5 = """() => {
    const view = window.Bokeh && Bokeh.index.query_one(
        (v) => v.model && v.model.name === 'daqi_chart:pm2_5');
    if (!view) return null;
    const spans = view.model.renderers.find((r) => r.name === 'short_spans:pm2_5');
    const box = view.el.getBoundingClientRect();
    return {spans: spans.data_source.data.left.length, box: [box.x, box.y, box.width, box.height]};
}"""


def test_charts_notebook_draws_capture_at_1000_px(lab, page):
    """Eight hours gone from the middle of the week: the means over them are hatched and
    faded, and the hover says how many of their 24 hours they had."""
    import sqlite3

    base, db = lab
    with airq_nb.open_store(db) as store:
        newest = int(airq_nb.read_readings(store).index.max().timestamp())
    gone = (newest - 60 * 3600, newest - 52 * 3600)
    with sqlite3.connect(db) as raw:
        raw.execute("DELETE FROM readings WHERE time BETWEEN ? AND ?", gone)
    page.set_viewport_size({"width": 1000, "height": 900})
    open_and_run_all(page, base, "charts")
    page.locator(".jp-DirListing").first.wait_for()  # the file browser is open beside it
    page.wait_for_function(f"() => ({DAQI_PM2_5})() !== null", timeout=90_000)
    page.evaluate(
        "() => Bokeh.index.query_one((v) => v.model && v.model.name === 'daqi_chart:pm2_5')"
        ".el.scrollIntoView({block: 'center'})"
    )
    page.wait_for_timeout(1500)
    drawn = page.evaluate(DAQI_PM2_5)
    # The first hours of the window (no day before them yet) and the gap's 24 hours after.
    assert drawn["spans"] == 2
    x, y, width, height = drawn["box"]
    # Over the hours just after the gap, whose running means lack 9 of their 24 hours.
    target = None
    for step in range(60):
        page.mouse.move(x + width * (0.55 + step / 200), y + height * 0.5)
        page.wait_for_timeout(50)
        rows = page.evaluate(TOOLTIP_ROWS)
        target = next((row for row in rows if row.startswith("no 24-h mean:")), None)
        if target:
            break
    assert target and target.endswith("needs 75 %"), rows
    page.screenshot(path=str(SHOTS / "charts-capture-1000.png"))


# The title of one of the band charts, from BokehJS's index of views.
BAND_TITLE = """(name) => {
    const view = window.Bokeh && Bokeh.index.query_one((v) => v.model && v.model.name === name);
    return view ? view.model.title.text : null;
}"""


def test_index_menu_redraws_the_bands_and_they_read_at_1000_px(lab, page):
    base, _ = lab
    page.set_viewport_size({"width": 1000, "height": 900})
    page.goto(f"{base}/lab/tree/charts.ipynb?reset")
    page.locator(".jp-DirListing").first.wait_for()  # the file browser stays open beside it
    open_and_run_all(page, base, "charts")
    page.wait_for_function(f"() => ({BAND_TITLE})('daqi_chart:pm2_5') !== null", timeout=90_000)
    # London's readings: the UK DAQI, chosen by place.
    assert "UK DAQI bands" in page.evaluate(BAND_TITLE, "daqi_chart:pm2_5")
    assert "chosen by place" in page.locator(".airq-today").first.inner_text()
    chart = page.locator(".bk-Figure").nth(1)
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "charts-index-daqi-1000.png"))
    box = chart.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1000  # the band axis is on screen
    # The Index menu: the US EPA AQI 2024, redrawn in place.
    menu = page.locator(".widget-dropdown", has_text="Index").locator("select")
    menu.select_option(label="US EPA AQI 2024")
    page.wait_for_function(
        f"() => (({BAND_TITLE})('daqi_chart:pm2_5') || '').includes('US EPA AQI (2024)')"
    )
    page.locator(".bk-Figure").nth(1).scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "charts-index-epa-1000.png"))
    assert "US EPA Air Quality Index 2024" in page.locator(".airq-today").first.inner_text()
    menu.select_option(label="European AQI 2024")
    page.wait_for_function(
        f"() => (({BAND_TITLE})('daqi_chart:pm10') || '').includes('European AQI (2024)')"
    )
    page.locator(".bk-Figure").nth(2).scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "charts-index-eaqi-1000.png"))
    key = page.locator(".airq-index-key").first
    key.scroll_into_view_if_needed()
    shown = key.bounding_box()
    assert shown["x"] + shown["width"] <= 1000  # the key's six levels fit beside the browser
    page.screenshot(path=str(SHOTS / "charts-index-key-1000.png"))
