"""The store: one SQLite file holding the KV, the durable queue and the other parts' tables.

:class:`Store` is put together from parts with one job each: ``_connection.py`` (the file,
its connections, transactions and errors), ``kv.py`` (KV verbs and atomic operations),
``queue.py`` (queue verbs) and ``queue_manager.py`` (``store.queue``); ``_schema.py``
creates and upgrades every table when the file is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._clock import Clock, SystemClock
from .._errors import ConfigurationError, StoreError
from ._connection import DEFAULT_BUSY_TIMEOUT, MEMORY, Connection, Durability
from .kv import AtomicOperation, CommitResult, Entry, KvVerbs
from .queue import QueueVerbs
from .queue_manager import QueueManager

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_DB_PATH",
    "AtomicOperation",
    "CommitResult",
    "Entry",
    "Store",
    "open_store",
    "resolve_path",
]

#: Where the store lives when neither ``path`` nor ``AIRQ_NB_DB`` says otherwise.
DEFAULT_DB_PATH = Path("~/.local/share/airq_nb/airq.db")


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    """The store's file: the argument, else ``AIRQ_NB_DB``, else :data:`DEFAULT_DB_PATH`."""
    chosen = path if path is not None else os.environ.get("AIRQ_NB_DB") or DEFAULT_DB_PATH
    if not isinstance(chosen, str | os.PathLike):
        raise ConfigurationError(
            f"the store path must be a file path (str or Path), got {type(chosen).__name__}"
        )
    if str(chosen) == MEMORY:
        return Path(MEMORY)
    return Path(chosen).expanduser()


def open_store(
    path: str | os.PathLike[str] | None = None,
    *,
    clock: Clock | None = None,
    durability: Durability = "normal",
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    schema: str | None = None,
) -> Store:
    """Open (creating if needed) the store at ``path``, ``$AIRQ_NB_DB`` or the default path.

    ``durability="normal"`` (WAL with ``synchronous=NORMAL``) never corrupts the file and
    loses nothing when a process dies; a power cut may lose the last commits.
    ``"full"`` syncs every commit to disk as well. ``":memory:"`` is this process's
    in-memory store: every store opened on it, in any thread, shares it, and it is gone
    when the last of them closes.

    A ``postgresql://`` URL (argument or ``AIRQ_NB_DB``) opens a
    :class:`~airq_nb.store.postgres.PostgresStore` instead, in ``schema`` (default
    ``"airq_nb"``); ``busy_timeout`` is then how long a write waits for a row lock.
    """
    from .postgres import is_postgres_url, open_postgres_store

    location = path if path is not None else os.environ.get("AIRQ_NB_DB")
    if is_postgres_url(location):
        if durability not in ("normal", "full"):
            raise StoreError(f"durability must be 'normal' or 'full', got {durability!r}")
        return open_postgres_store(  # type: ignore[return-value]
            str(location), schema=schema, clock=clock, lock_timeout=busy_timeout
        )
    if schema is not None:
        raise ConfigurationError(
            "schema= is for PostgreSQL stores; give a postgresql:// URL, or leave schema out"
        )
    return Store(resolve_path(path), clock=clock, durability=durability, busy_timeout=busy_timeout)


class Store(KvVerbs, QueueVerbs, Connection):
    """KV + durable queue in one SQLite file. Safe to share between threads and processes."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock | None = None,
        durability: Durability = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        Connection.__init__(self, path, durability=durability, busy_timeout=busy_timeout)
        self.queue = QueueManager(self)

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another commit may have changed the file (True) or ``timeout`` passes."""
        from ._change_wait import wait_for_change

        return wait_for_change(self, timeout)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {str(self.path)!r}>"

    def now(self) -> float:
        return self.clock.now()
