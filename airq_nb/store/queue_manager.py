"""Queue management: list, get, delete, purge, pause, resume, dead letters and re-drive.

``store.queue`` is a :class:`QueueManager` on either backend: its SQL is written once with
``?`` placeholders and run through ``_dialect.py``. The widgets and the CLI are thin skins
over it. Corrupt rows are shown (``Message.corrupt``), never raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import InvalidValueError, MessageNotFoundError
from . import _dialect, _queue
from ._queue import Message, QueueCounts
from .kv import sql_limit

if TYPE_CHECKING:
    from ._backend import Store as Backend

__all__ = ["QueueManager"]


class QueueManager:
    """See and manage the queue: list, get, delete, purge, pause, resume, dead letters, redrive."""

    def __init__(self, store: Backend) -> None:
        self._store: Any = store

    def _paused(self) -> set[str]:
        return {row[0] for row in _dialect.read(self._store, "SELECT topic FROM paused_topics")}

    def list(
        self,
        *,
        state: str | None = None,
        topic: str | None = None,
        due_before: float | None = None,
        limit: int | None = None,
    ) -> list[Message]:
        """Messages in delivery order, optionally filtered; corrupt rows are shown, not raised."""
        _check_state(state)
        where, params = _filters(state=state, topic=topic)
        if due_before is not None:
            where.append("deliver_at < ?")
            params.append(_queue.check_time(due_before, what="due_before"))
        sql = f"SELECT {_queue.MESSAGE_COLUMNS} FROM queue"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY state = 'dead', deliver_at, id LIMIT ?"
        count = sql_limit(limit)
        # PostgreSQL's "no limit" is LIMIT NULL; SQLite's is -1.
        params.append(None if count < 0 and _dialect.is_postgres(self._store) else count)
        paused = self._paused()
        rows = _dialect.read(self._store, sql, params)
        return [_queue.row_to_message(row, paused) for row in rows]

    def get(self, message_id: int) -> Message:
        """One message by id; raises :class:`MessageNotFoundError` if it is gone."""
        rows = _dialect.read(
            self._store,
            f"SELECT {_queue.MESSAGE_COLUMNS} FROM queue WHERE id = ?",
            (_check_id(message_id),),
        )
        if not rows:
            raise _not_found(message_id)
        return _queue.row_to_message(rows[0], self._paused())

    def delete(self, message_id: int) -> None:
        """Remove one message whatever its state; raises if there is no such message."""
        with _dialect.transaction(self._store) as conn:
            cursor = conn.execute("DELETE FROM queue WHERE id = ?", (_check_id(message_id),))
        if cursor.rowcount == 0:
            raise _not_found(message_id)

    def purge(self, *, state: str | None = None, topic: str | None = None) -> int:
        """Delete every message (or those in ``state`` and/or ``topic``); returns how many."""
        _check_state(state)
        where, params = _filters(state=state, topic=topic)
        sql = "DELETE FROM queue" + (" WHERE " + " AND ".join(where) if where else "")
        with _dialect.transaction(self._store) as conn:
            return conn.execute(sql, params).rowcount

    def pause(self, topic: str | None = None) -> None:
        """Stop delivering ``topic`` (all topics if None); its messages stay queued."""
        with _dialect.transaction(self._store) as conn:
            conn.execute(
                "INSERT INTO paused_topics (topic, paused_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                ("*" if topic is None else _queue.check_topic(topic), self._store.now()),
            )

    def resume(self, topic: str | None = None) -> None:
        """Deliver ``topic`` again; with None, lift every pause."""
        with _dialect.transaction(self._store) as conn:
            if topic is None:
                conn.execute("DELETE FROM paused_topics")
            else:
                conn.execute(
                    "DELETE FROM paused_topics WHERE topic = ?", (_queue.check_topic(topic),)
                )
        self._store._queue_changed()

    def paused_topics(self) -> tuple[str, ...]:
        """Paused topics; ``"*"`` means everything is paused."""
        return tuple(sorted(self._paused()))

    def dead_letters(self, *, topic: str | None = None, limit: int | None = None) -> list[Message]:
        """Messages whose attempts ran out, with their last error."""
        return self.list(state="dead", topic=topic, limit=limit)

    def redrive(self, message_id: int, *, delay: float = 0) -> None:
        """Send a dead letter back to the queue with its attempts reset."""
        _check_id(message_id)
        delay = _queue.check_delay(delay)
        at = self._store.now() + delay
        with _dialect.transaction(self._store) as conn:
            row = conn.execute(
                "SELECT state FROM queue WHERE id = ?" + _dialect.for_update(self._store, "queue"),
                (message_id,),
            ).fetchone()
            if row is None:
                raise _not_found(message_id)
            if row[0] != "dead":
                raise InvalidValueError(
                    f"message {message_id} is {row[0]}, not dead; only dead letters are re-driven"
                )
            conn.execute(
                "UPDATE queue SET state = 'queued', attempts = 0, deliver_at = ?, due_at = ?, "
                "dead_at = NULL WHERE id = ?",
                (at, at, message_id),
            )
        self._store._queue_changed()

    def redrive_all(self, *, topic: str | None = None) -> int:
        """Re-drive every dead letter (of ``topic``); returns how many."""
        now = self._store.now()
        where, params = _filters(state="dead", topic=topic)
        with _dialect.transaction(self._store) as conn:
            count = conn.execute(
                "UPDATE queue SET state = 'queued', attempts = 0, deliver_at = ?, due_at = ?, "
                f"dead_at = NULL WHERE {' AND '.join(where)}",
                [now, now, *params],
            ).rowcount
        self._store._queue_changed()
        return count

    def counts(self) -> QueueCounts:
        """Messages per state, overall and per topic, and the paused topics."""
        by_state: dict[str, int] = {}
        by_topic: dict[str, dict[str, int]] = {}
        for topic, state, count in _dialect.read(
            self._store, "SELECT topic, state, COUNT(*) FROM queue GROUP BY topic, state"
        ):
            by_state[state] = by_state.get(state, 0) + count
            by_topic.setdefault(topic, {})[state] = count
        return QueueCounts(by_state, by_topic, tuple(sorted(self._paused())))


_STATES = ("queued", "leased", "dead")


def _check_state(state: str | None) -> None:
    if state is not None and state not in _STATES:
        raise InvalidValueError(f"state must be one of {', '.join(_STATES)}; got {state!r}")


def _check_id(message_id: object) -> int:
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise InvalidValueError(
            f"message ids are integers (Message.id, Delivery.id), got {message_id!r}"
        )
    if not -(2**63) <= message_id < 2**63:
        raise _not_found(message_id)  # SQLite ids are 64-bit: no message can have this one
    return message_id


def _filters(*, state: str | None, topic: str | None) -> tuple[list[str], list[Any]]:
    if topic is not None and not isinstance(topic, str):
        raise InvalidValueError(f"topic must be a string, got {topic!r}")
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if topic is not None:
        where.append("topic = ?")
        params.append(topic)
    return where, params


def _not_found(message_id: int) -> MessageNotFoundError:
    return MessageNotFoundError(
        f"no queue message {message_id}: it was delivered, deleted or never existed; "
        "store.queue.list() shows what is queued"
    )
