"""The store's interface: :class:`Store`, what ``open_store`` returns on either backend.

Like huey's ``storage.py``, one short list, each verb with a line saying what it promises;
the semantics behind each line are in ``docs/semantics.md``. Code outside ``store/`` (the
scheduler, the collector, the widgets) may rely on these verbs and on nothing else, so it
works on either backend; ``SqliteStore`` and ``PostgresStore`` both satisfy it (the KV
and queue verbs are one implementation, ``kv.py`` and ``queue.py``). Tables beyond the KV
and the queue (schedules, delivery log, readings) have verbs as plain functions in their
modules, which run on either backend through ``_dialect.py``; the scheduler's batched
verbs are in ``_batch.py``. ``tests/test_postgres_store.py`` checks that both backends
implement every verb with the same parameters.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .._clock import Clock
    from ._batch import Settlement, Work
    from ._dialect import Dialect
    from ._keys import Key
    from ._watch import KeyWatch
    from .kv import AtomicOperation
    from .models import (
        CommitResult,
        DeadLettered,
        Delivery,
        Entry,
        FailOutcome,
        Message,
        QueueCounts,
    )

__all__ = ["DEFAULT_SCHEMA", "Backend", "Checkpointer", "QueueAdmin", "Store"]

#: The schema a PostgreSQL store lives in when ``open_store`` is not told another.
DEFAULT_SCHEMA = "airq_nb"


class Checkpointer(Protocol):
    """Keeps a store's write-ahead log short beside a running scheduler (SQLite's only)."""

    def note_writes(self, count: int) -> None:
        """``count`` more commits were made; checkpoint when enough have piled up."""
        ...

    def close(self) -> None:
        """Stop checkpointing (its thread ends)."""
        ...


@runtime_checkable
class QueueAdmin(Protocol):
    """``store.queue``: see and manage messages (Deno KV has none of this)."""

    def list(
        self,
        *,
        state: str | None = None,
        topic: str | None = None,
        due_before: float | None = None,
        limit: int | None = None,
    ) -> builtins.list[Message]:
        """Messages in delivery order (dead letters last), optionally filtered."""
        ...

    def get(self, message_id: int) -> Message:
        """One message by id; ``MessageNotFoundError`` if it is gone."""
        ...

    def delete(self, message_id: int) -> None:
        """Remove one message whatever its state; ``MessageNotFoundError`` if there is none."""
        ...

    def purge(self, *, state: str | None = None, topic: str | None = None) -> int:
        """Delete every message (of ``state`` and/or ``topic``); returns how many."""
        ...

    def pause(self, topic: str | None = None) -> None:
        """Stop delivering ``topic`` (every topic if None); its messages stay queued."""
        ...

    def resume(self, topic: str | None = None) -> None:
        """Deliver ``topic`` again; with None, lift every pause."""
        ...

    def paused_topics(self) -> tuple[str, ...]:
        """The paused topics, sorted; ``"*"`` means everything is paused."""
        ...

    def dead_letters(
        self, *, topic: str | None = None, limit: int | None = None
    ) -> builtins.list[Message]:
        """Messages whose attempts ran out, with their last error."""
        ...

    def redrive(self, message_id: int, *, delay: float = 0) -> None:
        """Send one dead letter back to the queue, attempts reset."""
        ...

    def redrive_all(self, *, topic: str | None = None) -> int:
        """Re-drive every dead letter (of ``topic``); returns how many."""
        ...

    def counts(self) -> QueueCounts:
        """Messages per state, overall and per topic, and the paused topics."""
        ...


@runtime_checkable
class Store(Protocol):
    """A KV + durable queue with Deno KV semantics; ``open_store`` returns one."""

    clock: Clock
    #: What names the store in messages: the SQLite file's path, or the PostgreSQL URL
    #: (no password) with its schema.
    path: Any
    #: The SQL spellings and locks of its backend (for the store's own modules).
    dialect: Dialect

    @property
    def queue(self) -> QueueAdmin:
        """See and manage messages (``store.queue.list()``, ``.pause()``, ``.redrive()``, ...)."""
        ...

    @property
    def identity(self) -> str:
        """What tells this store from every other (the scheduler registry's key): the
        SQLite file's real path, or the PostgreSQL URL (no password) and schema."""
        ...

    # -- KV -----------------------------------------------------------------------------

    def get(self, key: Key) -> Entry:
        """The entry at ``key``; value and versionstamp ``None`` when absent or expired."""
        ...

    def get_many(self, keys: Sequence[Key]) -> builtins.list[Entry]:
        """Entries for several keys, read in one consistent snapshot."""
        ...

    def set(self, key: Key, value: Any, *, expire_in: float | None = None) -> CommitResult:
        """Store a JSON value at ``key`` (gone after ``expire_in`` seconds, if given)."""
        ...

    def delete(self, key: Key) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def list(
        self,
        *,
        prefix: Key | None = None,
        start: Key | None = None,
        end: Key | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> builtins.list[Entry]:
        """Entries in Deno's key order: a range scan under ``prefix``, from ``start`` to ``end``."""
        ...

    def watch(self, keys: Sequence[Key]) -> KeyWatch:
        """The entries of up to 10 keys now, then after each commit changing any (Deno's watch)."""
        ...

    def atomic(self) -> AtomicOperation:
        """Checks, sets, deletes, sum/min/max and enqueues applied all or nothing, unraced."""
        ...

    # -- queue --------------------------------------------------------------------------

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
        """Queue a JSON message for delivery after ``delay`` seconds; returns its id."""
        ...

    def claim(
        self,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
        lookahead: float = 0.0,
        on_dead_letter: Callable[[DeadLettered], None] | None = None,
    ) -> Delivery | None:
        """Lease the earliest due message to this consumer alone, or return None."""
        ...

    def claim_many(
        self,
        limit: int,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
        on_dead_letter: Callable[[DeadLettered], None] | None = None,
    ) -> builtins.list[Delivery]:
        """Lease up to ``limit`` due messages in one commit, earliest first."""
        ...

    def ack(self, delivery: Delivery) -> bool:
        """Done: remove the message; False if the lease was lost meanwhile."""
        ...

    def ack_many(self, deliveries: Sequence[Delivery]) -> int:
        """Ack several deliveries in one commit; returns how many leases were still held."""
        ...

    def ack_and_claim(
        self,
        delivery: Delivery,
        *,
        topics: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        now: float | None = None,
    ) -> tuple[bool, Delivery | None]:
        """Ack one delivery and lease the next due message in one commit."""
        ...

    def fail(
        self,
        delivery: Delivery,
        error: str,
        *,
        retry: bool = True,
        retry_in: float | None = None,
        now: float | None = None,
    ) -> FailOutcome:
        """A failed attempt: "retry" by back-off, "dead" (keys_if_undelivered written) or "lost"."""
        ...

    def extend_lease(
        self, delivery: Delivery, lease_seconds: float, *, now: float | None = None
    ) -> bool:
        """Keep holding a message ``lease_seconds`` longer; False if the lease was lost."""
        ...

    def release(self, delivery: Delivery) -> bool:
        """Give a message back unhandled, due at once, its attempt not counted."""
        ...

    def next_due(self, *, topics: Collection[str] | None = None) -> float | None:
        """When the next message becomes claimable (due, or its lease runs out); None if never."""
        ...

    def wait_for_change(self, timeout: float) -> bool:
        """Block until a commit (any process's) may have added deliverable work, or ``timeout``."""
        ...

    def on_queue_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after this store object adds deliverable work; returns an unsubscriber."""
        ...

    def open_change_wait(self) -> None:
        """A consumer (a scheduler) starts waiting on changes; pair with :meth:`close_change_wait`."""
        ...

    def close_change_wait(self) -> None:
        """A consumer is done waiting; the last one ends a wait under way and frees its connection."""
        ...

    def data_version(self) -> int:
        """A number that changes when a commit may have changed the store (cheap to poll)."""
        ...

    def renew_leases(
        self, deliveries: Sequence[Delivery], *, lease_seconds: float, now: float
    ) -> builtins.set[int]:
        """Keep holding ``deliveries`` ``lease_seconds`` longer, never queued behind a writer;
        returns the ids whose lease was lost."""
        ...

    def checkpointer(self) -> Checkpointer | None:
        """What keeps the write-ahead log short beside a running scheduler, if the backend needs it."""
        ...

    # -- other tables' verbs ------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction (nested use joins it): other tables commit with the queue."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        """One read statement in the backend driver's placeholders; its rows."""
        ...

    def _tx(self) -> AbstractContextManager[Any]:
        """:meth:`transaction`, its connection taking ``?`` statements (the store's modules)."""
        ...

    def _undelivered_writer(self, conn: Any) -> Callable[[Sequence[bytes], str], None]:
        """Writes a dead letter's value under its keys in ``conn``'s transaction."""
        ...

    def _change_signal(self) -> Any:
        """A change signal of its own for ``store.watch`` (``wait(timeout) -> bool`` and
        ``close()``), or None when the store's ``data_version`` is to be polled."""
        ...

    def _tracked(
        self, settlements: Sequence[Settlement], body: Callable[[builtins.list[Settlement]], Work]
    ) -> tuple[builtins.list[str], Work]:
        """Run one batched verb's transaction ``body`` (``store/_batch.py``); the outcomes of
        ``settlements`` and what it did. PostgreSQL tracks it, so a COMMIT a restart cut is
        never settled twice (``postgres/_in_doubt.py``)."""
        ...

    # -- lifetime -----------------------------------------------------------------------

    def now(self) -> float:
        """The store clock's time, Unix seconds: what expiry and due times are measured in."""
        ...

    def close(self) -> None:
        """Release the connections; later calls raise ``StoreError``."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc_info: object) -> None: ...


#: The name the tests of the backends' parity use.
Backend = Store
