"""Short human texts (spans of time, one-line clips), shared by the charts, widgets and CLI."""

from __future__ import annotations

__all__ = ["one_line", "span_text"]


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


def one_line(text: object, limit: int) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit`` characters
    with a closing "…" when longer, so a table cell or log line stays one short line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
