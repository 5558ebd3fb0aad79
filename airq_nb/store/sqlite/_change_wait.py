"""``SqliteStore.wait_for_change``: block until another commit may have changed the file.

SQLite tells a connection nothing when another process commits, but ``PRAGMA
data_version`` on a connection changes whenever any *other* connection (this process's
store included) has committed to the file since that connection last looked. So a waiter
keeps its own side connection and compares versions. Between looks it sleeps on a Linux
inotify watch of the store's folder — every commit writes the ``-wal`` file, which wakes it
within a millisecond, and an idle waiter costs no CPU at all. Where inotify is missing
(macOS, Windows) it looks every :data:`CHECK_INTERVAL` seconds instead.
``benchmarks/scheduler_latency.py`` measures the pickup time and the idle cost.

Each store owns one waiter (opened by its first wait, closed with the store or when its
last consumer is done). The PostgreSQL backend implements the same method with
LISTEN/NOTIFY.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["CHECK_INTERVAL", "ChangeWaiter"]

#: Without inotify, how often a waiting scheduler looks at ``data_version`` (seconds).
CHECK_INTERVAL = 0.010
#: After a file event, look again this long later: a commit writes the WAL a moment before
#: it publishes the new version, and the event may come in between.
_SETTLE_CHECKS = (0.001, 0.005, 0.020)
_IN_MODIFY, _IN_CREATE, _IN_MOVED_TO = 0x2, 0x100, 0x80
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, 0o2000000


def _inotify_folder(folder: Path) -> int | None:
    """An inotify descriptor watching writes in ``folder``, or None where inotify is missing."""
    name = ctypes.util.find_library("c")
    if name is None or not hasattr(select, "poll"):
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        init, add_watch = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        return None
    mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
    if add_watch(fd, os.fsencode(folder), mask) < 0:
        os.close(fd)
        return None
    return fd


class ChangeWaiter:
    """A side connection that reports commits made through other connections to one file."""

    def __init__(self, path: str) -> None:
        self._closing = threading.Event()
        # Only this process can write an in-memory store, and its writes wake a scheduler
        # through on_queue_change: there is nothing to watch, so a wait just times out.
        self._memory = path == ":memory:"
        self._conn: sqlite3.Connection | None = None
        if not self._memory:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = ON")
        self._lock = threading.Lock()
        self._closed = False
        # Watch first, then read the version: a commit in between is seen either way.
        self._fd = None if self._memory else _inotify_folder(Path(path).resolve().parent)
        self._poll = None
        if self._fd is not None:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        self._seen = self._version()

    def _version(self) -> int:
        if self._conn is None:
            return 0
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def _changed(self) -> bool:
        version = self._version()
        if version == self._seen:
            return False
        self._seen = version
        return True

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True as soon as a commit since the last look is seen.

        The last version seen is kept between calls, so a commit made while the caller was
        busy (between two waits) is reported by the next call at once, never lost.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            try:
                return self._wait(deadline)
            finally:
                if self._closed:  # close() came during the wait: it left the closing to us
                    self._release()

    def _wait(self, deadline: float) -> bool:
        if self._memory:
            self._closing.wait(max(0.0, deadline - time.monotonic()))
            return False
        while not self._closed:
            if self._changed():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._poll is None:
                time.sleep(min(CHECK_INTERVAL, remaining))
                continue
            # Sleep until something in the folder is written (or the timeout).
            if not self._poll.poll(min(remaining, 0.25) * 1000.0):
                continue
            self._drain_events()
            for pause in _SETTLE_CHECKS:
                if self._changed():
                    return True
                time.sleep(pause)
        return False

    def _drain_events(self) -> None:
        assert self._fd is not None
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the side connection now, or (if a wait is under way) when that wait ends."""
        self._closed = True
        self._closing.set()
        if self._lock.acquire(blocking=False):
            try:
                self._release()
            finally:
                self._lock.release()
