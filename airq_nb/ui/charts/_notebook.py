"""Charts in a notebook: BokehJS inline, a static copy for headless runs, an HTML report, and
a location picker for interactive use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bokeh.resources import INLINE, Resources

if TYPE_CHECKING:
    from bokeh.models import LayoutDOM

    from ._dashboard import LiveChart

__all__ = ["index_picker", "location_picker", "save_report", "setup_notebook", "show_static"]

_ALL = "All locations"
#: The BokehJS a static copy needs: the core and the widgets (the charts' text is Divs).
_STATIC_RESOURCES = Resources(mode="inline", components=["bokeh", "bokeh-widgets"])


def setup_notebook() -> None:
    """Load BokehJS into the notebook from the installed package (no CDN, works offline)."""
    from bokeh.io import output_notebook

    output_notebook(resources=INLINE, hide_banner=True)


def _layout(charts: LayoutDOM | LiveChart) -> LayoutDOM:
    return getattr(charts, "layout", charts)


def show_static(charts: LayoutDOM | LiveChart) -> None:
    """Show the charts as an embedded Bokeh document that draws without a kernel.

    For headless runs (papermill): one HTML output holding the part of BokehJS the charts
    use (inline, about 1.6 MB; :func:`setup_notebook`'s full copy is 4 MB and is saved
    twice), the document and the element it draws in, so the saved notebook's HTML export
    shows the charts anywhere. A live ``BokehModel`` would save only a widget reference
    that needs a kernel.
    """
    from bokeh.embed import components
    from IPython.display import HTML, display

    script, div = components(_layout(charts))
    display(HTML(f"{_STATIC_RESOURCES.render_js()}{div}{script}"))


def save_report(
    charts: LayoutDOM | LiveChart, path: str | Path, *, title: str = "airq_nb air quality"
) -> Path:
    """Write the charts to ``path`` as one standalone HTML page, BokehJS inline; returns it."""
    from bokeh.embed import file_html

    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(file_html(_layout(charts), resources=INLINE, title=title), encoding="utf-8")
    return target


def location_picker(live: LiveChart) -> Any:
    """An ipywidgets Dropdown of the stored locations that redraws ``live`` for the one picked."""
    import ipywidgets

    picker = ipywidgets.Dropdown(
        options=[_ALL, *live.locations()],
        value=live.location or _ALL,
        description="Location",
    )

    def picked(change: dict[str, Any]) -> None:
        live.set_location(None if change["new"] == _ALL else change["new"])

    picker.observe(picked, names="value")
    return picker


def index_picker(live: LiveChart) -> Any:
    """An ipywidgets Dropdown of the indices and versions that redraws ``live`` on the one
    picked ("By place" lets each place's own index decide). Values are "index:version"
    text ("" for by place)."""
    import ipywidgets

    from ._index_bands import INDEX_CHOICES

    options = [
        (label, f"{index}:{version}" if index else "") for label, index, version in INDEX_CHOICES
    ]
    values = [value for _, value in options]
    current = f"{live.index}:{live.version}" if live.index else ""
    if current not in values:  # e.g. index="epa" with version None: its newest is listed
        current = next((v for v in values if v.split(":")[0] == live.index), "")
    picker = ipywidgets.Dropdown(options=options, value=current, description="Index")

    def picked(change: dict[str, Any]) -> None:
        index, _, version = str(change["new"]).partition(":")
        live.set_index(index or None, version or None)

    picker.observe(picked, names="value")
    return picker
