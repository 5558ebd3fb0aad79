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
    from ..alerts import AlertRule
    from ..store import Store

__all__ = ["AlertsPanel"]

_CELL = "text-align:left;padding-right:1em;white-space:nowrap"
# What the rule watches comes last: it is long, and the table scrolls sideways.
_RULE_HEAD = ["Rule", "Place", "State", "Since", "Last notification", "What"]
_HISTORY_HEAD = ["At", "Rule", "Place", "Event", "Channel", "Value", "Detail"]


def _text(value: object) -> str:
    """A history cell as text: "" for a missing one (None, or pandas' NaN)."""
    return "" if value is None or value != value else str(value)


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
        # Re-entrant: a refresh under a button's lock changes the rule menu, which calls edit.
        self._lock = threading.RLock()
        self._renaming_menu = False
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
        # The form is long: folded away until someone adds or edits a rule.
        self.editor = w.Accordion(
            children=[
                w.VBox(
                    [w.HBox([self.edit_choice, self.save_button, self.delete_button]), self.form]
                )
            ],
            titles=("Add, edit or delete a rule",),
        )
        self.editor.selected_index = None
        super().__init__(
            [
                self.rules_html,
                self.editor,
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

    def _rule_rows(self) -> tuple[list[AlertRule], list[list[str]]]:
        """The rules, and one row per (rule, place) state: a rule with none yet shows ok."""
        from ..alerts import alert_rules, alert_states

        rules = alert_rules(self.store)
        states = alert_states(self.store)
        rows = []
        for rule in rules:
            mine = [s for s in states if s.rule == rule.name]
            for state in mine or [None]:
                rows.append(
                    [
                        rule.name,
                        state.place if state else NONE,
                        state.state if state else "ok",
                        time_text(state.since, tz=self.tz) if state else NONE,
                        (
                            f"{state.last_notification} "
                            f"{time_text(state.last_notified_at, tz=self.tz)}"
                            if state and state.last_notification
                            else NONE
                        ),
                        rule.describe(),
                    ]
                )
        return rules, rows

    def _history_rows(self) -> list[list[str]]:
        from ..alerts import alert_history

        history = alert_history(self.store).tail(self.history_limit)
        return [
            [
                time_text(r.at, tz=self.tz),
                r.rule,
                _text(r.place) or NONE,
                r.event,
                _text(r.channel) or NONE,
                NONE if r.value is None or r.value != r.value else f"{r.value:g}",
                _text(r.detail),
            ]
            for r in history.itertuples()
        ]

    def refresh(self) -> None:
        """Read the rules, states, channels and history again."""
        from ..alerts import alert_channels

        rules, rows = self._rule_rows()
        self.rules_html.value = "<b>Alert rules</b>" + _table(_RULE_HEAD, rows)
        names = ["", *(r.name for r in rules)]
        if list(self.edit_choice.options) != names:
            # New options reset the menu's value: keep the rule being edited chosen, and
            # the form as it is (a change of options is no choice of the user's).
            chosen = self.edit_choice.value
            self._renaming_menu = True
            try:
                self.edit_choice.options = names
                self.edit_choice.value = chosen if chosen in names else ""
            finally:
                self._renaming_menu = False
        channels = alert_channels()
        if [b.description for b in self.test_box.children] != [f"Test {c}" for c in channels]:
            self.test_box.children = [self._test_button(c) for c in channels]
        self.history_html.value = "<b>History</b>" + _table(_HISTORY_HEAD, self._history_rows())

    def as_text(self) -> str:
        """The rules with their states, the channels and the history as plain text, for a
        headless run (papermill) or a log."""
        from ..alerts import alert_channels

        _rules, rows = self._rule_rows()
        lines = [f"{len(_rules)} alert rule(s)"]
        lines += [
            "  " + "  ".join(f"{h.lower()}={c}" for h, c in zip(_RULE_HEAD, row, strict=True))
            for row in rows
        ]
        channels = alert_channels()
        lines.append(
            "channels: " + (", ".join(channels) if channels else "none (set AIRQ_NB_ALERT_<NAME>)")
        )
        history = self._history_rows()
        lines.append(f"history (last {len(history)}):")
        lines += ["  " + "  ".join(c for c in row if c) for row in history]
        return "\n".join(lines)

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

        if self._renaming_menu:
            return
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
            self._renaming_menu = True
            try:  # the menu now names the rule the form shows
                self.edit_choice.value = rule.name
            finally:
                self._renaming_menu = False

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
