"""Batched queue verbs for the scheduler: claim many, settle many, keep many leases, in one commit each.

Each verb is one write transaction however many messages it covers, so a drained backlog
costs a commit per batch rather than several per message. Every per-message rule of the
single verbs holds: a lease is taken and ended exactly as by ``claim``/``ack``/``fail``/
``release``, a delivery-log row commits together with the ack, retry or dead letter it
records, and a corrupt row is dead-lettered (and logged), never raised.
"""

from __future__ import annotations

import json
import logging
import operator
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _queue
from ._queue import DEFAULT_BACKOFF_SCHEDULE, Delivery
from .delivery_log import LogEntry, prune_delivery_log, write_log_entries, write_log_rows
from .schedules import NextAfterFn, PlanFn, absorb_slots, plan_due_runs, record_outcomes

if TYPE_CHECKING:
    from ._backend import Store
    from ._dialect import Dialect
    from ._queue import DeadLettered

__all__ = [
    "Settlement",
    "TripResult",
    "Work",
    "claim_batch",
    "extend_leases",
    "settle_batch",
    "settle_plan_claim",
]

log = logging.getLogger("airq_nb.store")

#: Claimed rows start in due order: by ``deliver_at``, then id (see :func:`claim_batch`).
_DUE_ORDER = operator.itemgetter(3, 0)
_DEFAULT_ATTEMPTS = len(DEFAULT_BACKOFF_SCHEDULE) + 1


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one delivery ended, to be committed with its log row by :func:`settle_batch`.

    ``error`` None and ``release`` False is a success (ack); ``release`` gives the message
    back unhandled (stop); otherwise the attempt failed: retried by back-off (or after
    ``retry_in`` seconds), or dead-lettered if ``retry`` is False or no attempts are left.
    """

    delivery: Delivery
    scheduled_at: float
    started_at: float
    finished_at: float
    error: str | None = None
    retry: bool = True
    retry_in: float | None = None
    release: bool = False


def claim_batch(
    store: Store,
    *,
    limit: int,
    topics: Collection[str],
    lease_seconds: float,
    now: float,
    lookahead: float,
    next_after: NextAfterFn,
) -> tuple[list[tuple[Delivery, float]], list[DeadLettered]]:
    """Lease up to ``limit`` due messages of ``topics`` in one commit, earliest due first.

    Returns each delivery with its scheduled time (a schedule run's slot on its first
    attempt), and the messages dead-lettered on the way (corrupt, or their lease expired on
    their last attempt), which are logged in the same commit. Queued messages due within
    ``lookahead`` are taken (to be started on time); an expired lease only once it expired.
    A schedule's run is not started while another run of the same schedule is leased (a
    re-driven old run, or a second one in the batch): it is given back, due when that lease
    ends (or at once when that run is settled), with its attempt not counted — so two runs
    of one schedule never overlap.
    """
    trip: dict[str, Any] = {
        "limit": limit,
        "topics": topics,
        "lease_seconds": lease_seconds,
        "now": now,
        "lookahead": lookahead,
        "next_after": next_after,
    }

    def claim(give_back: list[Settlement]) -> Work:
        outcomes = _settle_batch(store, give_back) if give_back else []
        claims, dead = _claim_batch(store, **trip)
        return Work(outcomes, claims, dead_on_claim=dead)

    _, work = store._tracked((), claim)
    return work.claims, work.dead_on_claim


def _claim_batch(
    store: Store,
    *,
    limit: int,
    topics: Collection[str],
    lease_seconds: float,
    now: float,
    lookahead: float,
    next_after: NextAfterFn,
) -> tuple[list[tuple[Delivery, float]], list[DeadLettered]]:
    """:func:`claim_batch`'s transaction (on PostgreSQL, inside a tracked one)."""
    if limit < 1 or not topics:
        return [], []
    dialect = store.dialect
    topic_list = list(topics)
    sql = _queue.claim_statement(topic_list, many=True, dialect=dialect)
    expires = now + lease_seconds
    token = _queue.new_lease_token()
    claims: list[tuple[Delivery, float]] = []
    dead: list[DeadLettered] = []
    with store._tx() as conn:
        rows = conn.execute(
            sql, [token, expires, expires, now + lookahead, now, *topic_list, limit]
        ).fetchall()
        # RETURNING gives rows in no promised order; start the earliest due first.
        try:
            rows.sort(key=_DUE_ORDER)
        except TypeError:  # a damaged row's deliver_at: it is dead-lettered below
            rows.sort(key=lambda r: (r[3] if isinstance(r[3], float | int) else 0.0, r[0]))
        for row in rows:
            delivery = _plain_delivery(row, token, expires)
            if delivery is None:
                try:
                    delivery = _queue.delivery_from_claimed(row, token, expires)
                except _queue.UndeliverableRow as bad:
                    _queue.dead_letter_claimed(
                        conn,
                        bad,
                        token,
                        now,
                        store._undelivered_writer(conn),
                        lock=dialect.row_lock,
                    )
                    dead.append(bad.dead)
                    continue
            scheduled_at = delivery.deliver_at
            if delivery.schedule is not None:
                if _hold_back_overlapping_run(conn, delivery, now, dialect):
                    continue
                # The run starts at the end of the look-ahead window at the latest.
                slot = absorb_slots(
                    conn, delivery.schedule, delivery.id, now + lookahead, next_after
                )
                if slot is not None and delivery.attempt == 1:
                    scheduled_at = slot
            claims.append((delivery, scheduled_at))
        if dead:
            _log_dead_on_claim(conn, dead, now)
    return claims, dead


