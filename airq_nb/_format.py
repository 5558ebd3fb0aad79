"""The one way airq_nb turns times, spans and statuses into text, for widgets, charts, CLI, reprs.

Light on purpose (standard library only), so the CLI and the collector can use it without
pulling in drawing libraries. Times are shown in UTC or a named zone such as
``Europe/London``, always with the zone's own abbreviation (UTC, GMT, BST), so a reader
never has to guess which clock a time is on.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import ConfigurationError

__all__ = [
    "NONE",
    "age_text",
    "due_text",
    "lateness_text",
    "one_line",
    "outcome_text",
    "paused_text",
    "rows_text",
    "run_summary_text",
    "span_text",
    "status_rows",
    "store_name",
    "store_text",
    "time_text",
    "zone",
]

#: What an absent time or value is shown as.
NONE = "—"


def zone(tz: str | tzinfo | None) -> tzinfo:
    """The zone named ``tz`` ("UTC", "Europe/London", any IANA name); None means UTC.

    Raises :class:`ConfigurationError` naming the accepted form for an unknown name.
    """
    if tz is None or tz == "UTC":
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {tz!r}: use 'UTC' or an IANA name such as 'Europe/London'"
        ) from None


def _as_datetime(when: Any) -> datetime:
    if isinstance(when, int | float):
        return datetime.fromtimestamp(when, UTC)
    if isinstance(when, datetime):
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    # pandas Timestamps are datetimes; anything else with to_pydatetime() is one too.
    return when.to_pydatetime(warn=False)


def time_text(when: Any, *, tz: str | tzinfo | None = "UTC", seconds: bool = False) -> str:
    """A time (datetime, pandas Timestamp or Unix seconds) as "2024-05-01 14:00 BST".

    ``tz`` is "UTC", an IANA name such as "Europe/London", or "local" (the machine's zone).
    Naive datetimes are taken as UTC. ``seconds`` adds ":SS". None shows as "—".
    """
    if when is None:
        return NONE
    moment = _as_datetime(when)
    # "local": the machine's zone at that moment (so GMT in winter, BST in summer).
    local = moment.astimezone() if tz == "local" else moment.astimezone(zone(tz))
    stamp = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{stamp} {local.tzname()}"


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


def _unix(when: Any) -> float:
    return float(when) if isinstance(when, int | float) else _as_datetime(when).timestamp()


def age_text(when: Any, now: float) -> str:
    """How long ago ``when`` was, relative to ``now`` (Unix seconds): "5 min ago", "in 2.0 h"."""
    if when is None:
        return NONE
    delta = now - _unix(when)
    if abs(delta) < 1:
        return "just now"
    return f"{span_text(delta)} ago" if delta > 0 else f"in {span_text(delta)}"


def due_text(when: Any, now: float) -> str:
    """When something is due, relative to ``now``: "in 5 min", "due now", "overdue by 2.0 h"."""
    if when is None:
        return NONE
    left = _unix(when) - now
    if left >= 1:
        return f"in {span_text(left)}"
    # A minute of slack: a run is normally picked up within a second of its slot.
    return "due now" if left > -60 else f"overdue by {span_text(left)}"


def one_line(text: object, limit: int) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit`` characters
    with a closing "…" when longer, so a table cell or log line stays one short line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_OUTCOMES = {
    "ok": "ok",
    "retry": "failed, will be retried",
    "dead": "failed, now a dead letter",
    "released": "handed back unfinished (scheduler stopped)",
    "lost": "lease lost (another consumer took it over)",
    "error": "schedule broken",
}


def outcome_text(outcome: str | None) -> str:
    """A delivery outcome ("ok", "retry", "dead", ...) in words; "none yet" for None."""
    if outcome is None:
        return "none yet"
    return _OUTCOMES.get(outcome, outcome)


def paused_text(paused_topics: tuple[str, ...]) -> str:
    """Paused topics as words: "nothing", "all topics", or the names."""
    if not paused_topics:
        return "nothing"
    if "*" in paused_topics:
        return "all topics"
    return ", ".join(paused_topics)


def store_text(store: Any) -> str:
    """Where ``store`` lives, in full: its file, or its PostgreSQL URL (no password) and schema."""
    path = getattr(store, "path", None)
    if path is not None:
        return str(path)
    return f"{store.where} schema={store.schema}"


def store_name(store: Any) -> str:
    """A short name for ``store`` in a heading: the file's name, or the PostgreSQL schema."""
    path = getattr(store, "path", None)
    if path is not None:
        return Path(path).name
    return f"{store.schema} (PostgreSQL)"


def lateness_text(milliseconds: float) -> str:
    """How late a delivery started: "3 ms late", "1.2 s late", "5 min late"; "early" below 0."""
    if milliseconds < 0:
        return f"{abs(milliseconds):.0f} ms early"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms late"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f} s late"
    return f"{span_text(milliseconds / 1000)} late"


def rows_text(rows: list[tuple[str, str]], *, indent: str = "") -> str:
    """(label, text) rows as aligned "label: text" lines, for ``str()`` and the CLI."""
    if not rows:
        return ""
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"{indent}{label + ':':<{width}} {text}" for label, text in rows)


def _when_text(when: Any, now: float, tz: str | tzinfo | None, *, none: str) -> str:
    if when is None:
        return none
    return f"{time_text(when, tz=tz)} ({due_text(when, now)})"


def status_rows(
    status: Any, *, now: float, tz: str | tzinfo | None = "UTC"
) -> list[tuple[str, str]]:
    """The store-wide status (:class:`~airq_nb.Status`) as (label, text) rows.

    Every topic and dead letter of the store; the collector's own view is
    :class:`~airq_nb.CollectorStatus`. ``now`` (Unix seconds) makes "in 5 min" relative.
    """
    last = outcome_text(status.last_outcome)
    if status.last_delivery_accuracy_ms is not None:
        last += f" ({lateness_text(status.last_delivery_accuracy_ms)})"
    rows = [
        ("Next due", _when_text(status.next_due, now, tz, none="nothing scheduled")),
        ("Last delivery", last),
    ]
    if status.last_error and status.last_outcome != "ok":
        rows.append(("Error", one_line(status.last_error, 200)))
    rows.append(
        (
            "Backlog",
            f"{status.backlog} due, {status.queued} queued, {status.leased} leased, "
            f"{status.dead_letters} dead letters",
        )
    )
    rows.append(("Paused", paused_text(status.paused_topics)))
    if status.running or status.in_flight:
        topics = ", ".join(status.topics) or "none"
        rows.append(("Scheduler", f"running, {status.in_flight} in flight; topics {topics}"))
    if status.stuck_handlers:
        rows.append(("Stuck handlers", f"{status.stuck_handlers} past their timeout"))
    if status.runtime_error:
        rows.append(("Runtime error", one_line(status.runtime_error, 200)))
    return rows


def run_summary_text(summary: Any, *, now: float, tz: str | tzinfo | None = "UTC") -> str:
    """What one ``run_until_idle`` did (:class:`~airq_nb.RunSummary`), on one line."""
    parts = [
        f"delivered {summary.delivered}, failed {summary.failed}, "
        f"dead-lettered {summary.dead_lettered}"
    ]
    extra = [
        f"{count} {what}"
        for count, what in (
            (summary.lost, "lost"),
            (summary.released, "handed back"),
        )
        if count
    ]
    if extra:
        parts.append(", ".join(extra))
    parts.append(f"next due {_when_text(summary.next_due, now, tz, none='not planned')}")
    if summary.timed_out:
        parts.append("stopped at the timeout")
    return "; ".join(parts)
