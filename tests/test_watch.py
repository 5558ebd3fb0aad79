"""``store.watch(keys)``: Deno KV's ``kv.watch``, on both backends.

The first two tests translate Deno's own (denoland/deno ``tests/unit/kv_test.ts``, "key
watch" and "watch should stop when db closed"); the others pin down what Deno's code does:
``ext/kv/01_db.ts`` ``watch()`` yields only when a watched key's versionstamp changed (no
``raw``), ``ext/kv/lib.rs`` ``op_kv_watch`` refuses more than ``MAX_WATCHED_KEYS`` (10,
``ext/kv/config.rs``) keys and keys too large to read when ``watch()`` is called, and
denokv ``sqlite/lib.rs`` ``watch()`` reads the keys' current entries first, then again after
each commit. Changes come from other threads and real child processes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import airq_nb
from airq_nb.store._watch import RESYNC_INTERVAL, KeyWatch

pytestmark = pytest.mark.backends("sqlite", "postgres")

#: Generous: how long a test waits for a yield that must come (a slow, shared machine).
MUST_COME = 10.0
#: How long a test waits to see that nothing is yielded.
QUIET = 0.5


def in_loop(test):
    """Run an ``async def`` test in its own event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


async def next_within(watch: KeyWatch, seconds: float = MUST_COME) -> list[airq_nb.Entry]:
    return await asyncio.wait_for(anext(watch), seconds)


async def nothing_within(watch: KeyWatch, seconds: float = QUIET) -> None:
    task = asyncio.ensure_future(anext(watch))
    done, _ = await asyncio.wait([task], timeout=seconds)
    task.cancel()
    assert not done, f"the watch yielded {task.result() if done else None} with no change"


def _hub_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "airq_nb watch"]


def _wait_until(condition, seconds: float = MUST_COME) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _set_in_child(location: Path | str, key: tuple, value: object, *, enqueue: bool = False) -> str:
    """Set ``key`` from a separate Python process (enqueueing a message in the same commit
    if told to); its versionstamp."""
    code = (
        "import sys, json, airq_nb\n"
        "with airq_nb.open_store(sys.argv[1]) as s:\n"
        "    op = s.atomic().set(tuple(json.loads(sys.argv[2])), json.loads(sys.argv[3]))\n"
        "    if sys.argv[4] == 'enqueue':\n"
        "        op.enqueue('work')\n"
        "    print(op.commit().versionstamp)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(location),
            json.dumps(key),
            json.dumps(value),
            "enqueue" if enqueue else "",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "AIRQ_NB_DB": ""},
    )
    return done.stdout.strip()


# -- Deno's own tests --------------------------------------------------------------------


@in_loop
async def test_key_watch(store: airq_nb.Store) -> None:
    """deno tests/unit/kv_test.ts, dbTest("key watch"): the missing key first (null value and
    versionstamp), then the value and the versionstamp ``set`` returned."""
    history: list[airq_nb.Entry] = []
    watcher = store.watch([("key",)])

    async def work() -> None:
        for _ in range(2):
            entries = await anext(watcher)
            history.append(entries[0])
        await watcher.aclose()

    worker = asyncio.create_task(work())
    while len(history) != 1:
        await asyncio.sleep(0.1)
    assert history[0] == airq_nb.Entry(("key",), None, None)
    versionstamp = (await asyncio.to_thread(store.set, ("key",), 1)).versionstamp
    while len(history) != 2:
        await asyncio.sleep(0.1)
    assert history[1] == airq_nb.Entry(("key",), 1, versionstamp)
    await asyncio.wait_for(worker, MUST_COME)
    with pytest.raises(StopAsyncIteration):
        await anext(watcher)


@in_loop
async def test_watch_should_stop_when_the_store_is_closed(db_path: Path) -> None:
    """deno tests/unit/kv_test.ts, "watch should stop when db closed": ``for await`` over a
    watch ends (without an error) when the database closes 100 ms later."""
    db = airq_nb.open_store(db_path)
    watch = db.watch([("a",)])

    async def completion() -> int:
        seen = 0
        async for _item in watch:
            seen += 1
        return seen

    task = asyncio.create_task(completion())
    asyncio.get_running_loop().call_later(0.1, db.close)
    assert await asyncio.wait_for(task, MUST_COME) == 1  # the current entries, then the end
    assert _wait_until(lambda: not _hub_threads()), "the change thread outlived the store"


