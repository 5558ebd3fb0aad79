"""A periodic refresh on the kernel's event loop, shared by the live chart and the widgets."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

__all__ = ["PeriodicRefresh"]

# The refreshing view of each kind per store file. Re-running a notebook cell makes a new
# view and leaves the old one on the page unseen; its task would otherwise poll forever.
_CURRENT: weakref.WeakValueDictionary[tuple[str, str], PeriodicRefresh] = (
    weakref.WeakValueDictionary()
)


def _store_key(store: Any) -> str:
    """One key per store: the file's real path, or the PostgreSQL URL and schema."""
    return str(store.identity)


class PeriodicRefresh:
    """Calls ``refresh()`` every ``interval`` seconds from a task on the running event loop.

    The task only gets a turn while the kernel is idle, so it never interrupts a cell. Starting
    a second view of the same kind on the same store stops the first one's refreshes.
    """

    interval: float
    store: Any
    _task: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        raise NotImplementedError

    def _report(self, error: BaseException) -> None:
        """Show a failed refresh; the next one is tried all the same."""
        raise NotImplementedError

    def start(self, *, interval: float | None = None) -> asyncio.Task[None] | None:
        """Refresh periodically from the running event loop (no-op outside one); idempotent."""
        if interval is not None:
            self.interval = interval
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._task is None or self._task.done():
            key = (type(self).__name__, _store_key(self.store))
            previous = _CURRENT.get(key)
            if previous is not None and previous is not self:
                previous.stop()
            _CURRENT[key] = self
            self._task = loop.create_task(self._run(), name=f"airq_nb {type(self).__name__}")
        return self._task

    def stop(self) -> None:
        """Stop the periodic refresh."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def refreshing(self) -> bool:
        """Whether the periodic refresh task is running."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.refresh()
            except Exception as exc:  # a locked or vanished file must not end the refreshes
                self._report(exc)
