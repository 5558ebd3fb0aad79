"""Holding the messages of sync handlers whose threads outlive the scheduler's session.

Python cannot stop a thread, so ``stop()`` (or the end of ``run_until_idle``) cannot stop
a sync handler that is still running. Giving its message back would let another consumer
run it beside the old thread, and lower its attempt count so a handler that always hangs
would never be dead-lettered. Instead the message stays leased: a keeper thread renews its
lease every third of a lease until the handler's thread returns, then settles it (ack, or
a failed attempt; a handler that had already timed out counts as timed out). If the
process ends first, the lease lapses and the message is delivered again as a counted
attempt, as after a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..store import Settlement, extend_leases, settle_batch
from .executors import Failure, SyncCall, describe, failure_of

if TYPE_CHECKING:
    from .._clock import Clock
    from ..store import Store
    from ..store.models import Delivery

__all__ = ["CHECK_SECONDS", "OrphanKeeper"]

log = logging.getLogger("airq_nb.scheduler")

#: How often the keeper looks whether a held handler's thread has returned (seconds).
CHECK_SECONDS = 0.05


@dataclass(slots=True)
class _Orphan:
    delivery: Delivery
    call: SyncCall
    scheduled_at: float
    started_at: float
    failure: Failure | None  # set when the handler had already timed out


class OrphanKeeper:
    """Renews orphaned deliveries' leases on a daemon thread and settles each as it returns."""

    def __init__(self, store: Store, clock: Clock, *, lease_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._orphans: list[_Orphan] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._running = False

    def adopt(
        self,
        delivery: Delivery,
        call: SyncCall,
        *,
        scheduled_at: float,
        started_at: float,
        failure: Failure | None,
    ) -> None:
        """Hold ``delivery`` until ``call`` (its handler's thread) returns, then settle it."""
        with self._lock:
            self._orphans.append(_Orphan(delivery, call, scheduled_at, started_at, failure))
            start, self._running = not self._running, True
        if start:
            threading.Thread(target=self._run, name="airq-orphans", daemon=True).start()
        else:
            self._wake.set()

    @property
    def held(self) -> int:
        """Deliveries held for threads that still run."""
        with self._lock:
            return len(self._orphans)

    def _run(self) -> None:
        interval = max(self._lease_seconds / 3.0, 0.05)
        renew_at = time.monotonic()  # at once: the session's keeper has stopped
        while True:
            # Looks for returned threads every CHECK_SECONDS (only while some are held).
            self._wake.wait(min(max(renew_at - time.monotonic(), 0.0), CHECK_SECONDS))
            self._wake.clear()
            with self._lock:
                done = [o for o in self._orphans if o.call.done]
                self._orphans = [o for o in self._orphans if not o.call.done]
                held = list(self._orphans)
                if not held and not done:
                    self._running = False
                    return
            if done:
                self._settle(done)
            if held and time.monotonic() >= renew_at:
                renew_at = time.monotonic() + self._renew(held, interval)

    def _renew(self, held: list[_Orphan], interval: float) -> float:
        """Extend the held leases; returns how long to wait before the next renewal."""
        try:
            lost = extend_leases(
                self._store,
                [o.delivery for o in held],
                lease_seconds=self._lease_seconds,
                now=self._clock.now(),
            )
        except Exception as exc:
            log.warning("airq_nb scheduler: could not extend leases: %s", describe(exc))
            return interval / 4.0
        if lost:
            with self._lock:  # another consumer owns them now: stop holding them
                self._orphans = [o for o in self._orphans if o.delivery.id not in lost]
        return interval

    def _settle(self, done: list[_Orphan]) -> None:
        now = self._clock.now()
        settlements = []
        for o in done:
            failure, result, exc = o.failure, o.call.result, o.call.error
            if hasattr(result, "close") and hasattr(result, "send"):
                result.close()  # a coroutine nobody can await now
                if failure is None:
                    failure = Failure("handler returned a coroutine after its session ended")
            if failure is None and exc is not None:
                failure = failure_of(exc) if isinstance(exc, Exception) else Failure(describe(exc))
            settlements.append(
                Settlement(
                    o.delivery,
                    o.scheduled_at,
                    o.started_at,
                    now,
                    error=None if failure is None else failure.error,
                    retry=True if failure is None else failure.retry,
                    retry_in=None if failure is None else failure.retry_in,
                )
            )
        try:
            settle_batch(self._store, settlements)
        except Exception as exc:  # e.g. the store was closed: the leases lapse instead
            log.warning(
                "airq_nb scheduler: could not settle %d message(s) whose handlers returned "
                "after the scheduler stopped (%s); they are delivered again when their "
                "leases lapse",
                len(settlements),
                describe(exc),
            )