# -- what Deno's implementation does ----------------------------------------------------


@in_loop
async def test_entries_come_one_per_key_in_the_order_given(store: airq_nb.Store) -> None:
    """ext/kv/01_db.ts: one entry per watched key, in order, a missing one null/null; a
    key watched twice appears twice."""
    b = store.set(("b",), "bee")
    async with store.watch([("b",), ("a",), ("b",)]) as watch:
        first = await next_within(watch)
        assert first == [
            airq_nb.Entry(("b",), "bee", b.versionstamp),
            airq_nb.Entry(("a",), None, None),
            airq_nb.Entry(("b",), "bee", b.versionstamp),
        ]
        a = await asyncio.to_thread(store.set, ("a",), {"n": 1})
        second = await next_within(watch)
        assert [e.value for e in second] == ["bee", {"n": 1}, "bee"]
        assert second[1].versionstamp == a.versionstamp


@in_loop
async def test_a_commit_that_changes_no_watched_versionstamp_yields_nothing(
    store: airq_nb.Store,
) -> None:
    """ext/kv/01_db.ts ``watch()``: an update whose versionstamps equal the last ones is
    skipped (``if (!changed && !raw) continue``): another key's write, or deleting a key
    that is already missing, yields nothing; setting the same value again is a new
    versionstamp, so it yields."""
    first = store.set(("watched",), 1)
    async with store.watch([("watched",), ("missing",)]) as watch:
        assert (await next_within(watch))[0].versionstamp == first.versionstamp
        await asyncio.to_thread(store.set, ("other",), 2)
        await asyncio.to_thread(store.delete, ("missing",))
        await nothing_within(watch)
        again = await asyncio.to_thread(store.set, ("watched",), 1)
        entries = await next_within(watch)
        assert entries[0] == airq_nb.Entry(("watched",), 1, again.versionstamp)
        await asyncio.to_thread(store.delete, ("watched",))
        assert (await next_within(watch))[0] == airq_nb.Entry(("watched",), None, None)


@in_loop
async def test_a_burst_of_commits_is_one_yield_of_the_latest_state(store: airq_nb.Store) -> None:
    """lib.deno.unstable.d.ts ``watch``: "does not return every single intermediate state
    ... only the latest state": 50 commits while the consumer is busy are one yield (denokv
    ``tests/integration.rs`` ``watch`` writes 10 values and waits for a changed entry)."""
    async with store.watch([("counter",)]) as watch:
        await next_within(watch)

        def burst() -> str | None:
            last = None
            for n in range(50):
                last = store.set(("counter",), n).versionstamp
            return last

        last = await asyncio.to_thread(burst)
        entries = await next_within(watch)
        assert entries == [airq_nb.Entry(("counter",), 49, last)]
        await nothing_within(watch)


@in_loop
async def test_a_change_made_by_another_process_is_seen(
    db_path: Path, store: airq_nb.Store
) -> None:
    """The point of watch: a write by a separate process (a collector in another kernel)."""
    async with store.watch([("from", "child")]) as watch:
        assert (await next_within(watch))[0].value is None
        for n in range(3):
            stamp = await asyncio.to_thread(_set_in_child, db_path, ("from", "child"), n)
            assert (await next_within(watch))[0] == airq_nb.Entry(("from", "child"), n, stamp)


def test_the_blocking_form_in_a_thread(store: airq_nb.Store) -> None:
    """``for entries in store.watch(keys)`` blocks its thread; ``close()`` from another thread
    ends it."""
    seen: list[object] = []
    watch = store.watch([("k",)])

    def consume() -> None:
        for entries in watch:
            seen.append(entries[0].value)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert _wait_until(lambda: seen == [None])
    store.set(("k",), "one")
    assert _wait_until(lambda: seen == [None, "one"])
    store.set(("k",), "two")
    assert _wait_until(lambda: seen == [None, "one", "two"])
    watch.close()
    consumer.join(MUST_COME)
    assert not consumer.is_alive(), "close() did not end the blocking watch"
    assert next(iter(watch), "ended") == "ended"


