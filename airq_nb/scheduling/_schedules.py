"""Moved to :mod:`.schedules` (rules) and :mod:`airq_nb.store.schedules` (the table); kept so
code written against the old layout still imports."""

from __future__ import annotations

from .schedules import (
    MAX_CATCH_UP_LIMIT,
    MIN_EVERY_SECONDS,
    SKIP_GRACE_SECONDS,
    ScheduleInfo,
    ScheduleSpec,
    list_schedules,
    parse_spec,
    plan_due_runs,
    plan_slot,
)

__all__ = [
    "MAX_CATCH_UP_LIMIT",
    "MIN_EVERY_SECONDS",
    "SKIP_GRACE_SECONDS",
    "ScheduleInfo",
    "ScheduleSpec",
    "list_schedules",
    "parse_spec",
    "plan_due_runs",
    "plan_slot",
]
