"""Moved to :mod:`.delivery_log` (reading) and :mod:`airq_nb.store.delivery_log` (the table);
kept so code written against the old layout still imports."""

from __future__ import annotations

from ..store.delivery_log import LogEntry
from .delivery_log import read_delivery_log, utc

__all__ = ["LogEntry", "read_delivery_log", "utc"]