@in_loop
async def test_breaking_out_or_cancelling_stops_the_change_thread(store: airq_nb.Store) -> None:
    """Leaving ``async for`` (the watch is dropped) or cancelling the task leaves nothing
    running: the change thread stops with the last open watch."""
    async for entries in store.watch([("x",)]):
        assert entries[0].value is None
        break
    assert await asyncio.to_thread(_wait_until, lambda: not _hub_threads())

    async def forever() -> None:
        async for _entries in store.watch([("x",)]):
            pass

    task = asyncio.create_task(forever())
    await asyncio.sleep(0.2)
    assert _hub_threads(), "an open watch runs its store's change thread"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(_wait_until, lambda: not _hub_threads())
    store.set(("x",), 1)  # the store is as usable as before


@in_loop
async def test_watches_of_one_store_share_the_change_signal(store: airq_nb.Store) -> None:
    """Several watches (an async one and a blocking one in a thread) each see each change."""
    blocking_seen: list[object] = []
    blocking = store.watch([("shared",)])

    def consume() -> None:
        for entries in blocking:
            blocking_seen.append(entries[0].value)

    consumer = threading.Thread(target=consume)
    consumer.start()
    async with store.watch([("shared",)]) as one, store.watch([("shared",), ("y",)]) as two:
        await next_within(one), await next_within(two)
        await asyncio.to_thread(store.set, ("shared",), "v")
        assert (await next_within(one))[0].value == "v"
        assert (await next_within(two))[0].value == "v"
    assert await asyncio.to_thread(_wait_until, lambda: blocking_seen == [None, "v"])
    blocking.close()
    consumer.join(MUST_COME)
    assert await asyncio.to_thread(_wait_until, lambda: not _hub_threads())


def test_a_watch_leaves_the_schedulers_wake_ups_alone(db_path: Path, store: airq_nb.Store) -> None:
    """``store.wait_for_change`` (what a scheduler waits on) reports another process's commit
    of new work made while the scheduler was busy, even though an open watch of the same
    store has seen that commit first: the watch takes no wake-up from it (SQLite's shared
    waiter serves one consumer)."""
    store.wait_for_change(0)  # starts watching, as a Scheduler does
    with store.watch([("w",)]) as watch:
        assert next(watch)[0].value is None
        store.wait_for_change(0)  # the scheduler looks, then gets busy with a trip
        _set_in_child(db_path, ("w",), 1, enqueue=True)
        assert next(watch)[0].value == 1  # the watch has seen the commit
        assert store.wait_for_change(MUST_COME), "the scheduler's wait missed the commit"


# -- keys: checked when watch() is called, as op_kv_watch does ---------------------------


def test_more_than_ten_keys_is_a_type_error(store: airq_nb.Store) -> None:
    """ext/kv/lib.rs ``op_kv_watch``: ``TooManyKeys`` ("Too many keys (max 10)", a
    TypeError) for more than ``max_watched_keys`` (10); ten are fine."""
    ten = [("k", n) for n in range(10)]
    with store.watch(ten) as watch:
        assert len(next(watch)) == 10
    with pytest.raises(airq_nb.InvalidKeyError, match=r"Too many keys \(max 10\)") as caught:
        store.watch([*ten, ("k", 10)])
    assert isinstance(caught.value, TypeError)
    assert not _hub_threads() or _wait_until(lambda: not _hub_threads())


@pytest.mark.parametrize(
    "keys",
    [
        [["a"]],  # a list is not a key here, as for get()
        [()],  # no parts
        [("k", "x" * 3000)],  # too large to read (op_kv_watch's check_read_key_size)
        [("k", object())],  # not a key part
        ("a", "b"),  # one key, not a sequence of keys
        "abc",
        None,
    ],
)
def test_bad_keys_are_refused_when_watch_is_called(store: airq_nb.Store, keys: object) -> None:
    with pytest.raises(airq_nb.InvalidKeyError):
        store.watch(keys)  # type: ignore[arg-type]


