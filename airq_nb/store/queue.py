"""The queue's producing and consuming verbs: enqueue, claim, ack, fail, extend and release.

Written once for both backends (the store supplies the plumbing and its ``dialect``).
Claims are one self-committing ``UPDATE ... RETURNING`` statement; a corrupt row or one
whose lease ran out on its last attempt is dead-lettered on the way, never raised.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .._errors import InvalidKeyError
from . import _queue
from ._json import dump_value
from ._keys import Key, encode_key
from ._queue import DeadLettered, Delivery, FailOutcome, PreparedMessage

if TYPE_CHECKING:
    from ._dialect import Dialect

__all__ = ["QueueVerbs", "call_listeners", "subscribe"]

log = logging.getLogger("airq_nb.store")


def subscribe(
    listeners: list[Callable[[], None]], callback: Callable[[], None]
) -> Callable[[], None]:
    """Add ``callback`` to a store's queue-change ``listeners``; returns its unsubscriber."""
    listeners.append(callback)

    def unsubscribe() -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(callback)

    return unsubscribe


def call_listeners(listeners: list[Callable[[], None]]) -> None:
    """Call every queue-change listener of a store, after a commit that added work."""
    for callback in tuple(listeners):
        try:
            callback()
        except Exception:  # a listener's bug must not fail the write that already committed
            log.exception("an on_queue_change callback failed")


