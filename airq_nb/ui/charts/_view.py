"""One reading of the store for every chart: the window, the series, the zone, read once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from ...store.readings import read_readings
from ._index_bands import IndexChoice, choose_index, frame_coordinates, place_coordinates
from ._series import LEAD, Series, Window, build_series, window
from ._time import check_tz, now_utc

if TYPE_CHECKING:
    from ...store import Store

__all__ = ["ReadingsView", "read_view"]

#: A view built without an index shows the UK DAQI.
DAQI_BY_PLACE = IndexChoice("daqi", "2013", by_place=True)


@dataclass(frozen=True)
class ReadingsView:
    """What the readings charts show, computed apart from drawing so a refresh skips Bokeh."""

    now: pd.Timestamp
    span: Window
    days: float
    tz: str
    location: str | None
    mean: str
    series: list[Series]
    #: The index (and version) the charts place values on.
    index: IndexChoice = DAQI_BY_PLACE

    @property
    def has_data(self) -> bool:
        return any(s.has_data() for s in self.series)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.series)


def read_view(
    data: pd.DataFrame | Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    location: str | None = None,
    source: str | None = None,
    tz: str = "UTC",
    mean: str = "rolling",
    index: str | None = None,
    version: str | None = None,
) -> ReadingsView:
    """The series of ``data`` (a ``read_readings`` DataFrame, or a store to read one from),
    and the index to show them on: ``index`` ("daqi", "epa", "eaqi", "who") and ``version``
    (None: the newest) when given, else the one the series' places expect."""
    check_tz(tz)
    store = None if isinstance(data, pd.DataFrame) else data
    current = now_utc(now, store)
    span = window(current, days)
    if store is None:
        readings = data
    else:
        # More than the window, so its first hour has a whole 24-hour mean.
        since = (span.start - LEAD).to_pydatetime()
        readings = read_readings(store, since=since, location=location, source=source)
    series = build_series(readings, span, location=location, source=source, mean=mean, tz=tz)
    # Where each place is: the readings' own coordinates (when the store returns them), else
    # the collector's schedules.
    coordinates = {**place_coordinates(store), **frame_coordinates(readings)}
    choice = choose_index(
        [s.location for s in series], index=index, version=version, coordinates=coordinates
    )
    return ReadingsView(
        now=current, span=span, days=days, tz=tz, location=location, mean=mean, series=series,
        index=choice,
    )  # fmt: skip
