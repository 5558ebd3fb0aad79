"""One scheduler per store per process: :func:`scheduler_for`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .runtime import Scheduler

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["scheduler_for"]


_registry: dict[str, Scheduler] = {}
_registry_lock = threading.Lock()


def scheduler_for(store: Store, **options: Any) -> Scheduler:
    """The one Scheduler of this process for ``store`` (its file, or its PostgreSQL
    database and schema: ``store.identity``), created on first use.

    Re-running a notebook cell gets the same object back, so it never starts a second
    runtime. ``options`` (as for :class:`Scheduler`) apply when it is created.
    """
    key = store.identity
    with _registry_lock:
        existing = _registry.get(key)
        if existing is not None and (existing.running or _usable(existing.store)):
            return existing
        if existing is not None:  # its store was closed (a re-run cell opened a new one)
            existing.close()
        created = Scheduler(store, **options)
        _registry[key] = created
        return created


def _usable(store: Store) -> bool:
    try:
        store.data_version()
    except Exception:  # closed store: a re-run cell opened a new one
        return False
    return True
