"""The guides cannot drift from the code: docs/semantics.md's numbers are read from the code,
its misfire timeline is replayed, its recorded fault-injection table is checked, and every
``python`` block of docs/patterns.md runs.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import airq_nb
from airq_nb import FakeClock, Scheduler, read_delivery_log
from airq_nb.collector import _job as _collector
from airq_nb.scheduling import schedules as _schedules
from airq_nb.store import _json, _keys, _queue
from airq_nb.store import sqlite as _store
from airq_nb.store.sqlite import _change_wait

DOCS = Path(__file__).parents[1] / "docs"
SEMANTICS = (DOCS / "semantics.md").read_text()
PATTERNS = (DOCS / "patterns.md").read_text()


def flat(text: str) -> str:
    """The text with line breaks and runs of spaces as single spaces (prose wraps anywhere)."""
    return re.sub(r"\s+", " ", text)


def section(markdown: str, heading: str) -> str:
    """The body of the ``## heading...`` section."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section '## {heading}'"
    return match.group(1)


def table(markdown: str) -> list[list[str]]:
    """The rows (cells stripped) of the first Markdown table in ``markdown``, header first."""
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.lstrip().startswith("|")
    ]
    return [row for row in rows if not all(set(cell) <= set("-: ") for cell in row)]


# -- numbers --------------------------------------------------------------------------------

_UNITS = {"": 1, "s": 1, "levels": 1, "bytes": 1, "KiB": 1024, "day": 86400, "days": 86400}


def parse_value(text: str) -> Any:
    """A value cell: "none", "30 s", "2,048 bytes", "64 KiB", "[0.1, 1, 5] s", "10"."""
    if text == "none":
        return None
    listed = re.fullmatch(r"\[(.*)\]\s*(\w*)", text)
    if listed:
        scale = _UNITS[listed.group(2)]
        return [float(item) * scale for item in listed.group(1).split(",")]
    number = re.fullmatch(r"([\d,.]+)\s*(\w*)", text)
    assert number, f"cannot read the value {text!r}"
    return float(number.group(1).replace(",", "")) * _UNITS[number.group(2)]


def resolve(reference: str) -> Any:
    """`airq_nb.store._queue.NAME`, or `airq_nb.Thing(param)` / `airq_nb.Thing.method(param)`: a
    constant, or a parameter's default value."""
    match = re.fullmatch(r"([\w.]+?)(?:\((\w+)\))?", reference)
    assert match, reference
    dotted, parameter = match.groups()
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        break
    if parameter is None:
        return target
    return inspect.signature(target).parameters[parameter].default


def normalise(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, tuple | list):
        return [float(item) for item in value]
    return None if value is None else float(value)


GLANCE = table(section(SEMANTICS, "At a glance"))


@pytest.mark.parametrize("row", GLANCE[1:], ids=[row[0] for row in GLANCE[1:]])
def test_every_number_in_the_glance_table_is_the_codes(row: list[str]) -> None:
    _what, value, code = row
    assert normalise(resolve(code.strip("`"))) == parse_value(value)


def test_the_glance_table_has_its_columns_and_enough_rows() -> None:
    assert GLANCE[0] == ["Setting", "Value", "Code"]
    assert len(GLANCE) > 20


def _phrases() -> list[str]:
    backoff = _queue.DEFAULT_BACKOFF_SCHEDULE
    listed = "[" + ", ".join(f"{step:g}" for step in backoff) + "]"
    lease = inspect.signature(Scheduler).parameters["lease_seconds"].default
    defaults = inspect.signature(Scheduler).parameters
    tries_backoff = _collector.DEFAULT_BACKOFF
    return [
        f"`{listed}` seconds",
        f"**{len(backoff) + 1} attempts** in all",
        f"the last one about {sum(backoff):.0f} s after the first",
        f"at most {_queue.MAX_BACKOFF_ENTRIES} entries, each at most "
        f"{_queue.MAX_BACKOFF_SECONDS / 86400:g} day",
        f"`delay` and `retry_in` at most {_queue.MAX_DELAY_SECONDS / 86400:g} days",
        f"at most {_json.MAX_VALUE_BYTES // 1024} KiB as compact JSON",
        f"at most {_json.MAX_NESTING} levels of nesting",
        f"at most {_keys.MAX_KEY_BYTES:,} bytes once encoded",
        f"**Delays**: `0` to {_queue.MAX_DELAY_SECONDS / 86400:g} days",
        f"at most {_queue.MAX_BACKOFF_ENTRIES} retries, each step at most "
        f"{_queue.MAX_BACKOFF_SECONDS / 86400:g} day",
        f"every {lease / 3:g} s with the default {lease:g} s lease",
        f"at most {lease:g} s after the crash",
        f"`handler_timeout` ({defaults['handler_timeout'].default:g} s by default)",
        f"`concurrency` (default {defaults['concurrency'].default})",
        f"elsewhere it looks every {_change_wait.CHECK_INTERVAL * 1000:g} ms",
        f"waits up to {_store.DEFAULT_BUSY_TIMEOUT:g} s",
        f"at most {_schedules.SKIP_GRACE_SECONDS:g} s late",
        f"`max_catch_up` may be at most {_schedules.MAX_CATCH_UP_LIMIT:,}",
        f"up to {_collector.DEFAULT_TRIES} tries",
        f"waiting {tries_backoff[0]:g} s then {tries_backoff[1]:g} s",
        f"up to {_collector.MAX_WAIT_IN_RUN:g} s)",
    ]


@pytest.mark.parametrize("phrase", _phrases())
def test_numbers_in_the_prose_are_the_codes(phrase: str) -> None:
    assert phrase in flat(SEMANTICS)


