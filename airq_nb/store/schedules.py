"""The ``schedules`` table: durable recurring jobs, one row per name.

This module is the table's one owner. It stores definitions that
:mod:`airq_nb.scheduling.schedules` has validated, and plans runs with the slot arithmetic
that module passes in (``plan`` and ``next_after`` callables), so the rules stay pure
functions of time and the SQL stays here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import InvalidScheduleError, ScheduleNotFoundError
from . import _dialect
from ._json import load_value

if TYPE_CHECKING:
    from ._backend import Store

__all__ = [
    "PlanFn",
    "ScheduleInfo",
    "absorb_slots",
    "get_schedule",
    "list_schedules",
    "next_schedule_wake",
    "plan_due_runs",
    "record_outcomes",
    "remove_schedule",
    "run_schedule_now",
    "set_paused",
    "upsert_schedule",
]

#: ``plan(every_seconds, cron, tz, misfire, max_catch_up, next_run_at, now)`` -> (slot to
#: run or None, the new next slot); raises InvalidScheduleError for a damaged definition.
PlanFn = Callable[[Any, Any, Any, Any, Any, float, float], tuple[float | None, float]]
#: ``next_after(every_seconds, cron, tz, t)``: the schedule's first slot strictly after ``t``.
NextAfterFn = Callable[[Any, Any, Any, float], float]

_IN_FLIGHT = (
    "EXISTS (SELECT 1 FROM queue q WHERE q.id = s.run_id AND q.state IN ('queued', 'leased'))"
)


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


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


_SELECT = (
    "SELECT s.name, s.every_seconds, s.cron, s.tz, s.topic, s.message, s.misfire, "
    "s.max_catch_up, s.backoff_schedule, s.paused, s.next_run_at, s.last_run_at, "
    f"s.last_outcome, s.last_error, {_IN_FLIGHT} FROM schedules s"
)
_DAMAGE = (ValueError, TypeError, KeyError, OverflowError)


def _info(row: tuple[Any, ...]) -> ScheduleInfo:
    (name, every_seconds, cron, tz, topic, message_json, misfire, max_catch_up, backoff_json) = row[
        :9
    ]
    paused, next_run_at, last_run_at, last_outcome, last_error, in_flight = row[9:]
    try:
        every = None if every_seconds is None else timedelta(seconds=every_seconds)
        message = load_value(message_json)
        backoff = None if backoff_json is None else tuple(json.loads(backoff_json))
        next_run, last_run = _utc(next_run_at), _utc(last_run_at)
    except _DAMAGE as exc:
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


def upsert_schedule(
    store: Store,
    name: str,
    *,
    every_seconds: float | None,
    cron: str | None,
    tz: str,
    topic: str,
    message_json: str,
    misfire: str,
    max_catch_up: int,
    backoff_json: str | None,
    first_slot: float,
    now: float,
) -> ScheduleInfo:
    """Create or update ``name``; keeps its next run if its timing is unchanged, else ``first_slot``."""
    with _dialect.transaction(store) as conn:
        row = conn.execute(
            "SELECT every_seconds, cron, tz, next_run_at FROM schedules WHERE name = ?", (name,)
        ).fetchone()
        keep = row is not None and row[:3] == (every_seconds, cron, tz)
        next_run_at = row[3] if keep and row[3] is not None else first_slot
        conn.execute(
            "INSERT INTO schedules (name, every_seconds, cron, tz, topic, message, misfire, "
            "max_catch_up, backoff_schedule, next_run_at, updated_at, paused, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT(name) DO UPDATE SET "
            + ", ".join(f"{column} = excluded.{column}" for column in _UPDATED_ON_REGISTER)
            # Registering again is how a damaged schedule is fixed: it runs again. A pause
            # the user asked for stays.
            + ", paused = CASE WHEN schedules.broken <> 0 THEN 0 ELSE schedules.paused END, broken = 0",
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
                next_run_at,
                now,
                now,
            ),
        )
        return get_schedule(store, name)


def _not_found(name: str) -> ScheduleNotFoundError:
    return ScheduleNotFoundError(
        f"no schedule named {name!r}; sched.schedules() lists the registered ones"
    )


def get_schedule(store: Store, name: str) -> ScheduleInfo:
    """One schedule by name; raises ScheduleNotFoundError if there is none."""
    rows = _dialect.read(store, f"{_SELECT} WHERE s.name = ?", (name,))
    if not rows:
        raise _not_found(name)
    return _info(rows[0])


def list_schedules(store: Store) -> list[ScheduleInfo]:
    """Every schedule, soonest next run first (paused ones last)."""
    rows = _dialect.read(store, f"{_SELECT} ORDER BY s.paused, s.next_run_at")
    return [_info(row) for row in rows]


def set_paused(store: Store, name: str, paused: bool, *, now: float) -> None:
    """Pause or resume planning ``name`` (clears a planner-set ``broken`` mark)."""
    with _dialect.transaction(store) as conn:
        cursor = conn.execute(
            "UPDATE schedules SET paused = ?, broken = 0, updated_at = ? WHERE name = ?",
            (int(paused), now, name),
        )
        if cursor.rowcount == 0:
            raise _not_found(name)


def remove_schedule(store: Store, name: str) -> None:
    """Delete the schedule; runs already in the queue stay there (see ``store.queue``)."""
    with _dialect.transaction(store) as conn:
        if conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 0:
            raise _not_found(name)


def _enqueue_run(
    store: Store,
    conn: Any,
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
    with _dialect.transaction(store) as conn:
        row = conn.execute(
            f"SELECT s.name, s.topic, s.message, s.backoff_schedule, s.run_id, {_IN_FLIGHT} "
            # On PostgreSQL, a concurrent "run now" of the same schedule waits for this one.
            "FROM schedules s WHERE s.name = ?" + _dialect.for_update(store, "s"),
            (name,),
        ).fetchone()
        if row is None:
            raise _not_found(name)
        if row[5]:
            return int(row[4])
        return _enqueue_run(store, conn, row[:4], now, dedup=False)


def plan_due_runs(
    store: Store, *, now: float, horizon: float, plan: PlanFn
) -> tuple[list[int], int, list[tuple[str, str]]]:
    """Queue the run of every due schedule that has none in flight; move its next slot on.

    One write transaction, so two schedulers (in any processes) never queue the same slot:
    the second one sees the first one's new ``next_run_at`` (and the run's dedup key).
    Slots up to ``horizon`` are planned; one still ahead of ``now`` is queued with the delay
    that makes it due exactly on its slot. Returns the queued message ids, how many
    schedules were planned (a ``skip`` may queue nothing) and the (name, error) of
    schedules whose definition cannot be planned (they are paused and marked broken).
    """
    queued: list[int] = []
    broken: list[tuple[str, str]] = []
    due_sql = f"FROM schedules s WHERE s.paused = 0 AND s.next_run_at <= ? AND NOT {_IN_FLIGHT}"
    # Read first: an empty write transaction would still take the file's write lock.
    if not _dialect.read(store, f"SELECT 1 {due_sql} LIMIT 1", (horizon,)):
        return queued, 0, broken
    with _dialect.transaction(store) as conn:
        rows = conn.execute(
            "SELECT s.name, s.topic, s.message, s.backoff_schedule, s.every_seconds, s.cron, "
            f"s.tz, s.misfire, s.max_catch_up, s.next_run_at {due_sql}"
            # On PostgreSQL (where writers do not queue up for one lock) a schedule another
            # scheduler is planning right now is skipped: that one queues its run.
            + _dialect.for_update(store, "s", skip_locked=True),
            (horizon,),
        ).fetchall()
        for row in rows:
            name = row[0]
            # Each row in its own savepoint: a row that fails half-way leaves no trace.
            conn.execute("SAVEPOINT plan_row")
            try:
                slot, following = plan(*row[4:], horizon)
                if slot is not None:
                    delay = max(0.0, slot - now)
                    queued.append(_enqueue_run(store, conn, row[:4], slot, delay=delay))
            except InvalidScheduleError as exc:  # a damaged row must not stop the others
                conn.execute("ROLLBACK TO plan_row")
                conn.execute("RELEASE plan_row")
                error = f"cannot plan schedule {name!r}: {exc}"
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
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK TO plan_row")
                    conn.execute("RELEASE plan_row")
                raise
            conn.execute("UPDATE schedules SET next_run_at = ? WHERE name = ?", (following, name))
            conn.execute("RELEASE plan_row")
    return queued, len(rows), broken


def absorb_slots(
    conn: Any, name: str, message_id: int, now: float, next_after: NextAfterFn
) -> float | None:
    """A run of ``name`` starts now: record it, and let it cover slots missed meanwhile.

    Under ``coalesce`` and ``skip`` a run that starts late (e.g. redelivered after a crash)
    stands for the slots that passed while it waited, so they do not cause a second run.
    Returns the slot the run was planned for (its scheduled time), None if unknown — also
    for a run that is not the schedule's current one (a re-driven old run).
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
        with contextlib.suppress(*_DAMAGE):  # a damaged row is paused by the planner
            next_run_at = next_after(every_seconds, cron, tz, now)
    conn.execute(
        # The running message is the schedule's run now (also a re-driven old one), so
        # the planner queues no other run while it is leased.
        "UPDATE schedules SET last_run_at = ?, next_run_at = ?, "
        "run_slot = CASE WHEN run_id = ? THEN run_slot END, run_id = ? WHERE name = ?",
        (now, next_run_at, message_id, message_id, name),
    )
    return run_slot if run_id == message_id else None


def record_outcomes(conn: Any, outcomes: list[tuple[str, str | None, str]]) -> None:
    """Set ``last_outcome``/``last_error`` of schedules, from (outcome, error, name) rows."""
    conn.executemany(
        "UPDATE schedules SET last_outcome = ?, last_error = ? WHERE name = ?", outcomes
    )


def next_schedule_wake(store: Store) -> float | None:
    """The earliest slot of an active schedule with no run in flight (None if there is none)."""
    rows = _dialect.read(
        store, f"SELECT MIN(s.next_run_at) FROM schedules s WHERE s.paused = 0 AND NOT {_IN_FLIGHT}"
    )
    return rows[0][0] if rows else None
