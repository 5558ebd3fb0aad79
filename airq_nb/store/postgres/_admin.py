"""``store.queue`` on PostgreSQL: list, get, delete, purge, pause, resume, dead letters, redrive.

The same methods, validation and errors as the SQLite backend's ``QueueManager``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._errors import InvalidValueError
from .. import _queue
from .._connection import sql_limit
from .._queue import Message, QueueCounts, check_time
from ..queue_manager import _check_id, _check_state, _not_found

if TYPE_CHECKING:
    from ._store import PostgresStore

__all__ = ["QueueManager"]


def _filters(*, state: str | None, topic: str | None) -> tuple[list[str], list[Any]]:
    if topic is not None and not isinstance(topic, str):
        raise InvalidValueError(f"topic must be a string, got {topic!r}")
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append("state = %s")
        params.append(state)
    if topic is not None:
        where.append("topic = %s")
        params.append(topic)
    return where, params


class QueueManager:
    """See and manage the queue: list, get, delete, purge, pause, resume, dead letters, redrive."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def _paused(self) -> set[str]:
        return {row[0] for row in self._store.execute("SELECT topic FROM paused_topics")}

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
            where.append("deliver_at < %s")
            params.append(check_time(due_before, what="due_before"))
        count = sql_limit(limit)
        query = f"SELECT {_queue.MESSAGE_COLUMNS} FROM queue"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY state = 'dead', deliver_at, id LIMIT %s"
        params.append(None if count < 0 else count)
        paused = self._paused()
        return [_queue.row_to_message(row, paused) for row in self._store.execute(query, params)]

    def get(self, message_id: int) -> Message:
        """One message by id; raises :class:`MessageNotFoundError` if it is gone."""
        rows = self._store.execute(
            f"SELECT {_queue.MESSAGE_COLUMNS} FROM queue WHERE id = %s", (_check_id(message_id),)
        )
        if not rows:
            raise _not_found(message_id)
        return _queue.row_to_message(rows[0], self._paused())

    def delete(self, message_id: int) -> None:
        """Remove one message whatever its state; raises if there is no such message."""
        _, count = self._store._db.run("DELETE FROM queue WHERE id = %s", (_check_id(message_id),))
        if count == 0:
            raise _not_found(message_id)

    def purge(self, *, state: str | None = None, topic: str | None = None) -> int:
        """Delete every message (or those in ``state`` and/or ``topic``); returns how many."""
        _check_state(state)
        where, params = _filters(state=state, topic=topic)
        query = "DELETE FROM queue" + (" WHERE " + " AND ".join(where) if where else "")
        return self._store._db.run(query, params)[1]

    def pause(self, topic: str | None = None) -> None:
        """Stop delivering ``topic`` (all topics if None); its messages stay queued."""
        self._store._db.run(
            "INSERT INTO paused_topics (topic, paused_at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            ("*" if topic is None else _queue.check_topic(topic), self._store.now()),
        )

    def resume(self, topic: str | None = None) -> None:
        """Deliver ``topic`` again; with None, lift every pause."""
        if topic is None:
            self._store._db.run("DELETE FROM paused_topics")
        else:
            self._store._db.run(
                "DELETE FROM paused_topics WHERE topic = %s", (_queue.check_topic(topic),)
            )

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
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT state FROM queue WHERE id = %s FOR UPDATE", (message_id,)
            ).fetchone()
            if row is None:
                raise _not_found(message_id)
            if row[0] != "dead":
                raise InvalidValueError(
                    f"message {message_id} is {row[0]}, not dead; only dead letters are re-driven"
                )
            conn.execute(
                "UPDATE queue SET state = 'queued', attempts = 0, deliver_at = %s, due_at = %s, "
                "dead_at = NULL WHERE id = %s",
                (at, at, message_id),
            )

    def redrive_all(self, *, topic: str | None = None) -> int:
        """Re-drive every dead letter (of ``topic``); returns how many."""
        now = self._store.now()
        where, params = _filters(state="dead", topic=topic)
        return self._store._db.run(
            "UPDATE queue SET state = 'queued', attempts = 0, deliver_at = %s, due_at = %s, "
            f"dead_at = NULL WHERE {' AND '.join(where)}",
            [now, now, *params],
        )[1]

    def counts(self) -> QueueCounts:
        """Messages per state, overall and per topic, and the paused topics."""
        by_state: dict[str, int] = {}
        by_topic: dict[str, dict[str, int]] = {}
        for topic, state, count in self._store.execute(
            "SELECT topic, state, COUNT(*) FROM queue GROUP BY topic, state"
        ):
            by_state[state] = by_state.get(state, 0) + count
            by_topic.setdefault(topic, {})[state] = count
        return QueueCounts(by_state, by_topic, tuple(sorted(self._paused())))
