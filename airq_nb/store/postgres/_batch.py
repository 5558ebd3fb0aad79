"""The scheduler's batched trip verbs on PostgreSQL: claim many, settle many, keep many leases.

``store/_batch.py`` hands a :class:`~airq_nb.store.postgres.PostgresStore` to these; the
promises are that module's: one transaction per verb, each lease taken and ended as by the
single verbs, a delivery-log row committed with the outcome it records, corrupt rows
dead-lettered and logged, and two runs of one schedule never overlapping. What differs is
only how PostgreSQL keeps them while writers run side by side: claims pass over rows
another consumer holds (``FOR UPDATE SKIP LOCKED``), and a schedule's run is claimed with
the schedule's row locked, so two schedulers cannot both start runs of one schedule.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from .. import _dialect, _queue
from ..delivery_log import LogEntry, prune_delivery_log, write_log_entries
from ..schedules import NextAfterFn, absorb_slots, record_outcomes
from . import _queue as _pg_queue
from ._in_doubt import Work

if TYPE_CHECKING:
    from .._batch import Settlement, TripResult
    from .._queue import DeadLettered, Delivery
    from ._store import PostgresStore

__all__ = ["claim_batch", "extend_leases", "settle_batch", "settle_plan_claim"]


def claim_batch(
    store: PostgresStore,
    *,
    limit: int,
    topics: Collection[str],
    lease_seconds: float,
    now: float,
    lookahead: float,
    next_after: NextAfterFn,
) -> tuple[list[tuple[Delivery, float]], list[DeadLettered]]:
    """``store._batch.claim_batch`` on PostgreSQL (same arguments, same result).

    Outside a transaction it is one tracked transaction (``_in_doubt.py``): claims whose
    COMMIT was cut are given back, never left leased with nobody handling them.
    """
    from .._batch import _log_dead_on_claim

    if not store._db.in_transaction:

        def claim(returns: list[Settlement]) -> Work:
            outcomes = settle_batch(store, returns) if returns else []
            claims, dead = claim_batch(
                store,
                limit=limit,
                topics=topics,
                lease_seconds=lease_seconds,
                now=now,
                lookahead=lookahead,
                next_after=next_after,
            )
            return Work(outcomes, claims, dead_on_claim=dead)

        _, work = store._in_doubt.run(store, (), claim)
        return work.claims, work.dead_on_claim

    topic_list = list(topics)
    expires = now + lease_seconds
    token = _queue.new_lease_token()
    claims: list[tuple[Delivery, float]] = []
    dead: list[DeadLettered] = []
    with store.transaction() as raw:
        conn = _dialect.PgConnection(raw)
        rows = raw.execute(
            *_pg_queue.claim(
                topic_list, limit=limit, token=token, now=now, lookahead=lookahead, expires=expires
            )
        ).fetchall()
        rows.sort(key=lambda row: (row[3] if isinstance(row[3], float | int) else 0.0, row[0]))
        for row in rows:
            try:
                delivery = _queue.delivery_from_claimed(row, token, expires)
            except _queue.UndeliverableRow as bad:
                _pg_queue.dead_letter_claimed(
                    raw, bad, token, now, lambda keys, text: store._write_raw(raw, keys, text)
                )
                dead.append(bad.dead)
                continue
            scheduled_at = delivery.deliver_at
            if delivery.schedule is not None:
                if _hold_back_overlapping_run(conn, delivery, now):
                    continue
                slot = absorb_slots(
                    conn, delivery.schedule, delivery.id, now + lookahead, next_after
                )
                if slot is not None and delivery.attempt == 1:
                    scheduled_at = slot
            claims.append((delivery, scheduled_at))
        if dead:
            _log_dead_on_claim(conn, dead, now)
    return claims, dead


def _hold_back_overlapping_run(conn: Any, delivery: Delivery, now: float) -> bool:
    """Give ``delivery`` back if another run of its schedule holds a live lease.

    The schedule's row is locked first (until this transaction ends), so a scheduler
    claiming another run of it at the same moment cannot miss this lease. If another
    transaction holds that row (it is settling, planning or claiming a run of the same
    schedule), the run is given back, due at once, rather than waited for: waiting while
    holding the claimed rows could deadlock with that transaction.
    """
    schedule = delivery.schedule
    if (
        conn.execute(
            "SELECT 1 FROM schedules WHERE name = ? FOR UPDATE SKIP LOCKED", (schedule,)
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
        "UPDATE queue SET state = 'queued', attempts = GREATEST(attempts - 1, 0), "
        "lease_token = NULL, lease_expires_at = NULL, due_at = ? WHERE id = ? AND lease_token = ?",
        (other, delivery.id, delivery.lease_token),
    )
    return True


def settle_batch(
    store: PostgresStore, settlements: Sequence[Settlement], *, prune_before: float | None = None
) -> list[str]:
    """``store._batch.settle_batch`` on PostgreSQL (same arguments, same outcomes).

    Outside a transaction it is one tracked transaction (``_in_doubt.py``): a retry of
    settlements whose COMMIT was cut, but which committed, writes nothing twice.
    """
    if not store._db.in_transaction:

        def settle(todo: list[Settlement]) -> Work:
            return Work(settle_batch(store, todo, prune_before=prune_before))

        outcomes, _ = store._in_doubt.run(store, settlements, settle)
        return outcomes
    outcomes: list[str] = []
    entries: list[LogEntry] = []
    schedule_rows: list[tuple[str, str | None, str]] = []
    with store.transaction() as raw:
        conn = _dialect.PgConnection(raw)
        ok = [s.delivery for s in settlements if not s.release and s.error is None]
        acked = {
            row[0]
            for row in raw.execute(
                "DELETE FROM queue WHERE (id, lease_token) IN "
                "(SELECT * FROM unnest(%s::bigint[], %s::text[])) RETURNING id",
                ([d.id for d in ok], [d.lease_token for d in ok]),
            ).fetchall()
        }
        for s in settlements:
            d = s.delivery
            # PostgreSQL text cannot hold a NUL; a handler's message may.
            error = None if s.error is None else s.error.replace("\x00", "\\x00")
            if s.release:
                outcome = "released" if store.release(d) else "lost"
            elif error is None:
                outcome = "ok" if d.id in acked else "lost"
            else:
                outcome = _pg_queue.fail_delivery(
                    raw,
                    d,
                    error,
                    now=s.finished_at,
                    retry=s.retry,
                    retry_in=s.retry_in,
                    write_undelivered=lambda keys, text: store._write_raw(raw, keys, text),
                )
            outcomes.append(outcome)
            entries.append(
                LogEntry(
                    message_id=d.id,
                    topic=d.topic,
                    schedule=d.schedule,
                    attempt=d.attempt,
                    scheduled_at=s.scheduled_at,
                    started_at=s.started_at,
                    finished_at=s.finished_at,
                    outcome=outcome,
                    error=error,
                )
            )
            if d.schedule is not None:
                schedule_rows.append((outcome, error, d.schedule))
        write_log_entries(conn, entries)
        if schedule_rows:
            record_outcomes(conn, schedule_rows)
            # Runs held back while this one was leased (see claim_batch) are due again now.
            raw.execute(
                "UPDATE queue SET due_at = deliver_at WHERE schedule = ANY(%s) "
                "AND state = 'queued' AND due_at > deliver_at",
                (sorted({row[2] for row in schedule_rows}),),
            )
        if prune_before is not None:
            prune_delivery_log(conn, older_than=prune_before)
    return outcomes


def extend_leases(
    store: PostgresStore, deliveries: Sequence[Delivery], *, lease_seconds: float, now: float
) -> set[int]:
    """``store._batch.extend_leases`` on PostgreSQL: one statement for the whole batch."""
    expires = now + lease_seconds
    kept = store.execute(
        "UPDATE queue q SET lease_expires_at = %s, due_at = %s "
        "FROM unnest(%s::bigint[], %s::text[]) AS held(id, token) "
        "WHERE q.id = held.id AND q.lease_token = held.token RETURNING q.id",
        (expires, expires, [d.id for d in deliveries], [d.lease_token for d in deliveries]),
    )
    return {d.id for d in deliveries} - {row[0] for row in kept}


def settle_plan_claim(
    store: PostgresStore, settlements: Sequence[Settlement], **trip: Any
) -> TripResult:
    """``store._batch.settle_plan_claim`` on PostgreSQL, as one tracked transaction.

    A trip whose COMMIT was cut by a restart is settled once and its claims given back
    (``_in_doubt.py``); the caller retries it as any failed trip.
    """
    from .. import _batch

    if store._db.in_transaction:
        return _batch._settle_plan_claim(store, settlements, **trip)  # type: ignore[arg-type]

    def run(todo: list[Settlement]) -> Work:
        done = _batch._settle_plan_claim(store, todo, **trip)  # type: ignore[arg-type]
        work = Work(done.outcomes, done.claims, done.queued_runs, done.dead_on_claim)
        planned[:] = [done.planned, done.broken]
        return work

    planned: list[Any] = [0, []]
    outcomes, work = store._in_doubt.run(store, settlements, run)
    return _batch.TripResult(
        outcomes, work.queued_runs, planned[0], planned[1], work.claims, work.dead_on_claim
    )