def test_the_busy_timeout_in_patterns_is_the_codes() -> None:
    assert f"up to {_store.DEFAULT_BUSY_TIMEOUT:g} s, then `StoreError`" in flat(PATTERNS)


@pytest.mark.parametrize("document", ["semantics.md", "patterns.md"])
def test_code_references_and_links_resolve(document: str) -> None:
    text = (DOCS / document).read_text()
    for reference in set(re.findall(r"`(airq_nb(?:\.\w+)+)`", text)):
        resolve(reference)
    for target, anchor in re.findall(r"\]\(([\w.]*)#([\w-]+)\)", text):
        linked = (DOCS / target).read_text() if target else text
        slugs = {
            re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", linked, re.M)
        }
        assert anchor in slugs, f"{document}: link to {target}#{anchor} has no heading"
    for path in re.findall(r"`((?:notebooks|benchmarks|tests)/[\w./]+)`", text):
        assert (DOCS.parent / path).exists(), path


# -- the misfire timeline ------------------------------------------------------------------


def _at(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


def replay(misfire: str, max_catch_up: int, db_path: Path) -> tuple[list[str], str]:
    """The slots run at the 13:20 restart, and the slot of the run after them."""
    clock = FakeClock(_at(8, 50))

    async def scenario(store: airq_nb.Store) -> None:
        before = Scheduler(store, clock=clock)
        before.listen_queue(lambda _message: None, topic="report")
        before.schedule(
            "report", every=timedelta(hours=1), misfire=misfire, max_catch_up=max_catch_up
        )
        await before.run_until_idle(until=_at(9, 30))
        clock.set(_at(13, 20))
        after = Scheduler(store, clock=clock)
        after.listen_queue(lambda _message: None, topic="report")
        await after.run_until_idle(until=_at(14, 30))

    with airq_nb.open_store(db_path, clock=clock) as store:
        asyncio.run(scenario(store))
        log = read_delivery_log(store)
    slots = [row.scheduled_at for row in log.itertuples() if row.started_at >= _at(13, 20)]
    at_restart = [f"{s:%H:%M}" for s in slots if s < _at(13, 20)]
    following = [f"{s:%H:%M}" for s in slots if s >= _at(13, 20)]
    return at_restart, following[0]


TIMELINE = table(section(SEMANTICS, "Misfire policies"))


def test_the_timeline_story_matches_the_replay() -> None:
    story = flat(section(SEMANTICS, "Misfire policies"))
    for phrase in ("registered at 08:50 UTC", "stops at 09:30", "started again at 13:20"):
        assert phrase in story


@pytest.mark.parametrize("row", TIMELINE[1:], ids=[row[0] for row in TIMELINE[1:]])
def test_the_misfire_timeline_is_what_the_scheduler_does(row: list[str], tmp_path: Path) -> None:
    policy, runs, following = row
    misfire = re.match(r"`(\w+)`", policy).group(1)
    catch_up = re.search(r"max_catch_up=(\d+)", policy)
    limit = int(catch_up.group(1)) if catch_up else 10
    at_restart, next_slot = replay(misfire, limit, tmp_path / "timeline.db")
    assert re.findall(r"\d\d:\d\d", runs) == at_restart
    assert (runs.startswith("none")) is (not at_restart)
    assert following == next_slot


# -- the recorded fault-injection run -------------------------------------------------------


def test_the_recorded_fault_injection_table_is_the_suites() -> None:
    from reliability import conftest as reliability
    from reliability import test_kill9

    recorded = section(SEMANTICS, "Measured")
    header = reliability.format_table([]).splitlines()[0]
    assert header in recorded
    rows = {row[0]: row for row in table(recorded)[1:]}
    kill = rows["kill -9 consumers (2 processes)"]
    faults = len(test_kill9.POINTS) * test_kill9.SELF_KILLS_PER_POINT + test_kill9.EXTERNAL_KILLS
    assert (int(kill[1]), int(kill[2])) == (faults, test_kill9.MESSAGES)
    assert len(rows) >= 4
    assert all(row[3] == "0" for row in rows.values()), "a recorded run lost messages"
    assert f"{faults} kills over {test_kill9.MESSAGES:,} messages" in flat(SEMANTICS)


# -- patterns ---------------------------------------------------------------------------------

PATTERN_TITLES = [
    "Recurring jobs",
    "Exactly-once processing with an atomic nonce check",
    "Idempotent handlers",
    "Fan-out by topic",
    "Backfill after downtime",
    "Scheduled papermill runs",
    "Sharing one database between kernels",
]


def test_patterns_has_exactly_the_promised_sections() -> None:
    assert re.findall(r"^## (.+)$", PATTERNS, re.M) == PATTERN_TITLES


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.M | re.S)


@pytest.mark.parametrize(
    "title",
    [
        pytest.param(title, marks=pytest.mark.kernel) if "papermill" in title else title
        for title in PATTERN_TITLES
    ],
)
def test_each_patterns_code_runs(
    title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = python_blocks(section(PATTERNS, title))
    assert blocks, f"pattern {title!r} has no python block"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRQ_NB_DB", str(tmp_path / "default.db"))
    namespace: dict[str, Any] = {"__name__": "__pattern__"}

    async def run_like_a_kernel() -> None:
        # Each block is a notebook cell: same namespace, a running loop, top-level await.
        for number, source in enumerate(blocks, 1):
            code = compile(
                source,
                f"docs/patterns.md [{title}, block {number}]",
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            result = eval(code, namespace)
            if inspect.iscoroutine(result):
                await result

    asyncio.run(run_like_a_kernel())
    for value in namespace.values():
        if isinstance(value, airq_nb.Store):
            value.close()
