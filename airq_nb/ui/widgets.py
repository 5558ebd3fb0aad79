"""ipywidgets for the queue and the collector's status: see, delete, purge, pause, re-drive.

Imported on demand (``from airq_nb.ui import widgets``), never by ``import airq_nb``. Every piece
of payload or error text is HTML-escaped before it reaches the page, so a message holding
``<script>`` shows as text. Button callbacks call thread-safe APIs only (the store, or the
scheduler's public methods), so they work from whichever thread the kernel runs them on.
"""

from __future__ import annotations

from ._alerts_panel import AlertsPanel
from ._queue_inspector import QueueInspector
from ._status_panel import StatusPanel

__all__ = ["AlertsPanel", "QueueInspector", "StatusPanel"]
