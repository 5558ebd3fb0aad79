"""Moved: the runtime is now :mod:`.runtime` (and :mod:`.dispatcher`, :mod:`.executors`).

Kept so code written against the old layout (other branches) still imports; import from
``airq_nb`` or the new modules instead. The integrator removes it after the merge.
"""

from __future__ import annotations

from .registry import scheduler_for
from .runtime import RunSummary, Scheduler

__all__ = ["RunSummary", "Scheduler", "scheduler_for"]
