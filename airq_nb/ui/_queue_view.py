"""What the queue inspector puts on the page: cell texts, the CSV export, payloads, its CSS.

Plain functions of messages and times, kept apart from the widget wiring in ``widgets.py``.
Everything that reaches the page as HTML is escaped here.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from .._format import NONE, age_text, due_text, one_line, outcome_text, span_text, time_text

if TYPE_CHECKING:
    from ..store.models import Message
    from ..store.schedules import ScheduleInfo

__all__ = [
    "COLUMNS",
    "GRID_COLUMNS",
    "STYLE",
    "as_text_cells",
    "clipped",
    "csv_link",
    "csv_text",
    "escape",
    "payload_html",
    "payload_text",
    "row_html",
    "row_texts",
    "schedules_html",
]

COLUMNS = ("", "id", "topic", "state", "due", "tries", "last error", "payload")
# Fixed tracks for short cells, shares of the rest for the long ones. The minimums add up
# to what a notebook's output area has at 1000 px with the file browser open (~560 px);
# narrower than that, the table scrolls sideways inside its box instead of overlapping.
GRID_COLUMNS = (
    "24px 40px minmax(60px, 1fr) 52px minmax(120px, 1.2fr) 40px "
    "minmax(70px, 1.5fr) minmax(90px, 2fr)"
)
_MIN_WIDTH = "540px"

# One cell never spills into the next: it is clipped with an ellipsis, the whole text in
# its hover title (and the full payload in "View payload").
STYLE = f"""<style>
.airq-queue-inspector .jupyter-button {{ width: auto; min-width: fit-content; }}
.airq-queue-inspector .widget-hbox {{ flex-wrap: wrap; }}
.airq-queue-inspector .airq-text {{ line-height: 1.5; padding: 2px 0; }}
.airq-table-box {{ overflow-x: auto; max-width: 100%; }}
.airq-queue-table {{ min-width: {_MIN_WIDTH}; column-gap: 4px; row-gap: 0; }}
.airq-queue-table > .widget-html {{ min-width: 0; margin: 0; overflow: hidden; }}
.airq-queue-table > .widget-html > .widget-html-content {{
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; line-height: 24px;
}}
.airq-queue-table > .widget-checkbox {{ margin: 0; width: 24px; min-width: 0; }}
.airq-queue-table .airq-head {{ font-weight: bold; }}
.airq-schedules-box {{ overflow-x: auto; max-width: 100%; }}
.airq-schedules {{ border-collapse: collapse; }}
.airq-schedules th, .airq-schedules td {{
  text-align: left; padding: 0 0.8em 0 0; white-space: nowrap; line-height: 1.6;
}}
.airq-payload pre {{
  max-height: 20em; overflow: auto; white-space: pre-wrap; word-break: break-all; margin: 0;
}}
</style>"""

_PREVIEW_CHARS = 80
_ERROR_CHARS = 120


def escape(text: object) -> str:
    """``text`` made safe to put in HTML, quotes included."""
    return html.escape(str(text), quote=True)


def clipped(text: str, limit: int) -> str:
    """Escaped text cut to ``limit`` characters, the whole of it in a hover title."""
    return f"<span title='{escape(text)}'>{escape(one_line(text, limit))}</span>"


def payload_text(message: Message, *, indent: int | None = None) -> str:
    """The payload as JSON text (the raw stored text of a payload that is not JSON)."""
    if message.corrupt and isinstance(message.value, str):
        return message.value
    return json.dumps(message.value, ensure_ascii=False, sort_keys=True, indent=indent)


def _due(message: Message, now: float) -> str:
    if message.state == "dead":
        return f"dead {span_text(now - (message.dead_at or now))} ago"
    if message.state == "leased":
        left = (message.lease_expires_at or now) - now
        return f"running, lease {span_text(left)} left"
    return due_text(message.deliver_at, now)


def row_texts(message: Message, now: float) -> list[str]:
    """A message's table cells as plain text: id, topic, state, due, attempts, error, payload."""
    # A queued message of a paused topic waits for a resume, not for its time: say so where
    # the eye looks for "will it run?" (the stored state is still "queued").
    state = "paused" if message.paused and message.state == "queued" else message.state
    return [
        str(message.id),
        message.topic,
        state,
        _due(message, now),
        f"{message.attempts}/{message.max_attempts}",
        message.corrupt or message.last_error or "",
        payload_text(message),
    ]


def row_html(message: Message, now: float, *, tz: str | tzinfo | None) -> list[str]:
    """The cells as escaped HTML; the due cell's title holds the exact time."""
    *plain, error, preview = row_texts(message, now)
    when = message.dead_at if message.state == "dead" else message.deliver_at
    cells = [f"<span title='{escape(text)}'>{escape(text)}</span>" for text in plain]
    cells[3] = (
        f"<span title='{escape(time_text(when, tz=tz, seconds=True))}'>{escape(plain[3])}</span>"
    )
    return [
        *cells,
        clipped(error, _ERROR_CHARS),
        f"<code>{clipped(preview, _PREVIEW_CHARS)}</code>",
    ]


