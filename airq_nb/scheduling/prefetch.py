"""Prefetched messages: claimed beyond the free slots, waiting in due order for a slot.

A trip claims more than the free slots (up to ``prefetch``), so quick handlers refill
their slots from here, on the loop, without a trip to the store each time, and a trip
settles and claims a large batch at once. What waits here is sized to start soon: only
as many as the handlers lately started within :data:`PREFETCH_HORIZON`, so slow handlers
prefetch nothing and another process sharing the backlog gets its share. A waiting
message is started only within :data:`PREFETCH_FRESH_SECONDS` of a trip that saw its
topic not paused; its lease is renewed with the running ones'.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store import Delivery

__all__ = ["PREFETCH_FRESH_SECONDS", "PREFETCH_HORIZON", "Prefetch", "Prefetched"]

#: A scheduler prefetches only as many messages as its handlers lately started in this long.
PREFETCH_HORIZON = 0.05
#: A prefetched message starts only this soon after a trip saw its topic not paused.
PREFETCH_FRESH_SECONDS = 0.05


class Prefetched:
    """A claimed message waiting for a free slot, with when its topic was last seen unpaused."""

    __slots__ = ("checked_at", "delivery", "scheduled_at")

    def __init__(self, delivery: Delivery, scheduled_at: float, checked_at: float) -> None:
        self.delivery = delivery
        self.scheduled_at = scheduled_at
        #: When (``time.monotonic``) a trip last saw its topic not paused.
        self.checked_at = checked_at


class Prefetch:
    """The messages one scheduler claimed and has not started yet, oldest first."""

    def __init__(self, *, limit: int, concurrency: int) -> None:
        #: At most this many wait (0: claims are capped by the free slots).
        self.limit = limit
        self.concurrency = concurrency
        self._waiting: collections.deque[Prefetched] = collections.deque()
        #: When a trip last saw the topics of every message waiting then not paused.
        self._validated_at = -float("inf")
        #: Smoothed seconds from a handler's launch to its landing (None: none landed yet).
        self.run_time: float | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def __iter__(self) -> Iterator[Prefetched]:
        return iter(self._waiting)

    def landed(self, took: float) -> None:
        """A handler landed ``took`` seconds after its launch (sizes the prefetch)."""
        run_time = self.run_time
        self.run_time = took if run_time is None else run_time + 0.25 * (took - run_time)

    def room(self, *, oldest_running: float | None) -> int:
        """How many more a claim may take beyond the free slots.

        As many as the handlers lately started within :data:`PREFETCH_HORIZON` (quick
        handlers: up to ``limit``; slow ones: none), so what waits starts well within its
        lease and a shared backlog is not hoarded. None before a handler has landed, nor
        while one has been running (``oldest_running`` seconds) longer than the horizon.
        """
        run_time = self.run_time
        if not self.limit or run_time is None:
            return 0
        if oldest_running is not None and oldest_running > PREFETCH_HORIZON:
            return 0
        want = self.limit
        if run_time > 0:
            want = min(want, int(self.concurrency * PREFETCH_HORIZON / run_time))
        return max(0, want - len(self._waiting))

    def add(self, claims: Iterable[tuple[Delivery, float]], *, checked_at: float) -> None:
        """Claims, in due order, whose topics were seen not paused at ``checked_at``.

        A claim of a message already waiting here (its lease had lapsed, e.g. a trip
        waited long for the lock) replaces the old copy, whose lease is gone.
        """
        fresh = [Prefetched(d, at, checked_at) for d, at in claims]
        if self._waiting and fresh:
            self.drop({p.delivery.id for p in fresh})
        self._waiting.extend(fresh)

    def take_fresh(self, most: int) -> list[Prefetched]:
        """Up to ``most`` of the oldest, while their topics were seen unpaused lately
        (an older one waits for the next trip, which looks at the paused topics again)."""
        waiting = self._waiting
        fresh_after = time.monotonic() - PREFETCH_FRESH_SECONDS
        taken: list[Prefetched] = []
        if self._validated_at >= fresh_after:  # everything waiting is fresh
            while waiting and len(taken) < most:
                taken.append(waiting.popleft())
            return taken
        while waiting and len(taken) < most and waiting[0].checked_at >= fresh_after:
            taken.append(waiting.popleft())
        return taken

    def revalidate(self, paused: Collection[str] | None, *, checked_at: float) -> list[Prefetched]:
        """A trip read the paused topics at ``checked_at`` (``None``: it could not), after
        its claims were added: the messages of paused ones are taken out (to be given
        back), the rest are fresh again."""
        if paused is None or not self._waiting:
            return []
        gone: list[Prefetched] = []
        if paused:
            every = "*" in paused
            gone = [p for p in self._waiting if every or p.delivery.topic in paused]
            if gone:
                self._waiting = collections.deque(
                    p for p in self._waiting if not (every or p.delivery.topic in paused)
                )
        # Every message waiting now was seen unpaused then: one stamp for all of them
        # (a message added later was claimed later, and carries its own later stamp).
        self._validated_at = max(self._validated_at, checked_at)
        return gone

    def take_all(self) -> list[Prefetched]:
        """Every waiting message, taken out (stop: they are given back unstarted)."""
        taken = list(self._waiting)
        self._waiting.clear()
        return taken

    def drop(self, ids: Collection[int]) -> None:
        """Forget the messages ``ids`` (their lease was lost: another consumer has them)."""
        if ids and self._waiting:
            self._waiting = collections.deque(p for p in self._waiting if p.delivery.id not in ids)
