"""The asyncio runtime: start, stop, ``run_until_idle``, loop bridging and change-wait wake-ups.

It runs as one background task on the running event loop (a Jupyter kernel's), or headless
through :meth:`Scheduler.run_until_idle`. Between trips to the store (see
:mod:`.dispatcher`) it sleeps until the next message or schedule slot is due, a handler
finishes, or the store reports a commit by another connection (``store.wait_for_change``,
awaited on a thread of its own) — so work queued by another process is noticed within
milliseconds without busy polling. Calls made from the loop itself (a notebook cell) use
the store directly: reads such as :meth:`Scheduler.status` do not wait for writers, but
writes such as :meth:`Scheduler.schedule` can wait for another process's write lock.

Messages are only claimed for topics that have a handler here: a message of another topic
stays queued for the process that handles it (``status().backlog`` shows it waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import SchedulerError, StoreClosedError, StoreError, StoreUnavailableError
from ._api import SchedulerApi, positive, until_as_unix, weak_call
from ._waiting import Waiting
from .delivery_log import utc
from .dispatcher import Dispatcher
from .executors import describe
from .status import Status, store_status

if TYPE_CHECKING:
    from .._clock import Clock
    from ..store import Store

__all__ = ["RunSummary", "Scheduler"]

log = logging.getLogger("airq_nb.scheduler")
#: The background runtime claims a message this long before it is due, then starts it on time.
EARLY_CLAIM_SECONDS = 0.010
#: A headless run waits this long after its first failed trip to the store, then twice as
#: long each time, up to OUTAGE_PAUSE_MAX (a server restarting: see run_until_idle).
OUTAGE_PAUSE_MIN = 0.05
OUTAGE_PAUSE_MAX = 1.0


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one :meth:`Scheduler.run_until_idle` call did.

    ``failed`` counts attempts whose handler raised (or timed out), including those that
    were then dead-lettered; ``dead_lettered`` counts messages whose attempts ran out.
    """

    delivered: int
    failed: int
    dead_lettered: int
    next_due: datetime | None
    scheduled_runs: int = 0
    lost: int = 0
    released: int = 0
    timed_out: bool = False

    def __str__(self) -> str:
        from .._format import run_summary_text

        return run_summary_text(self, now=time.time())


