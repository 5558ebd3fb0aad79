"""Durable recurring schedules: definitions, validation, slot arithmetic and the misfire policies.

A schedule is a row of the ``schedules`` table (its name is the primary key, so registering
a name again updates it). ``every`` schedules run on multiples of the interval counted from
the Unix epoch (hourly runs land on the hour, in UTC); ``cron`` schedules use a 5-field
expression evaluated in a named time zone by croniter. The runtime that acts on these rows
lives in ``_scheduler.py``; everything here is plain functions over a store.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from .._errors import (
    InvalidDelayError,
    InvalidScheduleError,
    InvalidValueError,
    ScheduleNotFoundError,
)
from ..store._json import dump_value, load_value
from ..store._queue import check_backoff, check_topic
from ._delivery_log import utc

if TYPE_CHECKING:
    from ..store._sqlite import Store

__all__ = [
    "MAX_CATCH_UP_LIMIT",
    "MISFIRE_POLICIES",
    "Misfire",
    "ScheduleInfo",
    "ScheduleSpec",
    "claim_absorbs_slots",
    "get_schedule",
    "list_schedules",
    "next_schedule_wake",
    "parse_spec",
    "plan_due_runs",
    "plan_slot",
    "register_schedule",
    "remove_schedule",
    "run_schedule_now",
    "set_paused",
]

Misfire = Literal["coalesce", "skip", "catch_up"]
MISFIRE_POLICIES: tuple[str, ...] = ("coalesce", "skip", "catch_up")
#: The most missed runs ``catch_up`` may be asked to replay.
MAX_CATCH_UP_LIMIT = 1000
#: A slot run this late is still "on time" for ``skip`` (capped at half the interval).
SKIP_GRACE_SECONDS = 60.0
MIN_EVERY_SECONDS = 1.0
MAX_NAME_LENGTH = 200
_IN_FLIGHT = (
    "EXISTS (SELECT 1 FROM queue q WHERE q.id = s.run_id AND q.state IN ('queued', 'leased'))"
)


#: What a damaged schedule definition raises when planned (croniter errors are ValueErrors,
#: an unknown stored time zone a KeyError); a failing store is never one of these.
_DEFINITION_ERRORS = (ValueError, TypeError, KeyError, OverflowError, ZoneInfoNotFoundError)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """When a schedule fires: every N seconds from the epoch, or a cron expression in ``tz``."""

    every_seconds: float | None
    cron: str | None
    tz: str

    def next_after(self, t: float) -> float:
        """The first slot strictly after Unix time ``t``."""
        if self.every_seconds is not None:
            period = self.every_seconds
            slot = (math.floor(t / period) + 1) * period
            return slot if slot > t else slot + period
        it = croniter(self.cron, datetime.fromtimestamp(t, ZoneInfo(self.tz)))
        slot = it.get_next(float)
        while slot <= t or self._repeated(slot):
            slot = it.get_next(float)
        return slot

    def latest_slots(self, *, low: float, high: float, limit: int) -> list[float]:
        """Up to ``limit`` of the newest slots in ``[low, high]``, oldest first."""
        if self.every_seconds is not None:
            period = self.every_seconds
            newest = math.floor(high / period) * period
            first = math.ceil(low / period) * period
            if first < low:  # ``low / period`` underflowed to a whole number
                first += period
            oldest = max(first, newest - (limit - 1) * period)
            count = round((newest - oldest) / period) + 1
            return [oldest + i * period for i in range(max(count, 0))]
        # Slots are whole minutes, so starting one second past ``high`` cannot skip one.
        it = croniter(self.cron, datetime.fromtimestamp(high + 1, ZoneInfo(self.tz)))
        found: list[float] = []
        while len(found) < limit:
            slot = it.get_prev(float)
            if slot < low:
                break
            if slot <= high and not self._repeated(slot):
                found.append(slot)
        return found[::-1]

    def _repeated(self, slot: float) -> bool:
        """Is ``slot`` the second occurrence of a fixed local time repeated at a DST fall-back?

        As classic cron does, a job at a fixed time (no ``*`` in its minute or hour field)
        runs once, at the first occurrence; jobs like ``0 * * * *`` run in both hours.
        """
        assert self.cron is not None
        minute, hour = self.cron.split(" ")[:2]
        if minute.startswith("*") or hour.startswith("*"):
            return False
        return datetime.fromtimestamp(slot, ZoneInfo(self.tz)).fold == 1


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule as stored: its definition, and when it runs next and ran last (UTC)."""

    name: str
    every: timedelta | None
    cron: str | None
    tz: str
    topic: str
    message: Any
    misfire: str
    max_catch_up: int
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_outcome: str | None
    last_error: str | None
    backoff_schedule: tuple[float, ...] | None = None
    in_flight: bool = False


