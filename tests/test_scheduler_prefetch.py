"""Prefetching: a default Scheduler claims beyond its free slots, and every promise holds.

Concurrency stays the limit on handlers running at once; prefetched messages keep their
leases, start in due order, go back unstarted on stop or time-out, respect a pause and the
rate limit, and a second process sharing the backlog gets its share.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import airq_nb
from airq_nb.scheduling import prefetch
from airq_nb.scheduling.prefetch import PREFETCH_FRESH_SECONDS, PREFETCH_HORIZON

pytestmark = pytest.mark.backends("sqlite", "postgres")

WORKER = Path(__file__).parent / "workers" / "prefetch_worker.py"


def run(coro):
    return asyncio.run(coro)


def fill(store, count, **options):
    with store.transaction():
        for n in range(count):
            store.enqueue(n, **options)


def leased(store) -> int:
    return store.queue.counts().by_state.get("leased", 0)


def test_the_default_scheduler_prefetches_but_runs_at_most_concurrency_handlers(store):
    running, most, leased_seen = 0, 0, []

    async def handler(value):
        nonlocal running, most
        running += 1
        most = max(most, running)
        if value % 25 == 0:
            leased_seen.append(leased(store))
        await asyncio.sleep(0)
        running -= 1

    fill(store, 1000)
    sched = airq_nb.Scheduler(store)
    assert sched.concurrency == 8 and sched.prefetch == 256
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=60))
    sched.close()
    assert summary.delivered == 1000 and summary.lost == 0 and summary.released == 0
    assert most == 8  # the concurrency limit holds
    assert max(leased_seen) > 4 * 8  # claims went well beyond the free slots
    log = airq_nb.read_delivery_log(store)
    assert sorted(log["message_id"]) == list(range(1, 1001))
    assert set(log["outcome"]) == {"ok"} and set(log["attempt"]) == {1}


def test_prefetch_zero_claims_no_more_than_the_free_slots(store):
    leased_seen = []

    async def handler(value):
        leased_seen.append(leased(store))
        await asyncio.sleep(0)

    fill(store, 200)
    sched = airq_nb.Scheduler(store, prefetch=0)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=60))
    sched.close()
    assert summary.delivered == 200
    assert max(leased_seen) <= 8
    with pytest.raises(airq_nb.SchedulerError, match="prefetch"):
        airq_nb.Scheduler(store, prefetch=-1)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_prefetched_messages_start_in_due_order(store, concurrency):
    started = []

    async def handler(value):
        started.append(value)
        await asyncio.sleep(0)

    fill(store, 600)
    sched = airq_nb.Scheduler(store, concurrency=concurrency)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=60))
    sched.close()
    assert summary.delivered == 600
    assert started == list(range(600))


def test_prefetched_messages_keep_their_leases_while_they_wait(store, db_path):
    """A handler blocks for several leases while others wait prefetched behind it: their
    leases are renewed (nobody else can claim them), and their lateness counts the wait."""
    lease, block = 0.6, 2.0
    seen: list[tuple[float, list[float]]] = []

    def handler(value):
        if value == 20:
            time.sleep(block)
            with airq_nb.open_store(db_path) as other:  # as another process would look
                held = other.queue.list(state="leased")
                seen.append((time.time(), [m.lease_expires_at for m in held]))

    fill(store, 60)
    sched = airq_nb.Scheduler(store, concurrency=1, lease_seconds=lease)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=60))
    sched.close()
    assert summary.delivered == 60 and summary.lost == 0 and summary.failed == 0
    ((looked_at, expiries),) = seen
    assert len(expiries) > 1  # the running one and prefetched ones behind it
    assert all(expires > looked_at for expires in expiries)  # still leased: renewed
    log = airq_nb.read_delivery_log(store)
    assert set(log["attempt"]) == {1} and set(log["outcome"]) == {"ok"}
    assert len(log) == 60
    # Lateness runs from the due time: a message that waited behind the block shows it.
    waited = log[log["message_id"] == 60]["lateness_ms"].iloc[0]
    assert waited >= block * 1000 * 0.9


def test_prefetched_messages_go_back_unstarted_when_run_until_idle_times_out(store):
    started = []

    async def handler(value):
        started.append(value)
        if value == 10:
            await asyncio.sleep(60)

    fill(store, 100)
    sched = airq_nb.Scheduler(store, concurrency=1)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=1.5))
    sched.close()
    assert summary.timed_out
    assert started == list(range(11))
    assert summary.delivered == 10
    assert summary.released >= 2  # the cancelled one and prefetched ones
    assert leased(store) == 0
    queued = store.queue.list(state="queued")
    assert [m.value for m in queued] == list(range(10, 100))
    assert all(m.attempts == 0 for m in queued)  # a given-back attempt is not counted


def test_stop_gives_prefetched_messages_back(store):
    started = []

    async def main():
        sched = airq_nb.Scheduler(store, concurrency=1)
        blocker = asyncio.Event()

        async def handler(value):
            started.append(value)
            if value == 10:
                await blocker.wait()

        sched.listen_queue(handler)
        sched.start()
        deadline = time.monotonic() + 30
        while len(started) < 11 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        held = leased(store)
        await sched.stop()
        sched.close()
        return held

    fill(store, 100)
    held = run(main())
    assert started == list(range(11))
    assert held > 1  # prefetched messages were held behind the blocked one
    assert leased(store) == 0
    queued = store.queue.list(state="queued")
    assert [m.value for m in queued] == list(range(10, 100))
    assert all(m.attempts == 0 for m in queued)


def test_a_topic_paused_while_its_messages_wait_prefetched_starts_none_of_them(store, db_path):
    started = []

    def handler(value):
        started.append(value)
        if value == 10:
            with airq_nb.open_store(db_path) as other:  # as another process would
                other.queue.pause("default")
            time.sleep(PREFETCH_FRESH_SECONDS * 4)

    fill(store, 100)
    sched = airq_nb.Scheduler(store, concurrency=1)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=30))
    assert started == list(range(11))  # nothing prefetched ran after the pause
    assert summary.delivered == 11 and summary.released >= 1
    assert leased(store) == 0
    assert [m.value for m in store.queue.list(state="queued")] == list(range(11, 100))
    store.queue.resume("default")
    summary = run(sched.run_until_idle(timeout=30))
    sched.close()
    assert summary.delivered == 89
    assert started == list(range(100))


def test_the_rate_limit_holds_with_the_default_prefetch(clocked_store, fake_clock):
    leased_seen = []

    async def handler(value):
        leased_seen.append(leased(clocked_store))

    fill(clocked_store, 40)
    sched = airq_nb.Scheduler(clocked_store, max_deliveries_per_second=20)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=60, until=timedelta(seconds=10)))
    sched.close()
    assert summary.delivered == 40
    log = airq_nb.read_delivery_log(clocked_store).sort_values("started_at")
    starts = [t.timestamp() for t in log["started_at"]]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 1 / 20 - 1e-5  # no faster than the limit
    assert max(leased_seen) <= sched.concurrency  # nothing claimed beyond what may start


def spawn(db_path, go, seconds, out) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db_path), str(go), str(seconds), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("messages", "seconds", "least"),
    [
        # Slow handlers (longer than the horizon) prefetch nothing: a fair split.
        (40, PREFETCH_HORIZON * 1.6, 10),
        # Quick ones prefetch what starts within the horizon: both still get a share.
        (2000, 0.002, 400),
    ],
)
def test_two_processes_sharing_a_backlog_both_get_a_share(
    db_path, tmp_path, messages, seconds, least
):
    with airq_nb.open_store(db_path) as store:
        fill(store, messages)
    go = tmp_path / "go"
    outs = [tmp_path / f"out{n}.json" for n in range(2)]
    workers = [spawn(db_path, go, seconds, out) for out in outs]
    time.sleep(1.0)  # both have imported airq_nb and made their scheduler
    go.write_text("go")
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    handled = [json.loads(out.read_text()) for out in outs]
    assert sorted(handled[0] + handled[1]) == list(range(messages))  # each once
    assert all(len(h) >= least for h in handled), [len(h) for h in handled]
    with airq_nb.open_store(db_path) as store:
        log = airq_nb.read_delivery_log(store)
        assert len(log) == messages and set(log["outcome"]) == {"ok"}
        assert store.queue.counts().total == 0


def test_claims_seen_unpaused_too_long_ago_are_looked_at_again_not_given_up(store, monkeypatch):
    """A slow trip (a loaded machine, a far server) brings claims back stale for the pause
    check: the scheduler trips again to re-read the paused topics, and delivers them all."""
    monkeypatch.setattr(prefetch, "PREFETCH_FRESH_SECONDS", 0.002)
    started = []

    async def handler(value):
        started.append(value)
        await asyncio.sleep(0)

    fill(store, 200)
    sched = airq_nb.Scheduler(store, concurrency=1)
    sched.listen_queue(handler)
    summary = run(sched.run_until_idle(timeout=60))
    sched.close()
    assert started == list(range(200))
    assert summary.delivered == 200 and summary.released == 0
