"""Schedule definitions: validation, slot arithmetic, misfire planning, and the durable rows."""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import airq_nb
from airq_nb.scheduling.schedules import ScheduleSpec, parse_spec, plan_due_runs, plan_slot

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = 3600.0
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def test_every_is_aligned_to_the_epoch():
    spec = parse_spec(every=timedelta(hours=1))
    assert spec.next_after(T0) == 1_700_002_800.0  # 23:00 UTC
    assert spec.next_after(1_700_002_800.0) == 1_700_006_400.0  # strictly after a slot
    assert spec.latest_slots(low=T0 - 3 * HOUR, high=T0, limit=10) == [
        1_699_992_000.0,
        1_699_995_600.0,
        1_699_999_200.0,
    ]
    assert spec.latest_slots(low=0, high=T0, limit=2) == [1_699_995_600.0, 1_699_999_200.0]


def test_cron_is_evaluated_in_its_time_zone_across_dst():
    spec = parse_spec(cron="0 9 * * *", tz="Europe/London")
    london = ZoneInfo("Europe/London")
    before_dst_end = datetime(2024, 10, 26, 6, tzinfo=UTC).timestamp()
    first = spec.next_after(before_dst_end)
    second = spec.next_after(first)
    assert datetime.fromtimestamp(first, london).hour == 9
    assert datetime.fromtimestamp(second, london).hour == 9
    assert second - first == 25 * HOUR  # the clocks went back an hour in between
    assert datetime.fromtimestamp(second, UTC).hour == 9  # GMT once summer time ends
    assert spec.latest_slots(low=first, high=second, limit=5) == [first, second]


def test_cron_expression_whitespace_is_normalised():
    assert parse_spec(cron="  0   *  * * *").cron == "0 * * * *"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "* * * *"}, "invalid cron"),
        ({"cron": "0 * * * * *"}, "invalid cron"),
        ({"cron": "every hour"}, "invalid cron"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"cron": 5}, "cron must be a string"),
        ({"every": timedelta(hours=1), "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "0 * * * *", "tz": ""}, "IANA"),
        ({"every": timedelta(0)}, "at least 1 second"),
        ({"every": timedelta(seconds=-5)}, "at least 1 second"),
        ({"every": timedelta(milliseconds=500)}, "at least 1 second"),
        ({"every": float("nan")}, "at least 1 second"),
        ({"every": "1h"}, "timedelta"),
        ({}, "exactly one"),
        ({"every": timedelta(hours=1), "cron": "0 * * * *"}, "exactly one"),
        ({"every": timedelta(hours=1), "misfire": "later"}, "unknown misfire policy"),
        ({"every": timedelta(hours=1), "misfire": "catch_up", "max_catch_up": 0}, "max_catch_up"),
        ({"every": timedelta(hours=1), "max_catch_up": True}, "max_catch_up"),
        ({"every": timedelta(hours=1), "message": {1, 2}}, "JSON"),
        ({"every": timedelta(hours=1), "topic": "*"}, "topic"),
        ({"every": timedelta(hours=1), "backoff_schedule": [-1]}, "backoff_schedule"),
    ],
)
def test_bad_schedules_are_refused_and_nothing_is_stored(store, options, fragment):
    sched = airq_nb.Scheduler(store)
    with pytest.raises(airq_nb.InvalidScheduleError, match=fragment):
        sched.schedule("job", **options)
    assert sched.schedules() == []
    assert store.execute("SELECT COUNT(*) FROM schedules") == [(0,)]
    assert store.queue.counts().total == 0


@pytest.mark.parametrize("name", ["", "   ", None, "x" * 201])
def test_bad_schedule_names_are_refused(store, name):
    sched = airq_nb.Scheduler(store)
    with pytest.raises(airq_nb.InvalidScheduleError, match="name"):
        sched.schedule(name, every=timedelta(hours=1))
    assert sched.schedules() == []


