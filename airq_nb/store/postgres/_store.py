"""``PostgresStore``: the store's API and guarantees on a PostgreSQL server, for several machines.

The same verbs as the SQLite :class:`~airq_nb.store.Store` (see ``store/_backend.py``) and
the same semantics (``docs/semantics.md``). How each guarantee is kept on PostgreSQL:

- **Versionstamps in commit order**: every KV write bumps one counter row, whose row lock
  it holds until it commits, so the next writer waits, gets a larger stamp and commits later.
- **Atomic checks cannot be raced**: a commit takes that counter lock *before* reading the
  versionstamps it checks, so no other KV write can land between its check and its commit.
- **Claims**: ``FOR UPDATE SKIP LOCKED`` in one autocommit statement (``_queue.py``).
- **Wake-ups**: triggers NOTIFY the store's channel when deliverable work commits;
  :meth:`wait_for_change` LISTENs on a connection of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from ..._clock import Clock, SystemClock
from ..._errors import StoreError
from .. import _queue
from .._connection import call_listeners, subscribe
from .._keys import Key, encode_key
from .._sqlite import Entry
from ..kv import KvVerbs, load_kv_value
from ..queue_manager import QueueManager
from ._atomic import PostgresAtomic
from ._change_wait import ChangeWait
from ._connection import DEFAULT_LOCK_TIMEOUT, Connections
from ._queue_verbs import QueueVerbs
from ._schema import channel_name, check_schema_name, create_schema

__all__ = ["DEFAULT_SCHEMA", "PostgresStore"]


#: The schema a store lives in when ``open_store`` is not told another.
DEFAULT_SCHEMA = "airq_nb"
_EXPIRY_SWEEP_SECONDS = 60.0


class PostgresStore(QueueVerbs):
    """KV + durable queue in one PostgreSQL schema. Safe to share between threads and machines."""

    #: Which SQL the store's shared verbs speak to it (``store/_dialect.py``).
    dialect = "postgres"

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
        self.schema = check_schema_name(schema)
        self.clock: Clock = clock or SystemClock()
        self._last_sweep = -math.inf
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
        channel = channel_name(self.schema)
        self._change_wait = ChangeWait(
            url,
            channel,
            where=self.where,
            notify=lambda to: self._db.run("SELECT pg_notify(%s, 'wake')", (to,)),
        )
        self.queue = QueueManager(self)

    # -- plumbing -----------------------------------------------------------------------

    def transaction(self) -> Any:
        """A write transaction on one connection: all or nothing; nested use joins it.

        Yields the psycopg connection (``%s`` placeholders). Other parts of airq_nb use this
        to write their tables atomically with the queue.
        """
        return self._db.transaction()

    def execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``%s`` placeholders) and return its rows.

        Inside this thread's own :meth:`transaction` it sees that transaction's writes.
        """
        return self._db.run(query, params)[0]

    def close(self) -> None:
        """Close the pool and the listening connection; later calls raise ``StoreError``."""
        self._change_wait.close()
        self._db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.where} schema={self.schema!r}>"

    def now(self) -> float:
        return self.clock.now()

    def _next_versionstamp(self, conn: Any) -> str:
        (counter,) = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE name = 'versionstamp' RETURNING value"
        ).fetchone()
        return f"{counter:020x}"

    def _sweep_expired(self, conn: Any, now: float) -> None:
        # Expired entries are invisible at once; the rows go in a sweep at most once a minute.
        if now - self._last_sweep >= _EXPIRY_SWEEP_SECONDS:
            conn.execute("DELETE FROM kv WHERE expires_at <= %s", (now,))
            self._last_sweep = now

    def _write_raw(self, conn: Any, keys: Sequence[bytes], value_json: str) -> None:
        stamp = self._next_versionstamp(conn)
        conn.execute(
            "INSERT INTO kv (key, value, versionstamp, expires_at) "
            "SELECT k, %s, %s, NULL FROM unnest(%s::bytea[]) AS k "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "versionstamp = EXCLUDED.versionstamp, expires_at = NULL",
            (value_json, stamp, list(keys)),
        )

    # -- change-wait --------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Block until a commit (any process's, on any machine) may have added deliverable
        work — a message enqueued, due again, re-driven, or a topic resumed — or until
        ``timeout`` seconds pass; True if something may have changed.

        The first call starts listening and returns True at once: what happened before it
        listened is unknown, so the caller should look. A lost connection is re-opened and
        also answers True. Several threads may wait at once; each sees each change.
        """
        return self._change_wait.wait(_queue.check_delay(timeout, what="timeout", limit=math.inf))

    def on_queue_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after this store object adds deliverable work; returns an unsubscriber.

        A scheduler in this process subscribes, so a message a notebook cell enqueues starts
        without waiting for the NOTIFY round trip (which wakes it too, and carries every
        other change). Callbacks must be quick and thread-safe.
        """
        return subscribe(self._queue_listeners, callback)

    def _queue_changed(self) -> None:
        if self._db.in_transaction:  # not committed yet: the NOTIFY comes with the commit
            return
        call_listeners(self._queue_listeners)

    def data_version(self) -> int:
        """A number that grows whenever a write transaction starts on the server.

        Any commit that changed this store started one, so an unchanged number means no
        change (the server's other schemas and databases move it too). Raises
        ``StoreError`` once the store is closed or the server is unreachable.
        """
        ((version,),) = self.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        return int(version)

    def interrupt_wait(self) -> None:
        """End a :meth:`wait_for_change` under way in another thread now (it returns True)."""
        self._change_wait.interrupt()

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

    # The SQLite store's own: they work through _dialect.read, atomic() and
    # kv.list_entries, which run on either backend.
    get = KvVerbs.get
    set = KvVerbs.set
    delete = KvVerbs.delete
    list = KvVerbs.list
    watch = KvVerbs.watch

    def atomic(self) -> PostgresAtomic:
        """Start an atomic operation: checks, sets, deletes, sums and enqueues, all or nothing."""
        return PostgresAtomic(self)
