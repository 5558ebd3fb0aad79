"""The alerts panel's rule form: one text box per AlertRule field, turned into a rule or an error."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from ..alerts import KINDS, AlertRule

__all__ = ["RULE_FIELDS", "RuleForm"]

#: The AlertRule fields the form edits, in the order shown.
RULE_FIELDS = (
    "name",
    "pollutant",
    "above",
    "location",
    "mean",
    "clear_below",
    "for_hours",
    "repeat_hours",
    "quiet_hours",
    "notify",
    "band",
    "runs",
    "hours",
    "topic",
)
_NUMBERS = {"above", "clear_below", "for_hours", "repeat_hours", "hours"}


def _value(field: str, text: str) -> Any:
    """A box's text as the rule wants it; a bad number goes through so the rule names it."""
    text = text.strip()
    if not text:
        return None
    if field == "notify":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if field == "runs":
        return int(text) if text.isdigit() else text
    if field in _NUMBERS:
        try:
            return float(text)
        except ValueError:
            return text
    return text


class RuleForm(w.VBox):
    """Text boxes for a rule's fields and a kind chooser; :meth:`rule` builds the AlertRule."""

    def __init__(self) -> None:
        self.kind = w.Dropdown(options=list(KINDS), value="air", description="kind")
        self.boxes = {
            field: w.Text(description=field, layout=w.Layout(width="22em")) for field in RULE_FIELDS
        }
        style = {"description_width": "7em"}
        for box in (self.kind, *self.boxes.values()):
            box.style = style
        super().__init__([self.kind, *self.boxes.values()])

    def rule(self) -> AlertRule:
        """The rule the boxes describe; raises InvalidAlertRuleError for a bad value."""
        options = {f: _value(f, box.value) for f, box in self.boxes.items() if f != "name"}
        options = {k: v for k, v in options.items() if v is not None}
        return AlertRule(self.boxes["name"].value.strip(), kind=self.kind.value, **options)

    def show(self, rule: AlertRule | None) -> None:
        """Fill the boxes from ``rule`` (None: empty them for a new rule)."""
        self.kind.value = rule.kind if rule is not None else "air"
        for field, box in self.boxes.items():
            value = getattr(rule, field) if rule is not None else None
            if field == "notify" and value is not None:
                value = ", ".join(value)
            box.value = "" if value is None else str(value)
