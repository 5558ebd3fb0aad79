"""Claim a batch, launch it, settle a batch: the scheduler's delivery machinery.

One *trip* to the store is one write transaction that settles every delivery that
finished since the last trip (ack, retry or dead letter, each with its delivery-log row),
queues the runs of due schedules, and claims due messages: as many as there are free
slots (bounded by ``concurrency`` and ``max_deliveries_per_second``) plus a prefetch that
waits for slots (see :mod:`.prefetch`; none under a rate limit). Handlers that finish
while a trip is under way share the next one, and refill their slots from the prefetch
meanwhile. Trips run on the dispatcher's own store
thread, lease keep-alives on another, so neither a slow commit nor a lock held by another
process ever blocks the event loop, and keep-alives never queue behind a long write.
The handlers themselves run in :mod:`.flights`, whose outcomes land in ``pending``.

A message stays leased from its claim until its settlement commits (prefetched, running,
finished: its lease is renewed throughout): a crash in between
redelivers it (at-least-once), and a schedule's next run is never planned before the
previous one is settled (no overlap).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..store import Settlement, extend_leases, settle_batch, settle_plan_claim
from ..store.schedules import next_schedule_wake
from ._orphans import OrphanKeeper
from ._store_thread import StoreThread
from .executors import Handler, describe
from .flights import Flight, Flights
from .schedules import next_slot_after, plan_stored

if TYPE_CHECKING:
    from .._clock import Clock
    from ..store import Checkpointer, Store
    from ..store.models import Delivery

__all__ = ["Counts", "Dispatcher", "Tick"]

log = logging.getLogger("airq_nb.scheduler")
T = TypeVar("T")
PRUNE_EVERY_SECONDS = 3600.0


@dataclass(slots=True)
class Counts:
    """What a session did (``RunSummary`` reports it)."""

    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    scheduled_runs: int = 0
    lost: int = 0
    released: int = 0


@dataclass(frozen=True, slots=True)
class Tick:
    """What one trip did and when to look again."""

    #: Due schedules handled plus messages claimed (0: nothing moved).
    progress: int
    wake_at: float | None
    #: Due work is waiting only for the rate limit (not idle: look again at ``wake_at``).
    throttled: bool = False
    #: Every slot was taken when the trip ended: ``wake_at`` leaves the queue out, so look
    #: again as soon as a slot frees (a handler landing wakes the runtime).
    saturated: bool = False


@dataclass(slots=True)
class _TripResult:
    outcomes: list[str]
    queued_runs: int
    planned: int
    broken: list[tuple[str, str]]
    claims: list[tuple[Delivery, float]]
    dead_on_claim: int
    wake_at: float | None
    throttled: bool
    #: When the commit (hence the claims' look at paused topics) was made (monotonic).
    claimed_at: float = 0.0
    #: The paused topics, read (at ``paused_at``) when messages waited prefetched, else None.
    paused: frozenset[str] | None = None
    paused_at: float = 0.0


class Dispatcher:
    """Delivers claimed messages to ``handlers`` and settles them, in batches."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        handlers: dict[str, Handler],
        *,
        concurrency: int,
        prefetch: int = 0,
        rate: float | None,
        lease_seconds: float,
        handler_timeout: float | None,
        log_retention: float,
        on_change: Callable[[], None],
    ) -> None:
        self.store = store
        self.clock = clock
        self.handlers = handlers
        self.concurrency = concurrency
        self.rate = rate
        self.lease_seconds = lease_seconds
        self.handler_timeout = handler_timeout
        self.log_retention = log_retention
        self._on_change = on_change
        self._store_thread = StoreThread("airq-store")
        self._lease_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="airq-lease")
        self.pending: list[Settlement] = []
        #: Holds the messages of sync handlers whose threads outlive their attempt.
        self.orphans = OrphanKeeper(store, clock, lease_seconds=lease_seconds)
        self.flights = Flights(
            clock,
            handlers,
            self.pending,
            concurrency=concurrency,
            # A rate limit decides when each delivery starts: claim no more than may start.
            prefetch=0 if rate is not None else prefetch,
            handler_timeout=handler_timeout,
            on_change=on_change,
            adopt=self.orphans.adopt,
        )
        #: The deliveries being handled now, in launch order.
        self.in_flight: dict[Flight, None] = self.flights.in_flight
        self.threads = self.flights.threads
        self.counts = Counts()
        self.lead = 0.0
        self._stopping = False
        self.checkpointer: Checkpointer | None = None
        self._next_token = -math.inf
        self._last_prune = -math.inf

    # -- plumbing -----------------------------------------------------------------------

    async def call_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the dispatcher's store thread (never on the event loop)."""
        return await self._store_thread.call(fn, *args)

    def free_slots(self) -> int:
        """Concurrency slots not taken by running handlers or stuck sync threads."""
        return self.flights.free_slots()

    @property
    def stopping(self) -> bool:
        """Set by stop(): nothing more starts; claims that come back from a trip under
        way, and prefetched messages, are given back."""
        return self._stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self._stopping = value
        self.flights.starting = not value

    @property
    def prefetched(self) -> int:
        """How many claimed messages wait for a free slot."""
        return len(self.flights.prefetched)

    def begin(self, *, lead: float) -> None:
        self.lead = self.flights.lead = lead
        self.counts = Counts()
        self.stopping = False

    def close(self) -> None:
        self._store_thread.close()
        self._lease_pool.shutdown(wait=False)
        self.flights.close()

    # -- one trip -----------------------------------------------------------------------

    async def trip(self) -> Tick:
        """Settle what finished, plan due schedules, claim and launch what is due."""
        settlements = list(self.pending)
        topics = tuple(self.handlers)
        flights = self.flights
        free = 0 if self.stopping else max(self.free_slots(), 0) + flights.prefetch_room()
        # Held deliveries, for a trip that waited long for the lock to renew first.
        held = self._held()
        # Messages wait prefetched: the trip reads the paused topics for them.
        future = self._store_thread.submit(
            self._trip_in_store, settlements, topics, free, held, bool(flights.prefetched)
        )
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            await self._abandon_trip(future, settlements)
            raise
        del self.pending[: len(settlements)]
        self._count(settlements, result)
        if self.stopping and result.claims:
            # stop() began while the trip was under way: give the claims back unstarted.
            self._give_back(result.claims)
            return Tick(result.planned, result.wake_at, result.throttled)
        prefetched = flights.prefetched
        prefetched.add(result.claims, checked_at=result.claimed_at)
        gone = prefetched.revalidate(result.paused, checked_at=result.paused_at)
        if gone:  # their topic was paused meanwhile: they go back, unstarted
            self._give_back((p.delivery, p.scheduled_at) for p in gone)
        wake_at = result.wake_at
        if prefetched:
            flights.start_batch()
            if prefetched and self.free_slots() > 0:
                # Slots are free but what waits was seen unpaused too long ago (the trip
                # was slow): look again at once; the next trip re-reads the paused topics.
                wake_at = self.clock.now() if wake_at is None else min(wake_at, self.clock.now())
                return Tick(result.planned + len(result.claims), wake_at, result.throttled, True)
        saturated = bool(topics) and (free - len(result.claims) <= 0 or self.free_slots() <= 0)
        return Tick(result.planned + len(result.claims), wake_at, result.throttled, saturated)

    def _give_back(self, claims: Iterable[tuple[Delivery, float]]) -> None:
        """Queue unstarted claims to be released (due again at once, attempt not counted)."""
        now = self.clock.now()
        self.pending.extend(Settlement(d, at, now, now, release=True) for d, at in claims)

    def _held(self) -> list[Delivery]:
        """The deliveries whose leases this session keeps: running, stuck, prefetched."""
        held = [f.delivery for f in self._holding() if not f.lease_lost]
        held += [p.delivery for p in self.flights.prefetched]
        return held

    async def _abandon_trip(
        self, future: asyncio.Future[_TripResult], settlements: list[Settlement]
    ) -> None:
        """The caller was cancelled (a time-out) during a trip, which goes on to its commit
        on the store thread: wait for it, count what it settled, and give back the claims
        it brings, so no message is left leased with nobody handling it."""
        while not future.done():
            # A failed trip is seen below: its error must not replace the cancellation.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(future)
        if future.cancelled() or future.exception() is not None:
            return  # nothing committed: the settlements stay pending
        result = future.result()
        del self.pending[: len(settlements)]
        self._count(settlements, result)
        self._give_back(result.claims)

    def _count(self, settlements: list[Settlement], result: _TripResult) -> None:
        counts = self.counts
        counts.scheduled_runs += result.queued_runs
        counts.dead_lettered += result.dead_on_claim
        for name, error in result.broken:
            log.error("airq_nb scheduler paused schedule %r: %s", name, error)
        for settlement, outcome in zip(settlements, result.outcomes, strict=True):
            if settlement.release:
                counts.released += 1
            elif outcome == "ok":
                counts.delivered += 1
            elif outcome == "lost":
                counts.lost += 1
            else:
                counts.failed += 1
                counts.dead_lettered += outcome == "dead"

    def _allowance(self, free: int, now: float) -> int:
        """How many deliveries may start by ``now`` + lead under the rate limit."""
        if self.rate is None:
            return free
        allowed, token = 0, self._next_token
        while allowed < free and token <= now + self.lead:
            allowed += 1
            token = max(token, now) + 1.0 / self.rate
        return allowed

    def _trip_in_store(
        self,
        settlements: list[Settlement],
        topics: tuple[str, ...],
        free: int,
        held: list[Delivery],
        read_paused: bool = False,
    ) -> _TripResult:
        store = self.store
        now = self.clock.now()
        horizon = now + self.lead
        prune = None
        if settlements and now - self._last_prune >= PRUNE_EVERY_SECONDS:
            prune = now - self.log_retention
        allowed = self._allowance(free, now) if topics else 0
        writing = bool(settlements) or prune is not None
        # Reads first, so an idle trip takes no write lock; a trip that commits anyway
        # looks for due work inside its transaction instead.
        due = store.next_due(topics=topics) if topics and free > 0 and not writing else None
        wants_claim = allowed > 0 and (writing or (due is not None and due <= horizon))
        schedule_due = None if writing else next_schedule_wake(store)
        wants_plan = writing or (schedule_due is not None and schedule_due <= horizon)
        outcomes: list[str] = []
        queued: list[int] = []
        planned, broken = 0, []
        claims: list[tuple[Delivery, float]] = []
        dead: list[Any] = []
        if writing or wants_claim or wants_plan:
            trip = settle_plan_claim(  # one commit for all of it
                store,
                settlements,
                prune_before=prune,
                plan=plan_stored if wants_plan else None,
                claim_limit=allowed if wants_claim else 0,
                topics=topics,
                lease_seconds=self.lease_seconds,
                now=now,
                lookahead=self.lead,
                next_after=next_slot_after,
                held=held,
            )
            outcomes, queued, planned, broken = (
                trip.outcomes,
                trip.queued_runs,
                trip.planned,
                trip.broken,
            )
            claims, dead = trip.claims, trip.dead_on_claim
            if prune is not None:
                self._last_prune = now
        if self.rate is not None:
            for _ in claims:
                self._next_token = max(self._next_token, now) + 1.0 / self.rate
        # SQLite: the claim read the paused topics holding the write lock, so no pause
        # committed before this moment.
        claimed_at = time.monotonic()
        self._note_writes(len(settlements) + len(queued) + len(claims))
        committed = writing or wants_claim or wants_plan
        throttled = False
        try:  # reads after the commit: a failure here must not make the trip look failed
            if committed and self.rate is not None and allowed == 0 and free > 0 and topics:
                due = store.next_due(topics=topics)
            throttled = (
                self.rate is not None
                and allowed == 0
                and free > 0
                and due is not None
                and due <= horizon
            )
            if committed:
                wake_at = self._next_wake(topics, free - len(claims))
            else:  # nothing was written: what was just read still holds
                found = [schedule_due, None if due is None else max(due, self._next_token)]
                wake_at = min((c for c in found if c is not None), default=None)
        except Exception as exc:
            log.info("airq_nb scheduler: could not read the next due time: %s", describe(exc))
            wake_at = now + 1.0
        paused, paused_at = None, 0.0
        if read_paused:
            paused_at = time.monotonic()
            try:  # the prefetched may start if their topic is not paused now
                paused = frozenset(store.queue.paused_topics())
            except Exception as exc:  # they wait (stale) for the next trip
                log.info("airq_nb scheduler: could not read the paused topics: %s", describe(exc))
        return _TripResult(
            outcomes,
            len(queued),
            planned,
            broken,
            claims,
            len(dead),
            wake_at,
            throttled,
            claimed_at,
            paused,
            paused_at,
        )

    def _note_writes(self, count: int) -> None:
        checkpointer = self.checkpointer
        if checkpointer is not None and count:
            checkpointer.note_writes(count)

    def _next_wake(self, topics: tuple[str, ...], free: int) -> float | None:
        """When to look again: the next schedule slot or claimable message (reads only)."""
        candidates = [next_schedule_wake(self.store)]
        if topics and free > 0:
            due = self.store.next_due(topics=topics)
            if due is not None:
                candidates.append(max(due, self._next_token))
        found = [c for c in candidates if c is not None]
        return min(found) if found else None

    def overall_next_due(self) -> float | None:
        """The next due message of any topic or schedule slot (for ``RunSummary``)."""
        found = [c for c in (self.store.next_due(), next_schedule_wake(self.store)) if c]
        return min(found) if found else None

    # -- leases -------------------------------------------------------------------------

    async def keep_leases(self) -> None:
        """Extend the leases of running and not-yet-settled deliveries, every third of a lease."""
        interval = max(self.lease_seconds / 3.0, 0.05)
        loop = asyncio.get_running_loop()
        pause = interval
        while True:
            await asyncio.sleep(pause)
            pause = interval
            held = self._held()
            held += [s.delivery for s in self.pending if not s.release]
            if not held:
                continue
            try:
                lost = await loop.run_in_executor(
                    self._lease_pool,
                    functools.partial(
                        extend_leases,
                        self.store,
                        held,
                        lease_seconds=self.lease_seconds,
                        now=self.clock.now(),
                    ),
                )
            except Exception as exc:  # e.g. another process holds the lock: try again soon
                log.warning("airq_nb scheduler: could not extend leases: %s", describe(exc))
                pause = interval / 4.0
                continue
            for flight in self._holding():
                # Another consumer has it now: stop extending; its settlement logs "lost".
                flight.lease_lost = flight.lease_lost or flight.delivery.id in lost
            self.flights.prefetched.drop(lost)  # prefetched ones are not started at all

    def _holding(self) -> list[Flight]:
        """Deliveries whose leases this session keeps: running, and timed out but whose
        sync thread still runs (their messages wait for it)."""
        return [*self.in_flight, *self.flights.stuck_flights]

    async def release_in_flight(self) -> None:
        """Stop running handlers; their messages, and the prefetched ones, go back (see
        ``Flights.release_all``)."""
        self.flights.starting = False
        self._give_back((p.delivery, p.scheduled_at) for p in self.flights.prefetched.take_all())
        await self.flights.release_all()

    async def flush(self) -> None:
        """Commit every pending settlement (stop, or the end of ``run_until_idle``)."""
        while self.pending:
            settlements = list(self.pending)
            outcomes = await self.call_store(settle_batch, self.store, settlements)
            del self.pending[: len(settlements)]
            self._count(settlements, _TripResult(outcomes, 0, 0, [], [], 0, None, False))