#: Where a cron expression is checked to fire when no clock is at hand (2024-01-01 UTC), so
#: validation never depends on the machine's wall clock.
_REFERENCE_TIME = 1_704_067_200.0


def parse_spec(
    *, every: Any = None, cron: Any = None, tz: Any = "UTC", now: float | None = None
) -> ScheduleSpec:
    """Validate ``every``/``cron``/``tz`` into a spec; raise InvalidScheduleError saying why.

    ``now`` (the store's clock) is where a cron expression must still fire from.
    """
    if (every is None) == (cron is None):
        raise InvalidScheduleError(
            "give exactly one of every= (e.g. timedelta(hours=1)) or cron= (e.g. '0 * * * *')"
        )
    if not isinstance(tz, str) or not tz:
        raise InvalidScheduleError(f"tz must be an IANA time zone name such as 'UTC', got {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidScheduleError(
            f"unknown time zone {tz!r}: use an IANA name such as 'UTC' or 'Europe/London'"
        ) from exc
    if every is not None:
        if tz != "UTC":
            raise InvalidScheduleError(
                "every= runs on multiples of the interval from the Unix epoch (UTC); for "
                "wall-clock times in a time zone use cron=..., tz=..."
            )
        if isinstance(every, timedelta):
            seconds = every.total_seconds()
        elif isinstance(every, int | float) and not isinstance(every, bool):
            seconds = float(every)
        else:
            raise InvalidScheduleError(
                f"every must be a timedelta (e.g. timedelta(hours=1)), got {type(every).__name__}"
            )
        if not math.isfinite(seconds) or seconds < MIN_EVERY_SECONDS:
            raise InvalidScheduleError(
                f"every must be at least {MIN_EVERY_SECONDS:g} second, got {seconds!r} seconds"
            )
        return ScheduleSpec(every_seconds=seconds, cron=None, tz=tz)
    if not isinstance(cron, str):
        raise InvalidScheduleError(f"cron must be a string such as '0 * * * *', got {cron!r}")
    expression = " ".join(cron.split())
    if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
        raise InvalidScheduleError(
            f"invalid cron expression {cron!r}: use 5 fields, minute hour day-of-month month "
            "day-of-week, e.g. '0 * * * *' for hourly"
        )
    spec = ScheduleSpec(every_seconds=None, cron=expression, tz=tz)
    try:
        spec.next_after(_REFERENCE_TIME if now is None else now)
    except (CroniterBadDateError, CroniterBadCronError, CroniterError) as exc:
        raise InvalidScheduleError(f"cron expression {cron!r} never fires: {exc}") from exc
    return spec


def plan_slot(
    spec: ScheduleSpec, *, misfire: str, max_catch_up: int, next_run_at: float, now: float
) -> tuple[float | None, float]:
    """Decide the run for a schedule whose next slot is ``next_run_at``: (slot to run, new next).

    ``coalesce`` runs the newest due slot once; ``skip`` runs it only if it is on time
    (within the grace) and otherwise waits for the next slot; ``catch_up`` runs the oldest
    of the newest ``max_catch_up`` due slots, and the planner is called again for the rest.
    """
    if next_run_at > now:
        return None, next_run_at
    limit = max_catch_up if misfire == "catch_up" else 1
    due = spec.latest_slots(low=next_run_at, high=now, limit=limit)
    if not due:
        return None, spec.next_after(now)
    if misfire == "catch_up":
        return due[0], spec.next_after(due[0])
    newest = due[-1]
    following = spec.next_after(newest)
    if misfire == "skip" and now - newest > min(SKIP_GRACE_SECONDS, (following - newest) / 2):
        return None, following
    return newest, following