def test_registering_a_name_again_updates_it(clocked_store, fake_clock):
    sched = airq_nb.Scheduler(clocked_store)
    first = sched.schedule("job", every=timedelta(hours=1), message={"v": 1})
    fake_clock.advance(600)
    again = sched.schedule("job", every=timedelta(hours=1), message={"v": 2}, misfire="skip")
    assert [s.name for s in sched.schedules()] == ["job"]
    assert again.next_run_at == first.next_run_at  # same timing: the planned slot is kept
    assert again.message == {"v": 2} and again.misfire == "skip"
    changed = sched.schedule("job", cron="*/15 * * * *")
    assert changed.every is None and changed.cron == "*/15 * * * *"
    assert changed.next_run_at == datetime(2023, 11, 14, 22, 30, tzinfo=UTC)
    assert clocked_store.execute("SELECT COUNT(*) FROM schedules") == [(1,)]


def test_schedule_info_fields(clocked_store):
    sched = airq_nb.Scheduler(clocked_store)
    info = sched.schedule(
        "collect:London",
        every=timedelta(hours=1),
        topic="collect",
        message={"where": "London"},
        backoff_schedule=[1, 2],
    )
    assert info.topic == "collect"
    assert info.every == timedelta(hours=1)
    assert info.tz == "UTC"
    assert info.backoff_schedule == (1.0, 2.0)
    assert info.next_run_at == datetime(2023, 11, 14, 23, tzinfo=UTC)
    assert (info.last_run_at, info.last_outcome, info.last_error) == (None, None, None)
    assert not info.paused and not info.in_flight
    assert sched.get_schedule("collect:London") == info


def test_topic_defaults_to_the_name(store):
    assert airq_nb.Scheduler(store).schedule("tidy", cron="0 3 * * *").topic == "tidy"


def test_pause_resume_remove_and_missing_names(store):
    sched = airq_nb.Scheduler(store)
    sched.schedule("job", every=timedelta(minutes=5))
    sched.pause_schedule("job")
    assert sched.get_schedule("job").paused
    sched.resume_schedule("job")
    assert not sched.get_schedule("job").paused
    sched.remove_schedule("job")
    assert sched.schedules() == []
    for call in (sched.pause_schedule, sched.resume_schedule, sched.remove_schedule, sched.run_now):
        with pytest.raises(airq_nb.ScheduleNotFoundError, match="no schedule named 'job'"):
            call("job")


def test_run_now_queues_one_run_and_never_a_second_while_it_waits(store):
    sched = airq_nb.Scheduler(store)
    sched.schedule("job", every=timedelta(hours=1), message={"n": 1}, topic="jobs")
    first = sched.run_now("job")
    assert sched.run_now("job") == first
    message = store.queue.get(first)
    assert (message.topic, message.value, message.schedule) == ("jobs", {"n": 1}, "job")
    assert sched.get_schedule("job").in_flight


HOURLY = ScheduleSpec(every_seconds=HOUR, cron=None, tz="UTC")
WEEK = 7 * 24 * HOUR


@pytest.mark.parametrize(
    ("misfire", "expected_slot"),
    [("coalesce", 1_700_604_000.0), ("skip", None), ("catch_up", 1_700_604_000.0 - 4 * HOUR)],
)
def test_plan_slot_after_a_week_away(misfire, expected_slot):
    next_run_at = 1_700_002_800.0
    now = T0 + WEEK
    slot, following = plan_slot(
        HOURLY, misfire=misfire, max_catch_up=5, next_run_at=next_run_at, now=now
    )
    assert slot == expected_slot
    if misfire == "catch_up":
        assert following == slot + HOUR  # the planner is asked again for the next missed slot
    else:
        assert following == 1_700_607_600.0  # the first slot after now


def test_plan_slot_on_time_and_not_yet_due():
    assert plan_slot(HOURLY, misfire="skip", max_catch_up=1, next_run_at=7200.0, now=7200.5) == (
        7200.0,
        10800.0,
    )
    assert plan_slot(HOURLY, misfire="coalesce", max_catch_up=1, next_run_at=7200.0, now=7000) == (
        None,
        7200.0,
    )


