"""The dashboard (every chart, one above another) and :class:`LiveChart`, which refreshes it."""

from __future__ import annotations

import html
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bokeh.layouts import column
from bokeh.models import Div, LayoutDOM, Range1d

from ...collector._laqn import LAQN_ATTRIBUTION, SOURCE_ATTRIBUTIONS
from .._refresh import PeriodicRefresh, collector_record_keys
from ._daqi_chart import daqi_key_html, draw_daqi, headline_html, today_lines, update_daqi
from ._delivery import (
    OUTCOME_COLORS,
    DeliveryView,
    delivery_chart,
    read_deliveries,
    update_delivery,
)
from ._figures import named
from ._freshness import draw_freshness, freshness_html, freshness_lines, update_freshness
from ._readings import draw_readings, update_readings
from ._series import POLLUTANTS
from ._stats import stats_html, stats_rows
from ._time import check_tz, now_utc
from ._view import ReadingsView, read_view

if TYPE_CHECKING:
    from ...store import Store

__all__ = ["LAQN_ATTRIBUTION", "LiveChart", "dashboard"]


def attributions(view: ReadingsView) -> list[str]:
    """The attribution each shown source asks for (``airq_nb.SOURCE_ATTRIBUTIONS``), once per
    source, each followed by the providers and licences its readings name (OpenAQ's)."""
    known = SOURCE_ATTRIBUTIONS
    lines = []
    for source in sorted({series.source for series in view.series}):
        if source in known:
            lines.append(known[source])
        credits = (c for s in view.series if s.source == source for c in s.credits)
        lines.extend(f"  {credit}" for credit in dict.fromkeys(credits))
    return lines


def _attribution_html(view: ReadingsView) -> str:
    lines = "<br>".join(html.escape(text) for text in attributions(view))
    return f"<p class='airq-attribution' style='font-size:11px;color:#555'>{lines}</p>"


_Home = tuple[Any, Any, "float | None"]
#: The charts a refresh updates in place, by name.
_CHARTS = (
    "readings_chart",
    *(f"daqi_chart:{pollutant}" for pollutant in POLLUTANTS),
    "freshness_chart",
    "delivery_chart",
)


def _children(view: ReadingsView, deliveries: DeliveryView, store: Store) -> list[LayoutDOM]:
    return [
        Div(text=headline_html(view), name="today", sizing_mode="stretch_width"),
        draw_readings(view),
        *(draw_daqi(view, pollutant) for pollutant in POLLUTANTS),
        Div(text=daqi_key_html(view.index), name="daqi_key"),
        draw_freshness(view),
        Div(text=freshness_html(view), name="freshness_text", sizing_mode="stretch_width"),
        delivery_chart(deliveries),
        Div(text=stats_html(store, view.now, location=view.location, tz=view.tz), name="stats_panel"),
        Div(text=_attribution_html(view), name="attribution", visible=bool(attributions(view))),
    ]  # fmt: skip


def dashboard(
    store: Store,
    *,
    days: float = 7,
    now: datetime | float | None = None,
    location: str | None = None,
    tz: str = "UTC",
    mean: str = "rolling",
    index: str | None = None,
    version: str | None = None,
) -> LayoutDOM:
    """Today's band in words, then the hourly readings, the 24-hour means of PM2.5 and PM10
    over the bands of ``index`` (None: by place; see :func:`read_view`), data freshness,
    delivery accuracy and the stats, in one column."""
    view = read_view(
        store, days=days, now=now, location=location, tz=tz, mean=mean, index=index,
        version=version,
    )  # fmt: skip
    deliveries = read_deliveries(store, days=days, now=view.now, tz=tz)
    return column(
        *_children(view, deliveries, store), sizing_mode="stretch_width", name="dashboard"
    )


def _follow(axis_range: Any, old: tuple[Any, Any] | None, new: tuple[Any, Any]) -> None:
    """Move a range to its new home unless the user panned or zoomed it away from the old one;
    either way Reset returns to the new home. Sends only what changed."""
    if not isinstance(axis_range, Range1d):
        return
    moved_by_user = old is not None and (axis_range.start, axis_range.end) != old
    updates = {"reset_start": new[0], "reset_end": new[1]}
    if not moved_by_user:
        updates.update(start=new[0], end=new[1])
    for attr, value in updates.items():
        if getattr(axis_range, attr) != value:
            setattr(axis_range, attr, value)


