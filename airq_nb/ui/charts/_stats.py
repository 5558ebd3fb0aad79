"""The stats panel: what was fetched, what was delivered, and what is due next, as a table."""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd
from bokeh.models import Div

from ...scheduling.status import store_status
from ...store.readings import read_readings
from ._readings import NO_DATA
from ._time import check_tz, describe, now_utc

if TYPE_CHECKING:
    from ...store import Store

__all__ = ["stats_html", "stats_panel", "stats_rows"]


def stats_rows(
    store: Store, now: pd.Timestamp, *, location: str | None, tz: str = "UTC"
) -> list[tuple[str, str]]:
    """The stats panel's lines as plain text: what was fetched, delivered and is due next."""
    since = (now.floor("h") - pd.Timedelta(days=7) + pd.Timedelta(hours=1)).to_pydatetime()
    readings = read_readings(store, since=since, location=location)
    status = store_status(store)
    last_fetched = newest = None
    if len(readings):
        fetched = pd.to_datetime(readings["fetched_at"], utc=True, errors="coerce")
        last_fetched = fetched.max() if fetched.notna().any() else None
        newest = pd.DatetimeIndex(pd.to_datetime(readings.index, utc=True)).max()
    delivery = "none yet"
    if status.last_outcome is not None:
        delivery = str(status.last_outcome)
        if status.last_delivery_accuracy_ms is not None:
            delivery += f", started {status.last_delivery_accuracy_ms:,.0f} ms after it was due"
    next_due = pd.Timestamp(status.next_due) if status.next_due is not None else None
    return [
        ("Data last fetched", describe(last_fetched, now, tz)),
        ("Newest reading", describe(newest, now, tz) if newest is not None else NO_DATA),
        ("Readings (7 days)", f"{len(readings):,}"),
        ("Last delivery", delivery),
        ("Last error", status.last_error or "none"),
        (
            "Next delivery due",
            describe(next_due, now, tz) if next_due is not None else "nothing due",
        ),
        ("Backlog / dead letters", f"{status.backlog} / {status.dead_letters}"),
    ]


def stats_html(store: Store, now: pd.Timestamp, *, location: str | None, tz: str = "UTC") -> str:
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(name)}</th>"
        f"<td>{html.escape(value)}</td></tr>"
        for name, value in stats_rows(store, now, location=location, tz=tz)
    )
    return f"<table class='airq-stats'>{cells}</table>"


def stats_panel(
    store: Store,
    *,
    now: datetime | float | None = None,
    location: str | None = None,
    tz: str = "UTC",
) -> Div:
    """A small table: data last fetched, last delivery result, next delivery due."""
    text = stats_html(store, now_utc(now, store), location=location, tz=check_tz(tz))
    return Div(text=text, name="stats_panel")