def as_text_cells(message: Message, now: float) -> list[str]:
    """The cells for a one-line text view: error and payload clipped like the table's."""
    cells = row_texts(message, now)
    cells[-2] = one_line(cells[-2], _ERROR_CHARS)
    cells[-1] = one_line(cells[-1], _PREVIEW_CHARS)
    return cells


def _cell(value: object) -> object:
    # A spreadsheet runs a cell starting with = + - @ as a formula: keep such text as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def csv_text(messages: list[Message], *, tz: str | tzinfo | None = "UTC") -> str:
    """The messages as CSV: one row each, the whole payload as JSON in the last column."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "topic", "state", "deliver_at", "attempts", "max_attempts", "schedule",
         "last_error", "payload"]
    )  # fmt: skip
    for m in messages:
        writer.writerow(
            [
                m.id,
                _cell(m.topic),
                m.state,
                time_text(m.deliver_at, tz=tz, seconds=True),
                m.attempts,
                m.max_attempts,
                _cell(m.schedule or ""),
                _cell(m.corrupt or m.last_error or ""),
                _cell(payload_text(m)),
            ]
        )
    return out.getvalue()


def csv_link(messages: list[Message], *, tz: str | tzinfo | None = "UTC") -> str:
    """A download link holding the CSV itself (a data: URL): no server round-trip needed."""
    data = base64.b64encode(csv_text(messages, tz=tz).encode()).decode("ascii")
    count = len(messages)
    return (
        f"<a class='airq-csv' download='airq-queue.csv' "
        f"href='data:text/csv;charset=utf-8;base64,{data}'>"
        f"Download CSV of the {count} listed message{'s' * (count != 1)}</a>"
    )


def payload_html(messages: list[Message], *, tz: str | tzinfo | None = "UTC") -> str:
    """The full, pretty-printed payload of each message, escaped."""
    parts = []
    for m in messages:
        enqueued = time_text(m.enqueued_at, tz=tz)
        head = (
            f"message {m.id} · {escape(m.topic)} · {m.state} · enqueued "
            f"<span style='white-space:nowrap'>{escape(enqueued)}</span>"
        )
        error = (
            f"<div>last error: {escape(m.corrupt or m.last_error)}</div>"
            if (m.corrupt or m.last_error)
            else ""
        )
        parts.append(
            f"<div><b>{head}</b>{error}<pre>{escape(payload_text(m, indent=2))}</pre></div>"
        )
    return f"<div class='airq-payload'>{''.join(parts) or escape(NONE)}</div>"


def _when(when: Any, relative: str, *, tz: str | tzinfo | None) -> str:
    """``relative`` ("in 25 min") with the exact time in its hover title."""
    return f"<span title='{escape(time_text(when, tz=tz))}'>{escape(relative)}</span>"


def schedules_html(
    schedules: list[ScheduleInfo],
    paused_topics: tuple[str, ...],
    *,
    now: float,
    tz: str | tzinfo | None = "UTC",
) -> str:
    """The schedules as an escaped table: timing, state (paused, or its topic paused), runs."""
    head = ("name", "when", "topic", "state", "next run", "last run", "outcome")
    rows = []
    for info in schedules:
        when = (
            f"every {span_text(info.every.total_seconds())}"
            if info.every is not None
            else f"cron {info.cron}"
        )
        if info.tz and info.tz != "UTC":
            when += f" ({info.tz})"
        if info.paused:
            state = "paused"
        elif "*" in paused_topics or info.topic in paused_topics:
            state = "topic paused"
        else:
            state = "active"
        outcome = outcome_text(info.last_outcome) if info.last_outcome else NONE
        rows.append(
            (
                clipped(info.name, 40),
                escape(when),
                clipped(info.topic, 30),
                f"<b>{state}</b>" if state != "active" else state,
                # Relative times keep the table narrow; the exact time is the title.
                _when(info.next_run_at, due_text(info.next_run_at, now), tz=tz),
                _when(info.last_run_at, age_text(info.last_run_at, now), tz=tz),
                clipped(outcome, 40)
                if not info.last_error
                else f"<span title='{escape(info.last_error)}'>{escape(outcome)} ⓘ</span>",
            )
        )
    cells = "".join(
        "<tr>" + "".join(f"<td>{value}</td>" for value in row) + "</tr>" for row in rows
    )
    header = "".join(f"<th>{h}</th>" for h in head)
    empty = "" if rows else f"<tr><td colspan='{len(head)}'>no schedules yet</td></tr>"
    return f"<table class='airq-schedules'><tr>{header}</tr>{cells}{empty}</table>"
