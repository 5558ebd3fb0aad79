"""Moved to :mod:`.status`; kept so code written against the old layout still imports."""

from __future__ import annotations

from .status import Status, store_status

__all__ = ["Status", "store_status"]
