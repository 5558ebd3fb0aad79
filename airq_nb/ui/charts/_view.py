"""One reading of the store for every chart: the window, the series, the zone, read once."""

from __future__ import annotations

from dataclasses import dataclass, field
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

_NO_PERIODS = pd.DataFrame(
    {
        "rule": pd.Series(dtype=object),
        "place": pd.Series(dtype=object),
        "start": pd.Series(dtype="datetime64[ns, UTC]"),
        "end": pd.Series(dtype="datetime64[ns, UTC]"),
        "peak": pd.Series(dtype="float64"),
    }
)

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
    #: When alert rules were firing for the shown places (``airq_nb.alert_periods``).
    alerts: pd.DataFrame = field(default_factory=lambda: _NO_PERIODS.copy())
    #: Whether the store has any alert rule (else no shading or legend entry is drawn).
    has_alert_rules: bool = False

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
    alerts, has_rules = _alert_periods(store, location, span.start)
    return ReadingsView(
        now=current, span=span, days=days, tz=tz, location=location, mean=mean, series=series,
        index=choice, alerts=alerts, has_alert_rules=has_rules,
    )  # fmt: skip


def _alert_periods(
    store: Store | None, location: str | None, since: pd.Timestamp
) -> tuple[pd.DataFrame, bool]:
    """The firing periods that reach into the window (of ``location`` when given), and
    whether the store has alert rules at all."""
    if store is None:
        return _NO_PERIODS.copy(), False
    from ...alerts import alert_periods, alert_rules

    if not alert_rules(store):
        return _NO_PERIODS.copy(), False
    periods = alert_periods(store)
    if periods.empty:
        return periods, True
    keep = periods["end"].isna() | (periods["end"] > since)
    if location is not None:
        keep &= periods["place"] == location
    return periods[keep].reset_index(drop=True), True