@dataclass(frozen=True, slots=True)
class _Definition:
    name: str
    spec: ScheduleSpec
    topic: str
    message_json: str
    misfire: str
    max_catch_up: int
    backoff_json: str | None


def _validate(
    name: Any,
    *,
    every: Any,
    cron: Any,
    tz: Any,
    message: Any,
    topic: Any,
    misfire: Any,
    max_catch_up: Any,
    backoff_schedule: Iterable[float] | None,
    now: float | None = None,
) -> _Definition:
    _check_name(name)
    spec = parse_spec(every=every, cron=cron, tz=tz, now=now)
    if misfire not in MISFIRE_POLICIES:
        raise InvalidScheduleError(
            f"unknown misfire policy {misfire!r}: use one of {', '.join(MISFIRE_POLICIES)}"
        )
    if (
        isinstance(max_catch_up, bool)
        or not isinstance(max_catch_up, int)
        or not 1 <= max_catch_up <= MAX_CATCH_UP_LIMIT
    ):
        raise InvalidScheduleError(
            f"max_catch_up must be an integer from 1 to {MAX_CATCH_UP_LIMIT}, got {max_catch_up!r}"
        )
    try:
        topic = check_topic(name if topic is None else topic)
        message_json = dump_value({} if message is None else message, what="schedule message")
        backoff_json = (
            None if backoff_schedule is None else json.dumps(list(check_backoff(backoff_schedule)))
        )
    except (InvalidValueError, InvalidDelayError) as exc:
        raise InvalidScheduleError(f"schedule {name!r}: {exc}") from exc
    return _Definition(name, spec, topic, message_json, misfire, max_catch_up, backoff_json)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidScheduleError(
            f"schedule name must be a non-empty string of at most {MAX_NAME_LENGTH} characters, "
            f"got {name!r}; sched.schedules() lists the registered ones"
        )
    return name


_SELECT = (
    "SELECT s.name, s.every_seconds, s.cron, s.tz, s.topic, s.message, s.misfire, "
    f"s.max_catch_up, s.backoff_schedule, s.paused, s.next_run_at, s.last_run_at, "
    f"s.last_outcome, s.last_error, {_IN_FLIGHT} FROM schedules s"
)


def _info(row: tuple[Any, ...]) -> ScheduleInfo:
    (
        name,
        every_seconds,
        cron,
        tz,
        topic,
        message_json,
        misfire,
        max_catch_up,
        backoff_json,
        paused,
        next_run_at,
        last_run_at,
        last_outcome,
        last_error,
        in_flight,
    ) = row
    try:
        every = None if every_seconds is None else timedelta(seconds=every_seconds)
        message = load_value(message_json)
        backoff = None if backoff_json is None else tuple(json.loads(backoff_json))
        next_run, last_run = utc(next_run_at), utc(last_run_at)
    except _DEFINITION_ERRORS as exc:
        # Listing must still work with one damaged row: show it as corrupt instead.
        every = message = backoff = next_run = last_run = None
        last_outcome = "error"
        last_error = (
            f"the stored schedule {name!r} is corrupt ({type(exc).__name__}: {exc}); "
            "register it again to fix it"
        )
    return ScheduleInfo(
        name=name,
        every=every,
        cron=cron,
        tz=tz,
        topic=topic,
        message=message,
        misfire=misfire,
        max_catch_up=max_catch_up,
        paused=bool(paused),
        next_run_at=next_run,
        last_run_at=last_run,
        last_outcome=last_outcome,
        last_error=last_error,
        backoff_schedule=backoff,
        in_flight=bool(in_flight),
    )


#: What registering an existing name again changes (not its pause, history or run in flight).
_UPDATED_ON_REGISTER = (
    "every_seconds",
    "cron",
    "tz",
    "topic",
    "message",
    "misfire",
    "max_catch_up",
    "backoff_schedule",
    "next_run_at",
    "updated_at",
)


