"""A view's refresh on the kernel's event loop: when what it shows changes, and on a poll.

A view names the KV keys whose change means its data changed (:meth:`watch_keys`, e.g. the
collector's per-series records, rewritten whenever a run stores readings) and is refreshed
as soon as ``store.watch`` reports one of them. While it has none to name yet (nothing
collected), the store's ``data_version`` — which moves with any commit — is looked at every
:data:`LOOK_EVERY` seconds instead. Every ``interval`` seconds it refreshes anyway: the
fallback for what no key tells (a schedule's next run, the ages shown).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from ..collector._job import RECORDS

__all__ = ["LOOK_EVERY", "SETTLE", "PeriodicRefresh", "collector_record_keys"]

#: With no key to watch, how often the store's ``data_version`` is looked at (seconds).
LOOK_EVERY = 1.0
#: After a change, how long to let the rest of its burst land (a run writes one record per
#: series) before refreshing once for all of it (seconds).
SETTLE = 0.2
#: ``store.watch`` takes at most this many keys (Deno KV's limit).
_MAX_KEYS = 10

# The refreshing view of each kind per store file. Re-running a notebook cell makes a new
# view and leaves the old one on the page unseen; its task would otherwise poll forever.
_CURRENT: weakref.WeakValueDictionary[tuple[str, str], PeriodicRefresh] = (
    weakref.WeakValueDictionary()
)


def _store_key(store: Any) -> str:
    """One key per store: the file's real path, or the PostgreSQL URL and schema."""
    return str(store.identity)


def collector_record_keys(store: Any, location: Any = None) -> list[Any]:
    """The keys of the collector's per-series records (of ``location``, a name or a
    :class:`~airq_nb.Location`): a run that stores readings, or fails, rewrites its own."""
    place = getattr(location, "name", location)
    prefix = RECORDS if place is None else (*RECORDS, place)
    return [entry.key for entry in store.list(prefix=prefix, limit=_MAX_KEYS)]


class PeriodicRefresh:
    """Calls ``refresh()`` from a task on the running event loop when the view's data changes
    (see the module docstring) and every ``interval`` seconds.

    The task only gets a turn while the kernel is idle, so it never interrupts a cell, and
    it reads the store on a worker thread while it waits, so it never blocks the loop.
    Starting a second view of the same kind on the same store stops the first one's.
    """

    interval: float
    store: Any
    _task: asyncio.Task[None] | None = None
    #: How many refreshes a change (rather than the poll) brought.
    changes = 0
    #: True once the task has refreshed after taking what it compares with: from then on
    #: every commit that changes the view's data is seen (never, for a view on the poll alone).
    watching = False

    def refresh(self) -> None:
        raise NotImplementedError

    def _report(self, error: BaseException) -> None:
        """Show a failed refresh; the next one is tried all the same."""
        raise NotImplementedError

    def watch_keys(self) -> Sequence[Any] | None:
        """The keys whose change refreshes this view at once (at most 10); empty while
        there are none yet (then any commit does); None: refresh on the poll alone."""
        return None

    def start(self, *, interval: float | None = None) -> asyncio.Task[None] | None:
        """Refresh from the running event loop (no-op outside one); idempotent."""
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
        """Stop refreshing (its watch of the store ends with it)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def refreshing(self) -> bool:
        """Whether the refresh task is running."""
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        watch: Any = None
        watched: tuple[Any, ...] | None = None
        changed = waited = False
        try:
            while True:
                # What the wait below compares against is taken before the refresh reads, so
                # a commit landing in between (a run storing its first readings while the
                # view starts, another run right after one) is never missed. A view on the
                # poll alone compares with nothing: its first refresh is its constructor's.
                keys = await self._read_watch_keys(watched)
                version: Any = None
                if keys != watched:
                    if watch is not None:
                        watch.close()
                    watch, watched = None, keys
                    if keys:
                        watch = self.store.watch(list(keys))
                        await anext(watch, None)  # their entries now: the refresh shows them
                if watch is None and keys is not None:
                    version = await self._data_version()
                if keys is not None or waited:
                    try:
                        self.refresh()
                    except Exception as exc:  # a locked or vanished file must not end them
                        self._report(exc)
                if changed:
                    self.changes += 1
                self.watching = keys is not None
                if watch is not None:
                    changed = await self._next_change(watch)
                elif keys is None:
                    await asyncio.sleep(self.interval)
                    changed = False
                else:
                    changed = await self._any_commit(version)
                waited = True
                if changed:
                    await asyncio.sleep(SETTLE)
        finally:
            self.watching = False
            if watch is not None:
                watch.close()

    async def _read_watch_keys(self, before: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if type(self).watch_keys is PeriodicRefresh.watch_keys:
            return None
        try:
            keys = await asyncio.to_thread(self.watch_keys)
        except Exception:  # the refresh itself shows what is wrong with the store
            return before
        return None if keys is None else tuple(keys)[:_MAX_KEYS]

    async def _next_change(self, watch: Any) -> bool:
        """True when a watched key changed, False when ``interval`` passed first."""
        try:
            return await asyncio.wait_for(anext(watch), self.interval) is not None
        except TimeoutError:
            return False
        except StopAsyncIteration:  # the store was closed: the refresh will say so
            await asyncio.sleep(self.interval)
            return False

    async def _data_version(self) -> Any:
        """The store's ``data_version`` now; None when the store cannot say (closed)."""
        try:
            return await asyncio.to_thread(self.store.data_version)
        except Exception:  # a closed or unreachable store: the refresh will say so
            return None

    async def _any_commit(self, first: Any) -> bool:
        """True when the store's ``data_version`` moved from ``first`` within ``interval``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.interval
        try:
            while first is not None and (remaining := deadline - loop.time()) > 0:
                await asyncio.sleep(min(LOOK_EVERY, remaining))
                if await asyncio.to_thread(self.store.data_version) != first:
                    return True
        except Exception:  # a closed or unreachable store: the refresh will say so
            pass
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        return False
