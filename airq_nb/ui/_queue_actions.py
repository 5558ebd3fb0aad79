"""The queue inspector's buttons: delete, re-drive, view a payload, pause or resume, purge.

Every action goes to the store (thread-safe, so a click on any thread is fine), shows its
result or its error on the result line, wakes the scheduler and refreshes the table. Purge
takes two clicks: the first says how many messages would go.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .._errors import AirqError
from ._queue_view import escape, payload_html

if TYPE_CHECKING:
    from ..store import Store
    from ..store.models import Message

__all__ = ["QueueActions"]


class QueueActions:
    """The actions of :class:`~airq_nb.ui.widgets.QueueInspector` (a mixin on it)."""

    store: Store
    scheduler: Any
    tz: str
    selected: set[int]
    result: w.HTML
    payload: w.HTML
    confirm_text: w.HTML
    confirm_box: w.HBox
    _lock: threading.RLock
    _messages: list[Message]
    _result_at: float | None
    state: str | None
    topic: str | None
    pause_topic: str | None

    # Provided by the inspector itself.
    refresh: Callable[[], None]
    _matching_count: Callable[[Any], int]

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
