"""The SQLite backend: ``open_store(path)``, a store in one file (or ``":memory:"``).

Only ``store/_open.py`` imports this package; it imports the store core, never the
PostgreSQL backend.
"""

from __future__ import annotations

from ._connection import DEFAULT_BUSY_TIMEOUT, MEMORY, Durability
from ._store import SqliteStore

__all__ = ["DEFAULT_BUSY_TIMEOUT", "MEMORY", "Durability", "SqliteStore"]
