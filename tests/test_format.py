"""The one formatter: times in UTC or Europe/London (GMT/BST), spans, due and age texts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import airq_nb
from airq_nb._format import (
    age_text,
    due_text,
    lateness_text,
    one_line,
    outcome_text,
    rows_text,
    run_summary_text,
    span_text,
    status_rows,
    store_name,
    store_text,
    time_text,
)

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


def test_lateness():
    assert lateness_text(3.4) == "3 ms late"
    assert lateness_text(1250) == "1.2 s late"
    assert lateness_text(300_000) == "5 min late"
    assert lateness_text(-2) == "2 ms early"


def test_the_store_wide_status_reads_in_the_zone_asked_for():
    now = SUMMER.timestamp()
    status = airq_nb.Status(
        next_due=SUMMER.replace(minute=40, second=5),
        last_delivery_accuracy_ms=12.0,
        last_outcome="dead",
        last_error="boom:\n  it broke",
        backlog=1,
        queued=3,
        leased=0,
        dead_letters=2,
        paused_topics=("*",),
    )
    rows = dict(status_rows(status, now=now, tz="Europe/London"))
    assert rows == {
        "Next due": "2024-07-15 13:40 BST (in 10 min)",
        "Last delivery": "failed, now a dead letter (12 ms late)",
        "Error": "boom: it broke",
        "Backlog": "1 due, 3 queued, 0 leased, 2 dead letters",
        "Paused": "all topics",
    }
    text = rows_text(status_rows(status, now=now), indent="  ")
    assert text.splitlines()[0] == "  Next due:      2024-07-15 12:40 UTC (in 10 min)"


def test_a_run_summary_on_one_line():
    summary = airq_nb.RunSummary(
        delivered=2, failed=1, dead_lettered=0, next_due=None, lost=1, timed_out=True
    )
    assert run_summary_text(summary, now=SUMMER.timestamp()) == (
        "delivered 2, failed 1, dead-lettered 0; 1 lost; next due not planned; "
        "stopped at the timeout"
    )
    planned = airq_nb.RunSummary(delivered=1, failed=0, dead_lettered=0, next_due=SUMMER)
    assert run_summary_text(planned, now=SUMMER.timestamp() - 3600, tz="Europe/London") == (
        "delivered 1, failed 0, dead-lettered 0; next due 2024-07-15 13:30 BST (in 1.0 h)"
    )


def test_a_store_is_named_by_its_file(tmp_path):
    with airq_nb.open_store(tmp_path / "airq.db") as store:
        assert store_text(store) == str(tmp_path / "airq.db")
        assert store_name(store) == "airq.db"


def test_status_and_run_summary_print_through_the_formatter(store):
    import asyncio

    store.enqueue("x", topic="t")
    status = airq_nb.store_status(store)
    assert "Backlog:       1 due, 1 queued" in str(status)
    sched = airq_nb.Scheduler(store)
    sched.listen_queue(lambda value: None, topic="t")
    summary = asyncio.run(sched.run_until_idle())
    sched.close()
    assert str(summary).startswith("delivered 1, failed 0, dead-lettered 0")