@in_loop
async def test_watching_no_keys_yields_nothing(store: airq_nb.Store) -> None:
    """ext/kv/01_db.ts: with no keys nothing ever counts as changed, and the stream ends."""
    assert [entries async for entries in store.watch([])] == []
    assert list(store.watch(())) == []


# -- what Deno has no test for ---------------------------------------------------------


@in_loop
async def test_an_expired_entry_shows_as_missing_at_the_next_re_read(
    clocked_store: airq_nb.Store, fake_clock: airq_nb.FakeClock
) -> None:
    """Expiry is no commit: the watch sees it when it re-reads (every RESYNC_INTERVAL)."""
    written = clocked_store.set(("short",), "lived", expire_in=10)
    async with clocked_store.watch([("short",)]) as watch:
        assert (await next_within(watch))[0].versionstamp == written.versionstamp
        fake_clock.advance(11)
        entries = await next_within(watch, RESYNC_INTERVAL + MUST_COME)
        assert entries == [airq_nb.Entry(("short",), None, None)]


def test_a_closed_store_ends_a_new_watch_at_once(db_path: Path) -> None:
    store = airq_nb.open_store(db_path)
    store.close()
    assert list(store.watch([("a",)])) == []


def test_a_watch_rides_out_a_postgresql_restart(postgres_store_url: str) -> None:
    """The server restarted (``pg_ctl restart -m fast``) under an open watch: the watch
    neither raises nor ends, and a change committed after the restart, before the watch
    looked again, is yielded — every look re-reads, LISTEN/NOTIFY or not."""
    from test_postgres_processes import _restart_server

    with airq_nb.open_store(postgres_store_url) as store, store.watch([("r",)]) as watch:
        assert next(watch)[0].value is None
        store.set(("r",), "before")
        assert next(watch)[0].value == "before"
        _restart_server()
        stamp = _set_in_child(postgres_store_url, ("r",), "after")
        assert next(watch) == [airq_nb.Entry(("r",), "after", stamp)]
        store.set(("r",), "again")  # the store's own pool reconnected too
        assert next(watch)[0].value == "again"


# -- the live views: refreshed by watch, the poll as the fallback ------------------------


def _collect(store: airq_nb.Store, openmeteo_server) -> int:
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    return airq_nb.collect_now(store, source=source).stored


async def _until(condition, seconds: float = MUST_COME) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


@in_loop
async def test_the_status_panel_refreshes_when_the_collector_stores_readings(
    store: airq_nb.Store, openmeteo_server
) -> None:
    """Its poll is an hour away: the first readings show through the store's change signal
    (nothing to watch yet), later runs through a watch of the collector's records, which
    an unrelated commit does not touch."""
    from airq_nb.collector._job import RECORDS
    from airq_nb.ui.widgets import StatusPanel

    panel = StatusPanel(store, interval=3600)
    try:
        assert "none yet" in panel.value
        assert await _until(lambda: panel.watching)
        stored = await asyncio.to_thread(_collect, store, openmeteo_server)
        assert await _until(lambda: f"{stored:,} hourly readings" in panel.value)
        assert panel.changes == 1
        await asyncio.sleep(0.5)  # the panel now watches the record the run wrote
        await asyncio.to_thread(store.set, ("unrelated",), 1)
        await asyncio.sleep(2.5)
        assert panel.changes == 1, "an unrelated commit refreshed the watching panel"
        record = (*RECORDS, "London", "open-meteo")
        value = (await asyncio.to_thread(store.get, record)).value
        await asyncio.to_thread(store.set, record, {**value, "outcome": "error"})
        assert await _until(lambda: panel.changes == 2)
    finally:
        panel.close()
    assert await asyncio.to_thread(_wait_until, lambda: not _hub_threads())


