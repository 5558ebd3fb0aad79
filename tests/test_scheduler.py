"""The scheduler runtime: schedules, misfires, retries, flood control, delivery log and status.

Most tests use a FakeClock with run_until_idle(until=...), so a week of hourly runs takes
milliseconds; the tests of the background runtime (start/stop, threads) use real time.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from store_backends import behind_the_back

import airq_nb

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = 3600.0
WEEK = timedelta(days=7)


def run(coro):
    return asyncio.run(coro)


def log_rows(store, **filters):
    return airq_nb.read_delivery_log(store, **filters).to_dict("records")


@pytest.fixture
def sched(clocked_store, fake_clock):
    return airq_nb.Scheduler(clocked_store, clock=fake_clock)


def test_hourly_schedule_runs_on_the_hour(sched, clocked_store, fake_clock):
    seen: list[float] = []
    sched.listen_queue(lambda value: seen.append(fake_clock.now()), topic="hourly")
    sched.schedule("hourly", every=timedelta(hours=1))
    summary = run(sched.run_until_idle(until=timedelta(hours=5)))
    assert summary.delivered == 5 and summary.scheduled_runs == 5
    assert [t % HOUR for t in seen] == [0.0] * 5
    assert [b - a for a, b in itertools.pairwise(seen)] == [HOUR] * 4
    rows = log_rows(clocked_store, schedule="hourly")
    assert [r["outcome"] for r in rows] == ["ok"] * 5
    assert all(r["lateness_ms"] == 0.0 for r in rows)
    assert all(r["scheduled_at"].minute == 0 and r["scheduled_at"].second == 0 for r in rows)
    info = sched.get_schedule("hourly")
    assert info.last_outcome == "ok"
    assert info.last_run_at == datetime.fromtimestamp(seen[-1], UTC)
    assert summary.next_due == info.next_run_at == datetime.fromtimestamp(seen[-1] + HOUR, UTC)


def _week_away(sched, fake_clock, misfire, **options):
    seen: list[float] = []
    sched.listen_queue(lambda value: seen.append(fake_clock.now()), topic="job")
    sched.schedule("job", every=timedelta(hours=1), misfire=misfire, **options)
    run(sched.run_until_idle(until=timedelta(hours=2)))
    assert len(seen) == 2
    fake_clock.advance(WEEK.total_seconds())  # the kernel was shut down for a week
    summary = run(sched.run_until_idle())
    return seen[2:], summary


def test_coalesce_after_a_week_runs_once(sched, fake_clock):
    runs, summary = _week_away(sched, fake_clock, "coalesce")
    assert len(runs) == 1 and summary.delivered == 1
    now = fake_clock.now()
    assert sched.get_schedule("job").next_run_at.timestamp() == (now // HOUR + 1) * HOUR


def test_skip_after_a_week_waits_for_the_next_slot(sched, fake_clock, clocked_store):
    runs, summary = _week_away(sched, fake_clock, "skip")
    assert runs == [] and summary.delivered == 0
    next_slot = (fake_clock.now() // HOUR + 1) * HOUR
    assert summary.next_due.timestamp() == next_slot
    later = run(sched.run_until_idle(until=next_slot))
    assert later.delivered == 1
    assert log_rows(clocked_store)[-1]["scheduled_at"].timestamp() == next_slot


def test_catch_up_after_a_week_runs_the_newest_missed_slots_oldest_first(
    sched, fake_clock, clocked_store
):
    runs, summary = _week_away(sched, fake_clock, "catch_up", max_catch_up=5)
    assert len(runs) == 5 and summary.delivered == 5
    newest = fake_clock.now() // HOUR * HOUR
    slots = [r["scheduled_at"].timestamp() for r in log_rows(clocked_store)[-5:]]
    assert slots == [newest - 4 * HOUR, newest - 3 * HOUR, newest - 2 * HOUR, newest - HOUR, newest]


def test_retries_follow_the_backoff_schedule(sched, clocked_store):
    def always_fails(value):
        raise RuntimeError(f"boom {value['n']}")

    sched.listen_queue(always_fails, topic="work")
    message_id = clocked_store.enqueue({"n": 7}, topic="work", backoff_schedule=[1, 5, 30])
    summary = run(sched.run_until_idle(until=timedelta(minutes=5)))
    assert (summary.delivered, summary.failed, summary.dead_lettered) == (0, 4, 1)
    rows = log_rows(clocked_store)
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert [r["outcome"] for r in rows] == ["retry", "retry", "retry", "dead"]
    gaps = [
        (b["scheduled_at"] - a["finished_at"]).total_seconds() for a, b in itertools.pairwise(rows)
    ]
    assert gaps == [1.0, 5.0, 30.0]
    assert rows[0]["error"] == "RuntimeError: boom 7"
    dead = clocked_store.queue.get(message_id)
    assert dead.state == "dead" and dead.last_error == "RuntimeError: boom 7"


def test_a_schedule_that_always_fails_still_runs_at_every_slot(sched, clocked_store, fake_clock):
    def always_fails(value):
        raise ValueError("upstream is down")

    sched.listen_queue(always_fails, topic="flaky")
    sched.schedule("flaky", every=timedelta(hours=1), backoff_schedule=[1, 2])
    summary = run(sched.run_until_idle(until=timedelta(hours=3)))
    assert summary.dead_lettered == 3 and summary.failed == 9
    firsts = [r for r in log_rows(clocked_store, schedule="flaky") if r["attempt"] == 1]
    assert [r["scheduled_at"].timestamp() % HOUR for r in firsts] == [0.0, 0.0, 0.0]
    assert len(clocked_store.queue.dead_letters()) == 3
    info = sched.get_schedule("flaky")
    assert info.last_outcome == "dead" and info.last_error == "ValueError: upstream is down"
    assert info.next_run_at.timestamp() > fake_clock.now()


def test_no_overlap_a_long_run_delays_the_next_slot(clocked_store, fake_clock):
    # The fake clock jumps inside the handler, faster than the lease keeper runs: a long
    # lease stands in for the keeper here (test_lease_is_kept_alive... covers the keeper).
    sched = airq_nb.Scheduler(
        clocked_store, clock=fake_clock, concurrency=4, lease_seconds=6 * HOUR
    )
    spans: list[tuple[float, float]] = []

    def slow_first_run(value):
        start = fake_clock.now()
        if not spans:
            fake_clock.advance(2.5 * HOUR)  # this run takes two and a half hours
        spans.append((start, fake_clock.now()))

    sched.listen_queue(slow_first_run, topic="job")
    sched.schedule("job", every=timedelta(hours=1))
    run(sched.run_until_idle(until=timedelta(hours=5)))
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # never two runs at once
    # The slots missed during the long run coalesce into one run right after it.
    assert spans[1][0] == spans[0][1]
    assert len(spans) == 4
    rows = log_rows(clocked_store)
    assert len({r["message_id"] for r in rows}) == len(rows) == 4


def test_retry_and_permanent_say_whether_to_retry_and_when(sched, clocked_store):
    def handler(value):
        if value == "bad key":
            raise airq_nb.Permanent("OpenWeatherMap rejected the API key")
        if value == "wrapped":
            raise airq_nb.Retry(after=5) from ValueError("upstream said no")
        raise airq_nb.Retry(after=120, reason="slow down")

    sched.listen_queue(handler, topic="src")
    bad = clocked_store.enqueue("bad key", topic="src")
    limited = clocked_store.enqueue("limited", topic="src", backoff_schedule=[1])
    wrapped = clocked_store.enqueue("wrapped", topic="src", backoff_schedule=[])
    run(sched.run_until_idle(until=timedelta(minutes=10)))
    assert clocked_store.queue.get(bad).attempts == 1  # not retried
    rows = log_rows(clocked_store)
    assert [(r["outcome"], r["error"]) for r in rows if r["message_id"] == bad] == [
        ("dead", "OpenWeatherMap rejected the API key")
    ]
    tries = [r for r in rows if r["message_id"] == limited]
    assert [(r["outcome"], r["error"]) for r in tries] == [
        ("retry", "slow down"),
        ("dead", "slow down"),
    ]
    waited = (tries[1]["scheduled_at"] - tries[0]["finished_at"]).total_seconds()
    assert waited == 120.0  # Retry(after=) wins over the back-off schedule
    (last,) = [r for r in rows if r["message_id"] == wrapped]
    assert last["error"] == "ValueError: upstream said no"  # no reason: the cause is logged


def test_the_scheduler_knows_nothing_of_source_errors(sched, clocked_store):
    """A SourceError from a handler is an ordinary failure: back-off, no special meaning."""

    def handler(value):
        raise airq_nb.InvalidApiKeyError("OpenWeatherMap rejected the API key")

    sched.listen_queue(handler, topic="src")
    message = clocked_store.enqueue("x", topic="src", backoff_schedule=[1])
    run(sched.run_until_idle(until=timedelta(minutes=1)))
    assert clocked_store.queue.get(message).attempts == 2


@pytest.mark.parametrize("after", [-1, math.nan, math.inf, "5", True])
def test_retry_refuses_a_wait_that_is_not_seconds(after):
    with pytest.raises(ValueError, match="Retry"):
        airq_nb.Retry(after=after)


def test_async_handlers_and_messages_of_other_topics(sched, clocked_store):
    got = []

    async def handler(value):
        await asyncio.sleep(0)
        got.append(value)

    sched.listen_queue(handler)
    clocked_store.enqueue({"a": 1})
    orphan = clocked_store.enqueue({"b": 2}, topic="nobody-listens")
    summary = run(sched.run_until_idle())
    assert got == [{"a": 1}] and summary.delivered == 1
    # No handler here: the message stays queued for a process that has one.
    assert clocked_store.queue.get(orphan).state == "queued"
    assert sched.status().backlog == 1


def test_pause_then_resume_coalesces_missed_slots(sched, fake_clock):
    seen = []
    sched.listen_queue(lambda value: seen.append(fake_clock.now()), topic="job")
    sched.schedule("job", every=timedelta(hours=1))
    sched.pause_schedule("job")
    assert run(sched.run_until_idle(until=timedelta(hours=4))).delivered == 0
    sched.resume_schedule("job")
    assert run(sched.run_until_idle()).delivered == 1


def test_paused_topic_blocks_further_runs_of_its_schedule(sched, clocked_store):
    sched.listen_queue(lambda value: None, topic="job")
    sched.schedule("job", every=timedelta(hours=1))
    clocked_store.queue.pause("job")
    summary = run(sched.run_until_idle(until=timedelta(hours=6)))
    assert summary.delivered == 0
    assert summary.scheduled_runs == 1  # one run waits; no pile of runs behind the pause
    assert clocked_store.queue.counts().by_state == {"queued": 1}
    clocked_store.queue.resume("job")
    assert run(sched.run_until_idle()).delivered == 1


def test_rate_limit_spaces_out_a_backlog(clocked_store, fake_clock):
    sched = airq_nb.Scheduler(clocked_store, clock=fake_clock, max_deliveries_per_second=2)
    starts = []
    sched.listen_queue(lambda value: starts.append(fake_clock.now()))
    for n in range(6):
        clocked_store.enqueue(n)
    run(sched.run_until_idle(until=timedelta(seconds=10)))
    assert len(starts) == 6
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [0.5] * 5


def test_concurrency_bounds_handlers_running_at_once(store):
    sched = airq_nb.Scheduler(store, concurrency=3)
    running = peak = 0

    async def handler(value):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    sched.listen_queue(handler)
    for n in range(10):
        store.enqueue(n)
    summary = run(sched.run_until_idle(timeout=30))
    assert summary.delivered == 10 and peak == 3


def test_delivery_log_retention_and_filters(clocked_store, fake_clock):
    sched = airq_nb.Scheduler(clocked_store, clock=fake_clock, log_retention=timedelta(hours=1))
    sched.listen_queue(lambda value: None, topic="a")
    sched.listen_queue(lambda value: None, topic="b")
    clocked_store.enqueue(1, topic="a")
    run(sched.run_until_idle())
    fake_clock.advance(2 * HOUR)
    clocked_store.enqueue(2, topic="b")
    clocked_store.enqueue(3, topic="a")
    run(sched.run_until_idle())
    frame = airq_nb.read_delivery_log(clocked_store)
    assert list(frame.columns) == [
        "message_id",
        "topic",
        "schedule",
        "attempt",
        "scheduled_at",
        "started_at",
        "finished_at",
        "outcome",
        "error",
        "lateness_ms",
    ]
    assert len(frame) == 2  # the row from two hours ago is past the retention
    assert str(frame["started_at"].dt.tz) == "UTC"
    assert list(airq_nb.read_delivery_log(clocked_store, topic="a")["topic"]) == ["a"]
    assert len(airq_nb.read_delivery_log(clocked_store, limit=1)) == 1
    since = datetime.fromtimestamp(fake_clock.now() + 1, UTC)
    assert airq_nb.read_delivery_log(clocked_store, since=since).empty


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"limit": "x"}, "limit must be"),
        ({"limit": -1}, "limit must be"),
        ({"since": "yesterday"}, "since must be"),
        ({"since": datetime(2026, 1, 1)}, "aware datetime"),
    ],
)
def test_read_delivery_log_refuses_bad_options(store, options, fragment):
    with pytest.raises(airq_nb.InvalidValueError, match=fragment):
        airq_nb.read_delivery_log(store, **options)


def test_read_delivery_log_opens_the_default_store(db_path, monkeypatch):
    monkeypatch.setenv("AIRQ_NB_DB", str(db_path))
    assert airq_nb.read_delivery_log().empty  # no scheduler has ever run on this file
    with airq_nb.open_store(db_path) as store:
        sched = airq_nb.Scheduler(store)
        sched.listen_queue(lambda value: None)
        store.enqueue("x")
        run(sched.run_until_idle())
    assert list(airq_nb.read_delivery_log()["outcome"]) == ["ok"]


def test_status_without_a_running_scheduler(clocked_store, fake_clock):
    status = airq_nb.store_status(clocked_store)
    assert status.next_due is None and status.last_delivery_accuracy_ms is None
    sched = airq_nb.Scheduler(clocked_store, clock=fake_clock)
    sched.schedule("job", every=timedelta(hours=1))

    def fails(value):
        raise RuntimeError("nope")

    sched.listen_queue(fails)
    clocked_store.enqueue("x", backoff_schedule=[])
    clocked_store.enqueue("later", delay=600)
    run(sched.run_until_idle())
    status = airq_nb.store_status(clocked_store)
    assert status.dead_letters == 1 and status.queued == 1 and status.backlog == 0
    assert status.last_outcome == "dead" and status.last_error == "RuntimeError: nope"
    assert status.last_delivery_accuracy_ms == 0.0
    assert status.next_due == datetime.fromtimestamp(fake_clock.now() + 600, UTC)
    assert status.running is False


def test_replacing_a_handler_warns(store):
    sched = airq_nb.Scheduler(store)

    def first(value):
        return None

    def second(value):
        return None

    sched.listen_queue(first, topic="t")
    sched.listen_queue(first, topic="t")  # the same handler again: silent
    with pytest.warns(RuntimeWarning, match="replaced by"):
        sched.listen_queue(second, topic="t")
    assert sched.topics == ("t",)


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"max_deliveries_per_second": 0},
        {"lease_seconds": -1},
        {"handler_timeout": float("inf")},
        {"log_retention": timedelta(0)},
    ],
)
def test_bad_scheduler_options(store, options):
    with pytest.raises(airq_nb.SchedulerError):
        airq_nb.Scheduler(store, **options)


def test_scheduler_for_returns_one_scheduler_per_file(db_path):
    with airq_nb.open_store(db_path) as one, airq_nb.open_store(db_path) as two:
        assert airq_nb.scheduler_for(one) is airq_nb.scheduler_for(two)


def test_scheduler_for_closes_the_scheduler_it_replaces(db_path):
    first_store = airq_nb.open_store(db_path)
    first = airq_nb.scheduler_for(first_store)
    first_store.close()  # a re-run cell opens the store again
    with airq_nb.open_store(db_path) as second_store:
        second = airq_nb.scheduler_for(second_store)
        assert second is not first and second.store is second_store
        assert first.closed and not second.closed


# -- the background runtime, in real time ------------------------------------------------


def test_start_needs_a_running_loop(store):
    with pytest.raises(airq_nb.SchedulerError, match="run_until_idle"):
        airq_nb.Scheduler(store).start()


def test_start_delivers_in_the_background_and_twice_is_once(store):
    async def main():
        sched = airq_nb.Scheduler(store)
        got = []
        done = asyncio.Event()

        async def handler(value):
            got.append(value)
            if len(got) == 3:
                done.set()

        sched.listen_queue(handler)
        sched.start()
        task = sched._task
        sched.start()
        assert sched._task is task and sched.running
        store.enqueue(1)
        store.enqueue(2, delay=0.2)
        await asyncio.sleep(0.05)
        store.enqueue(3)  # a direct enqueue while it sleeps is noticed by polling
        await asyncio.wait_for(done.wait(), 5)
        await sched.stop()
        assert not sched.running
        return got

    assert sorted(run(main())) == [1, 2, 3]
    assert store.queue.counts().total == 0


def test_a_sync_handler_does_not_block_the_loop(store):
    async def main():
        sched = airq_nb.Scheduler(store)
        finished = threading.Event()

        def slow(value):
            time.sleep(0.5)
            finished.set()

        sched.listen_queue(slow)
        sched.start()
        store.enqueue("x")
        ticks = 0
        while not finished.is_set():
            await asyncio.sleep(0.01)
            ticks += 1
        await sched.stop()
        return ticks

    assert run(main()) >= 20  # the loop kept turning while the handler slept


def test_handler_timeout_fails_the_attempt(store):
    async def main():
        sched = airq_nb.Scheduler(store, handler_timeout=0.2)

        async def hangs(value):
            await asyncio.sleep(30)

        sched.listen_queue(hangs)
        store.enqueue("x", backoff_schedule=[])
        return await sched.run_until_idle(timeout=10)

    summary = run(main())
    assert summary.dead_lettered == 1 and not summary.timed_out
    assert log_rows(store)[0]["error"] == "handler timed out after 0.2 s"


def test_a_timed_out_sync_handler_fails_and_keeps_its_message_until_it_returns(store):
    lock = threading.Lock()
    calls = running = peak = 0
    stuck_seen = []

    def slow_first_time(value):
        nonlocal calls, running, peak
        with lock:
            calls += 1
            running += 1
            peak = max(peak, running)
            first = calls == 1
        if first:
            time.sleep(0.7)  # overruns the 0.2 s timeout and the 0.1 s retry delay
        with lock:
            running -= 1

    async def main():
        sched = airq_nb.Scheduler(store, handler_timeout=0.2)
        sched.listen_queue(slow_first_time)
        message_id = store.enqueue("x", backoff_schedule=[0.1])

        async def look():
            await asyncio.sleep(0.45)
            stuck_seen.append(sched.status().stuck_handlers)
            stuck_seen.append(store.queue.get(message_id).state)

        looking = asyncio.ensure_future(look())
        summary = await sched.run_until_idle(timeout=10, until=timedelta(seconds=1.5))
        await looking
        stuck_seen.append(sched.status().stuck_handlers)
        return summary

    summary = run(main())
    # Python cannot stop the thread: the message stays leased until it returns, so its
    # retry never runs beside it.
    assert peak == 1
    assert stuck_seen == [1, "leased", 0]
    rows = log_rows(store)
    assert [r["outcome"] for r in rows] == ["retry", "ok"]
    assert rows[0]["error"] == "handler timed out after 0.2 s"
    assert rows[0]["finished_at"] - rows[0]["started_at"] >= timedelta(seconds=0.6)
    assert summary.delivered == 1 and summary.failed == 1


def test_a_sync_handler_that_never_returns_keeps_its_message_and_a_slot_visibly(store, db_path):
    release = threading.Event()
    calls = []

    def hangs(value):
        calls.append(value)
        release.wait(10)

    async def main():
        sched = airq_nb.Scheduler(store, concurrency=1, handler_timeout=0.2, lease_seconds=0.6)
        sched.listen_queue(hangs)
        message_id = store.enqueue("x", backoff_schedule=[0.1, 0.1])
        summary = await sched.run_until_idle(timeout=5, until=timedelta(seconds=1))
        return sched, sched.status(), summary, message_id

    def other_run(until=None):
        with airq_nb.open_store(db_path) as other:
            other_sched = airq_nb.Scheduler(other, handler_timeout=0.2)
            done = []
            other_sched.listen_queue(done.append)
            summary = run(other_sched.run_until_idle(timeout=5, until=until))
            other_sched.close()
        return done, summary

    try:
        sched, status, summary, message_id = run(main())
        # Its one slot is taken by the stuck thread, and status says so.
        assert status.stuck_handlers == 1 and status.in_flight == 0
        assert summary.delivered == 0
        # The message stays leased (renewed past its 0.6 s lease) while the thread runs:
        # no other consumer can take it.
        time.sleep(0.8)
        message = store.queue.get(message_id)
        assert message.state == "leased" and message.attempts == 1
        done, meanwhile = other_run()
        assert done == [] and meanwhile.delivered == 0 and calls == ["x"]
        # The thread returns: its attempt is settled as timed out, and retried.
        release.set()
        deadline = time.monotonic() + 5
        while store.queue.get(message_id).state == "leased" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log_rows(store)[0]["error"] == "handler timed out after 0.2 s"
        done, again = other_run(timedelta(seconds=0.5))  # its retry is due in 0.1 s
        assert done == ["x"] and again.delivered == 1
        sched.close()
    finally:
        release.set()


def test_stop_gives_back_the_lease_of_unfinished_work(store):
    async def main():
        sched = airq_nb.Scheduler(store)
        started = asyncio.Event()

        async def never_finishes(value):
            started.set()
            await asyncio.Event().wait()

        sched.listen_queue(never_finishes)
        message_id = store.enqueue("x")
        sched.start()
        await asyncio.wait_for(started.wait(), 5)
        assert store.queue.get(message_id).state == "leased"
        await sched.stop()
        return message_id

    message_id = run(main())
    message = store.queue.get(message_id)
    assert message.state == "queued" and message.attempts == 0
    assert log_rows(store)[-1]["outcome"] == "released"


@pytest.mark.sqlite_only(
    "holds SQLite's write lock; PostgreSQL claims skip locked rows, never wait"
)
def test_stop_while_a_claim_waits_for_the_write_lock_starts_nothing(store, db_path):
    async def main():
        sched = airq_nb.Scheduler(store)
        seen = []
        sched.listen_queue(seen.append)
        message_id = store.enqueue("x")
        rival = sqlite3.connect(db_path, isolation_level=None)  # another process writing
        rival.execute("BEGIN IMMEDIATE")
        try:
            sched.start()
            await asyncio.sleep(0.3)  # the runtime's claim now waits for the write lock
            stopping = asyncio.ensure_future(sched.stop())
            await asyncio.sleep(0.1)
            assert not stopping.done()
        finally:
            rival.execute("ROLLBACK")
            rival.close()
        await stopping
        # The claim that came back after stop() began is given back, not started.
        return sched.status().in_flight, store.queue.get(message_id), seen

    in_flight, message, seen = run(main())
    assert in_flight == 0 and seen == []
    assert message.state == "queued" and message.attempts == 0


def test_run_until_idle_timeout_releases_work(store):
    async def main():
        sched = airq_nb.Scheduler(store)

        async def slow(value):
            await asyncio.sleep(30)

        sched.listen_queue(slow)
        store.enqueue("x")
        return await sched.run_until_idle(timeout=0.3)

    summary = run(main())
    assert summary.timed_out and summary.released == 1
    assert store.queue.counts().by_state == {"queued": 1}


def test_lease_is_kept_alive_while_a_handler_runs(store):
    async def main():
        sched = airq_nb.Scheduler(store, lease_seconds=0.3)
        rival = airq_nb.Scheduler(store)
        rival_got = []

        async def slow(value):
            await asyncio.sleep(1.0)  # over three lease periods

        sched.listen_queue(slow)
        rival.listen_queue(rival_got.append)
        store.enqueue("x")
        sched.start()
        await asyncio.sleep(0.7)
        summary = await rival.run_until_idle()  # the message is still leased: nothing to do
        await asyncio.sleep(0.6)
        await sched.stop()
        return summary, rival_got

    summary, rival_got = run(main())
    assert summary.delivered == 0 and rival_got == []
    assert [r["outcome"] for r in log_rows(store)] == ["ok"]


def test_early_claims_never_take_a_lease_that_has_not_expired(clocked_store, fake_clock):
    clocked_store.enqueue("held")
    rival = clocked_store.claim(lease_seconds=1.0)  # another consumer is working on it
    fake_clock.advance(0.995)  # its lease has 5 ms left: inside the early-claim window
    clocked_store.enqueue("signal")

    async def main():
        sched = airq_nb.Scheduler(clocked_store, clock=fake_clock)
        seen = []
        got_signal = asyncio.Event()

        async def handler(value):
            seen.append(value)
            if value == "signal":
                got_signal.set()

        sched.listen_queue(handler)
        sched.start()
        await asyncio.wait_for(got_signal.wait(), 10)
        await sched.stop()
        return seen

    assert run(main()) == ["signal"]
    assert clocked_store.ack(rival)  # the rival still held its lease all along


def test_calls_from_another_thread_go_through_the_loop(store):
    async def main():
        # Created on the loop, as in a notebook cell. Polling is slowed right down, so only
        # the thread-safe wake-up can deliver within the test's 5 s.
        sched = airq_nb.Scheduler(store, poll_interval=60)
        got = asyncio.Event()
        sched.listen_queue(lambda value: got.set(), topic="job")

        def widget_callback():
            sched.schedule("job", every=timedelta(hours=1))
            sched.start()  # no loop in this thread: handed to the scheduler's loop
            return sched.run_now("job")

        message_id = await asyncio.to_thread(widget_callback)
        await asyncio.wait_for(got.wait(), 5)
        assert sched.running
        await asyncio.to_thread(lambda: sched.request_stop().result(5))
        assert not sched.running
        return message_id

    message_id = run(main())
    rows = log_rows(store)
    assert [(r["message_id"], r["outcome"]) for r in rows] == [(message_id, "ok")]


def test_sched_enqueue_wakes_the_runtime_at_once(store):
    async def main():
        sched = airq_nb.Scheduler(store, poll_interval=60)  # polling would take a minute
        got = asyncio.Event()
        sched.listen_queue(lambda value: got.set())
        sched.start()
        await asyncio.sleep(0.05)  # the runtime is now asleep with nothing due
        sched.enqueue({"x": 1}, delay=0.1)
        await asyncio.wait_for(got.wait(), 5)
        with pytest.raises(airq_nb.SchedulerError, match="already delivering"):
            await sched.run_until_idle()
        await sched.stop()

    run(main())
    assert [r["outcome"] for r in log_rows(store)] == ["ok"]


def _pause_then_enqueue(store):
    store.queue.pause()
    store.enqueue({"x": 1})


@pytest.mark.parametrize(
    ("before_start", "add_work"),
    [
        pytest.param(None, lambda store: store.enqueue({"x": 1}), id="store.enqueue"),
        pytest.param(None, lambda store: store.atomic().enqueue({"x": 1}).commit(), id="atomic"),
        pytest.param(_pause_then_enqueue, lambda store: store.queue.resume(), id="resume"),
    ],
)
def test_work_added_through_the_store_in_this_process_wakes_the_runtime(
    store, before_start, add_work
):
    async def main():
        sched = airq_nb.Scheduler(store, poll_interval=60)  # polling would take a minute
        got = asyncio.Event()
        sched.listen_queue(lambda value: got.set())
        if before_start:
            before_start(store)
        sched.start()
        await asyncio.sleep(0.05)  # asleep: nothing deliverable yet
        assert not got.is_set()
        add_work(store)
        await asyncio.wait_for(got.wait(), 5)
        await sched.stop()
        sched.close()

    run(main())
    assert [r["outcome"] for r in log_rows(store)] == ["ok"]


def test_until_accepts_datetimes_and_refuses_naive_ones(sched, fake_clock):
    sched.schedule("job", every=timedelta(hours=1))
    sched.listen_queue(lambda value: None, topic="job")
    until = datetime.fromtimestamp(fake_clock.now(), UTC) + timedelta(hours=2)
    assert run(sched.run_until_idle(until=until)).delivered == 2
    assert fake_clock.now() == until.timestamp()
    with pytest.raises(airq_nb.SchedulerError, match="aware datetime"):
        run(sched.run_until_idle(until=datetime(2030, 1, 1)))


def test_messages_dead_lettered_while_claiming_are_logged_and_counted(
    sched, clocked_store, fake_clock, db_path
):
    handled = []
    sched.listen_queue(handled.append, topic="job")
    sched.schedule("job", every=timedelta(hours=1))
    run_id = sched.run_now("job")
    # A consumer elsewhere takes the run's last attempt, then dies holding it.
    dying = clocked_store.claim(topics=["job"], lease_seconds=1)
    assert dying is not None and dying.id == run_id
    # and its attempts are used up
    behind_the_back(db_path, "UPDATE queue SET attempts = 6 WHERE id = ?", (run_id,))
    broken = clocked_store.enqueue("x", topic="job")
    behind_the_back(db_path, "UPDATE queue SET value = '{not json' WHERE id = ?", (broken,))
    fake_clock.advance(2)

    summary = run(sched.run_until_idle())
    assert summary.dead_lettered == 2 and handled == []
    rows = {r["message_id"]: r for r in log_rows(clocked_store)}
    assert rows[run_id]["outcome"] == "dead" and "lease expired" in rows[run_id]["error"]
    assert rows[broken]["outcome"] == "dead" and "corrupt" in rows[broken]["error"]
    assert all(math.isnan(r["lateness_ms"]) for r in rows.values())  # nothing started
    (info,) = sched.schedules()
    assert info.last_outcome == "dead"
    assert airq_nb.store_status(clocked_store).last_delivery_accuracy_ms is None


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_no_handler_timeout_means_handlers_run_to_the_end(clocked_store, fake_clock, kind):
    got = []

    async def async_handler(value):
        got.append(value)

    sched = airq_nb.Scheduler(clocked_store, clock=fake_clock, handler_timeout=None)
    sched.listen_queue(got.append if kind == "sync" else async_handler)
    clocked_store.enqueue({"n": 1})
    summary = run(sched.run_until_idle())
    assert summary.delivered == 1 and got == [{"n": 1}]
    assert [r["outcome"] for r in log_rows(clocked_store)] == ["ok"]
