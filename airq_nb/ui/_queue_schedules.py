"""The queue inspector's schedules: their table, and run-now / pause / resume of one of them.

Schedule actions go through the scheduler's public, thread-safe methods; without a
scheduler the part is hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w

from ._queue_view import schedules_html

__all__ = ["ScheduleControls", "button"]


def button(description: str, icon: str, **options: Any) -> w.Button:
    """A button as wide as its label, so no label is ever cut to "Re-dri…"."""
    return w.Button(description=description, icon=icon, layout=w.Layout(width="auto"), **options)


class ScheduleControls:
    """The schedules part of :class:`~airq_nb.ui.widgets.QueueInspector` (a mixin on it)."""

    scheduler: Any
    tz: str

    # Provided by QueueActions, beside this mixin on the inspector.
    _act: Callable[[Callable[[], str]], None]
    _say: Callable[[str], None]

    def _build_schedules(self) -> w.VBox:
        """The schedules table and its picker and buttons, wired to this inspector."""
        self.schedules_table = w.HTML()
        self.schedules_table.add_class("airq-schedules-box")
        self.schedule_picker = w.Dropdown(options=[], description="schedule")
        self.run_now_button = button("Run now", "play")
        self.pause_schedule_button = button("Pause schedule", "pause")
        self.resume_schedule_button = button("Resume schedule", "play-circle")
        self.run_now_button.on_click(lambda _: self.run_schedule_now())
        self.pause_schedule_button.on_click(lambda _: self._schedule_action("pause"))
        self.resume_schedule_button.on_click(lambda _: self._schedule_action("resume"))
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
        return self.schedules_box

    def _schedule_topics(self) -> list[str]:
        if self.scheduler is None:
            return []
        return [info.topic for info in self.scheduler.schedules()]

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
