"""Handlers running for claimed deliveries: start them, time them out, collect their outcomes.

A claimed delivery waits in the prefetch (:mod:`.prefetch`) for a free slot, then becomes
a :class:`Flight`; a landing flight's slot goes to the next prefetched message at once. An async handler runs as one task on the
loop; a sync one is handed straight to the thread pool (no task, no future), and its
outcome comes back through the pool's mailbox. Either way the outcome lands in
``pending`` as a :class:`~airq_nb.store._batch.Settlement`, for the dispatcher's next
trip to commit. One watchdog timer serves every flight's ``handler_timeout`` (flights
start in order and share one time-out, so the oldest one's deadline comes first), rather
than a timer per delivery.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..store import Settlement
from .executors import (
    ABANDONED,
    Failure,
    Handler,
    SyncCall,
    ThreadExecutor,
    failure_of,
    is_async,
    timed_out,
)
from .prefetch import Prefetch

if TYPE_CHECKING:
    from .._clock import Clock
    from ..store.models import Delivery

__all__ = ["GATHER_LIMIT", "Flight", "Flights"]

#: Longest wait for quick handlers of one batch to land together (see Flights.gather_time).
GATHER_LIMIT = 0.001


class Flight:
    """One claimed delivery, from its launch until its outcome is pending settlement."""

    __slots__ = (
        "batch",
        "call",
        "deadline",
        "delivery",
        "launched",
        "lease_lost",
        "scheduled_at",
        "started_at",
        "task",
        "timed_out",
    )

    def __init__(
        self, delivery: Delivery, scheduled_at: float, deadline: float, batch: int
    ) -> None:
        self.delivery = delivery
        self.batch = batch
        self.scheduled_at = scheduled_at
        self.started_at = 0.0
        #: Loop time after which the handler has overrun ``handler_timeout``.
        self.deadline = deadline
        #: Loop time of the launch (how long handlers take sizes the prefetch).
        self.launched = 0.0
        self.task: asyncio.Task[None] | None = None
        self.call: SyncCall | None = None
        self.lease_lost = False
        self.timed_out = False


class Flights:
    """The deliveries a scheduler is handling now (``in_flight``, in launch order)."""

    def __init__(
        self,
        clock: Clock,
        handlers: dict[str, Handler],
        pending: list[Settlement],
        *,
        concurrency: int,
        prefetch: int = 0,
        handler_timeout: float | None,
        on_change: Callable[[], None],
        adopt: Callable[..., None],
    ) -> None:
        self.clock = clock
        self.concurrency = concurrency
        #: Claimed messages waiting for a free slot, in claim (due) order.
        self.prefetched = Prefetch(limit=prefetch, concurrency=concurrency)
        #: False while stopping: nothing prefetched starts (it is given back).
        self.starting = True
        #: How early a claim may be started on time (the dispatcher's ``lead``).
        self.lead = 0.0
        #: Takes a delivery whose sync thread outlives its attempt (``OrphanKeeper.adopt``).
        self._adopt = adopt
        self.handlers = handlers
        self.pending = pending
        self.handler_timeout = handler_timeout
        self._on_change = on_change
        self.in_flight: dict[Flight, None] = {}
        #: Timed-out sync calls whose threads still run, with their failure: each message is
        #: kept (its lease renewed) and settled, as timed out, when its thread returns.
        self.stuck_flights: dict[Flight, Failure | None] = {}
        self.threads = ThreadExecutor(
            concurrency, now=clock.now, on_finished=self._calls_finished, on_unstuck=on_change
        )
        self._kinds: dict[str, tuple[Handler, bool]] = {}  # topic -> (handler, is it async)
        self._watchdog: asyncio.TimerHandle | None = None
        self._emptied: asyncio.Future[None] | None = None
        # The newest batch (one trip's claims): how many of it are still running, when it
        # was launched, and how long whole batches took to land lately (see gather_time).
        self._batch = 0
        self._unlanded = 0
        self._launched_at = 0.0
        self._landing = 0.0

    # -- prefetching -------------------------------------------------------------------

    def free_slots(self) -> int:
        """Concurrency slots not taken by running handlers or stuck sync threads."""
        return self.concurrency - len(self.in_flight) - self.threads.stuck

    def prefetch_room(self) -> int:
        """How many more messages a claim may take beyond the free slots (see
        :meth:`Prefetch.room`)."""
        oldest = None
        if self.in_flight:
            launched = next(iter(self.in_flight)).launched
            oldest = asyncio.get_running_loop().time() - launched
        return self.prefetched.room(oldest_running=oldest)

    def start_batch(self) -> None:
        """After a trip (its claims added to the prefetch): start what the free slots take,
        in due order, as one batch; the rest waits."""
        self._batch += 1
        self._unlanded = self.start_waiting()
        self._launched_at = asyncio.get_running_loop().time()

    def start_waiting(self) -> int:
        """Start prefetched messages in the free slots, oldest first; returns how many."""
        if not self.prefetched or not self.starting:
            return 0
        free = self.free_slots()
        if free <= 0:
            return 0
        taken = self.prefetched.take_fresh(free)
        for item in taken:
            self.launch(item.delivery, item.scheduled_at, lead=self.lead)
        return len(taken)

    def gather_time(self) -> float:
        """How long to wait for the newest batch to land before settling what already did.

        Handlers that finish together share one trip (one commit); without this, quick
        handlers landing during a trip split into two half batches for good. Only when
        whole batches have been landing quickly (at most ``GATHER_LIMIT``): slow handlers'
        outcomes are settled, and their slots refilled, at once.
        """
        if self._unlanded <= 0 or self._landing <= 0 or self.prefetched:
            return 0.0  # (prefetched messages keep the slots busy while the trip runs)
        limit = min(GATHER_LIMIT, 2.0 * self._landing)
        return limit - (asyncio.get_running_loop().time() - self._launched_at)

    # -- starting -----------------------------------------------------------------------

    def launch(self, delivery: Delivery, scheduled_at: float, *, lead: float) -> None:
        """Start ``delivery``'s handler (on time, if it was claimed up to ``lead`` early)."""
        loop = asyncio.get_running_loop()
        timeout = self.handler_timeout
        deadline = math.inf if timeout is None else loop.time() + timeout
        flight = Flight(delivery, scheduled_at, deadline, self._batch)
        flight.launched = loop.time()
        self.in_flight[flight] = None
        if timeout is not None and self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._expire)
        if lead > 0:
            early = scheduled_at - self.clock.now()
            if 0 < early <= lead:  # claimed early on purpose: start it on time
                flight.task = loop.create_task(self._start_later(flight, early))
                return
        start = self._start(flight)
        if start is not None:
            flight.task = loop.create_task(self._run_async(flight, start))

    async def _start_later(self, flight: Flight, early: float) -> None:
        try:
            await asyncio.sleep(early)
        except asyncio.CancelledError:
            if not flight.timed_out:  # stop(): give the message back unhandled
                self._settle(flight, None, release=True)
                raise
            if flight.task is not None:
                flight.task.uncancel()
            self._settle(flight, timed_out(self.handler_timeout))
            return
        start = self._start(flight)
        if start is None:
            flight.task = None  # a sync call: the pool has it
        else:
            await self._run_async(flight, start)  # in this task: no extra turn of the loop

    def _start(self, flight: Flight) -> Callable[[], Awaitable[Any]] | None:
        """Start the handler: a sync one on the pool; an async one's call is returned."""
        flight.started_at = self.clock.now()
        delivery = flight.delivery
        topic = delivery.topic
        handler = self.handlers.get(topic)
        if handler is None:
            self._settle(flight, Failure(f"no handler for topic {topic!r} in this scheduler"))
            return None
        known = self._kinds.get(topic)
        if known is None or known[0] is not handler:  # a new (or replaced) handler
            known = self._kinds[topic] = (handler, is_async(handler))
        if known[1]:
            return functools.partial(handler, delivery.value)
        flight.call = SyncCall(handler, delivery.value, contextvars.copy_context(), flight)
        self.threads.submit(flight.call)
        return None

    async def _run_async(self, flight: Flight, start: Callable[[], Awaitable[Any]]) -> None:
        failure: Failure | None = None
        try:
            await start()
        except asyncio.CancelledError:
            if not flight.timed_out:  # stop(): give the message back unhandled
                self._settle(flight, None, release=True)
                raise
            if flight.task is not None:
                flight.task.uncancel()
            failure = timed_out(self.handler_timeout)
        except BaseException as exc:
            failure = failure_of(exc)
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: recorded, raised
                self._settle(flight, failure)
                raise
        self._settle(flight, failure)

    def _calls_finished(self, calls: list[SyncCall]) -> None:
        """Sync handlers returned (from the pool's mailbox, on the loop): settle them."""
        for call in calls:
            flight: Flight = call.owner
            if call.state == ABANDONED:  # a timed-out thread returned: settle it as such
                if flight in self.stuck_flights:
                    failure = self.stuck_flights.pop(flight)
                    self._queue_settlement(flight, failure, finished_at=call.finished_at)
                if inspect.isawaitable(call.result):
                    call.result.close()  # nobody awaits a timed-out handler's coroutine
                continue
            if call.error is not None:
                self._settle(
                    flight, failure_of(call.error), finished_at=call.finished_at, wake=False
                )
            elif inspect.isawaitable(call.result):  # a sync function that returned a coroutine
                flight.task = asyncio.get_running_loop().create_task(
                    self._run_async(flight, lambda result=call.result: result)
                )
            else:
                self._settle(flight, None, finished_at=call.finished_at, wake=False)
        self._on_change()

    # -- ending -------------------------------------------------------------------------

    def _end(self, flight: Flight, call: SyncCall, failure: Failure | None) -> None:
        """A sync call given up on (time-out or stop): settle it, unless its thread runs.

        A call that never started is failed (time-out) or given back (stop). A running
        thread cannot be stopped, so its message is never handed to another consumer while
        it runs: the orphan keeper renews its lease until the thread returns, then settles
        it (a timed-out one as timed out).
        """
        if call.state != ABANDONED:
            self._settle(flight, failure, release=failure is None, wake=failure is not None)
            return
        if self._land(flight):
            self.stuck_flights[flight] = failure

    def _orphan_stuck(self) -> None:
        """The session ends: the orphan keeper holds the messages of threads still running."""
        for flight, failure in self.stuck_flights.items():
            assert flight.call is not None
            self._adopt(
                flight.delivery,
                flight.call,
                scheduled_at=flight.scheduled_at,
                started_at=flight.started_at,
                failure=failure,
            )
        self.stuck_flights.clear()

    def _land(self, flight: Flight) -> bool:
        """Take ``flight`` out of ``in_flight`` (False if it already was)."""
        if self.in_flight.pop(flight, True) is True:
            return False
        now = asyncio.get_running_loop().time()
        took = now - flight.launched
        self.prefetched.landed(took)
        if flight.batch == self._batch:
            self._unlanded -= 1
            if self._unlanded == 0:  # the whole batch landed: how long that took, smoothed
                self._landing += 0.25 * (now - self._launched_at - self._landing)
        if self.prefetched:
            self.start_waiting()  # the freed slot goes to the next prefetched message
        if not self.in_flight:
            self._all_landed()
        return True

    def _settle(
        self,
        flight: Flight,
        failure: Failure | None,
        *,
        release: bool = False,
        finished_at: float | None = None,
        wake: bool = True,
    ) -> None:
        """The outcome is known: queue its settlement for the next trip (once per flight)."""
        if not self._land(flight):
            return  # already settled (given up on, or released)
        self._queue_settlement(flight, failure, release=release, finished_at=finished_at, wake=wake)

    def _queue_settlement(
        self,
        flight: Flight,
        failure: Failure | None,
        *,
        release: bool = False,
        finished_at: float | None = None,
        wake: bool = True,
    ) -> None:
        finished = self.clock.now() if finished_at is None else finished_at
        if failure is None:
            settlement = Settlement(
                flight.delivery, flight.scheduled_at, flight.started_at, finished, release=release
            )
        else:
            settlement = Settlement(
                flight.delivery,
                flight.scheduled_at,
                flight.started_at,
                finished,
                error=failure.error,
                retry=failure.retry,
                retry_in=failure.retry_in,
            )
        self.pending.append(settlement)
        if wake:
            self._on_change()

    def _all_landed(self) -> None:
        if self._watchdog is not None:  # nothing left to time out
            self._watchdog.cancel()
            self._watchdog = None
        if self._emptied is not None:
            if not self._emptied.done():
                self._emptied.set_result(None)
            self._emptied = None

    def _expire(self) -> None:
        """The watchdog: fail flights that overran ``handler_timeout``, then re-arm."""
        self._watchdog = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired: list[Flight] = []
        for flight in self.in_flight:
            if flight.deadline > now:
                self._watchdog = loop.call_at(flight.deadline, self._expire)
                break
            if not flight.timed_out:
                expired.append(flight)
        for flight in expired:
            flight.timed_out = True
            task, call = flight.task, flight.call
            if task is not None and not task.done():
                task.cancel()  # _run_async (or _start_later) records the time-out
            elif call is not None and self.threads.give_up(call):
                self._end(flight, call, timed_out(self.handler_timeout))
            # else the call just finished: its outcome is in the pool's mailbox

    async def release_all(self) -> None:
        """Stop every handler: cancel tasks, give up on sync calls not started; their
        messages go back. Sync calls that already finished are settled with their outcome.

        A running sync call cannot be stopped: its message is never given back, but held
        by the orphan keeper (lease renewed) until its thread returns, then settled.
        """
        self.threads.collect()
        tasks = []
        for flight in list(self.in_flight):
            task, call = flight.task, flight.call
            if task is not None and not task.done():
                task.cancel()
                tasks.append(task)
            elif call is not None and self.threads.give_up(call):
                self._end(flight, call, None)
        self.threads.collect()  # calls that finished while we gave up on the others
        self._orphan_stuck()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_settled(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every flight to finish by itself."""
        if not self.in_flight:
            return
        if self._emptied is None:
            self._emptied = asyncio.get_running_loop().create_future()
        await asyncio.wait([self._emptied], timeout=timeout)

    def close(self) -> None:
        self._all_landed()
        self.threads.shutdown()
