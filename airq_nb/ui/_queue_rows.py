"""The queue inspector's table: one row of cells per listed message, ticks and "select all".

Rows are widgets made once and reused, and a refresh only rewrites the cells whose HTML
changed, so a table that refreshes every two seconds does not flicker or lose a tick.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ._queue_view import COLUMNS, row_html

if TYPE_CHECKING:
    from ..store.models import Message

__all__ = ["QueueRows"]


class QueueRows:
    """The table part of :class:`~airq_nb.ui.widgets.QueueInspector` (a mixin on it)."""

    tz: str
    selected: set[int]
    select_all: w.Checkbox
    table: w.GridBox
    _lock: threading.RLock
    _row_ids: list[int | None]
    _rows: list[list[w.Widget]]
    _messages: list[Message]
    _syncing: bool
    _header: list[w.Widget]

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
