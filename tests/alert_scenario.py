"""A scripted air-quality series, served by the fake Open-Meteo and collected hour by hour.

:class:`Air` drives the real path of an alert: the collector's scheduler
(:func:`airq_nb.collect_until_idle`) fetches over loopback from the fake source, stores the
readings, evaluates the rules and sends to the loopback channels, all at a FakeClock's
time. ``air.set(40)`` scripts the current hour, ``air.set(20, hours_ago=1)`` revises an
earlier one, ``air.set(None)`` leaves the hour unpublished; ``air.next_hour(40)`` moves
the clock on an hour, scripts that hour and collects.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import airq_nb

HOUR = 3600


class Air:
    def __init__(self, store: airq_nb.Store, clock: airq_nb.FakeClock, server, *, default=5.0):
        self.store, self.clock, self.server = store, clock, server
        self.values: dict[int, float | None] = {}
        self.default = default
        self.source = airq_nb.OpenMeteoSource(base_url=server.url, timeout=5)

    @property
    def hour(self) -> int:
        return int(self.clock.now() // HOUR * HOUR)

    def set(self, value: float | None, *, hours_ago: int = 0) -> None:
        self.values[self.hour - hours_ago * HOUR] = value

    def _serve(self) -> None:
        self.server.set_data(
            self.hour - 9 * 24 * HOUR,
            self.hour + HOUR,
            pm2_5=lambda h: self.values.get(h, self.default),
            pm10=10.0,
        )

    def collect(self, *, failing_ok: bool = False) -> airq_nb.RunSummary | None:
        """One headless run of the collector's scheduler, as cron or papermill runs it."""
        self._serve()
        try:
            return asyncio.run(
                airq_nb.collect_until_idle(
                    self.store, source=self.source, location=airq_nb.LONDON, timeout=60
                )
            )
        except airq_nb.CollectionFailedError:
            if not failing_ok:
                raise
            return None

    def next_hour(self, value: float | None = ..., *, failing_ok: bool = False) -> None:  # type: ignore[assignment]
        self.clock.advance(HOUR)
        if value is not ...:
            self.set(value)
        self.collect(failing_ok=failing_ok)

    def at(self, when: datetime) -> None:
        """Move the clock to ``when`` (forwards) without collecting."""
        self.clock.set(when)
