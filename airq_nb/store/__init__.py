"""The store: KV, durable queue, schedules, delivery log and readings — the only place with SQL.

``open_store`` opens a SQLite file or a PostgreSQL schema; both give a :class:`Store`.
Code outside ``store/`` uses the names here, ``models`` and the table modules
(``readings``, ``schedules``, ``delivery_log``, ...), never the backends' modules.
"""

from ._backend import Checkpointer, QueueAdmin, Store
from ._batch import (
    Settlement,
    TripResult,
    claim_batch,
    extend_leases,
    settle_batch,
    settle_plan_claim,
)
from ._open import DEFAULT_DB_PATH, open_store, resolve_path
from .kv import AtomicOperation
from .models import (
    DEFAULT_BACKOFF_SCHEDULE,
    CommitResult,
    DeadLettered,
    Delivery,
    Entry,
    Message,
    QueueCounts,
)

__all__ = [
    "DEFAULT_BACKOFF_SCHEDULE",
    "DEFAULT_DB_PATH",
    "AtomicOperation",
    "Checkpointer",
    "CommitResult",
    "DeadLettered",
    "Delivery",
    "Entry",
    "Message",
    "QueueAdmin",
    "QueueCounts",
    "Settlement",
    "Store",
    "TripResult",
    "claim_batch",
    "extend_leases",
    "open_store",
    "resolve_path",
    "settle_batch",
    "settle_plan_claim",
]
