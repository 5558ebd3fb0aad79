"""ipywidgets for the queue and the collector's status: see, delete, purge, pause, re-drive.

Imported on demand (``from airq_nb.ui import widgets``), never by ``import airq_nb``. Every piece
of payload or error text is HTML-escaped before it reaches the page, so a message holding
``<script>`` shows as text. Button callbacks call thread-safe APIs only (the store, or the
scheduler's public methods), so they work from whichever thread the kernel runs them on.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .._errors import AirqError
from .._humanize import one_line, span_text
from ._refresh import PeriodicRefresh

if TYPE_CHECKING:
    from ..store._queue import Message
    from ..store._sqlite import Store

__all__ = ["QueueInspector", "StatusPanel"]

_PREVIEW_CHARS = 80
_ERROR_CHARS = 120
_ALL = "(all)"
_TAGS = re.compile(r"<[^>]+>")
_COLUMNS = ("", "id", "topic", "state", "due", "attempts", "last error", "payload")
_GRID_COLUMNS = "28px 56px minmax(90px, 1fr) 70px 160px 80px minmax(140px, 2fr) minmax(160px, 3fr)"


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _clipped(text: str, limit: int) -> str:
    """Escaped text cut to ``limit`` characters, the whole of it in a hover title."""
    return f"<span title='{_escape(text)}'>{_escape(one_line(text, limit))}</span>"


def _due_text(message: Message, now: float) -> str:
    if message.state == "dead":
        return f"dead {span_text(now - (message.dead_at or now))} ago"
    if message.state == "leased":
        left = (message.lease_expires_at or now) - now
        return f"running, lease {span_text(left)} left"
    left = message.deliver_at - now
    due = "due now" if left <= 0 else f"in {span_text(left)}"
    return f"{due} (paused)" if message.paused else due


def _row_texts(message: Message, now: float) -> list[str]:
    """A message's table cells as plain text: id, topic, state, due, attempts, error, payload."""
    if message.corrupt and isinstance(message.value, str):
        preview = message.value  # the raw text of a payload that is not JSON
    else:
        preview = json.dumps(message.value, ensure_ascii=False, sort_keys=True)
    return [
        str(message.id),
        message.topic,
        message.state,
        _due_text(message, now),
        f"{message.attempts}/{message.max_attempts}",
        message.corrupt or message.last_error or "",
        preview,
    ]


