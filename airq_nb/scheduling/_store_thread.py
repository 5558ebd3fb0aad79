"""The dispatcher's store thread: store calls run off the event loop, one at a time, in order.

A trip is one store call per batch, so its hand-off to the thread and back is paid once
per batch; this keeps that hand-off to a queue put and one ``call_soon_threadsafe``
(``run_in_executor`` adds a thread-safe future, its lock and a chain of callbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["StoreThread"]

T = TypeVar("T")
_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class StoreThread:
    """One daemon thread (started on first use) that runs the calls it is given, in order.

    A daemon, like the handler threads: a call blocked on another process's lock must not
    keep the interpreter from exiting. Ending mid-call is then like a crash — nothing
    half-written, and leases taken run out (at-least-once).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._started = False
        self._closed = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread; its result or exception, here."""
        return await self.submit(fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args)``; a future of the running loop gets its outcome."""
        if self._closed:
            raise RuntimeError("the scheduler is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._started:
            self._started = True
            threading.Thread(target=self._serve, name=self._name, daemon=True).start()
        self._calls.put((loop, future, fn, args))
        return future

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            loop, future, fn, args = call
            del call
            try:
                outcome, failed = fn(*args), False
            except BaseException as exc:
                outcome, failed = exc, True
            # RuntimeError: the loop is closed, nobody waits for the outcome.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, outcome, failed)
            del loop, future, fn, args, outcome

    def close(self) -> None:
        """Let the thread end after the calls already given (does not wait)."""
        self._closed = True
        self._calls.put(None)


def _settle(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
