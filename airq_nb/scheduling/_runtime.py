"""The asyncio runtime: delivers queue messages to handlers and runs the durable schedules.

It runs as one background task on the running event loop (a Jupyter kernel's), or headless
through :meth:`Scheduler.run_until_idle`. It sleeps until the next message or schedule slot
is due and checks the database's ``data_version`` every ``poll_interval`` seconds, so work
queued by other processes is noticed quickly without busy polling. The runtime's store calls
(planning, claiming, acking) run on one worker thread, so a write lock held by another
process does not block the kernel's loop. Calls made from the loop itself (a notebook
cell) use the store directly: reads such as :meth:`Scheduler.status` do not wait for
writers, but writes such as :meth:`Scheduler.schedule` or :meth:`Scheduler.pause_schedule`
can wait for that lock (up to the store's ``busy_timeout``).

Messages are only claimed for topics that have a handler here: a message of another topic
stays queued for the process that handles it (``status().backlog`` shows it waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import math
import os
import sqlite3
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from .._clock import Clock
from .._errors import Permanent, Retry, SchedulerError
from ..store._queue import MAX_DELAY_SECONDS, DeadLettered, Delivery, check_topic
from ..store._sqlite import Store
from ._delivery_log import (
    LogEntry,
    ensure_delivery_log_table,
    prune_delivery_log,
    utc,
    write_log_entry,
)
from ._schedules import (
    ScheduleInfo,
    claim_absorbs_slots,
    ensure_schedules_table,
    get_schedule,
    list_schedules,
    next_schedule_wake,
    plan_due_runs,
    register_schedule,
    remove_schedule,
    run_schedule_now,
    set_paused,
)
from ._status import Status, store_status

__all__ = ["RunSummary", "Scheduler", "scheduler_for"]

log = logging.getLogger("airq_nb.scheduler")

Handler = Callable[[Any], Any]
T = TypeVar("T")
_PRUNE_EVERY_SECONDS = 3600.0
_MAX_ERROR_CHARS = 2000
#: The background runtime claims a message this long before it is due, then starts it on time.
_EARLY_CLAIM_SECONDS = 0.010
#: While running, checkpoint the WAL from a side connection after this many commits.
_CHECKPOINT_AFTER_WRITES = 50


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


@dataclass(slots=True)
class _Counts:
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    scheduled_runs: int = 0
    lost: int = 0
    released: int = 0


@dataclass(slots=True)
class _InFlight:
    delivery: Delivery
    task: asyncio.Task[None] | None = None
    finishing: bool = False


@dataclass(frozen=True, slots=True)
class _Tick:
    #: Schedule runs queued (counted in RunSummary.scheduled_runs).
    queued_runs: int
    #: Due schedules handled, including ``skip`` ones that queued nothing (progress).
    planned_schedules: int
    broken: list[tuple[str, str]]
    claims: list[tuple[Delivery, float]]
    wake_at: float | None
    #: Due work is waiting only for the rate limit (not idle: look again at ``wake_at``).
    throttled: bool = False
    #: Messages the store dead-lettered while claiming (corrupt, or died on a last attempt).
    dead_on_claim: int = 0


@dataclass(frozen=True, slots=True)
class _Failure:
    error: str
    retry: bool = True
    retry_in: float | None = None


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _outcome_text(exc: Retry | Permanent) -> str:
    """What the log records for a Retry/Permanent: its reason, else the error it wraps."""
    if exc.reason:
        return exc.reason[:_MAX_ERROR_CHARS]
    cause = exc.__cause__
    return _describe(cause) if cause is not None else _describe(exc)


def _retry_in(value: float | None) -> float | None:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), MAX_DELAY_SECONDS)


def _is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    )


def _positive(value: Any, what: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SchedulerError(f"{what} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise SchedulerError(f"{what} must be finite, got {value!r}")
    return float(value)


class Scheduler:
    """Delivers queue messages to handlers and runs durable schedules on an asyncio loop.

    ``concurrency`` bounds handlers running at once and ``max_deliveries_per_second`` the
    rate at which a backlog is started (flood control). A handler's lease is extended while
    it runs; one that runs longer than ``handler_timeout`` counts as failed (an async one is
    cancelled then; a sync one keeps its lease until its thread returns, see
    :meth:`listen_queue`). Delivery log rows older than ``log_retention`` are deleted.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        concurrency: int = 4,
        max_deliveries_per_second: float | None = None,
        lease_seconds: float = 30.0,
        handler_timeout: float | None = 300.0,
        log_retention: timedelta = timedelta(days=7),
        poll_interval: float = 0.5,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise SchedulerError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.store = store
        self.clock: Clock = clock or store.clock
        self.concurrency = concurrency
        self.max_deliveries_per_second = _positive(
            max_deliveries_per_second, "max_deliveries_per_second", allow_none=True
        )
        self.lease_seconds = _positive(lease_seconds, "lease_seconds")
        self.handler_timeout = _positive(handler_timeout, "handler_timeout", allow_none=True)
        self.log_retention = _positive(log_retention, "log_retention")
        self.poll_interval = _positive(poll_interval, "poll_interval")
        ensure_schedules_table(store)
        ensure_delivery_log_table(store)
        # A message enqueued in this process (a notebook cell) wakes the runtime at once.
        self._unsubscribe = store.on_queue_change(_weak_call(self.wake))
        self._handlers: dict[str, Handler] = {}
        self._store_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="airq-store")
        self._in_flight: dict[str, _InFlight] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session = False
        self._stopping = False
        self._counts = _Counts()
        self._next_token = -math.inf
        self._lead = 0.0
        self._checkpointer: _WalCheckpointer | None = None
        self._last_prune = -math.inf
        self._data_version: int | None = None
        self._runtime_error: str | None = None
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

    # -- handlers and schedules (callable from any thread) --------------------------------

    def listen_queue(self, handler: Handler, *, topic: str = "default") -> None:
        """Deliver messages of ``topic`` to ``handler`` (sync handlers run in a thread).

        A different handler already listening on ``topic`` is replaced with a warning; the
        same function defined again (a re-run notebook cell) replaces it silently. An async
        handler that overruns ``handler_timeout`` is cancelled and its attempt failed. A sync
        one cannot be stopped (Python cannot stop a thread): a warning is logged, its message
        stays leased until the thread returns, and then the attempt counts as failed ("handler
        timed out"), so a retry or the next scheduled run never overlaps it.
        """
        if not callable(handler):
            raise SchedulerError(f"handler must be callable, got {type(handler).__name__}")
        topic = check_topic(topic)
        old = self._handlers.get(topic)
        if old is not None and _qualified_name(old) != _qualified_name(handler):
            warnings.warn(
                f"topic {topic!r} already had handler {_qualified_name(old)}; it is replaced by "
                f"{_qualified_name(handler)} (one handler per topic)",
                RuntimeWarning,
                stacklevel=2,
            )
        self._handlers[topic] = handler
        self.wake()

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this scheduler has handlers for (and so claims messages of)."""
        return tuple(sorted(self._handlers))

    def schedule(
        self,
        name: str,
        *,
        every: timedelta | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        message: Any = None,
        topic: str | None = None,
        misfire: str = "coalesce",
        max_catch_up: int = 10,
        backoff_schedule: list[float] | None = None,
    ) -> ScheduleInfo:
        """Create or update the durable recurring job ``name``; registering it again never duplicates it.

        Each run queues ``message`` (default ``{}``) on ``topic`` (default: the name).
        ``every`` runs on multiples of the interval from the epoch (hourly on the hour, UTC);
        ``cron`` is a 5-field expression in ``tz``. After downtime ``misfire`` decides:
        ``"coalesce"`` one run for all missed slots, ``"skip"`` wait for the next slot,
        ``"catch_up"`` the newest ``max_catch_up`` missed slots, one run each, oldest first.
        At most one run is queued or running at a time; slots that pass meanwhile count as
        missed and are handled by the same policy once it finishes.
        """
        info = register_schedule(
            self.store,
            name,
            now=self.clock.now(),
            every=every,
            cron=cron,
            tz=tz,
            message=message,
            topic=topic,
            misfire=misfire,
            max_catch_up=max_catch_up,
            backoff_schedule=backoff_schedule,
        )
        self.wake()
        return info

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule in the database (from any process), soonest next run first."""
        return list_schedules(self.store)

    def get_schedule(self, name: str) -> ScheduleInfo:
        """One schedule by name; raises ScheduleNotFoundError if there is none."""
        return get_schedule(self.store, name)

    def pause_schedule(self, name: str) -> None:
        """Stop planning runs of ``name``; on resume its misfire policy handles missed slots."""
        set_paused(self.store, name, True, now=self.clock.now())

    def resume_schedule(self, name: str) -> None:
        """Plan runs of ``name`` again."""
        set_paused(self.store, name, False, now=self.clock.now())
        self.wake()

    def remove_schedule(self, name: str) -> None:
        """Delete schedule ``name``; a run already queued stays in the queue."""
        remove_schedule(self.store, name)

    def run_now(self, name: str) -> int:
        """Queue a run of ``name`` now and return its message id.

        If a run is already queued or running, no second one is added (no overlap): that
        run's id is returned.
        """
        message_id = run_schedule_now(self.store, name, now=self.clock.now())
        self.wake()
        return message_id

    def enqueue(
        self, value: Any, *, delay: float = 0, topic: str = "default", **options: Any
    ) -> int:
        """Queue a message (as :meth:`Store.enqueue`); the runtime is woken at once.

        A plain ``store.enqueue`` on the same store object wakes it too; a message from
        another process is noticed within ``poll_interval``.
        """
        message_id = self.store.enqueue(value, delay=delay, topic=topic, **options)
        self._note_writes(1)
        return message_id

    def wake(self) -> None:
        """Make the runtime look at the queue and schedules now (thread-safe)."""
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to wake
            loop.call_soon_threadsafe(event.set)

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
            in_flight=len(self._in_flight),
            topics=self.topics,
            runtime_error=self._runtime_error,
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
        self._begin_session(loop, lead=_EARLY_CLAIM_SECONDS)
        self._task = loop.create_task(self._run_forever(), name="airq_nb scheduler")
        self._checkpointer = _WalCheckpointer(self.store.path)
        self._task.add_done_callback(self._runtime_ended)

    def _runtime_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._runtime_error = _describe(task.exception())  # type: ignore[arg-type]
            log.error("the airq_nb scheduler stopped: %s", self._runtime_error)
        self._close_checkpointer()
        self._session = False

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop the runtime; in-flight handlers get ``grace`` seconds, then their leases go back.

        Released messages are due again at once (for this or another process) and the
        attempt is not counted. Safe to await from another thread's event loop.
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
        self._stopping = True
        self._close_checkpointer()
        self.wake()
        running = [f.task for f in self._in_flight.values() if f.task is not None]
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        # The runtime finishes first: a store call it has under way may still come back
        # with claims (it releases them, see _tick); then in-flight work goes back.
        await asyncio.gather(task, return_exceptions=True)
        await self._release_in_flight()
        self._task = None

    def close(self) -> None:
        """Free the worker threads (after :meth:`stop`); the store stays open."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self._close_checkpointer()
        self._store_pool.shutdown(wait=False)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` freed the worker threads (this scheduler cannot run again)."""
        return self._closed

    def _close_checkpointer(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def _note_writes(self, count: int) -> None:
        checkpointer = self._checkpointer
        if checkpointer is not None and count:
            checkpointer.note_writes(count)

    # -- headless -----------------------------------------------------------------------

    async def run_until_idle(
        self,
        *,
        timeout: float | None = None,
        until: datetime | timedelta | float | None = None,
    ) -> RunSummary:
        """Deliver everything due (schedule runs included) and return when nothing more is.

        Without ``until``, work that falls due later (a retry in 30 s, the next hourly
        slot) is left for a later call and reported as ``next_due``. With ``until`` (an
        aware datetime, a timedelta from now, or Unix seconds) the scheduler also waits for
        and runs everything due up to then — with a FakeClock that waiting is instant, so a
        week of hourly runs takes milliseconds. ``timeout`` bounds the call in real seconds;
        in-flight work is then released and ``timed_out`` is set.
        """
        if self.running or self._session:
            raise SchedulerError(
                "the scheduler is already delivering (start() or another run_until_idle()); "
                "await sched.stop() first"
            )
        loop = asyncio.get_running_loop()
        started = self.clock.now()
        limit = started if until is None else _until_as_unix(until, started)
        self._begin_session(loop)
        timed_out = False
        stalls = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._wake.clear()  # type: ignore[union-attr]
                    progress, wake_at, throttled = await self._tick()
                    if self._in_flight:
                        await self._wait_for_event(self.poll_interval)
                        continue
                    now = self.clock.now()
                    # The horizon moves with the clock: a run that misfire handling planned
                    # at "now" during this call (coalesce) is due before the call returns.
                    horizon = max(limit, now)
                    if wake_at is None or wake_at > horizon:
                        if now >= limit and not throttled:
                            break
                        if throttled:  # a due backlog drains at max_deliveries_per_second
                            await self._sleep(wake_at - now)  # type: ignore[operator]
                            continue
                        await self._sleep(limit - now)
                        continue
                    if wake_at <= now:
                        # Due but nothing could be started (a rare race, or a row that keeps
                        # failing to plan): retry a few times rather than spin.
                        stalls = 0 if progress else stalls + 1
                        if stalls >= 3:
                            break
                        continue
                    stalls = 0
                    await self._sleep(wake_at - now)
        except TimeoutError:
            timed_out = True
        finally:
            await self._release_in_flight()
            self._session = False
        counts = self._counts
        next_due = await self._call_store(self._overall_next_due)
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

    # -- the runtime --------------------------------------------------------------------

    def _begin_session(self, loop: asyncio.AbstractEventLoop, *, lead: float = 0.0) -> None:
        self._lead = lead
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._session = True
        self._stopping = False
        self._counts = _Counts()
        self._data_version = None

    async def _run_forever(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()
            try:
                _, wake_at, _ = await self._tick()
                self._runtime_error = None
            except Exception as exc:  # e.g. disk full: keep the runtime alive, try again
                self._runtime_error = _describe(exc)
                log.error("airq_nb scheduler: %s; retrying in 1 s", self._runtime_error)
                wake_at = self.clock.now() + 1.0
            await self._idle_until(None if wake_at is None else wake_at - self._lead)

    async def _call_store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store_pool, functools.partial(fn, *args, **kwargs))

    async def _tick(self) -> tuple[int, float | None, bool]:
        """Queue due schedule runs, start due messages.

        Returns (progress, when to look again, whether due work is held by the rate limit).
        """
        topics = tuple(self._handlers)
        free = 0 if self._stopping else self.concurrency - len(self._in_flight)
        tick = await self._call_store(self._tick_in_store, topics, free)
        self._counts.scheduled_runs += tick.queued_runs
        self._counts.dead_lettered += tick.dead_on_claim
        for name, error in tick.broken:
            log.error("airq_nb scheduler paused schedule %r: %s", name, error)
        if self._stopping and tick.claims:
            # stop() began while the store call was under way: give the claims back, so
            # stop() never returns with a handler running or a message leased.
            await self._call_store(self._release_claims, [d for d, _ in tick.claims])
            return tick.planned_schedules, tick.wake_at, tick.throttled
        for delivery, scheduled_at in tick.claims:
            self._launch(delivery, scheduled_at)
        return tick.planned_schedules + len(tick.claims), tick.wake_at, tick.throttled

    def _tick_in_store(self, topics: tuple[str, ...], free: int) -> _Tick:
        """One trip to the store thread: plan schedules, claim what is due, find the next wake."""
        now = self.clock.now()
        # In the background runtime, runs and messages are planned and claimed a few ms
        # early and started on time (see _deliver), so the store's own cost is not lateness.
        horizon = now + self._lead
        queued, planned, broken = plan_due_runs(self.store, now=now, horizon=horizon)
        claims: list[tuple[Delivery, float]] = []
        dead_on_claim: list[DeadLettered] = []
        rate = self.max_deliveries_per_second
        throttled = False
        while topics and len(claims) < free:
            if rate is not None and self._next_token > horizon:
                due = self.store.next_due(topics=topics)
                throttled = due is not None and due <= horizon
                break
            claimed = self._claim(topics, now, dead_on_claim)
            if claimed is None:
                break
            claims.append(claimed)
            if rate is not None:
                self._next_token = max(self._next_token, now) + 1.0 / rate
        wake_at = self._next_wake(free - len(claims))
        self._note_writes(len(queued) + len(claims))
        return _Tick(len(queued), planned, broken, claims, wake_at, throttled, len(dead_on_claim))

    def _release_claims(self, deliveries: list[Delivery]) -> None:
        with self.store.transaction():
            for delivery in deliveries:
                self.store.release(delivery)

    def _claim(
        self, topics: tuple[str, ...], now: float, dead_on_claim: list[DeadLettered]
    ) -> tuple[Delivery, float] | None:
        """Claim the next message due by ``now`` plus the early-claim window, if any.

        The window only applies to queued messages: a lease held by another consumer is
        taken only once it has really expired (the store's ``lookahead``).
        """
        due = self.store.next_due(topics=topics)
        # Read first: an empty write transaction would still take the file's write lock.
        if due is None or due > now + self._lead:
            return None
        with self.store.transaction() as conn:
            delivery = self.store.claim(
                topics=topics,
                lease_seconds=self.lease_seconds,
                now=now,
                lookahead=self._lead,
                on_dead_letter=lambda dead: self._log_dead_on_claim(conn, dead, now, dead_on_claim),
            )
            if delivery is None:
                return None
            scheduled_at = delivery.deliver_at
            if delivery.schedule is not None:
                # The run starts at the end of the window at the latest (see _deliver).
                slot = claim_absorbs_slots(conn, delivery.schedule, delivery.id, now + self._lead)
                if slot is not None and delivery.attempt == 1:
                    scheduled_at = slot
        return delivery, scheduled_at

    def _log_dead_on_claim(
        self, conn: Any, dead: DeadLettered, now: float, dead_on_claim: list[DeadLettered]
    ) -> None:
        """Log a message the store dead-lettered while claiming, in that same transaction."""
        write_log_entry(
            conn,
            LogEntry(
                message_id=dead.id,
                topic=dead.topic or "(unreadable)",
                schedule=dead.schedule,
                attempt=dead.attempt or 0,
                scheduled_at=now if dead.deliver_at is None else dead.deliver_at,
                started_at=now,
                finished_at=now,
                outcome="dead",
                error=dead.error,
                ran=False,
            ),
        )
        if dead.schedule is not None:
            conn.execute(
                "UPDATE schedules SET last_outcome = 'dead', last_error = ? WHERE name = ?",
                (dead.error, dead.schedule),
            )
        dead_on_claim.append(dead)

    def _launch(self, delivery: Delivery, scheduled_at: float) -> None:
        flight = _InFlight(delivery)
        self._in_flight[delivery.lease_token] = flight
        task = asyncio.get_running_loop().create_task(
            self._deliver(flight, scheduled_at), name=f"airq_nb delivery {delivery.id}"
        )
        flight.task = task
        task.add_done_callback(functools.partial(self._landed, delivery.lease_token))

    def _landed(self, token: str, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(token, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("airq_nb delivery task failed: %s", _describe(task.exception()))  # type: ignore[arg-type]
        if self._wake is not None:
            self._wake.set()

    async def _deliver(self, flight: _InFlight, scheduled_at: float) -> None:
        delivery = flight.delivery
        started = self.clock.now()
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(delivery))
        try:
            early = scheduled_at - started
            if 0 < early <= self._lead:  # claimed early on purpose: start it on time
                await asyncio.sleep(early)
                started = self.clock.now()
            failure = await self._run_handler(delivery)
        except asyncio.CancelledError:
            flight.finishing = True
            await self._call_store(self._finish, delivery, scheduled_at, started, None, True)
            self._counts.released += 1
            raise
        finally:
            keeper.cancel()
        flight.finishing = True
        outcome = await self._call_store(
            self._finish, delivery, scheduled_at, started, failure, False
        )
        counts = self._counts
        if outcome == "ok":
            counts.delivered += 1
        elif outcome == "lost":
            counts.lost += 1
        else:
            counts.failed += 1
            counts.dead_lettered += outcome == "dead"

    async def _run_handler(self, delivery: Delivery) -> _Failure | None:
        handler = self._handlers.get(delivery.topic)
        if handler is None:
            return _Failure(f"no handler for topic {delivery.topic!r} in this scheduler")
        try:
            if _is_async(handler):
                try:
                    async with asyncio.timeout(self.handler_timeout) as deadline:
                        await handler(delivery.value)
                except TimeoutError:
                    if deadline.expired():  # not the handler's own TimeoutError
                        return self._timed_out()
                    raise
            elif not await self._run_sync(handler, delivery):
                return self._timed_out()
        except Retry as exc:
            return _Failure(_outcome_text(exc), True, _retry_in(exc.after))
        except Permanent as exc:
            return _Failure(_outcome_text(exc), False)
        except Exception as exc:
            log.info("handler for %r failed: %s", delivery.topic, _describe(exc))
            return _Failure(_describe(exc))
        return None

    def _timed_out(self) -> _Failure:
        return _Failure(f"handler timed out after {self.handler_timeout:g} s")

    async def _run_sync(self, handler: Handler, delivery: Delivery) -> bool:
        """Run a sync handler in its thread; False if it overran ``handler_timeout``.

        Python cannot stop a thread, so an overrunning one keeps its message leased (and
        its schedule's next run waiting) until it returns: two runs never overlap.
        """
        future = self._in_thread(handler, delivery.value)
        try:
            async with asyncio.timeout(self.handler_timeout) as deadline:
                result = await asyncio.shield(future)
                if inspect.isawaitable(result):
                    await result
            return True
        except TimeoutError:
            if not deadline.expired():
                raise
        except asyncio.CancelledError:
            future.cancel()  # nobody waits for the thread's result now (stop())
            raise
        if future.done():  # the thread returned; an awaitable it returned overran (cancelled)
            return False
        log.warning(
            "handler for topic %r is still running after handler_timeout (%g s); message %d "
            "stays leased until it returns, then the attempt counts as failed",
            delivery.topic,
            self.handler_timeout,
            delivery.id,
        )
        try:
            await future
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception:  # the attempt already counts as timed out
            pass
        return False

    def _in_thread(self, fn: Callable[[Any], Any], value: Any) -> Awaitable[Any]:
        """Run a sync handler on its own daemon thread, so a hung one never blocks others."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()

        def settle(ok: bool, outcome: Any) -> None:
            if future.done():  # cancelled by stop() or the timeout: nobody is waiting
                return
            if ok:
                future.set_result(outcome)
            else:
                future.set_exception(outcome)

        def run() -> None:
            try:
                ok, outcome = True, context.run(fn, value)
            except BaseException as exc:
                ok, outcome = False, exc
            with contextlib.suppress(RuntimeError):  # the loop is gone (kernel shut down)
                loop.call_soon_threadsafe(settle, ok, outcome)

        threading.Thread(target=run, name="airq-handler", daemon=True).start()
        return future

    async def _keep_lease(self, delivery: Delivery) -> None:
        interval = max(self.lease_seconds / 3.0, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                kept = await self._call_store(
                    self.store.extend_lease, delivery, self.lease_seconds, now=self.clock.now()
                )
            except Exception as exc:  # e.g. the file is locked for long: try again next time
                log.info("airq_nb scheduler: could not extend a lease: %s", _describe(exc))
                continue
            if not kept:  # another consumer has it now; the finish will log "lost"
                return

    def _finish(
        self,
        delivery: Delivery,
        scheduled_at: float,
        started: float,
        failure: _Failure | None,
        release: bool,
    ) -> str:
        """Ack, fail or release a delivery and log it, in one transaction."""
        store = self.store
        finished = self.clock.now()
        self._note_writes(1)
        error = None if failure is None else failure.error
        with store.transaction() as conn:
            if release:
                outcome = "released" if store.release(delivery) else "lost"
            elif failure is None:
                outcome = "ok" if store.ack(delivery) else "lost"
            else:
                outcome = store.fail(
                    delivery,
                    failure.error,
                    retry=failure.retry,
                    retry_in=failure.retry_in,
                    now=finished,
                )
            write_log_entry(
                conn,
                LogEntry(
                    message_id=delivery.id,
                    topic=delivery.topic,
                    schedule=delivery.schedule,
                    attempt=delivery.attempt,
                    scheduled_at=scheduled_at,
                    started_at=started,
                    finished_at=finished,
                    outcome=outcome,
                    error=error,
                ),
            )
            if delivery.schedule is not None:
                conn.execute(
                    "UPDATE schedules SET last_outcome = ?, last_error = ? WHERE name = ?",
                    (outcome, error, delivery.schedule),
                )
            if finished - self._last_prune >= _PRUNE_EVERY_SECONDS:
                prune_delivery_log(conn, older_than=finished - self.log_retention)
                self._last_prune = finished
        return outcome

    def _next_wake(self, free: int) -> float | None:
        """When to look again: the next schedule slot or claimable message (read, no write)."""
        self._data_version = self.store.data_version()
        candidates = [next_schedule_wake(self.store)]
        if self._handlers and free > 0:
            due = self.store.next_due(topics=tuple(self._handlers))
            if due is not None:
                candidates.append(max(due, self._next_token))
        found = [c for c in candidates if c is not None]
        return min(found) if found else None

    def _overall_next_due(self) -> float | None:
        found = [c for c in (self.store.next_due(), next_schedule_wake(self.store)) if c]
        return min(found) if found else None

    def _changed(self, wake_at: float | None) -> bool:
        """Did anything make an earlier wake-up necessary (another process, or a direct enqueue)?"""
        if self.store.data_version() != self._data_version:
            return True
        if not self._handlers or len(self._in_flight) >= self.concurrency:
            return False
        due = self.store.next_due(topics=tuple(self._handlers))
        return due is not None and (wake_at is None or due < wake_at)

    async def _idle_until(self, wake_at: float | None) -> None:
        """Wait in real time until ``wake_at``, a wake-up, or a change seen by polling."""
        assert self._wake is not None
        while not self._stopping:
            now = self.clock.now()
            if wake_at is not None and now >= wake_at:
                return
            step = self.poll_interval if wake_at is None else min(self.poll_interval, wake_at - now)
            if await self._wait_for_event(step):
                return
            if wake_at is not None and self.clock.now() >= wake_at:
                return
            try:
                if await self._call_store(self._changed, wake_at):
                    return
            except Exception as exc:
                self._runtime_error = _describe(exc)
                return

    async def _wait_for_event(self, seconds: float) -> bool:
        assert self._wake is not None
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the scheduler's clock (instant with a FakeClock), waking early on changes."""
        assert self._wake is not None
        waits = [
            asyncio.ensure_future(self.clock.sleep(seconds)),
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._watch_for_changes()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _watch_for_changes(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if await self._call_store(self._changed, None):
                return

    async def _release_in_flight(self) -> None:
        """Cancel running handlers; each gives its message back (see ``_deliver``)."""
        tasks = []
        for flight in list(self._in_flight.values()):
            if flight.task is None:
                continue
            if not flight.finishing:
                flight.task.cancel()
            tasks.append(flight.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _WalCheckpointer:
    """Checkpoints the store's WAL from a side connection and thread while the runtime runs.

    Otherwise SQLite checkpoints inside whichever commit crosses the WAL size limit, and
    its fsyncs stall that commit, and so a delivery, for several ms. A PASSIVE checkpoint
    on its own connection runs beside the store's reads and writes. The thread sleeps
    until enough commits were noted, so an idle scheduler never wakes it.
    """

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self._path = str(path)
        self._writes = 0
        self._due = threading.Event()
        self._closed = False
        threading.Thread(target=self._run, name="airq-checkpoint", daemon=True).start()

    def note_writes(self, count: int) -> None:
        self._writes += count
        if self._writes >= _CHECKPOINT_AFTER_WRITES:
            self._due.set()

    def close(self) -> None:
        self._closed = True
        self._due.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=5.0, check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            while True:
                self._due.wait()
                if self._closed:
                    return
                self._due.clear()
                self._writes = 0
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # only an optimisation: SQLite still checkpoints itself
            log.info("airq_nb scheduler: WAL checkpoint failed: %s", exc)
        finally:
            conn.close()


def _qualified_name(handler: Handler) -> str:
    target = handler.func if isinstance(handler, functools.partial) else handler
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}" if module else name


def _until_as_unix(when: datetime | timedelta | float, now: float) -> float:
    """``until`` as Unix seconds; a timedelta means that long *after* ``now``."""
    if isinstance(when, timedelta):
        return now + when.total_seconds()
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise SchedulerError("until must be an aware datetime (e.g. tzinfo=timezone.utc)")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise SchedulerError(f"until must be a datetime, timedelta or Unix time, got {when!r}")
    return float(when)


_registry: dict[str, Scheduler] = {}
_registry_lock = threading.Lock()


def _weak_call(method: Callable[[], None]) -> Callable[[], None]:
    """A callback that calls ``method`` while its object lives, so the store keeps no
    scheduler alive just by having it subscribed."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


def scheduler_for(store: Store, **options: Any) -> Scheduler:
    """The one Scheduler of this process for ``store``'s file, created on first use.

    Re-running a notebook cell gets the same object back, so it never starts a second
    runtime. ``options`` (as for :class:`Scheduler`) apply when it is created.
    """
    key = os.path.realpath(store.path)
    with _registry_lock:
        existing = _registry.get(key)
        if existing is not None and (existing.running or _usable(existing.store)):
            return existing
        if existing is not None:  # its store was closed (a re-run cell opened a new one)
            existing.close()
        created = Scheduler(store, **options)
        _registry[key] = created
        return created


def _usable(store: Store) -> bool:
    try:
        store.data_version()
    except Exception:  # closed store: a re-run cell opened a new one
        return False
    return True