def _plain_delivery(row: Sequence[Any], token: str, expires: float) -> Delivery | None:
    """The common row (default back-off, no keys_if_undelivered, sound columns) as a delivery.

    The same delivery ``_queue.delivery_from_claimed`` makes of it, in a fraction of the
    time; None for any other row, which that full check then handles.
    """
    msg_id, topic, value_json, deliver_at, attempt, backoff_raw, keys_raw, enqueued_at, schedule = (
        row
    )
    if (
        backoff_raw is not None
        or keys_raw is not None
        or type(value_json) is not str
        or type(topic) is not str
        or type(attempt) is not int
        or type(deliver_at) is not float
        or type(enqueued_at) is not float
        or (schedule is not None and type(schedule) is not str)
        or attempt > _DEFAULT_ATTEMPTS
    ):
        return None
    try:
        value = json.loads(value_json)
    except ValueError:
        return None
    return Delivery(
        msg_id,
        topic,
        value,
        attempt,
        _DEFAULT_ATTEMPTS,
        deliver_at,
        enqueued_at,
        token,
        expires,
        schedule,
        DEFAULT_BACKOFF_SCHEDULE,
    )


def _hold_back_overlapping_run(conn: Any, delivery: Delivery, now: float, dialect: Dialect) -> bool:
    """Give ``delivery`` back if another run of its schedule holds a live lease.

    With writers side by side (PostgreSQL) the schedule's row is locked first (until this
    transaction ends), so a scheduler claiming another run of it at the same moment cannot
    miss this lease. If another transaction holds that row (it is settling, planning or
    claiming a run of the same schedule), the run is given back, due at once, rather than
    waited for: waiting while holding the claimed rows could deadlock with that transaction.
    """
    schedule = delivery.schedule
    if not dialect.single_writer and (
        conn.execute(
            "SELECT 1 FROM schedules WHERE name = ?" + dialect.skip_locked, (schedule,)
        ).fetchone()
        is None
        and conn.execute("SELECT 1 FROM schedules WHERE name = ?", (schedule,)).fetchone()
        is not None
    ):
        other: float | None = now
    else:
        other = conn.execute(
            "SELECT MAX(lease_expires_at) FROM queue WHERE schedule = ? AND state = 'leased' "
            "AND id <> ? AND lease_expires_at > ?",
            (schedule, delivery.id, now),
        ).fetchone()[0]
    if other is None:
        return False
    conn.execute(
        f"UPDATE queue SET state = 'queued', attempts = {dialect.greatest}(attempts - 1, 0), "
        "lease_token = NULL, lease_expires_at = NULL, due_at = ? WHERE id = ? AND lease_token = ?",
        (other, delivery.id, delivery.lease_token),
    )
    return True