@given(
    period=st.integers(min_value=1, max_value=7 * 24 * 3600),
    now=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    back=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    limit=st.integers(min_value=1, max_value=50),
)
@example(period=2, now=5e-324, back=0.0, limit=1)  # low / period underflows to 0
def test_every_slot_arithmetic_properties(period, now, back, limit):
    spec = ScheduleSpec(every_seconds=float(period), cron=None, tz="UTC")
    following = spec.next_after(now)
    assert now < following <= now + period
    assert following % period == 0
    slots = spec.latest_slots(low=now - back, high=now, limit=limit)
    assert len(slots) <= limit
    assert slots == sorted(slots)
    assert all(now - back <= slot <= now and slot % period == 0 for slot in slots)
    if slots:  # the newest slot at or before now is always included
        assert spec.next_after(slots[-1]) == following


@settings(max_examples=40, deadline=None)
@given(
    now=st.integers(min_value=1_600_000_000, max_value=1_900_000_000),
    misfire=st.sampled_from(["coalesce", "skip", "catch_up"]),
    missed=st.integers(min_value=0, max_value=500),
)
def test_cron_plan_never_runs_more_than_allowed_and_moves_forward(now, misfire, missed):
    spec = parse_spec(cron="*/30 * * * *", tz="Europe/London")
    next_run_at = spec.latest_slots(low=0, high=now - missed * 1800, limit=1)[0]
    slot, following = plan_slot(
        spec, misfire=misfire, max_catch_up=3, next_run_at=next_run_at, now=now
    )
    assert following > (slot if slot is not None else next_run_at)
    if slot is not None:
        assert next_run_at <= slot <= now
        if misfire == "catch_up":
            assert len(spec.latest_slots(low=slot, high=now, limit=10)) <= 3
    assert following > now or misfire == "catch_up"


@pytest.mark.sqlite_only("a TEMP trigger on the store's SQLite connection simulates the failure")
def test_a_failing_store_while_planning_never_pauses_the_schedule(clocked_store, fake_clock):
    sched = airq_nb.Scheduler(clocked_store, clock=fake_clock)
    sched.schedule("job", every=timedelta(hours=1))
    fake_clock.advance(3600)
    # The queue write fails (as on a full disk or an I/O error) for as long as this trigger lives.
    clocked_store.db.execute(
        "CREATE TEMP TRIGGER fail_writes BEFORE INSERT ON queue "
        "BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END"
    )
    with pytest.raises((airq_nb.StoreError, sqlite3.Error)):
        plan_due_runs(clocked_store, now=fake_clock.now())
    info = sched.get_schedule("job")
    assert not info.paused and info.last_outcome is None and info.last_error is None
    assert clocked_store.queue.counts().total == 0
    clocked_store.db.execute("DROP TRIGGER fail_writes")
    queued, planned, broken = plan_due_runs(clocked_store, now=fake_clock.now())
    assert len(queued) == 1 and planned == 1 and broken == []


def test_a_damaged_definition_pauses_only_that_schedule(clocked_store, fake_clock):
    sched = airq_nb.Scheduler(clocked_store, clock=fake_clock)
    sched.schedule("good", every=timedelta(hours=1))
    sched.schedule("bad", cron="0 * * * *")
    with clocked_store.transaction() as conn:
        conn.execute("UPDATE schedules SET tz = 'Not/AZone' WHERE name = 'bad'")
    fake_clock.advance(3600)
    queued, _, broken = plan_due_runs(clocked_store, now=fake_clock.now())
    assert len(queued) == 1 and [name for name, _ in broken] == ["bad"]
    bad = sched.get_schedule("bad")
    assert bad.paused and bad.last_outcome == "error"
    assert "registering the schedule again" in bad.last_error
    assert not sched.get_schedule("good").paused


def test_registering_a_damaged_schedule_again_resumes_it_but_a_user_pause_stays(
    clocked_store, fake_clock
):
    sched = airq_nb.Scheduler(clocked_store, clock=fake_clock)
    sched.schedule("bad", cron="0 * * * *")
    sched.schedule("held", cron="0 * * * *")
    sched.pause_schedule("held")
    with clocked_store.transaction() as conn:
        conn.execute("UPDATE schedules SET tz = 'Not/AZone' WHERE name = 'bad'")
    fake_clock.advance(3600)
    assert [name for name, _ in plan_due_runs(clocked_store, now=fake_clock.now())[2]] == ["bad"]
    assert sched.get_schedule("bad").paused
    assert not sched.schedule("bad", cron="0 * * * *").paused  # as the error message says
    assert sched.schedule("held", cron="0 * * * *").paused
    fake_clock.advance(3600)
    queued, _, broken = plan_due_runs(clocked_store, now=fake_clock.now())
    assert len(queued) == 1 and broken == []


