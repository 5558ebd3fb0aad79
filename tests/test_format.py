"""The one formatter: times in UTC or Europe/London (GMT/BST), spans, due and age texts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import airq_nb
from airq_nb._format import age_text, due_text, one_line, outcome_text, span_text, time_text

WINTER = datetime(2024, 1, 15, 12, 30, 5, tzinfo=UTC)
SUMMER = datetime(2024, 7, 15, 12, 30, 5, tzinfo=UTC)


def test_times_say_their_zone_gmt_in_winter_bst_in_summer():
    assert time_text(WINTER) == "2024-01-15 12:30 UTC"
    assert time_text(WINTER, tz="Europe/London") == "2024-01-15 12:30 GMT"
    assert time_text(SUMMER, tz="Europe/London") == "2024-07-15 13:30 BST"
    assert time_text(SUMMER.timestamp(), tz="Europe/London", seconds=True) == (
        "2024-07-15 13:30:05 BST"
    )
    # A naive datetime is UTC, as every stored time is.
    assert time_text(SUMMER.replace(tzinfo=None)) == "2024-07-15 12:30 UTC"
    assert time_text(None) == "—"


def test_the_clock_change_hour_is_told_apart():
    # 2024-10-27 01:30 happens twice in London: first BST, then GMT.
    first = datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    second = datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    assert time_text(first, tz="Europe/London") == "2024-10-27 01:30 BST"
    assert time_text(second, tz="Europe/London") == "2024-10-27 01:30 GMT"


def test_an_unknown_zone_says_what_to_use():
    with pytest.raises(airq_nb.ConfigurationError, match="'UTC' or an IANA name"):
        time_text(WINTER, tz="London")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.4, "59 s"), (60, "1 min"), (3599, "60 min"), (3600, "1.0 h"),
     (47 * 3600, "47.0 h"), (48 * 3600, "2.0 days"), (-90, "2 min")],
)  # fmt: skip
def test_spans(seconds, text):
    assert span_text(seconds) == text


def test_due_and_age_are_relative_to_now():
    now = 1_000_000.0
    assert due_text(now + 300, now) == "in 5 min"
    assert due_text(now + 0.2, now) == "due now"
    assert due_text(now - 30, now) == "due now"
    assert due_text(now - 7200, now) == "overdue by 2.0 h"
    assert age_text(now - 300, now) == "5 min ago"
    assert age_text(now + 300, now) == "in 5 min"
    assert age_text(now, now) == "just now"


def test_outcomes_and_one_line():
    assert outcome_text("retry") == "failed, will be retried"
    assert outcome_text(None) == "none yet"
    assert outcome_text("something new") == "something new"
    assert one_line("a\n  b\tc", 10) == "a b c"
    assert one_line("abcdefghijk", 5) == "abcd…"
