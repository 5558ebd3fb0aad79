"""How the runtime waits: for a wake-up, a deadline on its clock, or another process's commit.

A mixin of :class:`~airq_nb.scheduling.runtime.Scheduler`, apart so the runtime reads as
what it does (start, stop, trips) and this as how it sleeps between trips.

Another process's commit only matters while the runtime waits: each trip reads the queue
anyway. And ``store.wait_for_change`` cannot tell this scheduler's own commits from other
processes', so watching during a burst of trips (a backlog draining) would wake a thread
and the loop after every trip, for nothing. So the watcher looks only once the runtime has
waited :data:`WATCH_AFTER` seconds; nothing is missed meanwhile, since ``wait_for_change``
reports a commit made since its last look at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .executors import describe

if TYPE_CHECKING:
    from .._clock import Clock
    from ..store import Store
    from .dispatcher import Dispatcher

__all__ = ["Waiting"]

log = logging.getLogger("airq_nb.scheduler")
#: How long the runtime waits before the change watcher starts looking (see above).
WATCH_AFTER = 0.005


class Waiting:
    """The runtime's wake event, its change watcher, and sleeps that end on either."""

    store: Store
    clock: Clock
    poll_interval: float
    _loop: asyncio.AbstractEventLoop | None
    _loop_thread: int | None
    _wake: asyncio.Event | None
    _watching: asyncio.Event | None
    _watch_pool: ThreadPoolExecutor
    _dispatcher: Dispatcher
    _stopping: bool

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

    async def _watch_changes(self) -> None:
        """Wake the runtime when another connection commits (``store.wait_for_change``)."""
        loop = asyncio.get_running_loop()
        assert self._watching is not None
        while True:
            await self._watching.wait()
            try:
                changed = await loop.run_in_executor(
                    self._watch_pool, self.store.wait_for_change, self.poll_interval
                )
            except Exception as exc:  # a closed store: the runtime's own trip reports it
                log.info("airq_nb scheduler: change-wait failed: %s", describe(exc))
                await asyncio.sleep(self.poll_interval)
                continue
            if changed and self._wake is not None:
                self._wake.set()

    def _stop_watching(self) -> None:
        """A trip is starting: it reads the queue itself (see the module docstring)."""
        if self._watching is not None:
            self._watching.clear()

    @contextlib.contextmanager
    def _watched(self) -> Iterator[None]:
        """While the runtime waits: let the change watcher look after WATCH_AFTER seconds."""
        watching = self._watching
        if watching is None or watching.is_set():
            yield
            return
        timer = asyncio.get_running_loop().call_later(WATCH_AFTER, watching.set)
        try:
            yield
        finally:
            timer.cancel()

    async def _gather_landings(self) -> None:
        """Let handlers the last trip started, if they are quick, share the next trip.

        Only in ``run_until_idle`` after a trip that took every free slot (a backlog):
        starting a little later then costs no message its time. The background runtime
        never waits so, to start what falls due on time.
        """
        assert self._wake is not None
        pause = self._dispatcher.flights.gather_time()
        while pause > 0 and not self._stopping:
            self._wake.clear()
            await self._wait_for_event(pause)
            pause = self._dispatcher.flights.gather_time()

    async def _wait_for_event(self, seconds: float | None) -> bool:
        assert self._wake is not None
        if seconds is not None and seconds <= 0:
            return self._wake.is_set()
        if self._wake.is_set():
            return True
        try:
            with self._watched():
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
        ]
        try:
            with self._watched():
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
