"""``PostgresStore``: the store's API and guarantees on a PostgreSQL server, for several machines.

The store core's verbs (``kv.py``, ``queue.py``: the same code as on SQLite, spelled through
:data:`~airq_nb.store._dialect.POSTGRES`) and the same semantics (``docs/semantics.md``);
this class adds connections, a consistent multi-key read, lease renewal and waking. How
each guarantee is kept on PostgreSQL:

- **Versionstamps in commit order**: every KV write bumps one counter row, whose row lock
  it holds until it commits, so the next writer waits, gets a larger stamp and commits later.
- **Atomic checks cannot be raced**: a commit takes that counter lock *before* reading the
  versionstamps it checks, so no other KV write can land between its check and its commit.
- **Claims**: ``FOR UPDATE SKIP LOCKED`` in one autocommit statement (``store/_queue.py``).
- **Batched writes** (a scheduler's trip) are tracked transactions: one whose COMMIT a
  restart cut is asked about later and never settled twice (``_in_doubt.py``).
- **Wake-ups**: triggers NOTIFY the store's channel when work, a settlement or a KV write
  commits;
  :meth:`wait_for_change` LISTENs on a connection of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from ..._clock import Clock
from ..._errors import StoreError
from .. import _queue
from .._backend import DEFAULT_SCHEMA
from .._core import StoreCore
from .._dialect import POSTGRES, PgConnection, pg_sql
from .._keys import Key, encode_key
from ..kv import load_kv_value
from ..models import Delivery, Entry
from ..queue import call_listeners
from ..queue_manager import QueueManager
from ._change_wait import ChangeWait
from ._connection import DEFAULT_LOCK_TIMEOUT, Connections
from ._in_doubt import InDoubt
from ._schema import channel_name, check_schema_name, create_schema

if TYPE_CHECKING:
    from .._batch import Settlement, Work

__all__ = ["PostgresStore"]


class PostgresStore(StoreCore):
    """KV + durable queue in one PostgreSQL schema. Safe to share between threads and machines."""

    #: The SQL spellings and locks of this backend (``store/_dialect.py``).
    dialect = POSTGRES

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        clock: Clock | None = None,
        pool_size: int = 8,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        connect_timeout: float = 10.0,
    ) -> None:
        StoreCore.__init__(self, clock)
        self.schema = check_schema_name(schema)
        self._db = Connections(
            url,
            schema=schema,
            pool_size=pool_size,
            lock_timeout=lock_timeout,
            connect_timeout=connect_timeout,
        )
        self.where = self._db.where
        #: What names this store in messages, the scheduler's repr and its registry: the
        #: URL (without its password) and the schema.
        self.path = f"{self.where}?schema={self.schema}"
        self._queue_listeners: list[Callable[[], None]] = []
        try:
            first = psycopg.connect(url, autocommit=True, connect_timeout=int(connect_timeout))
        except psycopg.ProgrammingError as exc:  # the URL itself is malformed
            raise StoreError(
                f"cannot use {self.where} as a PostgreSQL URL ({str(exc).strip()}); write it as "
                "postgresql://user@host/dbname (or with ?host=/socket/dir)"
            ) from exc
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where} ({exc}). Check that the server "
                "runs, and the URL's user, database and password."
            ) from exc
        try:
            create_schema(first, self.schema)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot create the airq_nb tables in schema {schema!r} at {self.where} ({exc}); "
                "the user needs CREATE rights on the database (or the schema made for it)"
            ) from exc
        finally:
            first.close()
        self._db.open(connect_timeout)
        self._url = url
        self._change_wait = self._listener()
        self.queue = QueueManager(self)
        #: Batched writes whose COMMIT a restart cut, until the server says how they ended.
        self._in_doubt = InDoubt()

    # -- plumbing -----------------------------------------------------------------------

    def transaction(self) -> Any:
        """A write transaction on one connection: all or nothing; nested use joins it.

        Yields the psycopg connection (``%s`` placeholders). Other parts of airq_nb use this
        to write their tables atomically with the queue.
        """
        return self._db.transaction()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``%s`` placeholders) and return its rows.

        Inside this thread's own :meth:`transaction` it sees that transaction's writes.
        """
        return self._db.run(sql, params)[0]

    def _run(self, statement: str, params: Sequence[Any]) -> tuple[list[Any], int]:
        return self._db.run(pg_sql(statement), params)

    def _tracked(
        self, settlements: Sequence[Settlement], body: Callable[[list[Settlement]], Work]
    ) -> tuple[list[str], Work]:
        """A batched verb as one tracked transaction (``_in_doubt.py``); inside a caller's
        own transaction it simply joins it."""
        if self._db.in_transaction:
            work = body(list(settlements))
            return work.outcomes, work
        return self._in_doubt.run(self, settlements, body)

    @contextmanager
    def _tx(self) -> Iterator[PgConnection]:
        with self._db.transaction() as conn:
            yield PgConnection(conn)

    @property
    def identity(self) -> str:
        """What tells this store from every other: the server, database and schema."""
        return self.path

    def close(self) -> None:
        """Close the pool and the listening connection; later calls raise ``StoreError``."""
        self._change_wait.close()
        self._db.close()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.where} schema={self.schema!r}>"

    def renew_leases(
        self, deliveries: Sequence[Delivery], *, lease_seconds: float, now: float
    ) -> set[int]:
        """Keep holding ``deliveries`` for ``lease_seconds`` more, in one statement.

        Returns the ids whose lease was lost meanwhile (another consumer may own them now).
        Row locks, not one write lock: a renewal never queues behind another writer's trip.
        """
        expires = now + lease_seconds
        kept = self.execute(
            "UPDATE queue q SET lease_expires_at = %s, due_at = %s "
            "FROM unnest(%s::bigint[], %s::text[]) AS held(id, token) "
            "WHERE q.id = held.id AND q.lease_token = held.token RETURNING q.id",
            (expires, expires, [d.id for d in deliveries], [d.lease_token for d in deliveries]),
        )
        return {d.id for d in deliveries} - {row[0] for row in kept}

    def checkpointer(self) -> None:
        """None: the server checkpoints its write-ahead log by itself."""
        return None

    # -- change-wait --------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Block until a commit (any process's, on any machine) may have changed the store —
        a message enqueued, due again, re-driven, acked or dead-lettered, a topic resumed, a
        schedule changed, a KV entry written — or until ``timeout`` seconds pass; True if
        something may have changed (as any commit to a SQLite file answers True there).

        The first call starts listening and returns True at once: what happened before it
        listened is unknown, so the caller should look. A lost connection is re-opened and
        also answers True. Several threads may wait at once; each sees each change.
        """
        return self._change_wait.wait(_queue.check_delay(timeout, what="timeout", limit=math.inf))

    def _no_one_waits(self) -> None:
        # A wait under way ends now (it returns True); the listening connection stays.
        self._change_wait.interrupt()

    def _queue_changed(self) -> None:
        if self._db.in_transaction:  # not committed yet: the NOTIFY comes with the commit
            return
        call_listeners(self._queue_listeners)

    def _listener(self) -> ChangeWait:
        """A LISTEN on the store's channel on a connection of its own (opened at its first
        wait): commits of work, settlements and KV writes NOTIFY it (``_schema.py``)."""
        return ChangeWait(
            self._url,
            channel_name(self.schema),
            where=self.where,
            notify=lambda to: self._db.run("SELECT pg_notify(%s, 'wake')", (to,)),
        )

    def _change_signal(self) -> ChangeWait:
        """A listener of its own for ``store.watch`` (``store/_watch.py``): the store's
        serves the scheduler, and a second reader of it would take its wake-ups."""
        return self._listener()

    def data_version(self) -> int:
        """A number that grows whenever a write transaction starts on the server.

        Any commit that changed this store started one, so an unchanged number means no
        change (the server's other schemas and databases move it too). Raises
        ``StoreError`` once the store is closed or the server is unreachable.
        """
        ((version,),) = self.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        return int(version)

    # -- KV -----------------------------------------------------------------------------

    def get_many(self, keys: Sequence[Key]) -> list[Entry]:
        """Entries for several keys, read in one consistent snapshot (one statement)."""
        raws = [encode_key(key) for key in keys]
        rows, _ = self._db.run(
            "SELECT key, value, versionstamp FROM kv WHERE key = ANY(%s) "
            "AND (expires_at IS NULL OR expires_at > %s)",
            (raws, self.now()),
        )
        found = {bytes(raw): (value, stamp) for raw, value, stamp in rows}
        entries = []
        for key, raw in zip(keys, raws, strict=True):
            if raw in found:
                value, stamp = found[raw]
                entries.append(Entry(key, load_kv_value(key, value), stamp))
            else:
                entries.append(Entry(key, None, None))
        return entries