def _log_dead_on_claim(conn: Any, dead: Sequence[DeadLettered], now: float) -> None:
    write_log_entries(
        conn,
        [
            LogEntry(
                message_id=d.id,
                topic=d.topic or "(unreadable)",
                schedule=d.schedule,
                attempt=d.attempt or 0,
                scheduled_at=now if d.deliver_at is None else d.deliver_at,
                started_at=now,
                finished_at=now,
                outcome="dead",
                error=d.error,
                ran=False,
            )
            for d in dead
        ],
    )
    record_outcomes(conn, [("dead", d.error, d.schedule) for d in dead if d.schedule is not None])


def settle_batch(
    store: Store, settlements: Sequence[Settlement], *, prune_before: float | None = None
) -> list[str]:
    """Ack, fail or release each delivery and log it, all in one commit; returns the outcomes.

    Outcomes are ``"ok"``, ``"retry"``, ``"dead"``, ``"released"``, or ``"lost"`` when the
    lease had expired and another consumer owns the message (nothing of it is changed).
    ``prune_before`` also deletes log rows that finished before it.
    """

    def settle(todo: list[Settlement]) -> Work:
        return Work(_settle_batch(store, todo, prune_before=prune_before))

    outcomes, _ = store._tracked(settlements, settle)
    return outcomes


def _settle_batch(
    store: Store, settlements: Sequence[Settlement], *, prune_before: float | None = None
) -> list[str]:
    """:func:`settle_batch`'s transaction (on PostgreSQL, inside a tracked one)."""
    outcomes: list[str] = []
    rows: list[tuple[Any, ...]] = []
    schedule_rows: list[tuple[str, str | None, str]] = []
    if not settlements and prune_before is None:
        return outcomes
    dialect = store.dialect
    with store._tx() as conn:
        acked = _queue.ack_rows(
            conn, [s.delivery for s in settlements if not s.release and s.error is None]
        )
        for s in settlements:
            d = s.delivery
            error = None if s.error is None else dialect.text(s.error)
            if s.release:
                outcome = _release(conn, d, dialect)
            elif error is None:
                outcome = "ok" if d.id in acked else "lost"
            else:
                outcome = _queue.fail_delivery(
                    conn,
                    d,
                    error,
                    now=s.finished_at,
                    retry=s.retry,
                    retry_in=s.retry_in,
                    write_undelivered=store._undelivered_writer(conn),
                    lock=dialect.row_lock,
                )
            outcomes.append(outcome)
            # One row per attempt, as LogEntry would write it (a settled attempt ran).
            started = s.started_at
            rows.append(
                (
                    d.id,
                    d.topic,
                    d.schedule,
                    d.attempt,
                    s.scheduled_at,
                    started,
                    s.finished_at,
                    outcome,
                    error,
                    (started - s.scheduled_at) * 1000.0,
                )
            )
            if d.schedule is not None:
                schedule_rows.append((outcome, error, d.schedule))
        if rows:
            write_log_rows(conn, rows)
        if schedule_rows:
            record_outcomes(conn, schedule_rows)
            # Runs held back while this one was leased (see claim_batch) are due again now.
            conn.executemany(
                "UPDATE queue SET due_at = deliver_at WHERE schedule = ? AND state = 'queued' "
                "AND due_at > deliver_at",
                [(name,) for name in {row[2] for row in schedule_rows}],
            )
        if prune_before is not None:
            prune_delivery_log(conn, older_than=prune_before)
    return outcomes


def _release(conn: Any, delivery: Delivery, dialect: Dialect) -> str:
    cursor = conn.execute(_queue.release_statement(dialect), (delivery.id, delivery.lease_token))
    return "released" if cursor.rowcount == 1 else "lost"


@dataclass(frozen=True, slots=True)
class TripResult:
    """What :func:`settle_plan_claim` did."""

    outcomes: list[str]
    queued_runs: list[int]
    planned: int
    broken: list[tuple[str, str]]
    claims: list[tuple[Delivery, float]]
    dead_on_claim: list[DeadLettered]


