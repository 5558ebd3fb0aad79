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

__all__ = [
    "Failure",
    "Handler",
    "HandlerStillRunning",
    "ThreadExecutor",
    "describe",
    "is_async",
    "run_async",
]

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


class HandlerStillRunning(asyncio.CancelledError):
    """A cancelled sync handler's thread still runs: its message must not be given back.

    ``future`` is the thread's outcome; ``failure`` is set if the attempt had timed out.
    """

    def __init__(self, future: ConcurrentFuture[Any], failure: Failure | None) -> None:
        super().__init__("a sync handler's thread still runs")
        self.future = future
        self.failure = failure


class ThreadExecutor:
    """Runs sync handlers on at most ``workers`` threads (started on demand, then reused).

    Python cannot stop a thread. A handler still running after ``handler_timeout`` is
    counted in :attr:`stuck` (``Scheduler.status().stuck_handlers`` shows it, and a warning
    is logged), and :meth:`run` waits for its thread to return before it reports the
    attempt as timed out — so its message stays leased (and renewed) meanwhile, never
    handed to another consumer while the thread still runs. A run cancelled while its
    thread runs (``stop()``) raises :class:`HandlerStillRunning`: the caller must not give
    the message back. Such a thread is counted in :attr:`orphaned` and keeps one of the
    scheduler's concurrency slots until it returns.
    """

    def __init__(self, workers: int) -> None:
        self._pool = _DaemonPool(workers)
        self._stuck: set[ConcurrentFuture[Any]] = set()
        self._orphans: set[ConcurrentFuture[Any]] = set()

    @property
    def stuck(self) -> int:
        """Threads still running past ``handler_timeout``."""
        return len(self._stuck)

    @property
    def orphaned(self) -> int:
        """Threads still running whose delivery has ended (cancelled by ``stop()``)."""
        return len(self._orphans)

    @property
    def stuck_in_flight(self) -> int:
        """Timed-out threads whose delivery still waits for them (their message held)."""
        return len(self._stuck - self._orphans)

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
                self._mark(self._stuck, future, loop, on_unstuck)
                log.warning(
                    "a sync handler is still running after handler_timeout; its attempt "
                    "counts as failed once its thread returns, and until then its message "
                    "stays leased and its thread keeps one concurrency slot"
                )
                await self._outlive(future, waiting, loop, on_unstuck, timed_out(timeout))
            return timed_out(timeout)
        except asyncio.CancelledError:
            if not future.cancel() and not future.done():
                self._mark(self._orphans, future, loop, on_unstuck)
                raise HandlerStillRunning(future, None) from None
            raise
        except Exception as exc:
            return failure_of(exc)
        return None

    async def _outlive(
        self,
        future: ConcurrentFuture[Any],
        waiting: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        on_unstuck: Callable[[], None],
        failure: Failure,
    ) -> None:
        """Wait for a timed-out handler's thread to return (its outcome no longer matters)."""
        try:
            result = await asyncio.shield(waiting)
            if inspect.iscoroutine(result):  # a sync function that returned a coroutine
                result.close()
        except asyncio.CancelledError:
            if not future.done():
                self._mark(self._orphans, future, loop, on_unstuck)
                raise HandlerStillRunning(future, failure) from None
            raise
        except Exception:  # the attempt already timed out: this error is not recorded
            pass

    def _mark(
        self,
        where: set[ConcurrentFuture[Any]],
        future: ConcurrentFuture[Any],
        loop: asyncio.AbstractEventLoop,
        on_unstuck: Callable[[], None],
    ) -> None:
        watched = future in self._stuck or future in self._orphans
        where.add(future)
        if not watched:
            future.add_done_callback(
                lambda f: _call_soon(loop, functools.partial(self._unstuck, f, on_unstuck))
            )

    def _unstuck(self, future: ConcurrentFuture[Any], on_unstuck: Callable[[], None]) -> None:
        self._stuck.discard(future)
        self._orphans.discard(future)
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