@pytest.mark.sqlite_only("upgrades a SQLite file written before the column existed")
def test_a_file_from_before_the_broken_column_gets_it(db_path, fake_clock):
    with airq_nb.open_store(db_path, clock=fake_clock) as store:
        airq_nb.Scheduler(store).schedule("old", every=timedelta(hours=1))
        store.db.execute("ALTER TABLE schedules DROP COLUMN broken")
        store.db.execute("PRAGMA user_version = 2")  # what such a file says (see test_migrations)
    with airq_nb.open_store(db_path, clock=fake_clock) as store:
        sched = airq_nb.Scheduler(store)
        assert "broken" in store.db["schedules"].columns_dict
        assert [info.name for info in sched.schedules()] == ["old"]
        sched.pause_schedule("old")
        assert sched.schedule("old", every=timedelta(hours=1)).paused


def test_a_fixed_time_repeated_at_the_dst_fall_back_runs_once():
    london = ZoneInfo("Europe/London")
    spec = parse_spec(cron="30 1 * * *", tz="Europe/London")
    before = datetime(2026, 10, 24, 12, tzinfo=london).timestamp()
    first = spec.next_after(before)
    second = spec.next_after(first)
    assert datetime.fromtimestamp(first, UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert datetime.fromtimestamp(second, UTC) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    after = datetime(2026, 10, 26, 12, tzinfo=london).timestamp()
    assert spec.latest_slots(low=before, high=after, limit=10) == [first, second]
    # A job with a wildcard hour runs in both repeated hours, as in classic cron.
    hourly = parse_spec(cron="0 * * * *", tz="Europe/London")
    night = hourly.latest_slots(
        low=datetime(2026, 10, 25, 0, tzinfo=london).timestamp(),
        high=datetime(2026, 10, 25, 3, tzinfo=london).timestamp(),
        limit=10,
    )
    assert [b - a for a, b in itertools.pairwise(night)] == [3600.0] * 4


def test_every_refuses_a_time_zone_it_would_ignore(store):
    sched = airq_nb.Scheduler(store)
    with pytest.raises(
        airq_nb.InvalidScheduleError, match="for wall-clock times in a time zone use cron="
    ):
        sched.schedule("daily", every=timedelta(days=1), tz="Europe/London")
    assert sched.schedules() == []
    assert sched.schedule("daily", every=timedelta(days=1), tz="UTC").tz == "UTC"


@pytest.mark.parametrize("name", [["x"], 3, None])
def test_schedule_calls_refuse_a_name_that_is_not_a_string(store, name):
    sched = airq_nb.Scheduler(store)
    for call in (
        sched.pause_schedule,
        sched.resume_schedule,
        sched.remove_schedule,
        sched.run_now,
        sched.get_schedule,
    ):
        with pytest.raises(airq_nb.InvalidScheduleError, match="schedule name must be"):
            call(name)


def test_a_corrupt_stored_schedule_is_listed_as_corrupt(store):
    sched = airq_nb.Scheduler(store)
    sched.schedule("fine", every=timedelta(hours=1))
    sched.schedule("damaged", every=timedelta(hours=1), backoff_schedule=[1.0])
    with store.transaction() as conn:
        conn.execute(
            "UPDATE schedules SET message = 'not json', backoff_schedule = '[' "
            "WHERE name = 'damaged'"
        )
    listed = {info.name: info for info in sched.schedules()}
    assert listed["fine"].last_error is None
    damaged = listed["damaged"]
    assert damaged.message is None and damaged.last_outcome == "error"
    assert "corrupt" in damaged.last_error and "register it again" in damaged.last_error
    fixed = sched.schedule("damaged", every=timedelta(hours=1), message={"ok": 1})
    assert fixed.message == {"ok": 1}
