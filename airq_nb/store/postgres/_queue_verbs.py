"""The queue verbs of ``PostgresStore``: enqueue, claim (``FOR UPDATE SKIP LOCKED``), ack,
fail, extend, release, next_due — as :class:`airq_nb.Store` has them, on PostgreSQL.

A mixin of :class:`~airq_nb.store.postgres._store.PostgresStore`, kept apart so each module
reads in one sitting; the SQL is in ``_queue.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from .. import _queue
from .._keys import Key
from .._queue import DeadLettered, Delivery, FailOutcome, check_time
from .._sqlite import Store
from . import _queue as _pg_queue

if TYPE_CHECKING:
    from ._connection import Connections

__all__ = ["QueueVerbs"]


class QueueVerbs:
    """Producing and consuming messages; the store supplies connections, clock and KV writes."""

    _db: Connections

    if TYPE_CHECKING:  # supplied by PostgresStore

        def now(self) -> float: ...

        def transaction(self) -> Any: ...

        def _write_raw(self, conn: Any, keys: Sequence[bytes], value_json: str) -> None: ...

        def _queue_changed(self) -> None: ...

    # -- queue: producing ---------------------------------------------------------------

    def enqueue(
        self,
        value: Any,
        *,
        delay: float = 0,
        topic: str = "default",
        keys_if_undelivered: Sequence[Key] = (),
        backoff_schedule: Sequence[float] | None = None,
        dedup_key: str | None = None,
        schedule: str | None = None,
    ) -> int:
        """Queue ``value`` (JSON, at most 64 KiB) for delivery after ``delay`` seconds; returns its id.

        Options as :meth:`airq_nb.Store.enqueue`.
        """
        prepared = self._prepare(
            value, delay, topic, keys_if_undelivered, backoff_schedule, dedup_key, schedule
        )
        now = self.now()
        if dedup_key is None:
            rows, _ = self._db.run(*_pg_queue.insert_one(prepared, now))
            message_id = rows[0][0]
        else:
            with self.transaction() as conn:
                message_id = _pg_queue.insert_messages(conn, [prepared], now)[0]
        self._queue_changed()
        return message_id

    # Validation before any transaction opens: the SQLite store's own, shared (it uses
    # nothing of the store it is called on), so both backends refuse exactly the same input.
    _prepare = Store._prepare

    # -- queue: consuming ---------------------------------------------------------------

    def _claim_rows(
        self,
        limit: int,
        topics: Collection[str] | None,
        lease_seconds: float,
        now: float | None,
        lookahead: float,
        on_dead_letter: Callable[[DeadLettered], None] | None,
    ) -> tuple[list[Delivery], int]:
        """Lease up to ``limit`` messages: the deliveries, and how many rows were leased
        (more than the deliveries when some were dead-lettered instead)."""
        lease_seconds = _queue.check_delay(lease_seconds, what="lease_seconds")
        lookahead = _queue.check_delay(lookahead, what="lookahead")
        topic_list = _queue.check_topics(topics)
        now = self.now() if now is None else check_time(now, what="now")
        expires = now + lease_seconds
        token = _queue.new_lease_token()
        rows, _ = self._db.run(
            *_pg_queue.claim(
                topic_list, limit=limit, token=token, now=now, lookahead=lookahead, expires=expires
            )
        )
        deliveries: list[Delivery] = []
        undeliverable: list[_queue.UndeliverableRow] = []
        for row in rows:
            try:
                deliveries.append(_queue.delivery_from_claimed(row, token, expires))
            except _queue.UndeliverableRow as bad:
                undeliverable.append(bad)
        if undeliverable:
            with self.transaction() as conn:
                for bad in undeliverable:
                    _pg_queue.dead_letter_claimed(
                        conn, bad, token, now, lambda keys, text: self._write_raw(conn, keys, text)
                    )
                    if on_dead_letter is not None:
                        on_dead_letter(bad.dead)
        # RETURNING gives rows in no promised order; deliver earliest first.
        deliveries.sort(key=lambda d: (d.deliver_at, d.id))
        return deliveries, len(rows)

    def claim(
        self,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
        lookahead: float = 0.0,
        on_dead_letter: Callable[[DeadLettered], None] | None = None,
    ) -> Delivery | None:
        """Lease the next due message (earliest first) to this consumer, or return ``None``.

        As :meth:`airq_nb.Store.claim`; corrupt rows met on the way are dead-lettered.
        """
        while True:
            deliveries, leased = self._claim_rows(
                1, topics, lease_seconds, now, lookahead, on_dead_letter
            )
            if deliveries or not leased:
                return deliveries[0] if deliveries else None
            # The row leased was dead-lettered instead: look for the next one.

    def claim_many(
        self,
        limit: int,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
        on_dead_letter: Callable[[DeadLettered], None] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due messages in one commit, earliest first."""
        _queue.check_claim_limit(limit)
        return self._claim_rows(limit, topics, lease_seconds, now, 0.0, on_dead_letter)[0]

    def ack(self, delivery: Delivery) -> bool:
        """Mark a delivery done (the message is removed). False if the lease was lost meanwhile."""
        _, count = self._db.run(
            "DELETE FROM queue WHERE id = %s AND lease_token = %s",
            (delivery.id, delivery.lease_token),
        )
        return count == 1

    def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """Ack several deliveries in one commit; returns how many leases were still held."""
        _, count = self._db.run(
            "DELETE FROM queue WHERE (id, lease_token) IN "
            "(SELECT * FROM unnest(%s::bigint[], %s::text[]))",
            ([d.id for d in deliveries], [d.lease_token for d in deliveries]),
        )
        return count

    # Ack then claim in one transaction: the SQLite store's own, as it uses only verbs
    # (transaction, ack, claim) this store has too.
    ack_and_claim = Store.ack_and_claim

    def fail(
        self,
        delivery: Delivery,
        error: str,
        *,
        retry: bool = True,
        retry_in: float | None = None,
        now: float | None = None,
    ) -> FailOutcome:
        """Record a failed attempt: ``"retry"``, ``"dead"`` or ``"lost"`` (as :meth:`airq_nb.Store.fail`)."""
        if retry_in is not None:
            retry_in = _queue.check_delay(retry_in, what="retry_in")
        now = self.now() if now is None else check_time(now, what="now")
        with self.transaction() as conn:
            return _pg_queue.fail_delivery(
                conn,
                delivery,
                # A handler's message may hold a NUL, which PostgreSQL text cannot.
                str(error).replace("\x00", "\\x00"),
                now=now,
                retry=retry,
                retry_in=retry_in,
                write_undelivered=lambda keys, text: self._write_raw(conn, keys, text),
            )

    def extend_lease(
        self, delivery: Delivery, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        """Keep holding a message for ``lease_seconds`` more; False if the lease was lost."""
        now = self.now() if now is None else check_time(now, what="now")
        expires = now + _queue.check_delay(lease_seconds, what="lease_seconds")
        _, count = self._db.run(
            "UPDATE queue SET lease_expires_at = %s, due_at = %s "
            "WHERE id = %s AND lease_token = %s",
            (expires, expires, delivery.id, delivery.lease_token),
        )
        return count == 1

    def release(self, delivery: Delivery) -> bool:
        """Give a message back unhandled (e.g. on shutdown): due again now, attempt not counted."""
        _, count = self._db.run(
            "UPDATE queue SET state = 'queued', attempts = GREATEST(attempts - 1, 0), "
            "lease_token = NULL, lease_expires_at = NULL, due_at = deliver_at "
            "WHERE id = %s AND lease_token = %s",
            (delivery.id, delivery.lease_token),
        )
        return count == 1

    def next_due(self, *, topics: Collection[str] | None = None) -> float | None:
        """When the next message becomes claimable (due, or its lease runs out); None if never."""
        query = (
            "SELECT MIN(due_at) FROM queue WHERE state IN ('queued', 'leased') "
            "AND NOT EXISTS (SELECT 1 FROM paused_topics p "
            "WHERE p.topic = queue.topic OR p.topic = '*')"
        )
        topic_list = _queue.check_topics(topics)
        params: tuple[Any, ...] = ()
        if topic_list is not None:
            query += " AND topic = ANY(%s)"
            params = (topic_list,)
        ((due,),) = self._db.run(query, params)[0]
        return None if due is None else float(due)
