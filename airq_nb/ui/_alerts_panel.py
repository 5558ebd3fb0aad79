"""The alerts panel: rules with each place's state, a rule form, test buttons, the history."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import ipywidgets as w

from .._errors import AirqError
from .._format import NONE, time_text, zone
from ._alert_form import RuleForm
from ._queue_view import escape
from ._refresh import PeriodicRefresh

if TYPE_CHECKING:
    from ..store._sqlite import Store

__all__ = ["AlertsPanel"]

_CELL = "text-align:left;padding-right:1em;white-space:nowrap"


def _table(head: list[str], rows: list[list[str]]) -> str:
    """An escaped HTML table that scrolls sideways rather than clipping its columns."""
    top = "".join(f"<th style='{_CELL}'>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td style='{_CELL}'>{escape(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<div style='overflow-x:auto'><table><tr>{top}</tr>{body}</table></div>"


class AlertsPanel(PeriodicRefresh, w.VBox):
    """Alert rules and their (rule, place) states, a form to add/edit/delete, test sends, history.

    Channels are the ``AIRQ_NB_ALERT_<NAME>`` variables, shown by name only, never by URL.
    Button callbacks take one lock, so they are safe from whichever thread runs them.
    """

    def __init__(
        self,
        store: Store,
        *,
        tz: str = "UTC",
        history_limit: int = 50,
        interval: float = 10.0,
        autostart: bool = True,
    ) -> None:
        zone(tz)
        self.store = store
        self.tz = tz
        self.history_limit = history_limit
        self.interval = interval
        self._lock = threading.Lock()
        self.rules_html = w.HTML()
        self.history_html = w.HTML()
        self.message = w.HTML()
        self.form = RuleForm()
        self.save_button = w.Button(description="Save rule")
        self.delete_button = w.Button(description="Delete rule")
        self.edit_choice = w.Dropdown(description="edit", options=[""])
        self.save_button.on_click(lambda _b: self.save())
        self.delete_button.on_click(lambda _b: self.delete())
        self.edit_choice.observe(lambda change: self.edit(change["new"]), names="value")
        self.test_box = w.HBox()
        super().__init__(
            [
                self.rules_html,
                w.HBox([self.edit_choice, self.save_button, self.delete_button]),
                self.form,
                self.message,
                self.test_box,
                self.history_html,
            ]
        )
        self.add_class("airq-alerts")
        self.refresh()
        if autostart:
            self.start()

    def _say(self, text: object, *, error: bool = False) -> None:
        colour = "#b00" if error else "#060"
        self.message.value = f"<span style='color:{colour}'>{escape(text)}</span>"

    def refresh(self) -> None:
        """Read the rules, states, channels and history again."""
        from ..alerts import alert_channels, alert_history, alert_rules, alert_states

        rules = alert_rules(self.store)
        states = {(s.rule, s.place): s for s in alert_states(self.store)}
        rows = []
        for rule in rules:
            mine = [s for (name, _p), s in states.items() if name == rule.name]
            for state in mine or [None]:
                rows.append(
                    [
                        rule.name,
                        rule.describe(),
                        state.place if state else NONE,
                        state.state if state else "ok",
                        time_text(state.since, tz=self.tz) if state else NONE,
                        (
                            f"{state.last_notification} "
                            f"{time_text(state.last_notified_at, tz=self.tz)}"
                            if state and state.last_notification
                            else NONE
                        ),
                    ]
                )
        head = ["Rule", "What", "Place", "State", "Since", "Last notification"]
        self.rules_html.value = "<b>Alert rules</b>" + _table(head, rows)
        names = ["", *(r.name for r in rules)]
        if list(self.edit_choice.options) != names:
            self.edit_choice.options = names
        channels = alert_channels()
        if [b.description for b in self.test_box.children] != [f"Test {c}" for c in channels]:
            self.test_box.children = [self._test_button(c) for c in channels]
        history = alert_history(self.store).tail(self.history_limit)
        hist_rows = [
            [
                time_text(r.at, tz=self.tz),
                r.rule,
                r.place or NONE,
                r.event,
                r.channel or NONE,
                NONE if r.value is None or r.value != r.value else f"{r.value:g}",
                r.detail or "",
            ]
            for r in history.itertuples()
        ]
        head = ["At", "Rule", "Place", "Event", "Channel", "Value", "Detail"]
        self.history_html.value = "<b>History</b>" + _table(head, hist_rows)

    def _test_button(self, channel: str) -> w.Button:
        button = w.Button(description=f"Test {channel}")
        button.on_click(lambda _b: self.send_test(channel))
        return button

    def send_test(self, channel: str) -> None:
        """Send a test notification to ``channel`` and show the outcome."""
        from ..alerts import send_test_notification

        with self._lock:
            try:
                send_test_notification(channel, store=self.store)
            except AirqError as error:
                self._say(error, error=True)
            else:
                self._say(f"test notification sent to {channel}")
            self.refresh()

    def edit(self, name: str) -> None:
        """Fill the form from the rule ``name`` ("" empties it for a new rule)."""
        from ..alerts import get_alert_rule

        with self._lock:
            self.form.show(get_alert_rule(self.store, name) if name else None)

    def save(self) -> None:
        """Store the form's rule; a bad value shows its error and stores nothing."""
        from ..alerts import set_alert_rule

        with self._lock:
            try:
                rule = set_alert_rule(self.store, self.form.rule())
            except AirqError as error:
                self._say(error, error=True)
                return
            self._say(f"saved {rule.name}")
            self.refresh()

    def delete(self) -> None:
        """Delete the rule named in the form."""
        from ..alerts import delete_alert_rule

        with self._lock:
            name = self.form.boxes["name"].value.strip()
            try:
                delete_alert_rule(self.store, name)
            except AirqError as error:
                self._say(error, error=True)
                return
            self._say(f"deleted {name}")
            self.refresh()

    def _report(self, error: BaseException) -> None:
        self._say(f"alerts refresh failed: {error}", error=True)

    def close(self) -> None:
        self.stop()
        super().close()