def _utc_text(when: Any) -> str:
    """A time (datetime or Unix seconds) as "YYYY-MM-DD HH:MM:SS UTC"; "—" for none."""
    if when is None:
        return "—"
    if isinstance(when, int | float):
        when = datetime.fromtimestamp(when, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class QueueInspector(PeriodicRefresh, w.VBox):
    """The queue as a table with filters, selection and management buttons; refreshes itself.

    ``scheduler`` (optional) adds the schedules table and its run-now / pause / resume buttons;
    queue actions go to the store, which is thread-safe, and then wake the scheduler.
    """

    def __init__(
        self,
        store: Store,
        scheduler: Any = None,
        *,
        limit: int = 50,
        interval: float = 2.0,
        autostart: bool = True,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.limit = limit
        self.interval = interval
        self.selected: set[int] = set()
        # A click may arrive on another thread while the refresh task runs on the loop.
        self._lock = threading.RLock()
        self._row_ids: list[int | None] = []
        self._rows: list[list[w.Widget]] = []
        self._syncing = False

        self.summary = w.HTML()
        self.state_filter = w.Dropdown(
            options=[_ALL, "queued", "leased", "dead"],
            value=_ALL,
            description="state",
            layout=w.Layout(width="180px"),
        )
        self.topic_filter = w.Dropdown(
            options=[_ALL], value=_ALL, description="topic", layout=w.Layout(width="240px")
        )
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.delete_button = w.Button(description="Delete selected", icon="trash")
        self.redrive_button = w.Button(
            description="Re-drive dead",
            icon="repeat",
            tooltip="Send the selected dead letters (or all dead in the filter) back to the queue",
        )
        self.pause_button = w.Button(description="Pause", icon="pause")
        self.purge_button = w.Button(description="Purge…", button_style="warning", icon="eraser")
        self.confirm_text = w.HTML()
        self.confirm_button = w.Button(description="Yes, purge", button_style="danger")
        self.cancel_button = w.Button(description="Cancel")
        self.confirm_box = w.HBox(
            [self.confirm_text, self.confirm_button, self.cancel_button],
            layout=w.Layout(display="none"),
        )
        self.table = w.GridBox(layout=w.Layout(grid_template_columns=_GRID_COLUMNS, width="100%"))
        self.table.add_class("airq-queue-table")
        self.footer = w.HTML()
        self.result = w.HTML()
        self.result.add_class("airq-result")

        self.schedules_table = w.HTML()
        self.schedule_picker = w.Dropdown(options=[], description="schedule")
        self.run_now_button = w.Button(description="Run now", icon="play")
        self.pause_schedule_button = w.Button(description="Pause schedule", icon="pause")
        self.resume_schedule_button = w.Button(description="Resume schedule", icon="play-circle")
        self.schedules_box = w.VBox(
            [
                w.HTML("<b>Schedules</b>"),
                self.schedules_table,
                w.HBox(
                    [
                        self.schedule_picker,
                        self.run_now_button,
                        self.pause_schedule_button,
                        self.resume_schedule_button,
                    ]
                ),
            ]
        )
        self._header = [w.HTML(f"<b>{_escape(name)}</b>") for name in _COLUMNS]

        self.state_filter.observe(self._filter_changed, "value")
        self.topic_filter.observe(self._filter_changed, "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.delete_button.on_click(lambda _: self.delete_selected())
        self.redrive_button.on_click(lambda _: self.redrive())
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.purge_button.on_click(lambda _: self.ask_purge())
        self.confirm_button.on_click(lambda _: self.confirm_purge())
        self.cancel_button.on_click(lambda _: self.cancel_purge())
        self.run_now_button.on_click(lambda _: self.run_schedule_now())
        self.pause_schedule_button.on_click(lambda _: self._schedule_action("pause"))
        self.resume_schedule_button.on_click(lambda _: self._schedule_action("resume"))

        super().__init__(
            [
                self.summary,
                w.HBox([self.state_filter, self.topic_filter, self.refresh_button]),
                w.HBox(
                    [self.delete_button, self.redrive_button, self.pause_button, self.purge_button]
                ),
                self.confirm_box,
                self.result,
                self.table,
                self.footer,
                self.schedules_box,
            ]
        )
        self.add_class("airq-queue-inspector")
        self.refresh()
        if autostart:
            self.start()

    # -- filters and reading --------------------------------------------------------------

    @property
    def state(self) -> str | None:
        """The state filter (None for every state)."""
        return None if self.state_filter.value == _ALL else self.state_filter.value

    @property
    def topic(self) -> str | None:
        """The topic filter (None for every topic)."""
        return None if self.topic_filter.value == _ALL else self.topic_filter.value

    def _filter_changed(self, _change: Any) -> None:
        self.cancel_purge()
        self.refresh()

    @property
    def messages(self) -> list[Message]:
        """The messages the table shows now, in order."""
        return self._messages

    def refresh(self) -> None:
        """Read the queue (and schedules) again and update only the cells that changed."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        queue = self.store.queue
        now = self.store.clock.now()
        counts = queue.counts()
        topics = sorted(counts.by_topic)
        if self.topic is not None and self.topic not in topics:
            topics.append(self.topic)
        options = [_ALL, *sorted(topics)]
        if list(self.topic_filter.options) != options:
            self.topic_filter.options = options
        self._messages = queue.list(state=self.state, topic=self.topic, limit=self.limit)
        self._show_rows(now)
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.by_state.items())) or "empty"
        paused = counts.paused_topics
        paused_text = (
            " · <b>paused:</b> "
            + _escape(", ".join("everything" if t == "*" else t for t in paused))
            if paused
            else ""
        )
        self.summary.value = (
            f"<b>Queue</b> in <code>{_escape(self.store.path)}</code>: "
            f"{counts.total} messages ({_escape(states)}){paused_text}"
        )
        matching = self._matching_count(counts)
        self.footer.value = f"showing {len(self._messages)} of {matching} matching messages" + (
            f" (first {self.limit})" if matching > len(self._messages) else ""
        )
        target_paused = "*" in paused or (self.topic is not None and self.topic in paused)
        self.pause_button.description = "Resume" if target_paused else "Pause"
        self.pause_button.icon = "play" if target_paused else "pause"
        # With everything paused a click resumes everything (see toggle_pause), whatever the
        # topic filter says, so the tooltip must say so too.
        everything = self.topic is None or "*" in paused
        scope = "all topics" if everything else f"topic {self.topic}"
        self.pause_button.tooltip = f"{self.pause_button.description} delivery of {scope}"
        self._show_schedules(now)

    def _matching_count(self, counts: Any) -> int:
        source = counts.by_state if self.topic is None else counts.by_topic.get(self.topic, {})
        if self.state is None:
            return sum(source.values())
        return source.get(self.state, 0)

    def _new_row(self) -> list[w.Widget]:
        box = w.Checkbox(value=False, indent=False, layout=w.Layout(width="24px"))
        box.add_class("airq-select")
        position = len(self._rows)
        box.observe(lambda change: self._toggle(position, change["new"]), "value")
        cells = [w.HTML() for _ in _COLUMNS[1:]]
        for cell in cells:
            cell.add_class("airq-cell")
        return [box, *cells]

    def _toggle(self, position: int, checked: bool) -> None:
        if self._syncing or position >= len(self._row_ids):
            return
        message_id = self._row_ids[position]
        if message_id is None:
            return
        if checked:
            self.selected.add(message_id)
        else:
            self.selected.discard(message_id)

    def _show_rows(self, now: float) -> None:
        while len(self._rows) < len(self._messages):
            self._rows.append(self._new_row())
        self._row_ids = [m.id for m in self._messages]
        self.selected &= {m.id for m in self._messages}
        self._syncing = True
        try:
            for message, (box, *cells) in zip(self._messages, self._rows, strict=False):
                box.value = message.id in self.selected
                *plain, error, preview = _row_texts(message, now)
                texts = [
                    *(_escape(text) for text in plain),
                    _clipped(error, _ERROR_CHARS),
                    f"<code>{_clipped(preview, _PREVIEW_CHARS)}</code>",
                ]
                for cell, text in zip(cells, texts, strict=True):
                    if cell.value != text:
                        cell.value = text
        finally:
            self._syncing = False
        children = tuple(self._header) + tuple(
            cell for row in self._rows[: len(self._messages)] for cell in row
        )
        if self.table.children != children:
            self.table.children = children

    def as_text(self) -> str:
        """The queue and schedules as plain text, for headless runs and logs."""
        self.refresh()
        now = self.store.clock.now()
        lines = [html.unescape(_TAGS.sub("", self.summary.value))]
        for message in self._messages:
            cells = _row_texts(message, now)
            cells[-2] = one_line(cells[-2], _ERROR_CHARS)
            cells[-1] = one_line(cells[-1], _PREVIEW_CHARS)
            lines.append(
                "  ".join(f"{name}={cell}" for name, cell in zip(_COLUMNS[1:], cells, strict=True))
            )
        lines.append(html.unescape(_TAGS.sub("", self.footer.value)))
        if self.scheduler is not None:
            for info in self.scheduler.schedules():
                lines.append(
                    f"schedule {info.name}: topic={info.topic} paused={info.paused} "
                    f"next_run={_utc_text(info.next_run_at)} last_outcome={info.last_outcome or '-'}"
                )
        return "\n".join(lines)

    # -- actions ----------------------------------------------------------------------------

    def _act(self, action: Callable[[], str]) -> None:
        """Run a store or scheduler action, show its result (or error) and refresh."""
        with self._lock:
            try:
                text = action()
            except AirqError as exc:
                self.result.value = f"<span style='color:#b00'>{_escape(exc)}</span>"
            else:
                self.result.value = _escape(text)
                self._wake_scheduler()
            self.refresh()

    def _wake_scheduler(self) -> None:
        # The scheduler notices other connections' commits by itself; ours share its
        # connection, so tell it that the queue changed.
        wake = getattr(self.scheduler, "wake", None)
        if callable(wake):
            wake()

    def delete_selected(self) -> None:
        """Delete the ticked messages."""

        def delete() -> str:
            ids = sorted(self.selected)
            if not ids:
                return "Nothing selected: tick the messages to delete first."
            deleted = 0
            for message_id in ids:
                try:
                    self.store.queue.delete(message_id)
                    deleted += 1
                except AirqError:
                    pass  # delivered or deleted meanwhile: already gone, as asked
                self.selected.discard(message_id)
            return f"Deleted {deleted} message{'s' * (deleted != 1)}."

        self._act(delete)

    def redrive(self) -> None:
        """Re-drive the ticked dead letters, or every dead letter in the topic filter."""

        def redrive() -> str:
            if self.selected:
                # Ticked messages limit the action to them, even when none of them is dead:
                # falling back to "all" would re-drive letters the user did not pick.
                dead = {m.id for m in self._messages if m.state == "dead"}
                chosen = sorted(self.selected & dead)
                if not chosen:
                    return "None of the ticked messages is a dead letter: nothing re-driven."
                for message_id in chosen:
                    self.store.queue.redrive(message_id)
                    self.selected.discard(message_id)
                count = len(chosen)
            else:
                count = self.store.queue.redrive_all(topic=self.topic)
            return f"Re-drove {count} dead letter{'s' * (count != 1)}."

        self._act(redrive)

    def toggle_pause(self) -> None:
        """Pause delivery of the filtered topic (all topics if none), or resume it if paused."""

        def toggle() -> str:
            paused = self.store.queue.paused_topics()
            scope = "all topics" if self.topic is None else f"topic {self.topic}"
            if "*" in paused:
                # Everything is paused: resuming one topic alone would change nothing.
                self.store.queue.resume(None)
                return "Resumed delivery of all topics."
            if self.topic is not None and self.topic in paused:
                self.store.queue.resume(self.topic)
                return f"Resumed delivery of {scope}."
            self.store.queue.pause(self.topic)
            return f"Paused delivery of {scope}."

        self._act(toggle)

    def _purge_scope(self) -> str:
        parts = [f"{self.state} " if self.state else "", "messages"]
        if self.topic is not None:
            parts.append(f" in topic {self.topic}")
        return "".join(parts)

    def ask_purge(self) -> None:
        """First step of a purge: show what would go and ask for confirmation."""
        count = self._matching_count(self.store.queue.counts())
        self.confirm_text.value = (
            f"<b>Purge {count} {_escape(self._purge_scope())}?</b> This cannot be undone."
        )
        self.confirm_box.layout.display = "flex"

    def cancel_purge(self) -> None:
        """Close the confirmation without purging."""
        self.confirm_box.layout.display = "none"

    @property
    def confirming(self) -> bool:
        """Whether the purge confirmation is showing."""
        return self.confirm_box.layout.display != "none"

    def confirm_purge(self) -> None:
        """Second step of a purge: delete every message the filters match."""
        if not self.confirming:
            return
        self.cancel_purge()

        def purge() -> str:
            count = self.store.queue.purge(state=self.state, topic=self.topic)
            return f"Purged {count} {self._purge_scope()}."

        self._act(purge)

    # -- schedules --------------------------------------------------------------------------

    def _show_schedules(self, now: float) -> None:
        if self.scheduler is None:
            self.schedules_box.layout.display = "none"
            return
        self.schedules_box.layout.display = "flex"
        schedules = list(self.scheduler.schedules())
        names = [s.name for s in schedules]
        if list(self.schedule_picker.options) != names:
            picked = self.schedule_picker.value
            self.schedule_picker.options = names
            self.schedule_picker.value = picked if picked in names else (names or [None])[0]
        head = ("name", "when", "topic", "next run", "last run", "last outcome", "last error")
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
                when += " — paused"
            rows.append(
                (
                    info.name,
                    when,
                    info.topic,
                    _utc_text(info.next_run_at),
                    _utc_text(info.last_run_at),
                    info.last_outcome or "—",
                    info.last_error or "",
                )
            )
        cells = "".join(
            "<tr>" + "".join(f"<td>{_clipped(str(v), _ERROR_CHARS)}</td>" for v in row) + "</tr>"
            for row in rows
        )
        header = "".join(f"<th style='text-align:left'>{h}</th>" for h in head)
        empty = "" if rows else f"<tr><td colspan='{len(head)}'>no schedules yet</td></tr>"
        self.schedules_table.value = (
            f"<table class='airq-schedules' style='width:100%'><tr>{header}</tr>"
            f"{cells}{empty}</table>"
        )

    def run_schedule_now(self) -> None:
        """Enqueue one run of the picked schedule now."""
        name = self.schedule_picker.value
        if self.scheduler is None or name is None:
            self.result.value = "No schedule picked."
            return
        self._act(lambda: f"Queued a run of {name} (message {self.scheduler.run_now(name)}).")

    def _schedule_action(self, verb: str) -> None:
        name = self.schedule_picker.value
        if self.scheduler is None or name is None:
            self.result.value = "No schedule picked."
            return
        method = getattr(self.scheduler, f"{verb}_schedule")

        def act() -> str:
            method(name)
            return f"{verb.capitalize()}d schedule {name}."

        self._act(act)

    def _report(self, error: BaseException) -> None:
        self.result.value = f"<span style='color:#b00'>refresh failed: {_escape(error)}</span>"

    def close(self) -> None:
        self.stop()
        super().close()


class StatusPanel(PeriodicRefresh, w.HTML):
    """The collector's status from the database: next delivery, last result, backlog, readings.

    Reads :func:`airq_nb.store_status`, so it works without a scheduler in this kernel.
    """

    def __init__(self, store: Store, *, interval: float = 5.0, autostart: bool = True) -> None:
        super().__init__()
        self.store = store
        self.interval = interval
        self.add_class("airq-status")
        self.refresh()
        if autostart:
            self.start()

    def refresh(self) -> None:
        """Read the status again."""
        from airq_nb import store_status

        from ..collector._readings import readings_summary

        status = store_status(self.store)
        now = self.store.clock.now()
        if status.last_outcome is None:
            last = "none yet"
        else:
            last = _escape(status.last_outcome)
            if status.last_delivery_accuracy_ms is not None:
                last += f" ({status.last_delivery_accuracy_ms:,.0f} ms after it was due)"
        if status.next_due is None:
            next_due = "nothing scheduled"
        else:
            left = status.next_due.timestamp() - now
            next_due = f"{_utc_text(status.next_due)} ({'due now' if left <= 0 else 'in ' + span_text(left)})"
        paused = ", ".join("everything" if t == "*" else t for t in status.paused_topics)
        rows = [
            ("Next delivery due", next_due),
            ("Last delivery", last),
            ("Last error", _clipped(status.last_error or "—", _ERROR_CHARS)),
            (
                "Queue",
                f"{status.backlog} due now, {status.queued} queued, {status.leased} running, "
                f"{status.dead_letters} dead",
            ),
            ("Paused", _escape(paused or "nothing")),
        ]
        summaries = readings_summary(self.store)
        for summary in summaries:
            rows.append(
                (
                    _escape(f"Readings {summary['location']} ({summary['source']})"),
                    f"{summary['hours']} hours, newest {_utc_text(summary['newest'])}, "
                    f"last fetched {_utc_text(summary['last_fetched'])}",
                )
            )
        if not summaries:
            rows.append(("Readings", "no data yet"))
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{v}</td></tr>"
            for k, v in rows
        )
        self.value = f"<b>airq_nb status</b><table>{body}</table>"

    def _report(self, error: BaseException) -> None:
        self.value = f"<span style='color:#b00'>status refresh failed: {_escape(error)}</span>"

    def close(self) -> None:
        self.stop()
        super().close()
