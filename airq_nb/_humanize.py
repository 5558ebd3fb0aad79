"""Short human texts for spans of time, shared by the charts and the widgets."""

from __future__ import annotations

__all__ = ["span_text"]


def span_text(seconds: float) -> str:
    """A span as "42 s", "5 min", "3.5 h" or "2.0 days" (sign ignored)."""
    span = abs(seconds)
    if span < 60:
        return f"{span:.0f} s"
    if span < 3600:
        return f"{span / 60:.0f} min"
    if span < 48 * 3600:
        return f"{span / 3600:.1f} h"
    return f"{span / 86400:.1f} days"
