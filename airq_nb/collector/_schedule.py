"""The collector on the scheduler: its hourly schedules, its queue handler, and the ways to run it.

:func:`start_collector` runs it inside a kernel (a background task on the event loop);
:func:`collect_until_idle` runs what is due and returns (papermill, cron). The handler
turns a source's failure into the scheduler's outcomes: :class:`~airq_nb.Retry` when
waiting may help, :class:`~airq_nb.Permanent` when it cannot. One run's work is
:func:`~airq_nb.collector._job.collect_once`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .._errors import CollectionFailedError, ConfigurationError, Permanent, Retry, SourceError
from ..alerts._sending import after_collection, install_alerts
from ._job import collect_once, default_locations
from ._sources import Location, Source, source_from_env

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "COLLECT_TOPIC",
    "collect_until_idle",
    "install_collector",
    "schedule_name",
    "start_collector",
]

#: Queue topic the collector's schedules enqueue on and its handler listens to.
COLLECT_TOPIC = "collect"


def schedule_name(location: Location) -> str:
    """The name of a location's hourly collection schedule: ``collect:<name>``."""
    return f"collect:{location.name}"


def _locations(
    source: Source, location: Location | None, locations: Sequence[Location] | None
) -> list[Location]:
    if location is not None and locations is not None:
        raise ConfigurationError("give location= or locations=, not both")
    if locations is not None:
        chosen = list(locations)
        if not chosen:
            raise ConfigurationError("locations= is empty; name at least one location")
        if len({loc.name for loc in chosen}) != len(chosen):
            raise ConfigurationError("locations= names a location twice")
        return chosen
    return [location] if location is not None else default_locations(source)


# Per scheduler: the sources start_collector was given, by name, so the handler uses the
# very object (base URL, time-out) rather than rebuilding one from the environment.
_INSTALLED: weakref.WeakKeyDictionary[Any, dict[str, Source]] = weakref.WeakKeyDictionary()


def install_collector(
    scheduler: Any,
    store: Store,
    *,
    source: Source | None = None,
    location: Location | None = None,
    every: timedelta = timedelta(hours=1),
) -> Any:
    """Register the ``collect`` handler (once per scheduler) and the schedule for ``location``
    (default: the source's first default location).

    A schedule that has never run gets a first run queued now. Returns the schedule's
    ``ScheduleInfo``; does not start the scheduler.
    """
    if source is None:
        source = source_from_env()
    if location is None:
        location = default_locations(source)[0]
    gentlest = getattr(source, "min_interval", None)
    if gentlest is not None and every < gentlest:
        raise ConfigurationError(
            f"{source.name} asks clients to poll no more often than every {gentlest}; "
            f"collect {location.name} every {gentlest} or more, not every {every}"
        )
    sources = _INSTALLED.get(scheduler)
    if sources is None:
        sources = _INSTALLED[scheduler] = {}
        scheduler.listen_queue(_handler(store, sources), topic=COLLECT_TOPIC)
        # Alerts ride on the collector's scheduler: their handlers and evaluation timer.
        install_alerts(scheduler, store)
    sources[source.name] = source
    info = scheduler.schedule(
        schedule_name(location),
        every=every,
        message={"location": location.as_dict(), "source": source.name},
        topic=COLLECT_TOPIC,
        misfire="coalesce",
    )
    if info.last_run_at is None:
        # A new schedule's first slot is the next whole hour; backfill now instead. run_now
        # never queues a second run while one is pending, so re-running a cell is harmless.
        scheduler.run_now(info.name)
    return info


def _handler(store: Store, sources: dict[str, Source]) -> Any:
    async def collect(message: dict[str, Any]) -> None:
        if not isinstance(message, dict) or "location" not in message:
            raise ConfigurationError(
                f"a collect message needs a location, got {message!r}; "
                "register collection with airq_nb.start_collector()"
            )
        location = Location.from_dict(message["location"])
        name = message.get("source")
        # The API key is never in the message: a source not given to start_collector is
        # rebuilt from the environment (OPENWEATHER_API_KEY) at each run.
        source = sources.get(name) if name else None
        if source is None:
            try:
                source = source_from_env(name)
            except ConfigurationError as exc:
                # No key in this process (cron without OPENWEATHER_API_KEY), an unknown source
                # name: retrying cannot help, so fail the run at once with the real cause.
                raise Permanent(f"SourceConfigurationError: {exc}") from None
        try:
            result = await collect_once(store, source=source, location=location)
        except SourceError as exc:
            # Tell the scheduler what the failure means: it knows nothing of sources.
            reason = f"{type(exc).__name__}: {exc}"
            if not exc.retryable:
                raise Permanent(reason) from exc
            raise Retry(after=exc.retry_after, reason=reason) from exc
        if result.stored:
            after_collection(store)

    return collect


def start_collector(
    store: Store | None = None,
    *,
    source: Source | None = None,
    location: Location | None = None,
    locations: Sequence[Location] | None = None,
    every: timedelta = timedelta(hours=1),
) -> Any:
    """Collect ``location`` (or each of ``locations``) every hour from inside this kernel,
    starting now; idempotent. Without either: London, or KF1 and MY7 for LAQN.

    Registers one schedule ``collect:<location>`` (misfire ``coalesce``) per location, each
    its own series, and the handler on this process's scheduler for the store, and starts
    it on the running event loop. Calling it again (a re-run cell) updates the schedules;
    it never starts a second scheduler.
    """
    from ..scheduling.registry import scheduler_for
    from ..store import open_store

    if source is None:
        source = source_from_env()
    chosen = _locations(source, location, locations)
    if store is None:
        store = open_store()
    scheduler = scheduler_for(store)
    for place in chosen:
        install_collector(scheduler, store, source=source, location=place, every=every)
    scheduler.start()
    return scheduler


async def collect_until_idle(
    store: Store | None = None,
    *,
    source: Source | None = None,
    location: Location | None = None,
    locations: Sequence[Location] | None = None,
    every: timedelta = timedelta(hours=1),
    timeout: float | None = None,
) -> Any:
    """Headless collection (papermill, cron): register the schedules (``location``, each of
    ``locations``, or the source's defaults), run what is due, return.

    A first run backfills at once; after that only a due slot runs (missed slots coalesce
    into one). Returns the scheduler's ``RunSummary``. Raises :class:`CollectionFailedError`
    naming the last error if a run failed; that run stays queued for its retry.
    """
    from ..scheduling.runtime import Scheduler
    from ..scheduling.status import store_status
    from ..store import open_store

    if store is None:
        # Headless runs come and go (cron, papermill): close the store this call opened.
        with open_store() as opened:
            return await collect_until_idle(
                opened,
                source=source,
                location=location,
                locations=locations,
                every=every,
                timeout=timeout,
            )
    if source is None:
        source = source_from_env()
    chosen = _locations(source, location, locations)
    scheduler = Scheduler(store)
    try:
        for place in chosen:
            install_collector(scheduler, store, source=source, location=place, every=every)
        summary = await scheduler.run_until_idle(timeout=timeout)
    finally:
        scheduler.close()
    if summary.failed or summary.dead_lettered:
        if summary.dead_lettered:
            fate = "it is now a dead letter: fix the cause, then `airq-nb queue redrive ID`"
        else:
            fate = "it will be retried by back-off (`airq-nb queue list` shows when)"
        raise CollectionFailedError(
            f"collecting {', '.join(p.name for p in chosen)} failed: "
            f"{store_status(store).last_error}; {fate}",
            summary=summary,
        )
    return summary
