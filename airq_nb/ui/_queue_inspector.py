"""``QueueInspector``: the queue as a table with filters, selection and management buttons.

This module lays the inspector out and refreshes it; the table rows (``_queue_rows``),
the buttons' actions (``_queue_actions``) and the schedules part (``_queue_schedules``)
live beside it. Every piece of payload or error text is HTML-escaped before it reaches the
page, so a message holding ``<script>`` shows as text.
"""

from __future__ import annotations

import html
import re
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

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
from ._queue_actions import QueueActions
from ._queue_rows import QueueRows
from ._queue_schedules import ScheduleControls, button
from ._queue_view import (
    COLUMNS,
    GRID_COLUMNS,
    STYLE,
    as_text_cells,
    clipped,
    csv_link,
    escape,
)
from ._refresh import PeriodicRefresh

if TYPE_CHECKING:
    from ..store import Store
    from ..store.models import Message

__all__ = ["QueueInspector"]

_ALL = "(all)"
#: The pause selector's value for "every topic" (the store's own word for it).
_EVERY_TOPIC = "*"
_TAGS = re.compile(r"<[^>]+>")
#: An action's result line stays this long, then the next refresh clears it.
_RESULT_SECONDS = 20.0


class QueueInspector(QueueActions, ScheduleControls, QueueRows, PeriodicRefresh, w.VBox):
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
        self.refresh_button = button("Refresh", "refresh")
        self.delete_button = button("Delete selected", "trash")
        self.redrive_button = button(
            "Re-drive dead",
            "repeat",
            tooltip="Send the selected dead letters (or all dead in the filter) back to the queue",
        )
        self.view_button = button(
            "View payload", "eye", tooltip="Show the whole payload of the ticked messages"
        )
        self.purge_button = button("Purge…", "eraser", button_style="warning")
        self.pause_scope = w.Dropdown(
            options=[("all topics", _EVERY_TOPIC)],
            value=_EVERY_TOPIC,
            description="pause",
            layout=w.Layout(width="240px"),
        )
        self.pause_button = button("Pause all topics", "pause")
        self.confirm_text = w.HTML()
        self.confirm_button = button("Yes, purge", "check", button_style="danger")
        self.cancel_button = button("Cancel", "times")
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

        self._build_schedules()
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

    def _report(self, error: BaseException) -> None:
        self._say(f"<span style='color:#b00'>refresh failed: {escape(error)}</span>")

    def close(self) -> None:
        self.stop()
        super().close()
