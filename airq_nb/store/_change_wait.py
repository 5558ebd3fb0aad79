"""``Store.wait_for_change``: block until another commit may have changed the file.

SQLite tells a connection nothing when another process commits, but ``PRAGMA
data_version`` on a connection changes whenever any *other* connection (this process's
store included) has committed to the file since it last looked. It reads a counter in the
WAL's shared memory: a few microseconds, no file I/O, no lock. So a waiter keeps its own
connection, looks every :data:`CHECK_INTERVAL` seconds, and otherwise sleeps — a
scheduler notices another process's enqueue within about that interval while an idle one
costs well under 0.5 % of a core (``benchmarks/scheduler_latency.py`` measures both).

The PostgreSQL backend implements the same method with LISTEN/NOTIFY.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._sqlite import Store

__all__ = ["CHECK_INTERVAL", "ChangeWaiter", "unwatch", "wait_for_change", "watch"]

#: How often a waiting scheduler looks at ``data_version`` (seconds).
CHECK_INTERVAL = 0.010


class ChangeWaiter:
    """A side connection that reports commits made through other connections to one file."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA query_only = ON")
        self._lock = threading.Lock()
        self._closed = False
        self._seen = self._version()

    def _version(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True as soon as a commit since the last look is seen.

        The last version seen is kept between calls, so a commit made while the caller was
        busy (between two waits) is reported by the next call at once, never lost.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while True:
                if self._closed:
                    self._conn.close()
                    return False
                version = self._version()
                if version != self._seen:
                    self._seen = version
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                time.sleep(min(CHECK_INTERVAL, remaining))

    def close(self) -> None:
        """Close the side connection now, or (if a wait is under way) when that wait ends."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._conn.close()
            finally:
                self._lock.release()


_waiters: weakref.WeakKeyDictionary[Store, ChangeWaiter] = weakref.WeakKeyDictionary()
_watchers: weakref.WeakKeyDictionary[Store, int] = weakref.WeakKeyDictionary()
_waiters_lock = threading.Lock()


def _waiter(store: Store) -> tuple[ChangeWaiter, bool]:
    with _waiters_lock:
        waiter = _waiters.get(store)
        if waiter is not None:
            return waiter, False
        waiter = _waiters[store] = ChangeWaiter(str(store.path))
        weakref.finalize(store, waiter.close)
        return waiter, True


def wait_for_change(store: Store, timeout: float) -> bool:
    """``store.wait_for_change(timeout)``: see :meth:`ChangeWaiter.wait` (one waiter per store).

    The first call only starts watching (and returns False at once); :func:`watch` starts
    it ahead, before the caller first reads the state it will wait on.
    """
    waiter, new = _waiter(store)
    return False if new else waiter.wait(timeout)


def watch(store: Store) -> None:
    """Count a consumer (a scheduler) of ``store``'s waiter; pair with :func:`unwatch`.

    Does not open anything: a store of another backend has its own ``wait_for_change``.
    """
    with _waiters_lock:
        _watchers[store] = _watchers.get(store, 0) + 1


def unwatch(store: Store) -> None:
    """A consumer is done: the last one closes the side connection (it holds the file open)."""
    with _waiters_lock:
        left = _watchers.get(store, 0) - 1
        _watchers[store] = max(left, 0)
        waiter = _waiters.pop(store, None) if left <= 0 else None
    if waiter is not None:
        waiter.close()
