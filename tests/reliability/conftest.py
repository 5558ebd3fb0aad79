"""Fault-injection suite: shared helpers and the summary table printed at the end of the run.

Each test that injects faults records a row (scenario, faults injected, messages, lost,
duplicated, notes) with the ``reliability_report`` fixture; ``pytest_terminal_summary``
prints them as a table, and writes them as JSON to ``$AIRQ_NB_RELIABILITY_REPORT`` when set
(that is how the table in docs/semantics.md is made).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

WORKERS = Path(__file__).parent / "workers"

_ROWS: list[dict[str, Any]] = []
_COLUMNS = ("scenario", "faults", "messages", "lost", "duplicated", "notes")


@pytest.fixture
def reliability_report() -> Callable[..., None]:
    """Record one row of the end-of-suite summary table."""

    def record(
        scenario: str, *, faults: int, messages: int, lost: int, duplicated: int, notes: str = ""
    ) -> None:
        _ROWS.append(
            {
                "scenario": scenario,
                "faults": faults,
                "messages": messages,
                "lost": lost,
                "duplicated": duplicated,
                "notes": notes,
            }
        )

    return record


@pytest.fixture
def worker_command() -> Callable[..., list[str]]:
    """The command line that runs one of the worker scripts with this interpreter."""

    def command(script: str, *args: object) -> list[str]:
        return [sys.executable, str(WORKERS / script), *map(str, args)]

    return command


def format_table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as a Markdown table (also pasted into docs/semantics.md)."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[column]) for column in _COLUMNS) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    terminalreporter.section("airq_nb reliability summary")
    terminalreporter.write_line(format_table(_ROWS))
    target = os.environ.get("AIRQ_NB_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(json.dumps(_ROWS, indent=2) + "\n")