def register_schedule(store: Store, name: str, *, now: float, **options: Any) -> ScheduleInfo:
    """Create or update the schedule ``name``; keeps its next run if its timing is unchanged."""
    d = _validate(name, now=now, **options)
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT every_seconds, cron, tz, next_run_at FROM schedules WHERE name = ?", (name,)
        ).fetchone()
        keep = row is not None and row[:3] == (d.spec.every_seconds, d.spec.cron, d.spec.tz)
        next_run_at = row[3] if keep and row[3] is not None else d.spec.next_after(now)
        conn.execute(
            "INSERT INTO schedules (name, every_seconds, cron, tz, topic, message, misfire, "
            "max_catch_up, backoff_schedule, next_run_at, updated_at, paused, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT(name) DO UPDATE SET "
            + ", ".join(f"{column} = excluded.{column}" for column in _UPDATED_ON_REGISTER)
            # Registering again is how a damaged schedule is fixed: it runs again. A pause
            # the user asked for stays.
            + ", paused = CASE WHEN schedules.broken THEN 0 ELSE schedules.paused END, broken = 0",
            (
                name,
                d.spec.every_seconds,
                d.spec.cron,
                d.spec.tz,
                d.topic,
                d.message_json,
                d.misfire,
                d.max_catch_up,
                d.backoff_json,
                next_run_at,
                now,
                now,
            ),
        )
        return get_schedule(store, name)


def get_schedule(store: Store, name: str) -> ScheduleInfo:
    _check_name(name)
    rows = store.execute(f"{_SELECT} WHERE s.name = ?", (name,))
    if not rows:
        raise ScheduleNotFoundError(
            f"no schedule named {name!r}; sched.schedules() lists the registered ones"
        )
    return _info(rows[0])


def list_schedules(store: Store) -> list[ScheduleInfo]:
    """Every schedule, soonest next run first (paused ones last)."""
    return [_info(row) for row in store.execute(f"{_SELECT} ORDER BY s.paused, s.next_run_at")]


def set_paused(store: Store, name: str, paused: bool, *, now: float) -> None:
    _check_name(name)
    with store.transaction() as conn:
        cursor = conn.execute(
            "UPDATE schedules SET paused = ?, broken = 0, updated_at = ? WHERE name = ?",
            (int(paused), now, name),
        )
        if cursor.rowcount == 0:
            get_schedule(store, name)


def remove_schedule(store: Store, name: str) -> None:
    """Delete the schedule; runs already in the queue stay there (see ``store.queue``)."""
    _check_name(name)
    with store.transaction() as conn:
        if conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 0:
            get_schedule(store, name)


def _enqueue_run(
    store: Store,
    conn: sqlite3.Connection,
    row: tuple[Any, ...],
    slot: float,
    *,
    delay: float = 0.0,
    dedup: bool = True,
) -> int:
    name, topic, message_json, backoff_json = row
    message_id = store.enqueue(
        load_value(message_json),
        delay=delay,
        topic=topic,
        schedule=name,
        backoff_schedule=None if backoff_json is None else json.loads(backoff_json),
        dedup_key=f"schedule:{name}:{slot!r}" if dedup else None,
    )
    conn.execute(
        "UPDATE schedules SET run_id = ?, run_slot = ? WHERE name = ?", (message_id, slot, name)
    )
    return message_id


def run_schedule_now(store: Store, name: str, *, now: float) -> int:
    """Queue a run of ``name`` now, unless one is queued or running (then return that one's id)."""
    _check_name(name)
    with store.transaction() as conn:
        row = conn.execute(
            f"SELECT s.name, s.topic, s.message, s.backoff_schedule, s.run_id, {_IN_FLIGHT} "
            "FROM schedules s WHERE s.name = ?",
            (name,),
        ).fetchone()
        if row is None:
            get_schedule(store, name)
        if row[5]:
            return int(row[4])
        return _enqueue_run(store, conn, row[:4], now, dedup=False)


