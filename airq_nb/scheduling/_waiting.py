"""How the runtime waits: for a wake-up, a deadline on its clock, or another process's commit.

A mixin of :class:`~airq_nb.scheduling.runtime.Scheduler`, apart so the runtime reads as
what it does (start, stop, trips) and this as how it sleeps between trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .executors import describe

if TYPE_CHECKING:
    from .._clock import Clock
    from ..store._sqlite import Store

__all__ = ["Waiting"]

log = logging.getLogger("airq_nb.scheduler")


class Waiting:
    """The runtime's wake event, its change watcher, and sleeps that end on either."""

    store: Store
    clock: Clock
    poll_interval: float
    _loop: asyncio.AbstractEventLoop | None
    _loop_thread: int | None
    _wake: asyncio.Event | None
    _watch_pool: ThreadPoolExecutor

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
        while True:
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

    async def _wait_for_event(self, seconds: float | None) -> bool:
        assert self._wake is not None
        if seconds is not None and seconds <= 0:
            return self._wake.is_set()
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
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
