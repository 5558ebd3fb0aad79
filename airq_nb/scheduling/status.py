"""What the queue and the scheduler are doing, read from the database alone.

``store_status`` works without a running scheduler (another kernel may be the one
delivering); ``Scheduler.status()`` adds what only the live runtime knows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..store.delivery_log import due_backlog, last_delivery
from ..store.schedules import next_schedule_wake
from .delivery_log import utc

if TYPE_CHECKING:
    from ..store import Store

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
    #: Sync handlers still running after ``handler_timeout`` (or after stop): Python cannot
    #: stop a thread, so each holds one of the scheduler's ``concurrency`` slots and its
    #: message (leased) until it returns; then the attempt is settled (timed out).
    stuck_handlers: int = 0

    def __str__(self) -> str:
        from .._format import rows_text, status_rows

        return rows_text(status_rows(self, now=time.time()))


def store_status(store: Store) -> Status:
    """The scheduler-relevant state of ``store``, readable with no scheduler running.

    ``backlog`` counts messages already due but not yet delivered; ``next_due`` is the
    earliest of the next queued message and the next schedule slot.
    """
    now = store.now()
    counts = store.queue.counts().by_state
    candidates = [store.next_due(), next_schedule_wake(store)]
    due = [c for c in candidates if c is not None]
    outcome, accuracy, error = last_delivery(store)
    return Status(
        next_due=utc(min(due)) if due else None,
        last_delivery_accuracy_ms=accuracy,
        last_outcome=outcome,
        last_error=error,
        backlog=due_backlog(store, now=now),
        queued=counts.get("queued", 0),
        leased=counts.get("leased", 0),
        dead_letters=counts.get("dead", 0),
        paused_topics=store.queue.paused_topics(),
    )
