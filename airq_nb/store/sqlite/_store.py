"""``SqliteStore``: the store in one SQLite file, the KV, the durable queue and the other tables.

The verbs are the store core's (``kv.py``, ``queue.py``, ``queue_manager.py``), the same
on both backends; this class adds what is SQLite's own: the file, its connections and
transactions (``_connection.py``), a consistent multi-key read, lease renewal on a side
connection, waking on other processes' commits (``_change_wait.py``) and WAL
checkpointing beside a scheduler (``_checkpoint.py``). ``_schema.py`` creates and upgrades
every table when the file is opened.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..._clock import Clock
from ..._errors import StoreError
from .. import _queue
from .._core import StoreCore
from .._dialect import SQLITE
from .._keys import Key
from ..models import Delivery, Entry
from ..queue_manager import QueueManager
from ._change_wait import ChangeWaiter
from ._checkpoint import WalCheckpointer
from ._connection import DEFAULT_BUSY_TIMEOUT, MEMORY, Connection, Durability

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SqliteStore", "lease_renewal_wait"]


def lease_renewal_wait(lease_seconds: float) -> float:
    """How long one lease renewal waits for the file's write lock (a sixth of a lease)."""
    return lease_seconds / 6.0


class SqliteStore(StoreCore, Connection):
    """KV + durable queue in one SQLite file. Safe to share between threads and processes."""

    #: The SQL spellings and locks of this backend (``store/_dialect.py``).
    dialect = SQLITE

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None = None,
        durability: Durability = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        StoreCore.__init__(self, clock)
        Connection.__init__(self, path, durability=durability, busy_timeout=busy_timeout)
        # Taken now: a relative path names another file after os.chdir (a notebook's %cd).
        self._identity = MEMORY if self._in_memory else os.path.realpath(path)
        self.queue = QueueManager(self)
        self._waiter: ChangeWaiter | None = None
        self._waiter_lock = threading.Lock()

    # -- plumbing for the shared verbs --------------------------------------------------

    def _run(self, statement: str, params: Sequence[Any]) -> tuple[list[Any], int]:
        rows, cursor = self._write(statement, params)
        return rows, cursor.rowcount

    def _tx(self) -> AbstractContextManager[Any]:
        return self.transaction()

    @property
    def identity(self) -> str:
        """What tells this store from every other: its file's real path (or ``:memory:``)."""
        return self._identity

    # -- KV -----------------------------------------------------------------------------

    def get_many(self, keys: Sequence[Key]) -> list[Entry]:
        """Entries for several keys, read in one consistent snapshot."""
        with self._reading() as conn:
            try:
                if conn.in_transaction:
                    return [self.get(key) for key in keys]
                conn.execute("BEGIN")
                try:
                    return [self.get(key) for key in keys]
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    # -- leases -------------------------------------------------------------------------

    def renew_leases(
        self, deliveries: Sequence[Delivery], *, lease_seconds: float, now: float
    ) -> set[int]:
        """Keep holding ``deliveries`` for ``lease_seconds`` more, in one commit.

        Returns the ids whose lease was lost meanwhile (another consumer may own them now).
        A file store's leases are renewed on a short-lived connection of their own, never
        through the store's writer: a trip of this process waiting out another process's
        lock holds the writer (up to its ``busy_timeout``, longer than a lease), and a
        renewal queued behind it would be silently late. This connection waits at most
        ``lease_seconds / 6`` for the file's lock, then raises :class:`StoreError` so the
        caller logs it and retries while the lease still runs.
        """
        expires = now + lease_seconds
        if self._in_memory:  # one connection per process: the store's own
            with self.transaction() as conn:
                return _queue.extend_rows(conn, deliveries, expires)
        wait = lease_renewal_wait(lease_seconds)
        try:
            conn = sqlite3.connect(self._identity, timeout=wait, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path} to renew leases: {exc}") from exc
        try:
            conn.execute(f"PRAGMA synchronous = {self.durability.upper()}")
            conn.execute("BEGIN IMMEDIATE")
            lost = _queue.extend_rows(conn, deliveries, expires)
            conn.execute("COMMIT")
            return lost
        except sqlite3.Error as exc:
            raise StoreError(
                f"could not renew {len(deliveries)} lease(s) on {self.path} within {wait:g} s "
                f"({exc}): another process holds its write lock; retrying while they last"
            ) from exc
        finally:
            conn.close()  # rolls back anything left open

    def checkpointer(self) -> WalCheckpointer:
        """A WAL checkpointer on a side connection and thread, for a running scheduler."""
        return WalCheckpointer(self._identity)

    # -- change-wait --------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another commit may have changed the file (True) or ``timeout`` passes.

        The first call starts watching and returns True at once: what happened before it
        watched is unknown, so the caller should look. Later calls report every commit
        made since the previous one returned, by any process (this store's own included).
        """
        timeout = _queue.check_delay(timeout, what="timeout", limit=math.inf)
        with self._waiter_lock:
            waiter, new = self._waiter, self._waiter is None
            if waiter is None:
                if self._closed:
                    raise StoreError(
                        f"the store {self.path} is closed; open it again with open_store()"
                    )
                waiter = self._waiter = ChangeWaiter(self._identity)
        return True if new else waiter.wait(timeout)

    def _change_signal(self) -> ChangeWaiter | None:
        """A change waiter of its own for ``store.watch`` (``store/_watch.py``); None for an
        in-memory store, whose change count is polled."""
        return None if self._in_memory else ChangeWaiter(str(self.path))

    def _no_one_waits(self) -> None:
        # Close the side connection (it holds the file open); a wait under way ends.
        with self._waiter_lock:
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()

    def close(self) -> None:
        """Close the store; using it afterwards raises :class:`StoreError`."""
        self._no_one_waits()
        Connection.close(self)

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r}>"
