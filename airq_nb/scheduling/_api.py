"""The scheduler's public verbs for handlers and schedules, and the small helpers they share.

:class:`SchedulerApi` is the part of ``Scheduler`` a notebook calls to set things up
(handlers, schedules, enqueue); it only validates and calls store verbs, and wakes the
runtime. The runtime itself (start, stop, delivering) lives in :mod:`.runtime`.
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import SchedulerError
from ..store.models import check_topic
from .executors import Handler
from .schedules import (
    ScheduleInfo,
    get_schedule,
    list_schedules,
    register_schedule,
    remove_schedule,
    run_schedule_now,
    set_paused,
)

if TYPE_CHECKING:
    from .._clock import Clock
    from ..store import Store

__all__ = ["SchedulerApi", "positive", "until_as_unix", "weak_call"]


class SchedulerApi:
    """Handlers and schedules: what a notebook registers before (or while) the runtime runs."""

    store: Store
    clock: Clock
    _handlers: dict[str, Handler]
    #: Defined by the runtime: look at the queue now; note commits for the WAL checkpointer.
    wake: Callable[[], None]
    _note_writes: Callable[[int], None]

    def listen_queue(self, handler: Handler, *, topic: str = "default") -> None:
        """Deliver messages of ``topic`` to ``handler`` (sync handlers run in a thread).

        A different handler already listening on ``topic`` is replaced with a warning; the
        same function defined again (a re-run notebook cell) replaces it silently. A handler
        may raise :class:`airq_nb.Retry` or :class:`airq_nb.Permanent` to say what its failure
        means. An async handler that overruns ``handler_timeout`` is cancelled and its attempt
        failed. A sync one cannot be stopped (Python cannot stop a thread): a warning is
        logged, its message stays leased (renewed) and its thread keeps one concurrency slot
        until it returns (``status().stuck_handlers`` counts them); then its attempt counts as
        failed (retried or dead-lettered as usual), so it never runs twice at once.
        """
        if not callable(handler):
            raise SchedulerError(f"handler must be callable, got {type(handler).__name__}")
        topic = check_topic(topic)
        old = self._handlers.get(topic)
        if old is not None and qualified_name(old) != qualified_name(handler):
            warnings.warn(
                f"topic {topic!r} already had handler {qualified_name(old)}; it is replaced by "
                f"{qualified_name(handler)} (one handler per topic)",
                RuntimeWarning,
                stacklevel=2,
            )
        self._handlers[topic] = handler
        self.wake()

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this scheduler has handlers for (and so claims messages of)."""
        return tuple(sorted(self._handlers))

    def schedule(
        self,
        name: str,
        *,
        every: timedelta | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        message: Any = None,
        topic: str | None = None,
        misfire: str = "coalesce",
        max_catch_up: int = 10,
        backoff_schedule: list[float] | None = None,
    ) -> ScheduleInfo:
        """Create or update the durable recurring job ``name``; registering it again never duplicates it.

        Each run queues ``message`` (default ``{}``) on ``topic`` (default: the name).
        ``every`` runs on multiples of the interval from the epoch (hourly on the hour, UTC);
        ``cron`` is a 5-field expression in ``tz``. After downtime ``misfire`` decides:
        ``"coalesce"`` one run for all missed slots, ``"skip"`` wait for the next slot,
        ``"catch_up"`` the newest ``max_catch_up`` missed slots, one run each, oldest first.
        At most one run is queued or running at a time; slots that pass meanwhile count as
        missed and are handled by the same policy once it finishes.
        """
        info = register_schedule(
            self.store,
            name,
            now=self.clock.now(),
            every=every,
            cron=cron,
            tz=tz,
            message=message,
            topic=topic,
            misfire=misfire,
            max_catch_up=max_catch_up,
            backoff_schedule=backoff_schedule,
        )
        self.wake()
        return info

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule in the database (from any process), soonest next run first."""
        return list_schedules(self.store)

    def get_schedule(self, name: str) -> ScheduleInfo:
        """One schedule by name; raises ScheduleNotFoundError if there is none."""
        return get_schedule(self.store, name)

    def pause_schedule(self, name: str) -> None:
        """Stop planning runs of ``name``; on resume its misfire policy handles missed slots."""
        set_paused(self.store, name, True, now=self.clock.now())

    def resume_schedule(self, name: str) -> None:
        """Plan runs of ``name`` again."""
        set_paused(self.store, name, False, now=self.clock.now())
        self.wake()

    def remove_schedule(self, name: str) -> None:
        """Delete schedule ``name``; a run already queued stays in the queue."""
        remove_schedule(self.store, name)

    def run_now(self, name: str) -> int:
        """Queue a run of ``name`` now and return its message id.

        If a run is already queued or running, no second one is added (no overlap): that
        run's id is returned.
        """
        message_id = run_schedule_now(self.store, name, now=self.clock.now())
        self.wake()
        return message_id

    def enqueue(
        self, value: Any, *, delay: float = 0, topic: str = "default", **options: Any
    ) -> int:
        """Queue a message (as :meth:`Store.enqueue`); the runtime is woken at once.

        A plain ``store.enqueue`` on the same store object wakes it too; a message from
        another process is noticed through ``store.wait_for_change`` within milliseconds.
        """
        message_id = self.store.enqueue(value, delay=delay, topic=topic, **options)
        self._note_writes(1)
        return message_id


def positive(value: Any, what: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SchedulerError(f"{what} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise SchedulerError(f"{what} must be finite, got {value!r}")
    return float(value)


def qualified_name(handler: Handler) -> str:
    target = handler.func if isinstance(handler, functools.partial) else handler
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}" if module else name


def until_as_unix(when: datetime | timedelta | float, now: float) -> float:
    """``until`` as Unix seconds; a timedelta means that long *after* ``now``."""
    if isinstance(when, timedelta):
        return now + when.total_seconds()
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise SchedulerError("until must be an aware datetime (e.g. tzinfo=timezone.utc)")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise SchedulerError(f"until must be a datetime, timedelta or Unix time, got {when!r}")
    return float(when)


def weak_call(method: Callable[[], None]) -> Callable[[], None]:
    """A callback that calls ``method`` while its object lives, so the store keeps no
    scheduler alive just by having it subscribed."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call
