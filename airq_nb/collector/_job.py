"""The collection job: fetch the hours a location is missing, store them, forget old ones.

Each run makes one request, for the window from the first hour it lacks up to now: just
after the newest stored reading (at most the retention back), so a first run backfills
7 days and a run after downtime fills the whole gap; or, when an hour of the last day is
missing in the middle (a null hour from Open-Meteo, an hour OpenWeatherMap left out), from
that hour, so it is asked for again. The look-back is bounded to a day, so an hour that
never gets a value costs at most a day's window per run, not seven days. The upsert and
the retention delete share one transaction.

Each run also asks again for a recent window (:data:`DEFAULT_REVISION_WINDOW`, 48 hours)
unless a value was fetched this clock hour: measured data are provisional and modelled
data are re-analysed. Values that changed are updated and logged (:func:`airq_nb.read_revisions`);
a run that finds nothing new or changed writes nothing at all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import (
    ConfigurationError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
)
from ..store.readings import (
    DEFAULT_RETENTION,
    delete_older_than,
    first_missing_hour,
    newest_fetch_time,
    newest_reading_time,
    upsert_readings,
    utc_datetime,
)
from ._sources import (
    HOUR,
    LAQN_PREFIX,
    LONDON,
    Location,
    Provenance,
    Reading,
    Source,
    check_hour,
    mask_secrets,
    source_from_env,
)

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "DEFAULT_REVISION_WINDOW",
    "GAP_LOOKBACK_HOURS",
    "RECORDS",
    "CollectResult",
    "collect_now",
    "collect_once",
    "default_locations",
    "last_collection",
]

logger = logging.getLogger("airq_nb.collector")

#: Tries per run for transient failures (5xx, time-outs, 429) before the error is raised
#: and the scheduler's own retries take over; bounded so a scheduled run never hangs.
DEFAULT_TRIES = 3
#: Waits between those tries, in seconds (a 429's Retry-After replaces them).
DEFAULT_BACKOFF = (1.0, 4.0)
#: How far back a run looks for hours missing in the middle of what is stored, to ask for
#: them again; older holes are left alone (a source that never fills them would otherwise
#: make every run fetch the whole retention).
GAP_LOOKBACK_HOURS = 24
#: A Retry-After longer than this is not waited out inside a run; the scheduler retries later.
MAX_WAIT_IN_RUN = 30.0
#: How far back each run asks again, to keep values the source revised since.
DEFAULT_REVISION_WINDOW = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class CollectResult:
    """What one collection run did: the window asked for, hours received, stored, deleted."""

    source: str
    location: str
    start: datetime | None
    end: datetime | None
    received: int
    stored: int
    deleted: int
    attempts: int
    newest: datetime | None
    #: Of the hours stored, how many replaced a different value (logged as revisions).
    revised: int = 0
    #: "measured" or "modelled".
    kind: str = "modelled"

    @property
    def up_to_date(self) -> bool:
        """True when nothing was missing, so no request was made."""
        return self.start is None


#: The KV prefix of the last run's outcome per series: ``(*RECORDS, location, source)``,
#: rewritten whenever a run stores or deletes readings, or its outcome changes.
RECORDS = ("airq_nb", "collector")


def _collector_key(source: str, location: str) -> tuple[str, ...]:
    return (*RECORDS, location, source)


def default_locations(source: Source) -> list[Location]:
    """Where a source collects when no location is named: London for the modelled
    sources, the LAQN sites North Kensington (KF1) and Marylebone Road (MY7) for LAQN."""
    if source.name == "laqn":
        from ._laqn import DEFAULT_LAQN_SITES

        return [Location.parse(LAQN_PREFIX + code) for code in DEFAULT_LAQN_SITES]
    return [LONDON]


async def collect_once(
    store: Store,
    *,
    source: Source | None = None,
    location: Location | None = None,
    retention: timedelta = DEFAULT_RETENTION,
    tries: int = DEFAULT_TRIES,
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    revise: timedelta = DEFAULT_REVISION_WINDOW,
) -> CollectResult:
    """Fetch the hours ``location`` is missing from ``source`` and store them; one request
    (one per species for LAQN).

    The window starts at the earliest hour of the last day that is missing or all-null
    (see :data:`GAP_LOOKBACK_HOURS`), else just after the newest stored hour, and reaches
    back ``revise`` (48 hours by default; ``timedelta(0)`` turns it off) so revised values
    are seen. When nothing is missing the recent window is asked for again unless a value was
    fetched in the current clock hour. Unchanged hours are not written; changed ones are logged as revisions.
    ``location`` defaults to the source's first default location (London; LAQN: KF1).

    Transient failures are tried again up to ``tries`` times in all, then raised as the
    :class:`~airq_nb.SourceError` subclass that says what happened. A malformed reply writes
    nothing. Readings older than ``retention`` are deleted in the same transaction.
    """
    if source is None:
        source = source_from_env()
    if location is None:
        location = default_locations(source)[0]
    if tries < 1:
        raise ConfigurationError(f"tries must be at least 1, got {tries!r}")
    keep = retention.total_seconds()
    if not math.isfinite(keep) or keep < HOUR:
        raise ConfigurationError(f"retention must be at least an hour, got {retention!r}")
    again = revise.total_seconds()
    if not math.isfinite(again) or again < 0:
        raise ConfigurationError(f"revise must be zero or more, got {revise!r}")
    kind = getattr(source, "kind", "modelled")
    now = store.clock.now()
    cutoff = now - keep
    # Keep hours strictly newer than the cutoff: always exactly 7 × 24 of them.
    first = math.floor(cutoff / HOUR) * HOUR + HOUR
    last = math.floor(now / HOUR) * HOUR
    newest = newest_reading_time(store, source=source.name, location=location.name)
    start = _window_start(store, source.name, location.name, first, last, newest)
    if newest is not None and again:
        recheck = max(first, last - math.ceil(again / HOUR) * HOUR + HOUR)
        fetched = newest_fetch_time(store, source=source.name, location=location.name)
        # Missing hours widen this run's window to the recent one; with none missing, the
        # recent window is asked for again unless a value was fetched this clock hour (the
        # APIs update hourly, so a second run in the hour would learn nothing).
        if start <= last or fetched is None or fetched < last:
            start = min(start, recheck)
    if start > last:
        with store.transaction():
            deleted = delete_older_than(store, cutoff)
            _remember(store, source.name, location.name, now, "ok", None, changed=bool(deleted))
        logger.info("%s for %s is up to date", source.name, location.name)
        return CollectResult(
            source.name, location.name, None, None, 0, 0, deleted, 0, utc_datetime(newest),
            kind=kind,
        )  # fmt: skip
    try:
        prepare = getattr(source, "prepare", None)
        if prepare is not None:
            source = await prepare(store, location)
        readings, attempts = await _fetch(store, source, location, start, last, tries, backoff)
    except SourceError as exc:
        _remember(
            store, source.name, location.name, store.clock.now(), "error", mask_secrets(str(exc))
        )
        raise
    describe = getattr(source, "provenance", None)
    where = describe(location) if describe is not None else Provenance.of(location)
    fetched_at = store.clock.now()
    with store.transaction():
        upserted = upsert_readings(
            store,
            readings,
            source=source.name,
            location=location.name,
            fetched_at=fetched_at,
            kind=kind,
            point=where.point,
            site_name=where.site_name,
            latitude=where.latitude,
            longitude=where.longitude,
            details=where.details,
        )
        deleted = delete_older_than(store, cutoff)
        _remember(
            store, source.name, location.name, fetched_at, "ok", None,
            changed=bool(upserted.written or deleted),
        )  # fmt: skip
    newest_now = newest_reading_time(store, source=source.name, location=location.name)
    logger.info(
        "%s for %s: %d hours from %s to %s received, %d stored (%d revised), %d old deleted",
        source.name, location.name, len(readings), utc_datetime(start), utc_datetime(last),
        upserted.written, upserted.revised, deleted,
    )  # fmt: skip
    return CollectResult(
        source.name,
        location.name,
        utc_datetime(start),
        utc_datetime(last),
        len(readings),
        upserted.written,
        deleted,
        attempts,
        utc_datetime(newest_now),
        revised=upserted.revised,
        kind=kind,
    )


def _window_start(
    store: Store, source: str, location: str, first: int, last: int, newest: int | None
) -> int:
    """The first hour to ask for: a hole in the last day's stored hours, else after the newest."""
    if newest is None:
        return first
    recent = max(first, last - (GAP_LOOKBACK_HOURS - 1) * HOUR)
    hole = first_missing_hour(store, source=source, location=location, start=recent, end=newest)
    return hole if hole is not None else max(first, newest + HOUR)


