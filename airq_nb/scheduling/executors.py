"""Running handler calls: what an attempt's outcome is, and a bounded thread pool for sync ones.

Both kinds of handler end as a :class:`Failure` (or ``None`` for success), so the
dispatcher settles every kind the same way. A handler signals what its failure means with
:class:`airq_nb.Retry` and :class:`airq_nb.Permanent`; anything else it raises is an
ordinary failed attempt, retried by back-off. Async handlers run as tasks on the loop (see
:mod:`.dispatcher`); sync ones run here, on :class:`ThreadExecutor`'s threads.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import math
import threading
from collections.abc import Callable
from contextvars import Context
from dataclasses import dataclass
from typing import Any

from .._errors import Permanent, Retry
from ..store.models import MAX_DELAY_SECONDS

__all__ = [
    "ABANDONED",
    "Failure",
    "Handler",
    "SyncCall",
    "ThreadExecutor",
    "describe",
    "failure_of",
    "is_async",
    "timed_out",
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


def failure_of(exc: BaseException) -> Failure:
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


# A SyncCall's life: queued -> running -> finished; taken back before it ran (cancelled),
# or given up on while it runs (abandoned: its thread is stuck until the handler returns).
QUEUED, RUNNING, FINISHED, CANCELLED, ABANDONED = range(5)


class SyncCall:
    """One sync handler call handed to :class:`ThreadExecutor`; the pool fills in the outcome.

    ``owner`` is the caller's own record of the call (the dispatcher's flight), handed back
    with the finished call so no lookup is needed.
    """

    __slots__ = (
        "context",
        "done",
        "error",
        "finished_at",
        "handler",
        "owner",
        "result",
        "state",
        "value",
    )

    def __init__(self, handler: Handler, value: Any, context: Context, owner: Any) -> None:
        self.handler = handler
        self.value = value
        self.context = context
        self.owner = owner
        self.state = QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_at = 0.0
        #: Set by the pool's thread once the handler returned (read by the orphan keeper).
        self.done = False


class ThreadExecutor:
    """Runs sync handlers on at most ``workers`` daemon threads (started on demand, reused).

    Calls are plain records on a queue (no future per call), and finished calls reach the
    event loop through one mailbox: calls finishing together cost the loop one wake-up and
    one ``on_finished(calls)``, not one callback each. Daemon threads, because a handler
    that never returns must not keep the interpreter from exiting.

    Python cannot stop a thread. A call given up on while it runs (:meth:`give_up`: its
    time-out passed, or the scheduler stops) is *abandoned*: its thread is counted in
    :attr:`stuck` until the handler returns, so it keeps one of the scheduler's
    concurrency slots, visibly (``Scheduler.status().stuck_handlers``); the finished call
    still reaches ``on_finished``, so its message (held meanwhile) is settled then.
    """

    def __init__(
        self,
        workers: int,
        *,
        now: Callable[[], float],
        on_finished: Callable[[list[SyncCall]], None],
        on_unstuck: Callable[[], None],
    ) -> None:
        self._max = workers
        self._now = now
        self._on_finished = on_finished
        self._on_unstuck = on_unstuck
        self._lock = threading.Lock()
        self._queue: collections.deque[SyncCall] = collections.deque()
        self._threads = 0
        #: Idle threads, each asleep on its own locked gate (released to wake it).
        self._sleepers: list[threading.Lock] = []
        #: Threads woken (or started) for queued calls that have not taken one yet.
        self._coming = 0
        self._mailbox: list[SyncCall] = []
        self._announced = False  # a _deliver is on its way to the loop for the mailbox
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.stuck = 0

    def submit(self, call: SyncCall) -> None:
        """Queue ``call`` for a pool thread (from the event loop's thread)."""
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._queue.append(call)
            summon = self._summon()
        if summon is not None:
            summon()

    def _summon(self) -> Callable[[], None] | None:
        """Under the lock: get one thread on its way to the queued calls, if none is.

        One at a time: the thread that takes a call summons the next one if calls are still
        queued, before running its own. Slow handlers thus each get a thread in turn, while
        quick ones are run one after another by the thread already awake, instead of a
        wake-up (two context switches on a busy machine) per call.
        """
        if self._coming or not self._queue:
            return None
        if self._sleepers:
            self._coming += 1
            return self._sleepers.pop().release
        if self._threads < self._max:
            self._threads += 1
            self._coming += 1
            return threading.Thread(target=self._serve, name="airq-handler", daemon=True).start
        return None  # every thread is busy: the first one free takes the next call

    def give_up(self, call: SyncCall) -> bool:
        """Stop waiting for ``call``; False if it already finished (its outcome is on the way).

        A call not started yet never runs; a running one is abandoned (see the class).
        """
        with self._lock:
            state = call.state
            if state == QUEUED:
                call.state = CANCELLED
            elif state == RUNNING:
                call.state = ABANDONED
        if state == RUNNING:
            self.stuck += 1
            log.warning(
                "a sync handler is still running after handler_timeout (or at stop); its "
                "message stays leased and its thread keeps one concurrency slot until it "
                "returns; then the attempt is settled"
            )
        return state != FINISHED

    def _serve(self) -> None:
        lock, queued, mailbox = self._lock, self._queue, self._mailbox
        gate = threading.Lock()
        gate.acquire()
        arrived = True
        while True:
            with lock:
                if arrived:
                    self._coming -= 1
                    arrived = False
                if self._closed:
                    return
                if not queued:
                    self._sleepers.append(gate)
                    call = None
                else:
                    call = queued.popleft()
                    runs = call.state == QUEUED
                    if runs:
                        call.state = RUNNING
                    summon = self._summon()
                    # Finished calls wait while other calls wait to be picked up (they are,
                    # at once); the last pickup announces them, so none waits behind a
                    # slow call.
                    announce = bool(mailbox) and self._should_announce()
            if call is None:
                gate.acquire()  # asleep until summoned (or closed)
                arrived = True
                continue
            if summon is not None:
                summon()
            if announce:
                self._announce()
            if not runs:
                continue
            try:
                call.result = call.context.run(call.handler, call.value)
            except BaseException as exc:
                call.error = exc
            call.finished_at = self._now()
            call.done = True
            with lock:
                if call.state == RUNNING:
                    call.state = FINISHED
                mailbox.append(call)
                announce = self._should_announce()
            del call
            if announce:
                self._announce()

    def _should_announce(self) -> bool:
        """Under the lock: hand the mailbox to the loop now? (Once, when no call waits.)

        Calls finishing together thus reach the loop as one batch, settled in one trip,
        instead of one wake-up each.
        """
        if self._announced or self._queue:
            return False
        self._announced = True
        return True

    def _announce(self) -> None:
        loop = self._loop
        try:
            if loop is None:
                raise RuntimeError("no loop")
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits for the outcomes now
            with self._lock:
                self._mailbox.clear()
                self._announced = False

    def _deliver(self) -> None:
        with self._lock:
            done = self._mailbox[:]
            self._mailbox.clear()
            self._announced = False
        finished = []
        for call in done:
            if call.state == ABANDONED:
                self.stuck -= 1
                self._on_unstuck()
            finished.append(call)  # an abandoned one too: its message waits for it
        if finished:
            self._on_finished(finished)

    def collect(self) -> None:
        """Hand finished calls waiting in the mailbox to ``on_finished`` now (on the loop)."""
        self._deliver()

    def shutdown(self) -> None:
        """Let the threads end (idle ones now, busy ones when their call returns)."""
        with self._lock:
            self._closed = True
            sleepers, self._sleepers = self._sleepers, []
        for gate in sleepers:
            gate.release()
