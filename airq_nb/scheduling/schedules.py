"""Durable recurring schedules: rules, validation, slot arithmetic and the misfire policies.

``every`` schedules run on multiples of the interval counted from the Unix epoch (hourly
runs land on the hour, in UTC); ``cron`` schedules use a 5-field expression evaluated in a
named time zone by croniter. Everything here is a pure function of time except the thin
verbs at the end, which validate and then call the table's owner,
:mod:`airq_nb.store.schedules`, handing it the planning rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from .._errors import InvalidDelayError, InvalidScheduleError, InvalidValueError
from ..store import schedules as _table
from ..store.models import check_backoff, check_topic, dump_value
from ..store.schedules import ScheduleInfo

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "MAX_CATCH_UP_LIMIT",
    "MISFIRE_POLICIES",
    "Misfire",
    "ScheduleInfo",
    "ScheduleSpec",
    "get_schedule",
    "list_schedules",
    "next_slot_after",
    "parse_spec",
    "plan_due_runs",
    "plan_slot",
    "plan_stored",
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


def plan_stored(
    every_seconds: Any,
    cron: Any,
    tz: Any,
    misfire: Any,
    max_catch_up: Any,
    next_run_at: float,
    now: float,
) -> tuple[float | None, float]:
    """:func:`plan_slot` for a stored row; a damaged definition raises InvalidScheduleError."""
    try:
        spec = ScheduleSpec(every_seconds=every_seconds, cron=cron, tz=tz)
        return plan_slot(
            spec, misfire=misfire, max_catch_up=max_catch_up, next_run_at=next_run_at, now=now
        )
    except _DEFINITION_ERRORS as exc:
        raise InvalidScheduleError(f"{type(exc).__name__}: {exc}") from exc


def next_slot_after(every_seconds: Any, cron: Any, tz: Any, t: float) -> float:
    """The stored schedule's first slot strictly after ``t``."""
    return ScheduleSpec(every_seconds=every_seconds, cron=cron, tz=tz).next_after(t)


def register_schedule(store: Store, name: str, *, now: float, **options: Any) -> ScheduleInfo:
    """Create or update the schedule ``name``; keeps its next run if its timing is unchanged."""
    d = _validate(name, now=now, **options)
    return _table.upsert_schedule(
        store,
        name,
        every_seconds=d.spec.every_seconds,
        cron=d.spec.cron,
        tz=d.spec.tz,
        topic=d.topic,
        message_json=d.message_json,
        misfire=d.misfire,
        max_catch_up=d.max_catch_up,
        backoff_json=d.backoff_json,
        first_slot=d.spec.next_after(now),
        now=now,
    )


def get_schedule(store: Store, name: str) -> ScheduleInfo:
    """One schedule by name; raises ScheduleNotFoundError if there is none."""
    return _table.get_schedule(store, _check_name(name))


def list_schedules(store: Store) -> list[ScheduleInfo]:
    """Every schedule, soonest next run first (paused ones last)."""
    return _table.list_schedules(store)


def set_paused(store: Store, name: str, paused: bool, *, now: float) -> None:
    """Stop or restart planning runs of ``name``."""
    _table.set_paused(store, _check_name(name), paused, now=now)


def remove_schedule(store: Store, name: str) -> None:
    """Delete the schedule; runs already in the queue stay there (see ``store.queue``)."""
    _table.remove_schedule(store, _check_name(name))


def run_schedule_now(store: Store, name: str, *, now: float) -> int:
    """Queue a run of ``name`` now, unless one is queued or running (then return that one's id)."""
    return _table.run_schedule_now(store, _check_name(name), now=now)


def plan_due_runs(
    store: Store, *, now: float, horizon: float | None = None
) -> tuple[list[int], int, list[tuple[str, str]]]:
    """Queue the runs of due schedules (see :func:`airq_nb.store.schedules.plan_due_runs`)."""
    return _table.plan_due_runs(
        store, now=now, horizon=now if horizon is None else horizon, plan=plan_stored
    )
