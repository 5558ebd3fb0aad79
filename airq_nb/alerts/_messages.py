"""The words of a notification: FIRING or RESOLVED (Alertmanager's), the rule, the place, the numbers.

Alertmanager titles a notification ``[FIRING:n] <labels>`` or ``[RESOLVED] <labels>``;
ours is ``[FIRING] <rule> at <place>`` (one alert per message). A firing message says
what, how much and since when; a resolved one how long it lasted and its peak; a repeat
says it is still firing; a test says it is a test. Times are Europe/London wall-clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._rules import AlertRule, _label, london_text

if TYPE_CHECKING:
    from ..store.alerts import StateRow

__all__ = ["firing_message", "resolved_message", "test_message"]


def _amount(rule: AlertRule, value: float | None) -> str:
    if value is None:
        return "no readings" if rule.kind == "stale" else "no value"
    if rule.kind == "air":
        return f"{value:.1f} µg/m³"
    if rule.kind == "daqi":
        return f"DAQI {int(value)}"
    if rule.kind == "collection":
        return f"{int(value)} failed run(s) in a row (a dead-lettered run counts as {rule.runs})"
    if rule.kind == "stale":
        return f"{value:.1f} h old"
    return f"{int(value)} dead letter(s)"


def _what(rule: AlertRule) -> str:
    if rule.kind == "air":
        mean = "hourly value" if rule.mean == "hour" else "24-hour mean"
        return f"{_label(rule.pollutant)} {mean}"
    return {
        "daqi": "UK DAQI",
        "collection": "collection",
        "stale": "newest reading",
        "dead_letters": "dead letters",
    }[rule.kind]


def _duration(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def firing_message(rule: AlertRule, state: StateRow, *, repeat: bool = False) -> tuple[str, str]:
    """Title and body of a FIRING notification (``repeat``: it is still firing)."""
    title = f"[FIRING] {rule.name} at {state.place}" + (" (still firing)" if repeat else "")
    body = (
        f"{_what(rule)} at {state.place}: {_amount(rule, state.value)}. "
        f"Rule {rule.name!r}: {rule.describe()}. "
        f"Firing since {london_text(state.firing_since)}; peak {_amount(rule, state.peak)}."
    )
    return title, body


def resolved_message(rule: AlertRule, state: StateRow) -> tuple[str, str]:
    """Title and body of a RESOLVED notification: how long it lasted and the peak."""
    title = f"[RESOLVED] {rule.name} at {state.place}"
    began, ended = state.firing_since, state.since
    lasted = _duration(ended - began) if began is not None and ended is not None else "unknown"
    body = (
        f"{_what(rule)} at {state.place} is back to {_amount(rule, state.value)}. "
        f"Rule {rule.name!r}: {rule.describe()}. "
        f"It fired for {lasted}, from {london_text(began)} to {london_text(ended)}; "
        f"peak {_amount(rule, state.peak)}."
    )
    return title, body


def test_message(channel: str, *, at: float) -> tuple[str, str]:
    """Title and body of a test notification: it says it is a test."""
    return (
        f"[TEST] airq_nb test notification to channel {channel!r}",
        f"This is a test notification from airq_nb, sent at {london_text(at)} to check that "
        f"alert channel {channel!r} works. No alert is firing.",
    )
