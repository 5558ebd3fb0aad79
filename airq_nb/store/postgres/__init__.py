"""The PostgreSQL backend: ``open_store("postgresql://user@host/db", schema="airq_nb")``.

Needs the optional extra: ``pip install 'airq_nb[postgres]'`` (psycopg 3 and psycopg-pool).
Only ``store/_open.py`` imports this package, when a URL names PostgreSQL, so
``import airq_nb`` never needs psycopg.
"""

from __future__ import annotations

from ._store import PostgresStore

__all__ = ["PostgresStore"]
