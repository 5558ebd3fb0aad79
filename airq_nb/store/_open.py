"""``open_store``: the one place that decides which backend a path or a URL opens.

A file path (or ``":memory:"``) opens a :class:`~airq_nb.store.sqlite.SqliteStore`; a
``postgresql://`` URL a :class:`~airq_nb.store.postgres.PostgresStore`, imported on first
use so ``import airq_nb`` never needs psycopg. Both satisfy :class:`airq_nb.Store`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import ConfigurationError, StoreError
from ._backend import DEFAULT_SCHEMA
from .sqlite import DEFAULT_BUSY_TIMEOUT, MEMORY, Durability, SqliteStore

if TYPE_CHECKING:
    from .._clock import Clock
    from ._backend import Store

__all__ = [
    "DEFAULT_DB_PATH",
    "is_postgres_url",
    "open_store",
    "resolve_path",
    "split_schema",
]

#: Where the store lives when neither ``path`` nor ``AIRQ_NB_DB`` says otherwise.
DEFAULT_DB_PATH = Path("~/.local/share/airq_nb/airq.db")

_SCHEMES = ("postgresql://", "postgres://")


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


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` (an ``open_store`` argument or ``AIRQ_NB_DB``) names PostgreSQL."""
    return isinstance(location, str) and location.startswith(_SCHEMES)


def split_schema(url: str) -> tuple[str, str | None]:
    """The URL without its ``schema=`` query parameter, and that parameter (if any).

    ``schema`` is ours, not libpq's, so ``AIRQ_NB_DB`` alone can name a store.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for name, value in query if name == "schema"]
    rest = [(name, value) for name, value in query if name != "schema"]
    if len(schemas) > 1:
        raise ConfigurationError(f"the URL names schema= {len(schemas)} times; give it once")
    return urlunsplit(parts._replace(query=urlencode(rest))), (schemas[0] if schemas else None)


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
    ``"airq_nb"``, or the URL's ``?schema=``); ``busy_timeout`` is then how long a write
    waits for a row lock. Stores in different schemas of one database are independent.
    """
    location = path if path is not None else os.environ.get("AIRQ_NB_DB")
    if is_postgres_url(location):
        if durability not in ("normal", "full"):
            raise StoreError(f"durability must be 'normal' or 'full', got {durability!r}")
        return _open_postgres(str(location), schema=schema, clock=clock, lock_timeout=busy_timeout)
    if schema is not None:
        raise ConfigurationError(
            "schema= is for PostgreSQL stores; give a postgresql:// URL, or leave schema out"
        )
    return SqliteStore(
        resolve_path(path), clock=clock, durability=durability, busy_timeout=busy_timeout
    )


def _open_postgres(
    url: str, *, schema: str | None, clock: Clock | None, lock_timeout: float
) -> Store:
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise ConfigurationError(
            f"the PostgreSQL backend needs psycopg and psycopg-pool ({exc}); install them "
            "with: pip install 'airq_nb[postgres]'"
        ) from exc
    url, in_url = split_schema(url)
    if schema is not None and in_url is not None and schema != in_url:
        raise ConfigurationError(
            f"schema={schema!r} disagrees with the URL's ?schema={in_url}; give one of them"
        )
    return PostgresStore(
        url, schema=schema or in_url or DEFAULT_SCHEMA, clock=clock, lock_timeout=lock_timeout
    )
