"""The collector's own status: its schedules' last and next run, its readings' freshness.

``store_status`` describes the whole store (every topic, every dead letter); this reads only
what belongs to the collector, so an unrelated topic's failure or a message nobody listens
for never shows up as the collector's. It reads the database alone, through store and
scheduling verbs, so it works in a kernel that is not the one collecting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .._format import (
    age_text,
    due_text,
    one_line,
    outcome_text,
    rows_text,
    span_text,
    time_text,
)
from ..store.readings import read_readings
from ._schedule import COLLECT_TOPIC, schedule_name
from ._sources import Location

if TYPE_CHECKING:
    from datetime import tzinfo

    from ..store import Store
    from ..store.schedules import ScheduleInfo

__all__ = ["CollectorStatus", "ReadingSeries", "collector_status", "wait_for_readings"]


@dataclass(frozen=True, slots=True)
class ReadingSeries:
    """The stored readings of one (location, source) series."""

    location: str
    source: str
    hours: int
    newest: datetime | None
    last_fetched: datetime | None


@dataclass(frozen=True, slots=True)
class CollectorStatus:
    """The collector's schedules, their last and next run, and how fresh its readings are.

    ``last_*`` describe the collector's latest attempt (``last_finished_at`` is None while
    its first run is still going);
    ``next_run_at`` is its next planned or queued run; ``readings`` counts stored hourly rows
    over every series. Times are aware UTC datetimes; ``str()`` gives a readable summary.
    """

    checked_at: datetime
    schedules: tuple[ScheduleInfo, ...]
    last_run_at: datetime | None
    last_finished_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    next_run_at: datetime | None
    running: bool
    paused: bool
    dead_letters: int
    readings: int
    newest_reading_at: datetime | None
    series: tuple[ReadingSeries, ...] = ()

    @property
    def newest_reading_age(self) -> timedelta | None:
        """How old the newest stored hour is (from the start of that hour)."""
        if self.newest_reading_at is None:
            return None
        return self.checked_at - self.newest_reading_at

    def rows(self, *, tz: str | tzinfo | None = "UTC") -> list[tuple[str, str]]:
        """The status as (label, plain text) rows, for the status panel and ``str()``."""
        now = self.checked_at.timestamp()
        if not self.schedules:
            schedule = "not started (run airq_nb.start_collector() or the collector notebook)"
        else:
            schedule = "; ".join(_schedule_text(info) for info in self.schedules)
        ran = self.last_run_at or self.last_finished_at
        last = "none yet" if ran is None else f"{time_text(ran, tz=tz)} ({age_text(ran, now)})"
        if self.running:
            upcoming = "running now"
        elif self.paused:
            upcoming = "paused"
        elif self.next_run_at is None:
            upcoming = "not planned"
        else:
            upcoming = f"{time_text(self.next_run_at, tz=tz)} ({due_text(self.next_run_at, now)})"
        rows = [
            ("Schedule", schedule),
            ("Last run", last),
            ("Outcome", outcome_text(self.last_outcome)),
        ]
        if self.last_error and self.last_outcome != "ok":
            rows.append(("Error", one_line(self.last_error, 300)))
        rows.append(("Next run", upcoming))
        if self.dead_letters:
            rows.append(
                ("Dead letters", f"{self.dead_letters} (re-drive them in the queue notebook)")
            )
        if self.readings:
            age = self.newest_reading_age
            newest = time_text(self.newest_reading_at, tz=tz)
            rows.append(("Readings stored", f"{self.readings:,} hourly readings"))
            rows.append(
                (
                    "Newest reading",
                    f"{newest} ({span_text(age.total_seconds()) if age else '0 s'} old)",
                )
            )
        else:
            rows.append(("Readings stored", "none yet" + _first_readings_hint(self)))
        for series in self.series:
            rows.append(
                (
                    f"{series.location} ({series.source})",
                    f"{series.hours} hours, newest {time_text(series.newest, tz=tz)}, "
                    f"fetched {age_text(series.last_fetched, now)}",
                )
            )
        return rows

    def __str__(self) -> str:
        return rows_text(self.rows())


def _schedule_text(info: ScheduleInfo) -> str:
    every = f"every {span_text(info.every.total_seconds())}" if info.every else f"cron {info.cron}"
    return f"{info.name}, {every}" + (" (paused)" if info.paused else "")


def _first_readings_hint(status: CollectorStatus) -> str:
    if status.running:
        return ": the first collection is running"
    if status.next_run_at is None or status.paused:
        return ""
    when = due_text(status.next_run_at, status.checked_at.timestamp())
    return f": the first collection is {'due ' if when.startswith('in ') else ''}{when}"


def collector_status(store: Store, *, location: Location | str | None = None) -> CollectorStatus:
    """The collector's own status in ``store`` (every location, or just ``location``).

    Only the collector's schedules (those on its queue topic), their runs in the queue and
    the delivery log, and its stored readings; other topics never show here.
    """
    from ..scheduling.delivery_log import read_delivery_log
    from ..scheduling.schedules import list_schedules

    now = store.clock.now()
    name = location.name if isinstance(location, Location) else location
    wanted = None if name is None else schedule_name(Location(name, 0.0, 0.0))
    schedules = tuple(
        info
        for info in list_schedules(store)
        if info.topic == COLLECT_TOPIC and (wanted is None or info.name == wanted)
    )
    runs = [
        m for m in store.queue.list(topic=COLLECT_TOPIC) if wanted is None or m.schedule == wanted
    ]
    log = read_delivery_log(store, topic=COLLECT_TOPIC, schedule=wanted, limit=1)
    if len(log):
        last = log.iloc[-1]
        started, finished = (
            last["started_at"].to_pydatetime(warn=False),
            last["finished_at"].to_pydatetime(warn=False),
        )
        outcome, error = last["outcome"], last["error"] if isinstance(last["error"], str) else None
    else:
        # No finished attempt in the log (it keeps a week; a first run may still be going):
        # what the schedules remember. Their last_run_at is when a run *started*, so nothing
        # here says a run finished.
        ran = sorted((i for i in schedules if i.last_run_at), key=lambda i: i.last_run_at)
        started, finished = (ran[-1].last_run_at if ran else None), None
        outcome = ran[-1].last_outcome if ran else None
        error = ran[-1].last_error if ran else None
    paused_topics = store.queue.paused_topics()
    slots = [
        info.next_run_at.timestamp()
        for info in schedules
        if not info.paused and not info.in_flight and info.next_run_at is not None
    ]
    slots += [m.deliver_at for m in runs if m.state == "queued"]
    readings = read_readings(store, location=name)
    series = tuple(
        ReadingSeries(
            location=str(where),
            source=str(source),
            hours=len(group),
            newest=group.index.max().to_pydatetime(warn=False),
            last_fetched=group["fetched_at"].max().to_pydatetime(warn=False),
        )
        for (where, source), group in readings.groupby(["location", "source"], sort=True)
    )
    return CollectorStatus(
        checked_at=datetime.fromtimestamp(now, UTC),
        schedules=schedules,
        last_run_at=started,
        last_finished_at=finished,
        last_outcome=outcome,
        last_error=error,
        next_run_at=datetime.fromtimestamp(min(slots), UTC) if slots else None,
        running=any(m.state == "leased" for m in runs),
        paused="*" in paused_topics
        or COLLECT_TOPIC in paused_topics
        or (bool(schedules) and all(i.paused for i in schedules)),
        dead_letters=sum(m.state == "dead" for m in runs),
        readings=len(readings),
        newest_reading_at=max((s.newest for s in series if s.newest), default=None),
        series=series,
    )


async def wait_for_readings(
    store: Store, *, location: Location | str | None = None, timeout: float = 60.0
) -> CollectorStatus:
    """Wait (at most ``timeout`` seconds) until the collector has stored readings.

    Returns early when there is nothing to wait for: the collector is not started or is
    paused, or a run finished without readings (its error is in the returned status). Await
    it from a notebook cell: the collector keeps running on the same event loop meanwhile.
    """
    deadline = store.clock.now() + timeout
    started = datetime.fromtimestamp(store.clock.now(), UTC)
    while True:
        status = collector_status(store, location=location)
        failed_since = status.last_finished_at is not None and status.last_finished_at >= started
        if (
            # Stored, and the run that stored them settled (its outcome is in the log): a
            # run's readings commit inside its handler, a moment before its ack.
            (status.readings and not status.running)
            or not status.schedules
            or status.paused
            or failed_since
            or store.clock.now() >= deadline
        ):
            return status
        await store.clock.sleep(min(1.0, max(0.0, deadline - store.clock.now())))