@dataclass(slots=True)
class Work:
    """What one batched verb's transaction did, for :meth:`Store._tracked` to report (on
    PostgreSQL it is kept while a cut COMMIT is in doubt: ``postgres/_in_doubt.py``)."""

    outcomes: list[str] = field(default_factory=list)
    claims: list[tuple[Delivery, float]] = field(default_factory=list)
    queued_runs: list[int] = field(default_factory=list)
    dead_on_claim: list[DeadLettered] = field(default_factory=list)


def settle_plan_claim(
    store: Store,
    settlements: Sequence[Settlement],
    *,
    prune_before: float | None,
    plan: PlanFn | None,
    claim_limit: int,
    topics: Collection[str],
    lease_seconds: float,
    now: float,
    lookahead: float,
    next_after: NextAfterFn,
    held: Sequence[Delivery] = (),
) -> TripResult:
    """A scheduler's whole trip in one commit: settle finished deliveries, queue the runs of
    due schedules (with ``plan``, if given), then claim up to ``claim_limit`` due messages.

    Settling first frees a schedule for its next run and wakes runs held back behind it,
    so both can be planned and claimed in the same commit. If the write lock took longer
    than a third of a lease to get (another process held it), the leases of ``held`` (the
    caller's running deliveries) are renewed first, so the claim never takes them back.
    """
    planned: list[Any] = [0, []]

    def run(todo: list[Settlement]) -> Work:
        done = _settle_plan_claim(
            store,
            todo,
            prune_before=prune_before,
            plan=plan,
            claim_limit=claim_limit,
            topics=topics,
            lease_seconds=lease_seconds,
            now=now,
            lookahead=lookahead,
            next_after=next_after,
            held=held,
        )
        planned[:] = [done.planned, done.broken]
        return Work(done.outcomes, done.claims, done.queued_runs, done.dead_on_claim)

    outcomes, work = store._tracked(settlements, run)
    return TripResult(
        outcomes, work.queued_runs, planned[0], planned[1], work.claims, work.dead_on_claim
    )


def _settle_plan_claim(
    store: Store,
    settlements: Sequence[Settlement],
    *,
    prune_before: float | None,
    plan: PlanFn | None,
    claim_limit: int,
    topics: Collection[str],
    lease_seconds: float,
    now: float,
    lookahead: float,
    next_after: NextAfterFn,
    held: Sequence[Delivery] = (),
) -> TripResult:
    """:func:`settle_plan_claim`'s transaction (on PostgreSQL, inside a tracked one)."""
    outcomes: list[str] = []
    queued: list[int] = []
    planned, broken = 0, []
    claims: list[tuple[Delivery, float]] = []
    dead: list[DeadLettered] = []
    asked = time.monotonic()
    with store._tx() as conn:
        # SQLite's one write lock: a trip that waited for it renews what it holds first.
        # PostgreSQL has row locks; its keeper never queues behind a trip.
        waited = time.monotonic() - asked > lease_seconds / 3.0
        if held and waited and store.dialect.single_writer:
            _queue.extend_rows(conn, held, store.clock.now() + lease_seconds)
        if settlements or prune_before is not None:
            outcomes = settle_batch(store, settlements, prune_before=prune_before)
        if plan is not None:
            horizon = now + lookahead
            queued, planned, broken = plan_due_runs(store, now=now, horizon=horizon, plan=plan)
        if claim_limit > 0:
            claims, dead = claim_batch(
                store,
                limit=claim_limit,
                topics=topics,
                lease_seconds=lease_seconds,
                now=now,
                lookahead=lookahead,
                next_after=next_after,
            )
    return TripResult(outcomes, queued, planned, broken, claims, dead)


def extend_leases(
    store: Store, deliveries: Sequence[Delivery], *, lease_seconds: float, now: float
) -> set[int]:
    """Keep holding ``deliveries`` for ``lease_seconds`` more, in one commit
    (``store.renew_leases``); returns the ids whose lease was lost meanwhile."""
    return store.renew_leases(deliveries, lease_seconds=lease_seconds, now=now)
