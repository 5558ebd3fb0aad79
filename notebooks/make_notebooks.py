"""Write the three notebooks' sources (no outputs) with nbformat: ``python notebooks/make_notebooks.py``.

The ``.ipynb`` files are committed; edit the cells here and run this again so the notebooks
stay clean (no outputs, no execution counts) and consistent with one another.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def parameters(source: str) -> nbformat.NotebookNode:
    return new_code_cell(source.strip(), metadata={"tags": ["parameters"]})


def code(source: str) -> nbformat.NotebookNode:
    return new_code_cell(source.strip())


def markdown(source: str) -> nbformat.NotebookNode:
    return new_markdown_cell(source.strip())


COLLECTOR = [
    markdown(
        """
# airq_nb — the collector

Collects London's PM2.5 and PM10 every hour **from inside this kernel** into the SQLite store,
and shows its status below. The kernel stays usable: the collector is a background task on
its event loop. Run all cells; data arrives within a minute (Open-Meteo needs no API key).

Headless (cron, CI): `papermill notebooks/collector.ipynb out.ipynb -p headless True` collects
what is due, prints what it fetched, and exits; a failed collection fails the run.
"""
    ),
    parameters(
        """
db_path = ""  # the SQLite store; "" means $AIRQ_NB_DB or the default path
source = ""  # "open-meteo" (no key) or "openweathermap" (OPENWEATHER_API_KEY); "" = from env
location = "London"  # "London", or "name,latitude,longitude"
headless = False  # True: collect what is due, print a record, exit (papermill, cron)
"""
    ),
    code(
        """
import airq_nb

store = airq_nb.open_store(db_path or None)
where = airq_nb.Location.parse(location)
collector_source = airq_nb.source_from_env(source or None)
print(f"store {store.path}; source {collector_source.name}; location {where.name}")
"""
    ),
    code(
        """
if headless:
    # Run what is due (a first run backfills 7 days; missed hours coalesce into one run) and
    # return; a failed run raises here and fails the papermill run with its error.
    summary = await airq_nb.collect_until_idle(store, source=collector_source, location=where)
    next_due = f"{summary.next_due:%Y-%m-%d %H:%M} UTC" if summary.next_due else "not planned"
    print(
        f"{where.name} from {collector_source.name}: {summary.delivered} collection run(s)"
        f" delivered; next run due {next_due}"
    )
else:
    from airq_nb.widgets import StatusPanel

    # Starts the hourly schedule on this kernel's event loop (idempotent on re-run); a new
    # schedule's first run is queued at once, so data arrives within a minute.
    scheduler = airq_nb.start_collector(store, source=collector_source, location=where)
    display(StatusPanel(store))
"""
    ),
    code(
        """
readings = airq_nb.read_readings(store, location=where.name)
if readings.empty:
    print("no readings stored yet (a first collection may be running: re-run this cell)")
else:
    print(
        f"{len(readings)} hourly readings stored for {where.name}, "
        f"{readings.index.min():%Y-%m-%d %H:%M} to {readings.index.max():%Y-%m-%d %H:%M} UTC"
    )
    print(readings.tail(6).to_string())
"""
    ),
]

QUEUE = [
    markdown(
        """
# airq_nb — the queue

Every message in the store's durable queue: filter by state and topic, tick messages to
delete them, re-drive dead letters, pause or resume a topic, purge (after a confirmation),
and run a schedule now. The table refreshes itself while the kernel is idle.
"""
    ),
    parameters(
        """
db_path = ""  # the SQLite store; "" means $AIRQ_NB_DB or the default path
headless = False  # True: print the queue as text instead of refreshing widgets
"""
    ),
    code(
        """
import airq_nb
from airq_nb.widgets import QueueInspector

store = airq_nb.open_store(db_path or None)
# This kernel's scheduler for the store (the same object the collector notebook uses when it
# runs in this kernel); the inspector only reads and edits schedules through it.
scheduler = airq_nb.scheduler_for(store)
inspector = QueueInspector(store, scheduler, autostart=not headless)
inspector
"""
    ),
    code(
        """
if headless:
    print(inspector.as_text())
"""
    ),
]

CHARTS = [
    markdown(
        """
# airq_nb — charts

PM2.5 and PM10 over the last seven days with the WHO 2021 24-hour guidelines
(15 µg/m³ and 45 µg/m³), the lateness of each delivery, and the collector's status.
Hover for values, drag to pan, scroll to zoom, click a legend entry to hide a series.
The charts update in place as new readings arrive. Bokeh loads from the package: no CDN.
"""
    ),
    parameters(
        """
db_path = ""  # the SQLite store; "" means $AIRQ_NB_DB or the default path
headless = False  # True: draw once and exit (papermill); False: keep refreshing
days = 7  # how far back to chart
refresh_seconds = 30.0  # how often the live chart re-reads the store
"""
    ),
    code(
        """
import airq_nb
from airq_nb import charts

charts.setup_notebook()
store = airq_nb.open_store(db_path or None)
live = charts.LiveChart(store, days=days, interval=refresh_seconds)
if not headless:
    live.start()
live
"""
    ),
    code(
        """
if headless:
    print(live.as_text())
"""
    ),
]


def main() -> None:
    for name, cells in (("collector", COLLECTOR), ("queue", QUEUE), ("charts", CHARTS)):
        notebook = new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                    "name": "python3",
                },
                "language_info": {"name": "python"},
            },
        )
        for number, cell in enumerate(notebook.cells):
            # Stable ids keep regenerated notebooks diff-free.
            cell["id"] = f"{name}-{number}"
        nbformat.validate(notebook)
        nbformat.write(notebook, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
