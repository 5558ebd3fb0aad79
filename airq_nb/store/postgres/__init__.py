"""The PostgreSQL backend: ``open_store("postgresql://user@host/db", schema="airq_nb")``.

Needs the optional extra: ``pip install 'airq_nb[postgres]'`` (psycopg 3 and psycopg-pool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..._errors import ConfigurationError

if TYPE_CHECKING:
    from ..._clock import Clock
    from ._store import PostgresStore

__all__ = ["PostgresStore", "is_postgres_url", "open_postgres_store"]

_SCHEMES = ("postgresql://", "postgres://")


def __getattr__(name: str) -> object:
    # PostgresStore needs psycopg: imported on first use, so `import airq_nb` never needs it.
    if name == "PostgresStore":
        from ._store import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` (an ``open_store`` argument or ``AIRQ_NB_DB``) names PostgreSQL."""
    return isinstance(location, str) and location.startswith(_SCHEMES)


def _split_schema(url: str) -> tuple[str, str | None]:
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


def open_postgres_store(
    url: str,
    *,
    schema: str | None = None,
    clock: Clock | None = None,
    lock_timeout: float | None = None,
) -> PostgresStore:
    """Open (creating its tables if needed) the store in ``schema`` of the database at ``url``.

    The schema comes from ``schema=``, else from the URL's ``?schema=`` parameter, else it
    is ``"airq_nb"``. Stores in different schemas of one database are independent.
    """
    try:
        from ._store import DEFAULT_SCHEMA, PostgresStore
    except ImportError as exc:
        raise ConfigurationError(
            f"the PostgreSQL backend needs psycopg and psycopg-pool ({exc}); install them "
            "with: pip install 'airq_nb[postgres]'"
        ) from exc
    url, in_url = _split_schema(url)
    if schema is not None and in_url is not None and schema != in_url:
        raise ConfigurationError(
            f"schema={schema!r} disagrees with the URL's ?schema={in_url}; give one of them"
        )
    options = {} if lock_timeout is None else {"lock_timeout": lock_timeout}
    return PostgresStore(url, schema=schema or in_url or DEFAULT_SCHEMA, clock=clock, **options)
