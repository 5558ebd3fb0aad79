"""The store: KV, durable queue, schedules, delivery log and readings — the only place with SQL."""

from ._queue import DEFAULT_BACKOFF_SCHEDULE, DeadLettered, Delivery, Message, QueueCounts
from ._sqlite import DEFAULT_DB_PATH, AtomicOperation, CommitResult, Entry, Store, open_store

__all__ = [
    "DEFAULT_BACKOFF_SCHEDULE",
    "DEFAULT_DB_PATH",
    "AtomicOperation",
    "CommitResult",
    "DeadLettered",
    "Delivery",
    "Entry",
    "Message",
    "QueueCounts",
    "Store",
    "open_store",
]
