"""Running one handler call: async handlers on the loop, sync ones on a bounded thread pool.

Both return how the attempt ended as a :class:`Failure` (or ``None`` for success), so the
dispatcher settles every kind of handler the same way. A handler signals what its failure
means with :class:`airq_nb.Retry` and :class:`airq_nb.Permanent`; anything else it raises
is an ordinary failed attempt, retried by back-off.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass
from typing import Any

from .._errors import Permanent, Retry
from ..store._queue import MAX_DELAY_SECONDS

__all__ = ["Failure", "Handler", "ThreadExecutor", "describe", "is_async", "run_async"]

log = logging.getLogger("airq_nb.scheduler")

Handler = Callable[[Any], Any]
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt: the error to record, whether to retry, and after how long."""

    error: str
    retry: bool = True
    retry_in: float | None = None


def describe(exc: BaseException) -> str:
    """``Type: message``, cut to a length the log and the dead letter can hold."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _retry_in(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), MAX_DELAY_SECONDS)


def _outcome_text(exc: Retry | Permanent) -> str:
    """What the log records for a Retry/Permanent: its reason, else the error it wraps."""
    if exc.reason:
        return exc.reason[:MAX_ERROR_CHARS]
    cause = exc.__cause__
    return describe(cause) if cause is not None else describe(exc)


def failure_of(exc: Exception) -> Failure:
    """The attempt's outcome for an exception a handler raised."""
    if isinstance(exc, Retry):
        return Failure(_outcome_text(exc), True, _retry_in(exc.after))
    if isinstance(exc, Permanent):
        return Failure(_outcome_text(exc), False)
    return Failure(describe(exc))


def timed_out(timeout: float | None) -> Failure:
    return Failure(f"handler timed out after {timeout:g} s")


def is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    )


async def run_async(handler: Handler, value: Any, timeout: float | None) -> Failure | None:
    """Await an async handler; one that overruns ``timeout`` is cancelled and fails."""
    try:
        async with asyncio.timeout(timeout) as deadline:
            await handler(value)
    except TimeoutError as exc:
        if deadline.expired():  # not the handler's own TimeoutError
            return timed_out(timeout)
        return failure_of(exc)
    except Exception as exc:
        return failure_of(exc)
    return None


class ThreadExecutor:
    """Runs sync handlers on at most ``workers`` threads (started on demand, then reused).

    Python cannot stop a thread. A handler still running after ``handler_timeout`` has its
    attempt failed at once (the message is retried or dead-lettered by the usual rules),
    and its thread is counted in :attr:`stuck` until it returns: it keeps one of the
    scheduler's concurrency slots, and ``Scheduler.status().stuck_handlers`` shows it.
    """

    def __init__(self, workers: int) -> None:
        self._pool = _DaemonPool(workers)
        self.stuck = 0

    async def run(
        self,
        handler: Handler,
        value: Any,
        timeout: float | None,
        *,
        on_unstuck: Callable[[], None],
    ) -> Failure | None:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        future, waiting = self._pool.submit(loop, context.run, handler, value)
        # Nobody awaits a timed-out thread's result: retrieve it so asyncio never complains.
        waiting.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            async with asyncio.timeout(timeout) as deadline:
                result = await asyncio.shield(waiting)
                if inspect.isawaitable(result):  # a sync function that returned a coroutine
                    await result
        except TimeoutError as exc:
            if not deadline.expired():
                return failure_of(exc)
            if not future.done():
                self._mark_stuck(future, loop, on_unstuck)
            return timed_out(timeout)
        except asyncio.CancelledError:
            if not future.cancel() and not future.done():
                self._mark_stuck(future, loop, on_unstuck)
            raise
        except Exception as exc:
            return failure_of(exc)
        return None

    def _mark_stuck(
        self,
        future: ConcurrentFuture[Any],
        loop: asyncio.AbstractEventLoop,
        on_unstuck: Callable[[], None],
    ) -> None:
        self.stuck += 1
        log.warning(
            "a sync handler is still running after handler_timeout; its attempt counts as "
            "failed, and its thread keeps one concurrency slot until it returns"
        )
        future.add_done_callback(
            lambda _f: _call_soon(loop, functools.partial(self._unstuck, on_unstuck))
        )

    def _unstuck(self, on_unstuck: Callable[[], None]) -> None:
        self.stuck -= 1
        on_unstuck()

    def shutdown(self) -> None:
        self._pool.shutdown()


class _DaemonPool:
    """Up to ``workers`` daemon threads, started on demand and reused.

    Like ``ThreadPoolExecutor``, except that its threads are daemons (a handler that never
    returns must not keep the interpreter from exiting: ``ThreadPoolExecutor`` joins its
    threads at exit), and that results reach the event loop through one mailbox: handlers
    finishing together cost the loop one wake-up, not one each.
    """

    def __init__(self, workers: int) -> None:
        self._max = workers
        self._work: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._mailbox: list[tuple[asyncio.Future[Any], ConcurrentFuture[Any]]] = []

    def submit(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any
    ) -> tuple[ConcurrentFuture[Any], asyncio.Future[Any]]:
        """Run ``fn(*args)`` on a pool thread; its outcome as a thread future and a loop future."""
        job = _Job(ConcurrentFuture(), loop.create_future(), loop, fn, args)
        with self._lock:
            if self._idle == 0 and self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._serve, name="airq-handler", daemon=True).start()
            elif self._idle:
                self._idle -= 1  # that idle thread takes this job
        self._work.put(job)
        return job.future, job.waiting

    def _serve(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            if job.future.set_running_or_notify_cancel():
                try:
                    job.future.set_result(job.fn(*job.args))
                except BaseException as exc:
                    job.future.set_exception(exc)
                self._post(job)
            del job
            with self._lock:
                self._idle += 1

    def _post(self, job: _Job) -> None:
        with self._lock:
            first = not self._mailbox
            self._mailbox.append((job.waiting, job.future))
        if first:
            try:
                job.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody waits for the result
                with self._lock:
                    self._mailbox.clear()

    def _deliver(self) -> None:
        with self._lock:
            done, self._mailbox = self._mailbox, []
        for waiting, future in done:
            if waiting.done():  # cancelled: nobody waits for it
                continue
            exc = future.exception()
            if exc is None:
                waiting.set_result(future.result())
            else:
                waiting.set_exception(exc)

    def shutdown(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, 0
        for _ in range(threads):
            self._work.put(None)


@dataclass(frozen=True, slots=True)
class _Job:
    future: ConcurrentFuture[Any]
    waiting: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    fn: Callable[..., Any]
    args: tuple[Any, ...]


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:  # the loop is closed (the session ended): nobody else counts now
        fn()