class Scheduler(SchedulerApi, Waiting):
    """Delivers queue messages to handlers and runs durable schedules on an asyncio loop.

    ``concurrency`` bounds handlers running at once (sync ones run on a pool of that many
    threads) and ``max_deliveries_per_second`` the rate at which a backlog is started
    (flood control). Due messages are claimed, and finished ones settled, in batches;
    ``prefetch`` more than the free slots may be claimed to wait for one (only as many as
    the handlers lately started within 50 ms, and none under a rate limit). A
    handler's lease is extended while it runs; one that runs longer than
    ``handler_timeout`` counts as failed (see :meth:`listen_queue`). ``poll_interval`` is
    the longest one wait for another process's commit lasts before it is renewed. Delivery
    log rows older than ``log_retention`` are deleted.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        concurrency: int = 8,
        prefetch: int = 256,
        max_deliveries_per_second: float | None = None,
        lease_seconds: float = 30.0,
        handler_timeout: float | None = 300.0,
        log_retention: timedelta = timedelta(days=7),
        poll_interval: float = 0.5,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise SchedulerError(f"concurrency must be a positive integer, got {concurrency!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise SchedulerError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        self.store = store
        self.clock: Clock = clock or store.clock
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.max_deliveries_per_second = positive(
            max_deliveries_per_second, "max_deliveries_per_second", allow_none=True
        )
        self.lease_seconds: float = positive(lease_seconds, "lease_seconds")  # type: ignore[assignment]
        self.handler_timeout = positive(handler_timeout, "handler_timeout", allow_none=True)
        self.log_retention: float = positive(log_retention, "log_retention")  # type: ignore[assignment]
        self.poll_interval: float = positive(poll_interval, "poll_interval")  # type: ignore[assignment]
        # Start watching before the first look at the queue, so no commit goes unnoticed.
        store.wait_for_change(0)
        store.open_change_wait()
        # A message enqueued in this process (a notebook cell) wakes the runtime at once.
        self._unsubscribe = store.on_queue_change(weak_call(self.wake))
        self._handlers: dict[str, Any] = {}
        self._dispatcher = Dispatcher(
            store,
            self.clock,
            self._handlers,
            concurrency=concurrency,
            prefetch=prefetch,
            rate=self.max_deliveries_per_second,
            lease_seconds=self.lease_seconds,
            handler_timeout=self.handler_timeout,
            log_retention=self.log_retention,
            on_change=self.wake,
        )
        self._watch_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="airq-watch")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._watching: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session = False
        self._stopping = False
        self._runtime_error: str | None = None
        self._outage_pause = OUTAGE_PAUSE_MIN
        self._closed = False
        try:
            # Remember the kernel's loop so start() from a widget thread can hand over to it.
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        except RuntimeError:
            pass

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Scheduler {str(self.store.path)!r} {state}, topics={sorted(self._handlers)}>"

    def _note_writes(self, count: int) -> None:
        checkpointer = self._dispatcher.checkpointer
        if checkpointer is not None:
            checkpointer.note_writes(count)

    # -- status -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the background runtime started by :meth:`start` is alive."""
        task = self._task
        # A task on a closed loop (the kernel restarted its loop) never finishes: not running.
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def status(self) -> Status:
        """Next due time, last delivery's accuracy and outcome, backlog, dead letters."""
        return replace(
            store_status(self.store),
            running=self.running,
            in_flight=len(self._dispatcher.in_flight),
            topics=self.topics,
            runtime_error=self._runtime_error,
            stuck_handlers=self._dispatcher.threads.stuck,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start delivering in the background on the running event loop; returns at once.

        Calling it again while running does nothing. From a thread without a loop (a
        widget callback) the start is handed to the loop the scheduler was created on.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        home = self._loop
        if (
            home is not None
            and home is not loop
            and home.is_running()
            and threading.get_ident() != self._loop_thread
        ):
            home.call_soon_threadsafe(self._start_on, home)
            return
        if loop is None:
            raise SchedulerError(
                "start() needs a running asyncio event loop (a Jupyter kernel has one). "
                "In a script or cron job use asyncio.run(sched.run_until_idle()) instead."
            )
        self._start_on(loop)

    def _start_on(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.running:
            if self._loop is not loop:
                raise SchedulerError("this scheduler is already running on another event loop")
            return
        if self._session:
            raise SchedulerError("run_until_idle() is in progress; start() after it returns")
        self._begin_session(loop, lead=EARLY_CLAIM_SECONDS)
        self._task = loop.create_task(self._run_forever(), name="airq_nb scheduler")
        self._dispatcher.checkpointer = self.store.checkpointer()
        self._task.add_done_callback(self._runtime_ended)

    def _runtime_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._runtime_error = describe(task.exception())  # type: ignore[arg-type]
            log.error("the airq_nb scheduler stopped: %s", self._runtime_error)
        self._close_checkpointer()
        self._session = False

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop the runtime; in-flight handlers get ``grace`` seconds, then their leases go back.

        Released messages are due again at once (for this or another process) and the
        attempt is not counted. A sync handler whose thread is still running cannot be
        stopped: its message is not given back but stays leased (renewed on a thread of its
        own) until the thread returns, and is then settled by its outcome; if the process
        ends first, the lease lapses and the message is delivered again as a counted
        attempt. Returns promptly either way. Safe to await from another thread's loop.
        """
        home = self._loop
        if self._task is None or home is None:
            return
        if asyncio.get_running_loop() is not home:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(grace), home))
            return
        await self._stop(grace)

    def request_stop(self, *, grace: float = 0.0) -> ConcurrentFuture[None] | None:
        """Ask the runtime to stop from synchronous code (a widget callback); returns a future."""
        home = self._loop
        if self._task is None or home is None or home.is_closed():
            return None
        return asyncio.run_coroutine_threadsafe(self._stop(grace), home)

    async def _stop(self, grace: float) -> None:
        task = self._task
        if task is None:
            return
        self._stopping = self._dispatcher.stopping = True
        self._close_checkpointer()
        self.wake()
        if grace > 0:
            await self._dispatcher.flights.wait_settled(grace)
        # The runtime finishes first: a trip under way may still come back with claims
        # (it gives them back); then in-flight work goes back and everything is settled.
        await asyncio.gather(task, return_exceptions=True)
        await self._dispatcher.release_in_flight()
        await self._dispatcher.flush()
        self._task = None

    def close(self) -> None:
        """Free the worker threads (after :meth:`stop`); the store stays open."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self._close_checkpointer()
        self._dispatcher.close()
        self.store.close_change_wait()
        # A wait under way sees the close within one check (~10 ms) and closes its file.
        self._watch_pool.shutdown(wait=True)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` freed the worker threads (this scheduler cannot run again)."""
        return self._closed

    def _close_checkpointer(self) -> None:
        if self._dispatcher.checkpointer is not None:
            self._dispatcher.checkpointer.close()
            self._dispatcher.checkpointer = None

    # -- headless -----------------------------------------------------------------------

    async def run_until_idle(
        self,
        *,
        timeout: float | None = None,
        until: datetime | timedelta | float | None = None,
    ) -> RunSummary:
        """Deliver everything due (schedule runs included) and return when nothing more is.

        It returns only when nothing is due at that moment — also runs that misfire handling
        plans during the call (a ``coalesce`` run of slots missed before it, planned at
        "now"). Work that falls due later (a retry in 30 s, the next hourly slot) is left for
        a later call and reported as ``next_due``. With ``until`` (an aware datetime, a
        timedelta from now, or Unix seconds) the scheduler also waits for and runs
        everything due up to then — with a FakeClock that waiting is instant, so a week of
        hourly runs takes milliseconds. ``timeout`` bounds the call in real seconds;
        in-flight work is then released (a running sync handler's message is kept, as by
        :meth:`stop`) and ``timed_out`` is set. A sync handler that overran
        ``handler_timeout`` is not waited for: its message is kept until its thread returns.

        A store that fails a trip (a PostgreSQL restart or crash, a lost connection, a lock
        time-out) is retried after a pause growing to 1 s, as by :meth:`start`, for as long
        as ``timeout`` allows (without one, until it answers); nothing is lost or settled
        twice. If the time-out comes while the store still cannot be written, it raises
        :class:`~airq_nb.StoreUnavailableError` (a ``StoreError``) instead of returning:
        what it finished but could not record is delivered again once its leases lapse.
        """
        if self.running or self._session:
            raise SchedulerError(
                "the scheduler is already delivering (start() or another run_until_idle()); "
                "await sched.stop() first"
            )
        loop = asyncio.get_running_loop()
        started = self.clock.now()
        limit = started if until is None else until_as_unix(until, started)
        deadline = None if timeout is None else loop.time() + timeout
        self._begin_session(loop)
        dispatcher = self._dispatcher
        timed_out = False
        next_due: float | None = None
        try:
            async with self._helpers():  # the leases are kept until everything is settled
                try:
                    async with asyncio.timeout(timeout):
                        await self._drain(limit)
                except TimeoutError:
                    timed_out = True
                except BaseException:
                    await dispatcher.release_in_flight()
                    await dispatcher.flush()
                    raise
                await dispatcher.release_in_flight()
                next_due = await self._settle_all(deadline)
        finally:
            self._session = False
        counts = dispatcher.counts
        return RunSummary(
            delivered=counts.delivered,
            failed=counts.failed,
            dead_lettered=counts.dead_lettered,
            next_due=utc(next_due),
            scheduled_runs=counts.scheduled_runs,
            lost=counts.lost,
            released=counts.released,
            timed_out=timed_out,
        )

    async def _settle_all(self, deadline: float | None) -> float | None:
        """Commit every pending settlement and read the next due time, riding out a store
        outage until ``deadline`` (loop time); past it, :class:`StoreUnavailableError`."""
        dispatcher = self._dispatcher
        while True:
            try:
                await dispatcher.flush()
                return await dispatcher.call_store(dispatcher.overall_next_due)
            except StoreClosedError:
                raise
            except StoreError as exc:
                loop = asyncio.get_running_loop()
                if deadline is not None and loop.time() >= deadline:
                    unsettled = len(dispatcher.pending)
                    raise StoreUnavailableError(
                        f"run_until_idle() reached its time-out while the store could not be "
                        f"written ({describe(exc)}). {unsettled} finished deliveries are not "
                        "recorded: their messages stay leased until their leases lapse "
                        f"(at most {self.lease_seconds:g} s) and are then delivered again "
                        "(at least once). Run it again once the store is reachable."
                    ) from exc
                await self._outage(exc, deadline)

    async def _outage(self, exc: StoreError, deadline: float | None) -> None:
        """A trip failed on the store (a server restart, a lost connection, a lock time-out):
        report it, wait a little (longer each time, at most 1 s, never past ``deadline``)."""
        self._runtime_error = describe(exc)
        pause = self._outage_pause
        self._outage_pause = min(2.0 * pause, OUTAGE_PAUSE_MAX)
        log.warning("airq_nb scheduler: %s; retrying in %.2g s", self._runtime_error, pause)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - asyncio.get_running_loop().time()))
        await asyncio.sleep(pause)

    def _store_reached(self) -> None:
        if self._outage_pause != OUTAGE_PAUSE_MIN:
            self._outage_pause = OUTAGE_PAUSE_MIN
            self._runtime_error = None

    async def _drain(self, limit: float) -> None:
        assert self._wake is not None
        dispatcher = self._dispatcher
        stalls = 0
        while True:
            self._wake.clear()
            self._stop_watching()
            try:
                tick = await dispatcher.trip()
            except StoreClosedError:
                raise
            except StoreError as exc:  # the server restarted or crashed: ride it out
                await self._outage(exc, None)
                continue
            self._store_reached()
            stalls = 0 if tick.progress else stalls
            if dispatcher.pending:
                if tick.saturated:  # a backlog: quick handlers share trips
                    await self._gather_landings()
                continue  # settle them (and claim more) at once
            if dispatcher.in_flight:
                await self._wait_for_event(self.poll_interval)
                continue
            if tick.saturated and dispatcher.free_slots() > 0:
                continue  # the slots freed after the trip looked: look at the queue again
            now = self.clock.now()
            # The horizon moves with the clock: a run that misfire handling planned at
            # "now" during this call (coalesce) is due before the call returns.
            horizon = max(limit, now)
            wake_at = tick.wake_at
            if wake_at is None or wake_at > horizon:
                if now >= limit and not tick.throttled:
                    return
                if tick.throttled:  # a due backlog drains at max_deliveries_per_second
                    await self._sleep(wake_at - now)  # type: ignore[operator]
                    continue
                await self._sleep(limit - now)
                continue
            if wake_at <= now:
                # Due but nothing could be started (a rare race, or a row that keeps
                # failing to plan): retry a few times rather than spin.
                stalls += not tick.progress
                if stalls >= 3:
                    return
                continue
            await self._sleep(wake_at - now)

    # -- the background runtime ---------------------------------------------------------

    def _begin_session(self, loop: asyncio.AbstractEventLoop, *, lead: float = 0.0) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._watching = asyncio.Event()
        self._session = True
        self._stopping = False
        self._dispatcher.begin(lead=lead)

    @contextlib.asynccontextmanager
    async def _helpers(self) -> Any:
        """The lease keeper and the change watcher, for the length of a session."""
        loop = asyncio.get_running_loop()
        helpers = [
            loop.create_task(self._dispatcher.keep_leases(), name="airq_nb lease keeper"),
            loop.create_task(self._watch_changes(), name="airq_nb change watcher"),
        ]
        try:
            yield
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _run_forever(self) -> None:
        assert self._wake is not None
        lead = self._dispatcher.lead
        async with self._helpers():
            while not self._stopping:
                self._wake.clear()
                self._stop_watching()
                try:
                    tick = await self._dispatcher.trip()
                    wake_at = tick.wake_at
                    self._runtime_error = None
                except Exception as exc:  # e.g. disk full: keep the runtime alive, try again
                    self._runtime_error = describe(exc)
                    log.error("airq_nb scheduler: %s; retrying in 1 s", self._runtime_error)
                    wake_at = self.clock.now() + 1.0
                else:
                    if self._dispatcher.pending:
                        continue  # handlers finished during the trip: settle them now
                if wake_at is None:
                    await self._wait_for_event(None)
                else:
                    await self._wait_for_event(wake_at - lead - self.clock.now())