@in_loop
async def test_readings_stored_before_the_panel_first_looks_still_show(
    store: airq_nb.Store, openmeteo_server
) -> None:
    """A run that commits between the panel's first drawing and its task's first look (what
    CI once hit: the task then watched the new records and took them as already shown)."""
    from airq_nb.collector._job import RECORDS
    from airq_nb.ui.widgets import StatusPanel

    panel = StatusPanel(store, interval=3600, autostart=False)
    try:
        assert "none yet" in panel.value
        stored = await asyncio.to_thread(_collect, store, openmeteo_server)
        panel.start()
        assert await _until(lambda: f"{stored:,} hourly readings" in panel.value)
        assert await _until(lambda: panel.watching)
        assert panel.changes == 0
        record = (*RECORDS, "London", "open-meteo")
        value = (await asyncio.to_thread(store.get, record)).value
        await asyncio.to_thread(store.set, record, {**value, "outcome": "error"})
        assert await _until(lambda: panel.changes == 1)  # and it watches the run's record
    finally:
        panel.close()
    assert await asyncio.to_thread(_wait_until, lambda: not _hub_threads())


@in_loop
async def test_a_view_on_the_poll_alone_is_not_redrawn_as_its_task_starts(
    store: airq_nb.Store,
) -> None:
    """Nothing to compare with, so nothing can be missed: the constructor's drawing stands
    until the poll comes round."""
    from airq_nb.ui._refresh import PeriodicRefresh

    class Counted(PeriodicRefresh):
        def __init__(self) -> None:
            self.store, self.interval, self.drawn = store, 3600.0, 0

        def refresh(self) -> None:
            self.drawn += 1

        def _report(self, error: BaseException) -> None:
            raise error

    view = Counted()
    view.refresh()
    view.start()
    try:
        await asyncio.sleep(0.3)
        assert view.refreshing and not view.watching
        assert view.drawn == 1
    finally:
        view.stop()


@in_loop
async def test_the_live_chart_redraws_when_readings_land(
    store: airq_nb.Store, openmeteo_server
) -> None:
    """LiveChart with its poll an hour away: the collector's run shows in the stats panel."""
    from airq_nb.ui import charts

    live = charts.LiveChart(store, interval=3600)
    live.start()
    try:
        assert await _until(lambda: live.watching)
        before = live.refreshes
        stored = await asyncio.to_thread(_collect, store, openmeteo_server)
        assert await _until(lambda: live.refreshes > before)
        assert f"{stored:,}" in live._figure("stats_panel").text
        assert live.changes == 1
    finally:
        live.stop()
    assert await asyncio.to_thread(_wait_until, lambda: not _hub_threads())


@pytest.mark.kernel
def test_the_status_panel_refreshes_itself_in_a_real_kernel(
    db_path: Path, openmeteo_server
) -> None:
    """In a live kernel the panel's watch runs on the kernel's loop without blocking it: a
    collection made by another process shows, and other cells run meanwhile."""
    from jupyter_client.manager import KernelManager
    from test_scheduler_kernel import execute

    airq_nb.open_store(db_path).close()
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, "AIRQ_NB_DB": str(db_path)})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        started = execute(
            client,
            "import airq_nb\nfrom airq_nb.ui.widgets import StatusPanel\n"
            "store = airq_nb.open_store()\npanel = StatusPanel(store, interval=3600)\n"
            "print(panel.refreshing)",
        )
        assert started.strip() == "True"
        deadline = time.monotonic() + MUST_COME
        while execute(client, "print(panel.watching)").strip() != "True":
            assert time.monotonic() < deadline, "the panel's task never started watching"
            time.sleep(0.1)
        with airq_nb.open_store(db_path) as store:
            stored = _collect(store, openmeteo_server)
        shown = f"'{stored:,} hourly readings' in panel.value"
        deadline = time.monotonic() + MUST_COME * 2
        while execute(client, f"print({shown})").strip() != "True":
            assert time.monotonic() < deadline, "the panel never showed the readings"
            time.sleep(0.2)
        assert execute(client, "print(panel.changes, sum(range(1000)))").split() == ["1", "499500"]
        execute(client, "panel.close(); store.close()")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
