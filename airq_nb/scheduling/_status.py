"""What the queue and the scheduler are doing, read from the database alone.

``store_status`` works without a running scheduler (another kernel may be the one
delivering); ``Scheduler.status()`` adds what only the live runtime knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ._delivery_log import table_exists, utc

if TYPE_CHECKING:
    from ..store._sqlite import Store

__all__ = ["Status", "store_status"]


@dataclass(frozen=True, slots=True)
class Status:
    """Next due delivery, last delivery's accuracy and outcome, backlog and queue counts."""

    next_due: datetime | None
    last_delivery_accuracy_ms: float | None
    last_outcome: str | None
    last_error: str | None
    backlog: int
    queued: int
    leased: int
    dead_letters: int
    paused_topics: tuple[str, ...]
    running: bool = False
    in_flight: int = 0
    topics: tuple[str, ...] = ()
    runtime_error: str | None = None


def store_status(store: Store) -> Status:
    """The scheduler-relevant state of ``store``, readable with no scheduler running.

    ``backlog`` counts messages already due but not yet delivered; ``next_due`` is the
    earliest of the next queued message and the next schedule slot.
    """
    now = store.now()
    counts = dict(
        store.execute(
            "SELECT state, COUNT(*) FROM queue GROUP BY state",
        )
    )
    (backlog,) = store.execute(
        "SELECT COUNT(*) FROM queue WHERE state = 'queued' AND deliver_at <= ?", (now,)
    )[0]
    candidates = [store.next_due()]
    if table_exists(store, "schedules"):
        from ._schedules import next_schedule_wake

        candidates.append(next_schedule_wake(store))
    due = [c for c in candidates if c is not None]
    accuracy = outcome = error = None
    if table_exists(store, "delivery_log"):
        last = store.execute("SELECT outcome FROM delivery_log ORDER BY id DESC LIMIT 1")
        outcome = last[0][0] if last else None
        # Rows of messages dead-lettered without running (no start) have no lateness.
        started = store.execute(
            "SELECT lateness_ms FROM delivery_log WHERE lateness_ms IS NOT NULL "
            "ORDER BY id DESC LIMIT 1"
        )
        accuracy = started[0][0] if started else None
        failed = store.execute(
            "SELECT error FROM delivery_log WHERE error IS NOT NULL ORDER BY id DESC LIMIT 1"
        )
        error = failed[0][0] if failed else None
    return Status(
        next_due=utc(min(due)) if due else None,
        last_delivery_accuracy_ms=accuracy,
        last_outcome=outcome,
        last_error=error,
        backlog=backlog,
        queued=counts.get("queued", 0),
        leased=counts.get("leased", 0),
        dead_letters=counts.get("dead", 0),
        paused_topics=store.queue.paused_topics(),
    )
