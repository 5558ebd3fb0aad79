"""The collector's status panel: its own schedule, last and next run, readings and their age."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from .._format import zone
from ._queue_view import escape
from ._refresh import PeriodicRefresh, collector_record_keys

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["StatusPanel"]

_STATUS_HEAD = "text-align:left;padding-right:1em;vertical-align:top;white-space:nowrap"
# Times never break at their hyphens; a narrow output scrolls the table sideways instead.
_STATUS_CELL = "white-space:nowrap"


class StatusPanel(PeriodicRefresh, w.HTML):
    """The collector's own status: its schedule, last and next run, readings and their age.

    Reads :func:`airq_nb.collector_status`, so it works without a scheduler in this kernel,
    and shows nothing of other topics (the queue inspector is the store-wide view).
    ``location`` (a :class:`~airq_nb.Location` or a name) narrows it to that place's
    schedule and readings; ``tz`` is the zone times are shown in ("UTC", "Europe/London").
    It refreshes when a collector run stores readings or fails (``store.watch``), and every
    ``interval`` seconds for the rest (the next run, the ages shown).
    """

    def __init__(
        self,
        store: Store,
        *,
        location: Any = None,
        tz: str = "UTC",
        interval: float = 5.0,
        autostart: bool = True,
    ) -> None:
        super().__init__()
        zone(tz)  # an unknown zone fails here, not at every refresh
        self.store = store
        self.location = location
        self.tz = tz
        self.interval = interval
        self.add_class("airq-status")
        self.refresh()
        if autostart:
            self.start()

    def refresh(self) -> None:
        """Read the status again."""
        from ..collector._status import collector_status

        self.status = collector_status(self.store, location=self.location)
        body = "".join(
            f"<tr><th style='{_STATUS_HEAD}'>{escape(label)}</th>"
            f"<td style='{'' if label == 'Error' else _STATUS_CELL}'>{escape(text)}</td></tr>"
            for label, text in self.status.rows(tz=self.tz)
        )
        place = getattr(self.location, "name", self.location)
        title = "Collector" if place is None else f"Collector for {escape(place)}"
        self.value = (
            f"<div style='line-height:1.5;overflow-x:auto'><b>{title}</b>"
            f"<table class='airq-status-table'>{body}</table></div>"
        )

    def watch_keys(self) -> list[Any]:
        """The collector's records of this panel's series: rewritten by each run that
        stores readings or fails, so the panel refreshes as that happens."""
        return collector_record_keys(self.store, self.location)

    def _report(self, error: BaseException) -> None:
        self.value = f"<span style='color:#b00'>status refresh failed: {escape(error)}</span>"

    def close(self) -> None:
        self.stop()
        super().close()
