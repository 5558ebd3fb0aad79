"""ipywidgets for the queue and the collector's status: see, delete, purge, pause, re-drive.

Imported on demand (``from airq_nb.ui import widgets``), never by ``import airq_nb``. Every piece
of payload or error text is HTML-escaped before it reaches the page, so a message holding
``<script>`` shows as text. Button callbacks call thread-safe APIs only (the store, or the
scheduler's public methods), so they work from whichever thread the kernel runs them on.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .._errors import AirqError
from .._format import (
    age_text,
    due_text,
    outcome_text,
    paused_text,
    store_name,
    store_text,
    time_text,
    zone,
)
from ._queue_view import (
    COLUMNS,
    GRID_COLUMNS,
    STYLE,
    as_text_cells,
    clipped,
    csv_link,
    escape,
    payload_html,
    row_html,
    schedules_html,
)
from ._refresh import PeriodicRefresh
from ._status_panel import StatusPanel

if TYPE_CHECKING:
    from ..store._queue import Message
    from ..store._sqlite import Store

__all__ = ["QueueInspector", "StatusPanel"]

_ALL = "(all)"
#: The pause selector's value for "every topic" (the store's own word for it).
_EVERY_TOPIC = "*"
_TAGS = re.compile(r"<[^>]+>")
#: An action's result line stays this long, then the next refresh clears it.
_RESULT_SECONDS = 20.0


def _button(description: str, icon: str, **options: Any) -> w.Button:
    # Width "auto": the label decides the width, so no label is ever cut to "Re-dri…".
    return w.Button(description=description, icon=icon, layout=w.Layout(width="auto"), **options)


class QueueInspector(PeriodicRefresh, w.VBox):
    """The queue as a table with filters, selection and management buttons; refreshes itself.

    ``scheduler`` (optional) adds the schedules table and its run-now / pause / resume buttons;
    queue actions go to the store, which is thread-safe, and then wake the scheduler. ``tz``
    is the zone times are shown in ("UTC" or e.g. "Europe/London").
    """

    def __init__(
        self,
        store: Store,
        scheduler: Any = None,
        *,
        limit: int = 50,
        interval: float = 2.0,
        tz: str = "UTC",
        autostart: bool = True,
    ) -> None:
        zone(tz)  # an unknown zone fails here, not at every refresh
        self.store = store
        self.scheduler = scheduler
        self.limit = limit
        self.interval = interval
        self.tz = tz
        self.selected: set[int] = set()
        # A click may arrive on another thread while the refresh task runs on the loop.
        self._lock = threading.RLock()
        self._row_ids: list[int | None] = []
        self._rows: list[list[w.Widget]] = []
        self._messages: list[Message] = []
        self._syncing = False
        self._result_at: float | None = None

        self.summary = w.HTML()
        self.store_line = w.HTML()
        self.store_line.add_class("airq-store-status")
        self.state_filter = w.Dropdown(
            options=[_ALL, "queued", "leased", "dead"],
            value=_ALL,
            description="state",
            layout=w.Layout(width="180px"),
        )
        self.topic_filter = w.Dropdown(
            options=[_ALL], value=_ALL, description="topic", layout=w.Layout(width="240px")
        )
        self.refresh_button = _button("Refresh", "refresh")
        self.delete_button = _button("Delete selected", "trash")
        self.redrive_button = _button(
            "Re-drive dead",
            "repeat",
            tooltip="Send the selected dead letters (or all dead in the filter) back to the queue",
        )
        self.view_button = _button(
            "View payload", "eye", tooltip="Show the whole payload of the ticked messages"
        )
        self.purge_button = _button("Purge…", "eraser", button_style="warning")
        self.pause_scope = w.Dropdown(
            options=[("all topics", _EVERY_TOPIC)],
            value=_EVERY_TOPIC,
            description="pause",
            layout=w.Layout(width="240px"),
        )
        self.pause_button = _button("Pause all topics", "pause")
        self.confirm_text = w.HTML()
        self.confirm_button = _button("Yes, purge", "check", button_style="danger")
        self.cancel_button = _button("Cancel", "times")
        self.confirm_box = w.HBox(
            [self.confirm_text, self.confirm_button, self.cancel_button],
            layout=w.Layout(display="none"),
        )
        self.select_all = w.Checkbox(value=False, indent=False, layout=w.Layout(width="24px"))
        self.select_all.add_class("airq-select-all")
        self.table = w.GridBox(layout=w.Layout(grid_template_columns=GRID_COLUMNS, width="100%"))
        self.table.add_class("airq-queue-table")
        self.table_box = w.Box([self.table], layout=w.Layout(width="100%"))
        self.table_box.add_class("airq-table-box")
        self.footer = w.HTML()
        self.export = w.HTML()
        self.payload = w.HTML()
        self.result = w.HTML()
        self.result.add_class("airq-result")

        self.schedules_table = w.HTML()
        self.schedules_table.add_class("airq-schedules-box")
        self.schedule_picker = w.Dropdown(options=[], description="schedule")
        self.run_now_button = _button("Run now", "play")
        self.pause_schedule_button = _button("Pause schedule", "pause")
        self.resume_schedule_button = _button("Resume schedule", "play-circle")
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
        self._header = [self.select_all] + [
            w.HTML(f"<span class='airq-head'>{escape(name)}</span>") for name in COLUMNS[1:]
        ]

        self.state_filter.observe(self._filter_changed, "value")
        self.topic_filter.observe(self._filter_changed, "value")
        self.pause_scope.observe(lambda _: self._show_pause(), "value")
        self.select_all.observe(self._select_all_changed, "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.delete_button.on_click(lambda _: self.delete_selected())
        self.redrive_button.on_click(lambda _: self.redrive())
        self.view_button.on_click(lambda _: self.view_payload())
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.purge_button.on_click(lambda _: self.ask_purge())
        self.confirm_button.on_click(lambda _: self.confirm_purge())
        self.cancel_button.on_click(lambda _: self.cancel_purge())
        self.run_now_button.on_click(lambda _: self.run_schedule_now())
        self.pause_schedule_button.on_click(lambda _: self._schedule_action("pause"))
        self.resume_schedule_button.on_click(lambda _: self._schedule_action("resume"))

        super().__init__(
            [
                w.HTML(STYLE),
                self.summary,
                self.store_line,
                w.HBox([self.state_filter, self.topic_filter, self.refresh_button]),
                w.HBox(
                    [self.delete_button, self.redrive_button, self.view_button, self.purge_button]
                ),
                w.HBox([self.pause_scope, self.pause_button]),
                self.confirm_box,
                self.result,
                self.table_box,
                w.HBox(
                    [self.footer, self.export], layout=w.Layout(justify_content="space-between")
                ),
                self.payload,
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

    @property
    def pause_topic(self) -> str | None:
        """The topic the pause button acts on (None: every topic)."""
        value = self.pause_scope.value
        return None if value in (None, _EVERY_TOPIC) else value

    def _filter_changed(self, change: Any) -> None:
        self.cancel_purge()
        self._clear_result()
        if change["owner"] is self.topic_filter:
            # Filtering to a topic offers to pause that topic; "(all)" offers every topic.
            self.pause_scope.value = _EVERY_TOPIC if self.topic is None else self.topic
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
        if self._result_at is not None and now - self._result_at > _RESULT_SECONDS:
            self._clear_result()
        counts = queue.counts()
        topics = sorted(counts.by_topic)
        if self.topic is not None and self.topic not in topics:
            topics.append(self.topic)
        options = [_ALL, *sorted(topics)]
        if list(self.topic_filter.options) != options:
            self.topic_filter.options = options
        # Every topic a user may want to pause or resume: with messages, with a schedule,
        # or paused already (so a paused topic can be resumed after its messages are gone).
        paused_now = {t for t in counts.paused_topics if t != _EVERY_TOPIC}
        self._update_pause_options(sorted({*topics, *self._schedule_topics(), *paused_now}))
        self._messages = queue.list(state=self.state, topic=self.topic, limit=self.limit)
        self._show_rows(now)
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.by_state.items())) or "empty"
        paused = counts.paused_topics
        paused_part = f" · <b>paused:</b> {escape(paused_text(paused))}" if paused else ""
        self.summary.value = (
            f"<div class='airq-text'><b>Queue</b> in <code title='{escape(store_text(self.store))}'>"
            f"{escape(store_name(self.store))}</code>: {counts.total} messages ({escape(states)}){paused_part}"
            "</div>"
        )
        self.store_line.value = f"<div class='airq-text'>{self._store_status_html(now)}</div>"
        matching = self._matching_count(counts)
        self.footer.value = f"showing {len(self._messages)} of {matching} matching messages" + (
            f" (first {self.limit})" if matching > len(self._messages) else ""
        )
        link = csv_link(self._messages, tz=self.tz) if self._messages else ""
        if self.export.value != link:
            self.export.value = link
        self._show_pause(paused)
        self._show_schedules(now, paused)

    def _store_status_html(self, now: float) -> str:
        """The store-wide status in one line: next due, the last delivery with its time."""
        from ..scheduling.delivery_log import read_delivery_log
        from ..scheduling.status import store_status

        status = store_status(self.store)
        log = read_delivery_log(self.store, limit=1)
        next_due = (
            "nothing scheduled"
            if status.next_due is None
            else f"{time_text(status.next_due, tz=self.tz)} ({due_text(status.next_due, now)})"
        )
        parts = [f"next delivery due: {next_due}"]
        if len(log):
            last = log.iloc[-1]
            finished = last["finished_at"].to_pydatetime(warn=False)
            text = (
                f"last delivery: {outcome_text(last['outcome'])} ({last['topic']}) at "
                f"{time_text(finished, tz=self.tz)} ({age_text(finished, now)})"
            )
            parts.append(clipped(text, 160))
            if isinstance(last["error"], str):
                parts.append(clipped(f"error: {last['error']}", 60))
        else:
            parts.append("last delivery: none yet")
        parts[0] = escape(parts[0])
        return " · ".join(parts)

    def _schedule_topics(self) -> list[str]:
        if self.scheduler is None:
            return []
        return [info.topic for info in self.scheduler.schedules()]

    def _update_pause_options(self, topics: list[str]) -> None:
        options = [("all topics", _EVERY_TOPIC), *((f"topic {t}", t) for t in topics)]
        if self.pause_topic is not None and self.pause_topic not in topics:
            options.append((f"topic {self.pause_topic}", self.pause_topic))
        if list(self.pause_scope.options) != options:
            picked = self.pause_scope.value
            self.pause_scope.options = options
            self.pause_scope.value = picked if picked in dict(options).values() else _EVERY_TOPIC

    def _show_pause(self, paused: tuple[str, ...] | None = None) -> None:
        """Label the pause button with what a click does and to which topics."""
        if paused is None:
            paused = self.store.queue.paused_topics()
        topic = self.pause_topic
        if "*" in paused:
            # Everything is paused: a click resumes everything (see toggle_pause).
            label = "Resume all topics"
        elif topic is None:
            label = "Pause all topics"
        else:
            label = f"{'Resume' if topic in paused else 'Pause'} topic {topic}"
        self.pause_button.description = label
        self.pause_button.icon = "play" if label.startswith("Resume") else "pause"
        self.pause_button.tooltip = f"{label.replace(' ', ' delivery of ', 1)}"

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
        cells = [w.HTML() for _ in COLUMNS[1:]]
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
        self._sync_select_all()

    def _select_all_changed(self, change: Any) -> None:
        if self._syncing:
            return
        with self._lock:
            listed = {m.id for m in self._messages}
            self.selected = set(listed) if change["new"] else set()
            self._syncing = True
            try:
                for message, row in zip(self._messages, self._rows, strict=False):
                    row[0].value = message.id in self.selected
            finally:
                self._syncing = False

    def _sync_select_all(self) -> None:
        everything = bool(self._messages) and self.selected >= {m.id for m in self._messages}
        if self.select_all.value != everything:
            self._syncing = True
            try:
                self.select_all.value = everything
            finally:
                self._syncing = False

    def _show_rows(self, now: float) -> None:
        while len(self._rows) < len(self._messages):
            self._rows.append(self._new_row())
        self._row_ids = [m.id for m in self._messages]
        self.selected &= {m.id for m in self._messages}
        self._syncing = True
        try:
            for message, (box, *cells) in zip(self._messages, self._rows, strict=False):
                box.value = message.id in self.selected
                for cell, text in zip(cells, row_html(message, now, tz=self.tz), strict=True):
                    if cell.value != text:
                        cell.value = text
        finally:
            self._syncing = False
        self._sync_select_all()
        children = tuple(self._header) + tuple(
            cell for row in self._rows[: len(self._messages)] for cell in row
        )
        if self.table.children != children:
            self.table.children = children

    def as_text(self) -> str:
        """The queue and schedules as plain text, for headless runs and logs."""
        self.refresh()
        now = self.store.clock.now()
        lines = [
            html.unescape(_TAGS.sub("", self.summary.value)),
            html.unescape(_TAGS.sub("", self.store_line.value)),
        ]
        for message in self._messages:
            cells = as_text_cells(message, now)
            lines.append(
                "  ".join(f"{name}={cell}" for name, cell in zip(COLUMNS[1:], cells, strict=True))
            )
        lines.append(html.unescape(_TAGS.sub("", self.footer.value)))
        if self.scheduler is not None:
            for info in self.scheduler.schedules():
                lines.append(
                    f"schedule {info.name}: topic={info.topic} paused={info.paused} "
                    f"next_run={time_text(info.next_run_at, tz=self.tz)} "
                    f"last_outcome={info.last_outcome or '-'}"
                )
        return "\n".join(lines)

    # -- actions ----------------------------------------------------------------------------

    def _clear_result(self) -> None:
        self.result.value = ""
        self._result_at = None

    def _say(self, text_html: str) -> None:
        self.result.value = text_html
        self._result_at = self.store.clock.now()

    def _act(self, action: Callable[[], str]) -> None:
        """Run a store or scheduler action, show its result (or error) and refresh."""
        with self._lock:
            self._clear_result()
            try:
                text = action()
            except AirqError as exc:
                self._say(f"<span style='color:#b00'>{escape(exc)}</span>")
            else:
                self._say(escape(text))
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

    def view_payload(self) -> None:
        """Show the whole payload of the ticked messages (at most five) below the table."""
        with self._lock:
            chosen = [m for m in self._messages if m.id in self.selected][:5]
            if not chosen:
                self.payload.value = ""
                self._say("Nothing selected: tick a message to see its whole payload.")
                return
            self._clear_result()
            self.payload.value = payload_html(chosen, tz=self.tz)

    def toggle_pause(self) -> None:
        """Pause delivery of the topic in the pause selector (all topics), or resume it."""

        def toggle() -> str:
            paused = self.store.queue.paused_topics()
            topic = self.pause_topic
            scope = "all topics" if topic is None else f"topic {topic}"
            if "*" in paused:
                # Everything is paused: resuming one topic alone would change nothing.
                self.store.queue.resume(None)
                return "Resumed delivery of all topics."
            if topic is not None and topic in paused:
                self.store.queue.resume(topic)
                return f"Resumed delivery of {scope}."
            self.store.queue.pause(topic)
            return f"Paused delivery of {scope}."

        self._act(toggle)

    def _purge_scope(self) -> str:
        parts = [f"{self.state} " if self.state else "", "messages"]
        if self.topic is not None:
            parts.append(f" in topic {self.topic}")
        return "".join(parts)

    def ask_purge(self) -> None:
        """First step of a purge: show what would go and ask for confirmation."""
        self._clear_result()
        count = self._matching_count(self.store.queue.counts())
        self.confirm_text.value = (
            f"<b>Purge {count} {escape(self._purge_scope())}?</b> This cannot be undone."
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

    def _show_schedules(self, now: float, paused_topics: tuple[str, ...]) -> None:
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
        html_table = schedules_html(schedules, paused_topics, now=now, tz=self.tz)
        if self.schedules_table.value != html_table:
            self.schedules_table.value = html_table

    def run_schedule_now(self) -> None:
        """Enqueue one run of the picked schedule now."""
        name = self.schedule_picker.value
        if self.scheduler is None or name is None:
            self._say("No schedule picked.")
            return
        self._act(lambda: f"Queued a run of {name} (message {self.scheduler.run_now(name)}).")

    def _schedule_action(self, verb: str) -> None:
        name = self.schedule_picker.value
        if self.scheduler is None or name is None:
            self._say("No schedule picked.")
            return
        method = getattr(self.scheduler, f"{verb}_schedule")

        def act() -> str:
            method(name)
            return f"{verb.capitalize()}d schedule {name}."

        self._act(act)

    def _report(self, error: BaseException) -> None:
        self._say(f"<span style='color:#b00'>refresh failed: {escape(error)}</span>")

    def close(self) -> None:
        self.stop()
        super().close()