class QueueVerbs:
    """The store's queue verbs (management is :class:`~airq_nb.store.queue_manager.QueueManager`).

    The backend supplies ``dialect``, ``now()``, ``execute``, ``_run(statement, params)``
    (one ``?`` statement, its own commit or part of this thread's transaction: its rows
    and row count), ``_tx()`` and ``_queue_changed()``.
    """

    _queue_listeners: list[Callable[[], None]]

    if TYPE_CHECKING:  # supplied by the backend (and KvVerbs)
        dialect: Dialect

        def now(self) -> float: ...

        def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

        def _run(self, statement: str, params: Sequence[Any]) -> tuple[list[Any], int]: ...

        def _tx(self) -> AbstractContextManager[Any]: ...

        def _queue_changed(self) -> None: ...

        def _undelivered_writer(self, conn: Any) -> Callable[[Sequence[bytes], str], None]: ...

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

        ``backoff_schedule`` lists the seconds to wait before each retry (default
        ``[0.1, 1, 5, 30, 60]``). When every attempt fails, ``value`` is written under each
        of ``keys_if_undelivered``. A ``dedup_key`` shared with a message still queued
        returns that message's id instead of adding another.
        """
        prepared = self._prepare(
            value, delay, topic, keys_if_undelivered, backoff_schedule, dedup_key, schedule
        )
        now = self.now()
        if dedup_key is None:
            rows, _count = self._run(*_queue.insert_one(prepared, now, self.dialect))
            message_id: int = rows[0][0]
        else:
            with self._tx() as conn:
                message_id = _queue.add_messages(conn, [prepared], now, self.dialect)[0]
        self._queue_changed()
        return message_id

    def _prepare(
        self,
        value: Any,
        delay: float,
        topic: str,
        keys_if_undelivered: Sequence[Key],
        backoff_schedule: Sequence[float] | None,
        dedup_key: str | None,
        schedule: str | None,
    ) -> PreparedMessage:
        if (
            delay == 0
            and type(delay) in (int, float)
            and topic == "default"
            and backoff_schedule is None
            and dedup_key is None
            and schedule is None
            and (keys_if_undelivered is None or keys_if_undelivered == ())
        ):
            # The common message (all defaults) skips the option checks: enqueue's hot path.
            return PreparedMessage(
                "default", dump_value(value, what="queue payload"), 0.0, None, None, None, None
            )
        if keys_if_undelivered is None:
            keys_if_undelivered = ()
        if isinstance(keys_if_undelivered, str | bytes) or (
            isinstance(keys_if_undelivered, tuple)
            and keys_if_undelivered
            and not isinstance(keys_if_undelivered[0], tuple)
        ):
            raise InvalidKeyError(
                "keys_if_undelivered is a list of keys, e.g. [('failed', 1)], not one key"
            )
        return _queue.prepare_message(
            value,
            delay=delay,
            topic=topic,
            keys_if_undelivered=[encode_key(key) for key in keys_if_undelivered],
            backoff_schedule=backoff_schedule,
            dedup_key=dedup_key,
            schedule=schedule,
        )

    # -- queue: consuming ---------------------------------------------------------------

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

        Until the lease expires no other consumer, in any process, gets the message; a
        consumer that dies loses it, and the message is delivered again. Corrupt rows met
        on the way are dead-lettered, never raised. ``lookahead`` seconds let a scheduler
        claim a queued message just before it is due (to start it on time); an expired
        lease is only ever taken once it has expired. ``on_dead_letter`` is called, inside
        the dead-lettering transaction, for each message dead-lettered on the way (so a
        consumer can log it atomically with it).
        """
        lease_seconds = _queue.check_delay(lease_seconds, what="lease_seconds")
        lookahead = _queue.check_delay(lookahead, what="lookahead")
        topic_list = _queue.check_topics(topics)
        sql = _queue.claim_statement(topic_list, dialect=self.dialect)
        now = self.now() if now is None else _queue.check_time(now, what="now")
        expires = now + lease_seconds
        params = [now + lookahead, now, *(topic_list or ())]
        while True:
            token = _queue.new_lease_token()
            rows, _count = self._run(sql, [token, expires, expires, *params])
            if not rows:
                return None
            try:
                return _queue.delivery_from_claimed(rows[0], token, expires)
            except _queue.UndeliverableRow as bad:
                with self._tx() as conn:
                    self._dead_letter_claimed(conn, bad, token, now, on_dead_letter)

    def claim_many(
        self,
        limit: int,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
        on_dead_letter: Callable[[DeadLettered], None] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due messages in one commit, earliest first.

        For a consumer draining a backlog: each message is leased exactly as by
        :meth:`claim` (ack, fail, extend or release each one), at a fraction of the commits.
        """
        _queue.check_claim_limit(limit)
        lease_seconds = _queue.check_delay(lease_seconds, what="lease_seconds")
        topic_list = _queue.check_topics(topics)
        sql = _queue.claim_statement(topic_list, many=True, dialect=self.dialect)
        now = self.now() if now is None else _queue.check_time(now, what="now")
        expires = now + lease_seconds
        token = _queue.new_lease_token()
        with self._tx() as conn:
            rows = conn.execute(
                sql, [token, expires, expires, now, now, *(topic_list or ()), limit]
            ).fetchall()
            deliveries: list[Delivery] = []
            for row in rows:
                try:
                    deliveries.append(_queue.delivery_from_claimed(row, token, expires))
                except _queue.UndeliverableRow as bad:
                    self._dead_letter_claimed(conn, bad, token, now, on_dead_letter)
        # RETURNING gives rows in no promised order; deliver earliest first, as claim() does.
        deliveries.sort(key=lambda d: (d.deliver_at, d.id))
        return deliveries

    def _dead_letter_claimed(
        self,
        conn: Any,
        bad: _queue.UndeliverableRow,
        token: str,
        now: float,
        on_dead_letter: Callable[[DeadLettered], None] | None,
    ) -> None:
        _queue.dead_letter_claimed(
            conn, bad, token, now, self._undelivered_writer(conn), lock=self.dialect.row_lock
        )
        if on_dead_letter is not None:
            on_dead_letter(bad.dead)

    def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """Ack several deliveries in one commit; returns how many leases were still held."""
        with self._tx() as conn:
            return len(_queue.ack_rows(conn, deliveries))

    def ack(self, delivery: Delivery) -> bool:
        """Mark a delivery done (the message is removed). False if the lease was lost meanwhile."""
        _rows, count = self._run(
            "DELETE FROM queue WHERE id = ? AND lease_token = ?",
            (delivery.id, delivery.lease_token),
        )
        return count == 1

    def ack_and_claim(
        self,
        delivery: Delivery,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
    ) -> tuple[bool, Delivery | None]:
        """Ack ``delivery`` and lease the next due message in one commit (half the commits
        of :meth:`ack` then :meth:`claim`, for a consumer working through a backlog).

        Returns what :meth:`ack` and :meth:`claim` would: whether the lease was still held,
        and the next delivery or ``None``.
        """
        lease_seconds = _queue.check_delay(lease_seconds, what="lease_seconds")
        topic_list = _queue.check_topics(topics)
        with self._tx():
            acked = self.ack(delivery)
            return acked, self.claim(topics=topic_list, lease_seconds=lease_seconds, now=now)

    def fail(
        self,
        delivery: Delivery,
        error: str,
        *,
        retry: bool = True,
        retry_in: float | None = None,
        now: float | None = None,
    ) -> FailOutcome:
        """Record a failed attempt: ``"retry"`` (next attempt planned by back-off, or
        ``retry_in`` seconds), ``"dead"`` (attempts exhausted or ``retry=False``: now a dead
        letter, its value written under ``keys_if_undelivered``), or ``"lost"`` (the lease
        had expired and another consumer owns the message).
        """
        if retry_in is not None:
            retry_in = _queue.check_delay(retry_in, what="retry_in")
        now = self.now() if now is None else _queue.check_time(now, what="now")
        with self._tx() as conn:
            return _queue.fail_delivery(
                conn,
                delivery,
                self.dialect.text(str(error)),
                now=now,
                retry=retry,
                retry_in=retry_in,
                write_undelivered=self._undelivered_writer(conn),
                lock=self.dialect.row_lock,
            )

    def extend_lease(
        self, delivery: Delivery, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        """Keep holding a message for ``lease_seconds`` more; False if the lease was lost."""
        now = self.now() if now is None else _queue.check_time(now, what="now")
        expires = now + _queue.check_delay(lease_seconds, what="lease_seconds")
        _rows, count = self._run(
            "UPDATE queue SET lease_expires_at = ?, due_at = ? WHERE id = ? AND lease_token = ?",
            (expires, expires, delivery.id, delivery.lease_token),
        )
        return count == 1

    def release(self, delivery: Delivery) -> bool:
        """Give a message back unhandled (e.g. on shutdown): due again now, attempt not counted."""
        _rows, count = self._run(
            _queue.release_statement(self.dialect), (delivery.id, delivery.lease_token)
        )
        return count == 1

    def next_due(self, *, topics: Collection[str] | None = None) -> float | None:
        """When the next message becomes claimable (due, or its lease runs out); None if never."""
        sql = (
            "SELECT MIN(due_at) FROM queue WHERE state IN ('queued', 'leased') "
            "AND topic NOT IN (SELECT topic FROM paused_topics) "
            "AND NOT EXISTS (SELECT 1 FROM paused_topics WHERE topic = '*')"
        )
        params: list[Any] = []
        topic_list = _queue.check_topics(topics)
        if topic_list is not None:
            sql += " " + _queue.topics_condition(topic_list)
            params.extend(topic_list)
        ((due,),) = self.execute(self.dialect.sql(sql), params)
        return None if due is None else float(due)

    def on_queue_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after this store adds deliverable work; returns an unsubscriber.

        A scheduler in this process subscribes, so a message a notebook cell enqueues starts
        on time rather than at the next look for other processes' commits (SQLite tells a
        connection nothing about its own commits; PostgreSQL's NOTIFY costs a round trip).
        Callbacks must be quick and thread-safe (they run on the writing thread).
        """
        return subscribe(self._queue_listeners, callback)
