"""docs/alerts.md cannot drift from the code: its numbers table is read from the code, its
references resolve, its test files exist and its CLI lines parse."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_docs import flat, resolve, section, table

from airq_nb.cli import build_parser

DOCS = Path(__file__).parents[1] / "docs"
ALERTS = (DOCS / "alerts.md").read_text()
GLANCE = table(section(ALERTS, "At a glance"))
_SCALE = {"s": 1, "min": 60, "h": 3600, "days": 86400}


def value_of(text: str, actual: object) -> object:
    """A cell read in the shape of the code's value: a duration in seconds, a list of
    seconds, a number in the parameter's own unit, or a word."""
    listed = re.fullmatch(r"\[(.*)\]\s*(\w+)", text)
    if listed:
        return [float(item) * _SCALE[listed.group(2)] for item in listed.group(1).split(",")]
    number = re.fullmatch(r"([\d.]+)\s*(\w*)", text)
    if number and isinstance(actual, timedelta):
        return float(number.group(1)) * _SCALE[number.group(2)]
    if number and not isinstance(actual, str):
        return float(number.group(1))  # in the unit the parameter is in (hours, runs)
    return text


def plain(actual: object) -> object:
    if isinstance(actual, timedelta):
        return actual.total_seconds()
    if isinstance(actual, tuple | list):
        return [float(item) for item in actual]
    if isinstance(actual, ZoneInfo):
        return actual.key
    if isinstance(actual, int | float):
        return float(actual)
    return actual


@pytest.mark.parametrize("row", GLANCE[1:], ids=[row[0] for row in GLANCE[1:]])
def test_every_number_in_the_glance_table_is_the_codes(row: list[str]) -> None:
    _what, written, code = row
    actual = resolve(code.strip("`"))
    assert value_of(written, actual) == plain(actual)


def test_references_and_test_files_resolve() -> None:
    for reference in set(re.findall(r"`(airq_nb(?:\.\w+)+)`", ALERTS)):
        resolve(reference)
    for path in re.findall(r"`((?:benchmarks|tests)/[\w./]+)`", ALERTS):
        assert (DOCS.parent / path).exists(), path


def test_the_cli_lines_parse() -> None:
    parser = build_parser()
    lines = re.findall(r"^airq-nb (alerts [^#\n]+?)\s*(?:#.*)?$", ALERTS, re.M)
    assert len(lines) == 3
    for line in lines:
        words = [w for w in re.sub(r"\[([^\]]*)\]", r"\1", line).split() if w != "|"]
        args = [
            {"NAME": "pm25", "N": "5", "CHANNEL": "team"}.get(w, w)
            for w in words
            if not w.startswith("[")
        ]
        parser.parse_args(args)


def test_the_back_off_prose_is_the_codes() -> None:
    from airq_nb.alerts import SEND_BACKOFF

    assert SEND_BACKOFF == (10, 60, 300, 900, 1800, 3600)
    assert "seven attempts over about 1 h 50 min" in flat(ALERTS)
    assert len(SEND_BACKOFF) + 1 == 7 and 6600 <= sum(SEND_BACKOFF) <= 6700
