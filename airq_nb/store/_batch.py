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
import sqlite3
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import StoreError
from . import _dialect, _queue
from ._checkpoint import CHECKPOINT_AFTER_WRITES, WalCheckpointer
from ._queue import DEFAULT_BACKOFF_SCHEDULE, Delivery
from .delivery_log import LogEntry, prune_delivery_log, write_log_entries, write_log_rows
from .schedules import NextAfterFn, PlanFn, absorb_slots, plan_due_runs, record_outcomes

if TYPE_CHECKING:
    from ._queue import DeadLettered
    from ._sqlite import Store

__all__ = [
    "CHECKPOINT_AFTER_WRITES",
    "Settlement",
    "TripResult",
    "WalCheckpointer",
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
    if limit < 1 or not topics:
        return [], []
    if _dialect.is_postgres(store):
        from .postgres import _batch as _pg

        return _pg.claim_batch(
            store,  # type: ignore[arg-type]
            limit=limit,
            topics=topics,
            lease_seconds=lease_seconds,
            now=now,
            lookahead=lookahead,
            next_after=next_after,
        )
    topic_list = list(topics)
    sql = _queue.claim_statement(topic_list, many=True)
    expires = now + lease_seconds
    token = _queue.new_lease_token()
    claims: list[tuple[Delivery, float]] = []
    dead: list[DeadLettered] = []
    with store.transaction() as conn:
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
                        lambda keys, value_json: store._write_raw(conn, keys, value_json),
                    )
                    dead.append(bad.dead)
                    continue
            scheduled_at = delivery.deliver_at
            if delivery.schedule is not None:
                if _hold_back_overlapping_run(conn, delivery, now):
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


def _hold_back_overlapping_run(conn: sqlite3.Connection, delivery: Delivery, now: float) -> bool:
    """Give ``delivery`` back if another run of its schedule holds a live lease."""
    other = conn.execute(
        "SELECT MAX(lease_expires_at) FROM queue WHERE schedule = ? AND state = 'leased' "
        "AND id != ? AND lease_expires_at > ?",
        (delivery.schedule, delivery.id, now),
    ).fetchone()[0]
    if other is None:
        return False
    conn.execute(
        "UPDATE queue SET state = 'queued', attempts = MAX(attempts - 1, 0), "
        "lease_token = NULL, lease_expires_at = NULL, due_at = ? WHERE id = ? AND lease_token = ?",
        (other, delivery.id, delivery.lease_token),
    )
    return True


def _log_dead_on_claim(conn: sqlite3.Connection, dead: Sequence[DeadLettered], now: float) -> None:
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
    outcomes: list[str] = []
    rows: list[tuple[Any, ...]] = []
    schedule_rows: list[tuple[str, str | None, str]] = []
    if not settlements and prune_before is None:
        return outcomes
    if _dialect.is_postgres(store):
        from .postgres import _batch as _pg

        return _pg.settle_batch(store, settlements, prune_before=prune_before)  # type: ignore[arg-type]
    with store.transaction() as conn:
        acked = _ack_all(
            conn, [s.delivery for s in settlements if not s.release and s.error is None]
        )
        for s in settlements:
            d = s.delivery
            error = s.error
            if s.release:
                outcome = _release(conn, d)
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
                    write_undelivered=lambda keys, value, c=conn: store._write_raw(c, keys, value),
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


def _ack_all(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> set[int]:
    """Delete the messages whose leases are still held; returns their ids (others are lost)."""
    by_token: dict[str, list[int]] = {}
    for d in deliveries:
        by_token.setdefault(d.lease_token, []).append(d.id)
    acked: set[int] = set()
    for token, ids in by_token.items():
        for start in range(0, len(ids), 500):  # well under SQLite's variable limit
            chunk = ids[start : start + 500]
            rows = conn.execute(
                f"DELETE FROM queue WHERE lease_token = ? AND id IN ({','.join('?' * len(chunk))}) "
                "RETURNING id",
                [token, *chunk],
            ).fetchall()
            acked.update(row[0] for row in rows)
    return acked


def _release(conn: sqlite3.Connection, delivery: Delivery) -> str:
    cursor = conn.execute(
        "UPDATE queue SET state = 'queued', attempts = MAX(attempts - 1, 0), "
        "lease_token = NULL, lease_expires_at = NULL, due_at = deliver_at "
        "WHERE id = ? AND lease_token = ?",
        (delivery.id, delivery.lease_token),
    )
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
    trip: Any = _settle_plan_claim
    if _dialect.is_postgres(store):
        from .postgres import _batch as _pg

        trip = _pg.settle_plan_claim
    result: TripResult = trip(
        store,
        settlements,
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
    return result


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
    with store.transaction() as conn:
        # SQLite's one write lock: a trip that waited for it renews what it holds first.
        # PostgreSQL has row locks; its keeper never queues behind a trip.
        waited = time.monotonic() - asked > lease_seconds / 3.0
        if held and waited and not _dialect.is_postgres(store):
            _extend(conn, held, store.clock.now() + lease_seconds)
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
    """Keep holding ``deliveries`` for ``lease_seconds`` more, in one commit.

    Returns the ids whose lease was lost meanwhile (another consumer may own them now).
    A file store's leases are renewed on a short-lived connection of their own, never
    through the store's writer: a trip of this process waiting out another process's lock
    holds the writer (up to its ``busy_timeout``, longer than a lease), and a renewal queued
    behind it would be silently late. This connection waits at most ``lease_seconds / 6``
    for the file's lock, then raises :class:`StoreError` so the caller logs it and retries
    while the lease still runs.
    """
    if _dialect.is_postgres(store):
        from .postgres import _batch as _pg

        return _pg.extend_leases(store, deliveries, lease_seconds=lease_seconds, now=now)  # type: ignore[arg-type]
    expires = now + lease_seconds
    if getattr(store, "_in_memory", False):  # one connection per process: the store's own
        with store.transaction() as conn:
            return _extend(conn, deliveries, expires)
    wait = lease_renewal_wait(lease_seconds)
    try:
        conn = sqlite3.connect(str(store.path), timeout=wait, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {store.path} to renew leases: {exc}") from exc
    try:
        conn.execute(f"PRAGMA synchronous = {store.durability.upper()}")
        conn.execute("BEGIN IMMEDIATE")
        lost = _extend(conn, deliveries, expires)
        conn.execute("COMMIT")
        return lost
    except sqlite3.Error as exc:
        raise StoreError(
            f"could not renew {len(deliveries)} lease(s) on {store.path} within {wait:g} s "
            f"({exc}): another process holds its write lock; retrying while they last"
        ) from exc
    finally:
        conn.close()  # rolls back anything left open


def lease_renewal_wait(lease_seconds: float) -> float:
    """How long one lease renewal waits for the file's write lock (a sixth of a lease)."""
    return lease_seconds / 6.0


def _extend(conn: sqlite3.Connection, deliveries: Sequence[Delivery], expires: float) -> set[int]:
    lost: set[int] = set()
    for d in deliveries:
        cursor = conn.execute(
            "UPDATE queue SET lease_expires_at = ?, due_at = ? WHERE id = ? AND lease_token = ?",
            (expires, expires, d.id, d.lease_token),
        )
        if cursor.rowcount != 1:
            lost.add(d.id)
    return lost