def plan_due_runs(
    store: Store, *, now: float, horizon: float | None = None
) -> tuple[list[int], int, list[tuple[str, str]]]:
    """Queue the run of every due schedule that has none in flight; move its next slot on.

    One write transaction, so two schedulers (in any processes) never queue the same slot:
    the second one sees the first one's new ``next_run_at`` (and the run's dedup key).
    Slots up to ``horizon`` (default ``now``) are planned; one still ahead of ``now`` is
    queued with the delay that makes it due exactly on its slot.
    Returns the queued message ids, how many schedules were planned (a ``skip`` may queue
    nothing) and the (name, error) of schedules that cannot be planned (they are paused).
    """
    queued: list[int] = []
    broken: list[tuple[str, str]] = []
    horizon = now if horizon is None else horizon
    due_sql = f"FROM schedules s WHERE s.paused = 0 AND s.next_run_at <= ? AND NOT {_IN_FLIGHT}"
    # Read first: an empty write transaction would still take the file's write lock.
    if not store.execute(f"SELECT 1 {due_sql} LIMIT 1", (horizon,)):
        return queued, 0, broken
    with store.transaction() as conn:
        rows = conn.execute(
            "SELECT s.name, s.topic, s.message, s.backoff_schedule, s.every_seconds, s.cron, "
            f"s.tz, s.misfire, s.max_catch_up, s.next_run_at {due_sql}",
            (horizon,),
        ).fetchall()
        for row in rows:
            name, every_seconds, cron, tz, misfire, max_catch_up, next_run_at = (row[0], *row[4:])
            # Each row in its own savepoint: a row that fails half-way leaves no trace.
            conn.execute("SAVEPOINT plan_row")
            try:
                spec = ScheduleSpec(every_seconds=every_seconds, cron=cron, tz=tz)
                slot, following = plan_slot(
                    spec,
                    misfire=misfire,
                    max_catch_up=max_catch_up,
                    next_run_at=next_run_at,
                    now=horizon,
                )
                if slot is not None:
                    delay = max(0.0, slot - now)
                    queued.append(_enqueue_run(store, conn, row[:4], slot, delay=delay))
            except _DEFINITION_ERRORS as exc:  # a damaged row must not stop the other schedules
                conn.execute("ROLLBACK TO plan_row")
                conn.execute("RELEASE plan_row")
                error = f"cannot plan schedule {name!r}: {type(exc).__name__}: {exc}"
                conn.execute(
                    "UPDATE schedules SET paused = 1, broken = 1, last_outcome = 'error', "
                    "last_error = ? WHERE name = ?",
                    (error + "; fix it by registering the schedule again", name),
                )
                broken.append((name, error))
                continue
            except BaseException:
                # The store failed (locked, disk full): nothing is marked; the runtime retries.
                # (SQLite may have rolled the whole transaction back already.)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK TO plan_row")
                    conn.execute("RELEASE plan_row")
                raise
            conn.execute("UPDATE schedules SET next_run_at = ? WHERE name = ?", (following, name))
            conn.execute("RELEASE plan_row")
    return queued, len(rows), broken


def claim_absorbs_slots(
    conn: sqlite3.Connection, name: str, message_id: int, now: float
) -> float | None:
    """A run of ``name`` starts now: record it, and let it cover slots missed meanwhile.

    Under ``coalesce`` and ``skip`` a run that starts late (e.g. redelivered after a crash)
    stands for the slots that passed while it waited, so they do not cause a second run.
    Returns the slot the run was planned for (its scheduled time), None if unknown.
    """
    row = conn.execute(
        "SELECT every_seconds, cron, tz, misfire, next_run_at, run_id, run_slot "
        "FROM schedules WHERE name = ?",
        (name,),
    ).fetchone()
    if row is None:
        return None
    every_seconds, cron, tz, misfire, next_run_at, run_id, run_slot = row
    if misfire != "catch_up" and next_run_at is not None and next_run_at <= now:
        spec = ScheduleSpec(every_seconds=every_seconds, cron=cron, tz=tz)
        next_run_at = spec.next_after(now)
    conn.execute(
        "UPDATE schedules SET last_run_at = ?, next_run_at = ? WHERE name = ?",
        (now, next_run_at, name),
    )
    return run_slot if run_id == message_id else None


def next_schedule_wake(store: Store) -> float | None:
    """The earliest slot of an active schedule with no run in flight (None if there is none)."""
    rows = store.execute(
        f"SELECT MIN(s.next_run_at) FROM schedules s WHERE s.paused = 0 AND NOT {_IN_FLIGHT}"
    )
    return rows[0][0] if rows else None
