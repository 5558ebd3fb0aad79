"""Headless runs make a report: papermill runs the charts notebook without a warning, and the
saved notebook (exported to HTML) and the standalone report draw their charts in Chromium
with no kernel, legend swatches visible, nothing fetched from elsewhere."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from nbconvert import HTMLExporter

import airq_nb
from airq_nb.store.readings import upsert_readings
from airq_nb.ui import charts

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "charts.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")

# papermill run in a child process, its log lines carrying the logger's name.
RUN = """
import json, logging, sys
import papermill
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
source, output, parameters = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
papermill.execute_notebook(
    source, output, parameters=parameters, kernel_name="python3", progress_bar=False
)
"""

# Canvases Bokeh drew (inside shadow roots), with their size on the page.
CANVASES = """(() => {
    const found = [];
    const walk = (root) => {
        for (const el of root.querySelectorAll('*')) {
            if (el.tagName === 'CANVAS' && el.width > 300 && el.height > 150) found.push(el);
            if (el.shadowRoot) walk(el.shadowRoot);
        }
    };
    walk(document);
    return found.length;
})()"""

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium at /usr/bin (scripts/test installs it as root)",
    ),
]


def kernel_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_NB_", "OPENWEATHER"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def seeded(tmp_path, openmeteo_server) -> Path:
    """A store with a week of modelled London readings and a day of measured KF1 ones."""
    db = tmp_path / "airq.db"
    with airq_nb.open_store(db) as store:
        source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
        assert airq_nb.collect_now(store, source=source).stored > 0
        newest = int(airq_nb.read_readings(store).index.max().timestamp())
        kf1 = [
            airq_nb.Reading(time=newest - h * 3600, pm2_5=9.0 + h % 5, pm10=16.0 + h % 7)
            for h in range(30)
            if h != 7  # one missing hour
        ]
        upsert_readings(store, kf1, source="laqn", location="laqn:KF1", fetched_at=newest)
    return db


def run_charts(tmp_path: Path, **parameters) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = tmp_path / "charts-out.ipynb"
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(NOTEBOOK), str(output), json.dumps(parameters)],
        env=kernel_env(), cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    return done, output


def test_the_parameters_cell_parses_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="papermill"):
        found = papermill.inspect_notebook(str(NOTEBOOK))
    assert [r.getMessage() for r in caplog.records] == []
    assert set(found) == {
        "db", "headless", "days", "location", "tz", "mean", "report_html",
        "refresh_seconds", "index", "index_version",
    }  # fmt: skip
    assert found["tz"]["default"] == '"UTC"'
    # Each parameter's explanation is on the comment lines above it (short enough to read
    # at 1000 px; test_browser checks the width), not trailing the assignment.
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    lines = cell.source.splitlines()
    for name in found:
        (at,) = [i for i, line in enumerate(lines) if line.startswith(f"{name} = ")]
        assert "#" not in lines[at] and lines[at - 1].startswith("# "), name
    assert "Europe/London" in lines[lines.index('tz = "UTC"') - 1]


@pytest.fixture
def browser():
    import playwright.sync_api as playwright_api

    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser, path: Path):
    """A 1000 px wide tab on ``path`` that may fetch nothing but files (the nbconvert
    template links MathJax and require.js from a CDN; the charts must not need them)."""
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    page.errors = []
    page.offsite = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))

    def route(request_route) -> None:
        url = request_route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            request_route.continue_()
        else:
            page.offsite.append(url)
            request_route.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_function(f"{CANVASES} >= 5", timeout=60_000)
    page.wait_for_timeout(1500)  # let the glyphs paint
    return page


# Where BokehJS drew each figure's legend, in canvas pixels, in document order.
LEGEND_BOXES = """() => [...Bokeh.index.all_views()]
    .filter((view) => view.model.type === 'Legend')
    .map((view) => [view.bbox.x, view.bbox.y, view.bbox.width, view.bbox.height])"""


def legend_colors(page, index: int, colors: dict[str, str]) -> dict[str, int]:
    """How many pixels of each colour figure ``index``'s legend shows, as drawn: a swatch
    that is drawn has its colour's pixels inside the legend's box."""
    from io import BytesIO

    from PIL import Image

    figure = page.locator(".bk-Figure").nth(index)
    figure.scroll_into_view_if_needed()
    x, y, width, height = page.evaluate(LEGEND_BOXES)[index]
    assert width > 50 and height > 15
    image = Image.open(BytesIO(figure.screenshot())).convert("RGB")
    box = image.crop((int(x), int(y), int(x + width), int(y + height)))
    pixels = [box.getpixel((i, j)) for j in range(box.height) for i in range(box.width)]
    counts = {}
    for name, color in colors.items():
        rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
        counts[name] = sum(1 for p in pixels if all(abs(p[c] - rgb[c]) <= 24 for c in range(3)))
    return counts


def test_headless_run_saves_charts_that_draw_without_a_kernel(tmp_path, seeded, browser):
    report = tmp_path / "report" / "air.html"
    done, output = run_charts(
        tmp_path, db=str(seeded), headless=True, tz="Europe/London", report_html=str(report)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING papermill")]
    assert warnings == []
    assert "INFO papermill: Executing notebook" in done.stderr  # the log was captured

    notebook = nbformat.read(output, as_version=4)
    text = "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    # Each series named with its source (and its kind, once the store records it).
    assert "London · Open-Meteo" in text and "laqn:KF1 · LAQN" in text
    assert "missing 20" in text  # KF1's missing hour is named
    assert charts.LAQN_ATTRIBUTION in text
    assert f"report saved to {report}" in text

    exported = tmp_path / "charts-out.html"
    body, _ = HTMLExporter().from_notebook_node(notebook)
    exported.write_text(body, encoding="utf-8")
    page = open_page(browser, exported)
    assert page.errors == []
    today = page.locator(".airq-today")
    assert today.count() == 1 and "Is the air bad today?" in today.inner_text()
    assert page.get_by_text(charts.LAQN_ATTRIBUTION).count() >= 1
    page.screenshot(path=str(ARTIFACTS / "report-notebook.png"), full_page=True)
    # Hourly chart: PM2.5 blue and PM10 orange swatches; delivery chart: every outcome's.
    hourly = legend_colors(page, 0, {"PM2.5": "#1f77b4", "PM10": "#e6550d"})
    assert all(count > 10 for count in hourly.values()), hourly
    delivery = legend_colors(page, 4, charts.OUTCOME_COLORS)
    assert all(count > 10 for count in delivery.values()), delivery
    # Nothing the charts needed came from elsewhere: what was blocked was nbconvert's.
    assert all("bokeh" not in url for url in page.offsite), page.offsite

    standalone = open_page(browser, report)
    assert standalone.errors == [] and standalone.offsite == []
    assert "(DAQI " in standalone.locator(".airq-today").inner_text()
    assert standalone.get_by_text(charts.LAQN_ATTRIBUTION).count() == 1
    means = legend_colors(standalone, 1, {"WHO line": "#333333", "series": "#08306b"})
    assert all(count > 5 for count in means.values()), means
    standalone.screenshot(path=str(ARTIFACTS / "report-standalone.png"), full_page=True)
