"""The change-wait on PostgreSQL: LISTEN on the store's channel, on a connection of its own.

Triggers (``_schema.py``) NOTIFY the channel when a transaction that adds deliverable work
commits. One thread at a time reads the listening connection; other threads waiting on the
same store wait on a condition and are woken with it, so every waiter sees every change.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from ..._errors import StoreClosedError, StoreError

__all__ = ["ChangeWait"]


class ChangeWait:
    """``wait(timeout)``: True once a NOTIFY arrives on ``channel``, False at the time-out."""

    def __init__(
        self, url: str, channel: str, *, where: str, notify: Callable[[str], None]
    ) -> None:
        self._url = url
        self._channel = channel
        # A channel of this waiter's own: a NOTIFY on it ends a blocked read (interrupt,
        # close) without waking the store's other listeners in other processes.
        self._private = f"airq_nb_wake:{uuid.uuid4().hex}"
        self._where = where
        self._notify = notify  # sends one NOTIFY on the given channel
        self._connection: psycopg.Connection[Any] | None = None
        self._changed = threading.Condition()
        self._generation = 0  # counts the changes seen, so every waiter notices each one
        self._reading = False
        self._closed = False

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = self._generation
            while self._reading:  # another thread reads the connection: share its news
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
                if self._generation != seen:
                    return True
            self._reading = True
        changed = False
        try:
            changed = self._read(max(0.0, deadline - time.monotonic()))
        finally:
            with self._changed:
                self._reading = False
                self._generation += int(changed)
                if self._closed:
                    self._disconnect()
                self._changed.notify_all()
        return changed

    def _read(self, timeout: float) -> bool:
        if self._connection is None:
            # What happened before we listened is unknown: the caller should look now.
            self._connection = self._listen()
            return True
        try:
            changed = False
            if timeout <= 0:
                # A look without waiting: one round trip makes the server send every
                # notification committed before it (psycopg keeps them for notifies()).
                self._connection.execute("SELECT 1")
            for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                changed = True
            if changed:  # several commits are one change to the caller: drain them
                for _ in self._connection.notifies(timeout=0):
                    pass
            return changed
        except psycopg.OperationalError:  # the server restarted, or the network dropped
            self._connection.close()
            self._connection = None
            self._connection = self._listen()
            return True

    def _listen(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreClosedError(
                f"the store at {self._where} is closed; open it again with open_store()"
            )
        try:
            conn = psycopg.connect(self._url, autocommit=True)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._private)))
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot listen for queue changes: lost or could not open the connection to "
                f"PostgreSQL at {self._where} ({exc}); the store reconnects by itself on the "
                "next call once the server is reachable"
            ) from exc
        return conn

    def interrupt(self) -> None:
        """End a wait under way now (it returns True), e.g. when its scheduler closes."""
        with self._changed:
            if self._reading:
                with contextlib.suppress(StoreError):
                    self._notify(self._private)

    def close(self) -> None:
        """Stop listening; a thread blocked in :meth:`wait` returns at once (True)."""
        self._closed = True
        with self._changed:
            if self._reading:
                # Wake the reader now rather than at its time-out.
                with contextlib.suppress(StoreError):
                    self._notify(self._private)
            # A reader that cannot be woken (the server is gone) disconnects when it returns.
            if self._changed.wait_for(lambda: not self._reading, timeout=5):
                self._disconnect()

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