async def _fetch(
    store: Store,
    source: Source,
    location: Location,
    start: int,
    last: int,
    tries: int,
    backoff: Sequence[float],
) -> tuple[list[Reading], int]:
    """The source's readings for the window and how many tries it took; raises SourceError."""
    attempt = 0
    while True:
        attempt += 1
        try:
            readings = await source.fetch(location, start=start, end=last)
            break
        except (SourceUnavailableError, RateLimitedError) as exc:
            wait = exc.retry_after if exc.retry_after is not None else _backoff(backoff, attempt)
            if attempt >= tries or wait > MAX_WAIT_IN_RUN:
                raise
            logger.warning(
                "%s for %s failed (try %d of %d), trying again in %.3g s: %s",
                source.name, location.name, attempt, tries, wait, exc,
            )  # fmt: skip
            await store.clock.sleep(wait)
    for reading in readings:
        # The built-in sources check this already; a third-party source gets the same rule.
        check_hour(source.name, reading.time, "a reading's time", start, last)
    return readings, attempt


def _backoff(backoff: Sequence[float], attempt: int) -> float:
    if not backoff:
        return 0.0
    return float(backoff[min(attempt - 1, len(backoff) - 1)])


def _remember(
    store: Store,
    source: str,
    location: str,
    at: float,
    outcome: str,
    error: str | None,
    *,
    changed: bool = True,
) -> None:
    # The last run's outcome per (location, source), for `airq-nb status` without a log.
    # A successful run that changed nothing after a successful run writes nothing (so an
    # idle run leaves the file as it was): "at" is then the last run that stored something.
    key = _collector_key(source, location)
    if not changed and outcome == "ok":
        previous = store.get(key).value
        if isinstance(previous, dict) and previous.get("outcome") == "ok":
            return
    store.atomic().set(
        key,
        {"at": at, "outcome": outcome, "error": error, "source": source, "location": location},
    ).commit()


def last_collection(store: Store) -> list[dict[str, Any]]:
    """The outcome of the last run per (location, source): at (UTC), outcome, error.

    ``at`` is the last run that stored something or changed the outcome: a successful run
    that found nothing new writes nothing, this record included.
    """
    return [
        {**entry.value, "at": utc_datetime(entry.value.get("at"))}
        for entry in store.list(prefix=("airq_nb", "collector"))
    ]


def collect_now(
    store: Store | None = None,
    *,
    source: Source | None = None,
    location: Location | None = None,
    retention: timedelta = DEFAULT_RETENTION,
    revise: timedelta = DEFAULT_REVISION_WINDOW,
) -> CollectResult:
    """Run :func:`collect_once` to completion from synchronous code (a script, a cell).

    Inside a running event loop (a notebook cell) it runs on a helper thread instead.
    """
    from ..store import open_store

    if store is None:
        with open_store() as opened:
            return collect_now(
                opened, source=source, location=location, retention=retention, revise=revise
            )
    return _run_sync(
        collect_once(store, source=source, location=location, retention=retention, revise=revise)
    )


def _run_sync(coroutine: Coroutine[Any, Any, CollectResult]) -> CollectResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# -- the hourly schedule ----------------------------------------------------------------------
