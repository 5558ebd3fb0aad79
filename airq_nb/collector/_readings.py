"""Where the readings verbs used to live; they are in :mod:`airq_nb.store.readings` now.

Kept so code written against the old path (``from airq_nb.collector._readings import
readings_summary``) goes on working; new code imports from ``airq_nb.store.readings``.
"""

from __future__ import annotations

from ..store.readings import (
    DEFAULT_RETENTION,
    read_readings,
    read_revisions,
    readings_summary,
    upsert_readings,
    utc_datetime,
)

__all__ = [
    "DEFAULT_RETENTION",
    "read_readings",
    "read_revisions",
    "readings_summary",
    "upsert_readings",
    "utc_datetime",
]