class LiveChart(PeriodicRefresh):
    """The dashboard as a widget that :meth:`refresh` updates in place, without re-running a cell.

    Display it in a notebook (it renders through jupyter_bokeh's ``BokehModel``), then call
    :meth:`start` to refresh from a task on the kernel's event loop as soon as the collector
    stores readings (``store.watch`` on its records), and every ``interval`` seconds anyway.
    A chart the user panned or zoomed stays where they put it; Reset takes it to the newest
    window.
    """

    def __init__(
        self,
        store: Store,
        *,
        days: float = 7,
        location: str | None = None,
        tz: str = "UTC",
        mean: str = "rolling",
        interval: float = 60.0,
        index: str | None = None,
        version: str | None = None,
    ) -> None:
        self.store = store
        self.days = days
        self.location = location or None
        self.tz = check_tz(tz)
        self.mean = mean
        self.interval = interval
        self.index, self.version = index or None, version or None
        self._model: Any = None
        self.refreshes = 0
        self.layout = column(sizing_mode="stretch_width", name="dashboard")
        self._rebuild()

    def _views(self, now: datetime | float | None = None) -> tuple[ReadingsView, DeliveryView]:
        view = read_view(
            self.store, days=self.days, now=now, location=self.location, tz=self.tz,
            mean=self.mean, index=self.index, version=self.version,
        )  # fmt: skip
        return view, read_deliveries(self.store, days=self.days, now=view.now, tz=self.tz)

    def _rebuild(self, now: datetime | float | None = None) -> None:
        view, deliveries = self._views(now)
        self.layout.children = _children(view, deliveries, self.store)
        self._keys = view.keys
        self._named = {
            child.name: named(child) for child in self.layout.children if child.name in _CHARTS
        }
        self._homes: dict[str, _Home] = {}
        for name in _CHARTS:
            fig = self._figure(name)
            numeric_y = isinstance(fig.y_range, Range1d) and name != "delivery_chart"
            y_end = fig.y_range.end if numeric_y else None
            self._homes[name] = (fig.x_range.start, fig.x_range.end, y_end)
        self.view = view

    def _figure(self, name: str) -> Any:
        return next(child for child in self.layout.children if child.name == name)

    def _updates(self, view: ReadingsView, deliveries: DeliveryView) -> list[tuple[Any, _Home]]:
        """Put new data in every chart; each chart's new home ranges."""
        out = []
        for name in _CHARTS:
            fig, models = self._figure(name), self._named[name]
            if name == "readings_chart":
                home = update_readings(fig, view, models)
            elif name == "freshness_chart":
                home = update_freshness(fig, view, models)
            elif name == "delivery_chart":
                home = update_delivery(fig, deliveries, models)
            else:
                home = update_daqi(fig, view, name.split(":")[1], models)
            out.append((fig, home))
        return out

    @property
    def model(self) -> Any:
        """The ``jupyter_bokeh.BokehModel`` widget (created on first use)."""
        if self._model is None:
            from jupyter_bokeh import BokehModel

            self._model = BokehModel(self.layout, combine_events=True)
        return self._model

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.model._repr_mimebundle_(**kwargs)

    def set_location(self, location: str | None) -> None:
        """Chart one location (None or "" for all of them), redrawn in place."""
        self.location = location or None
        self._rebuild()

    def set_index(self, index: str | None, version: str | None = None) -> None:
        """Show ``index`` ("daqi", "epa", "eaqi", "who"; None: by place) in ``version``
        (None: the newest), redrawn in place."""
        self.index, self.version = index or None, version or None
        self._rebuild()

    def refresh(self, *, now: datetime | float | None = None) -> None:
        """Read the store again and update the charts' data, titles and ranges in place."""
        view, deliveries = self._views(now)
        if view.keys != self._keys:
            # A location or source appeared: the series change, so draw the charts anew.
            self._rebuild(now)
        else:
            for fig, home in self._updates(view, deliveries):
                old = self._homes.get(fig.name)
                _follow(fig.x_range, old[:2] if old else None, home[:2])
                if home[2] is not None:
                    y_old = (0, old[2]) if old else None
                    _follow(fig.y_range, y_old, (0, home[2]))
                self._homes[fig.name] = home
            self.view = view
        self._figure("today").text = headline_html(view)
        self._figure("freshness_text").text = freshness_html(view)
        self._figure("stats_panel").text = stats_html(
            self.store, view.now, location=self.location, tz=self.tz
        )
        attribution = self._figure("attribution")
        attribution.update(text=_attribution_html(view), visible=bool(attributions(view)))
        self.refreshes += 1

    def locations(self) -> list[str]:
        """The locations with readings in the window, for a picker."""
        view = read_view(self.store, days=self.days, tz=self.tz)
        return sorted({series.location for series in view.series})

    def as_text(self) -> str:
        """What the charts show, as plain text, for headless runs and logs."""
        view, deliveries = self._views()
        lines = [*today_lines(view), self._figure("readings_chart").title.text]
        for series in view.series:
            hours = int(series.hourly[list(POLLUTANTS)].notna().any(axis=1).sum())
            lines.append(f"  {series.key}: {hours} hours with readings ({series.label})")
        lines.append("Data freshness:")
        lines.extend(f"  {line}" for line in freshness_lines(view))
        lines.append(self._figure("delivery_chart").title.text)
        for outcome in OUTCOME_COLORS:
            count = len(deliveries.columns[outcome]["lateness_ms"])
            if count:
                lines.append(f"  {outcome}: {count} deliveries")
        now = now_utc(None, self.store)
        lines.extend(
            f"{name}: {value}"
            for name, value in stats_rows(self.store, now, location=self.location, tz=self.tz)
        )
        lines.extend(attributions(view))
        return "\n".join(lines)

    def watch_keys(self) -> list[Any]:
        """The collector's records of the charted series: a run that stores readings
        rewrites its own, so the charts refresh as the readings land."""
        return collector_record_keys(self.store, self.location)

    def _report(self, error: BaseException) -> None:
        self._figure(
            "stats_panel"
        ).text = f"<p>refresh failed: {html.escape(repr(error))}; trying again</p>"
