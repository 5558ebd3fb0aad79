"""Air-quality sources by name: OpenWeatherMap and Open-Meteo (modelled), the London Air
Quality Network and OpenAQ (measured), behind one small protocol.

A source turns "this location, these hours" into validated hourly :class:`Reading` objects,
or raises a :class:`~airq_nb.SourceError` subclass that says what went wrong. Each API has
its module (``_openweathermap``, ``_openmeteo``, ``_laqn``) on the shared HTTP and checks of
``_http``. A further source is one more class with ``name`` and ``fetch``: pass an instance
as ``source=``, or add a factory to :data:`SOURCES` to make it selectable by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .._errors import ConfigurationError
from ._http import (
    DEFAULT_TIMEOUT,
    MAX_PLAUSIBLE_CONCENTRATION,
    MAX_REPLY_BYTES,
    check_hour,
    mask_secrets,
    parse_retry_after,
)
from ._laqn import LaqnSource
from ._model import HOUR, LAQN_PREFIX, LONDON, OPENAQ_PREFIX, Location, Provenance, Reading, Source
from ._openaq import OPENAQ_KEY_VARIABLE, OpenAQSource
from ._openmeteo import OpenMeteoSource
from ._openweathermap import OpenWeatherMapSource

__all__ = [
    "DEFAULT_TIMEOUT",
    "HOUR",
    "LAQN_PREFIX",
    "LONDON",
    "MAX_PLAUSIBLE_CONCENTRATION",
    "MAX_REPLY_BYTES",
    "OPENAQ_PREFIX",
    "SOURCES",
    "LaqnSource",
    "Location",
    "OpenAQSource",
    "OpenMeteoSource",
    "OpenWeatherMapSource",
    "Provenance",
    "Reading",
    "Source",
    "check_hour",
    "mask_secrets",
    "parse_retry_after",
    "source_from_env",
]


def _env_url(variable: str, default: str) -> str:
    return (os.environ.get(variable) or default).rstrip("/")


# -- choosing a source ------------------------------------------------------------------------


def _openweathermap(base_url: str | None, api_key: str, timeout: float) -> Source:
    return OpenWeatherMapSource(
        api_key=api_key,
        base_url=base_url or _env_url("AIRQ_NB_OPENWEATHER_URL", OpenWeatherMapSource.base_url),
        timeout=timeout,
    )


def _openmeteo(base_url: str | None, api_key: str, timeout: float) -> Source:
    return OpenMeteoSource(
        base_url=base_url or _env_url("AIRQ_NB_OPENMETEO_URL", OpenMeteoSource.base_url),
        timeout=timeout,
    )


def _laqn(base_url: str | None, api_key: str, timeout: float) -> Source:
    return LaqnSource(
        base_url=base_url or _env_url("AIRQ_NB_LAQN_URL", LaqnSource.base_url), timeout=timeout
    )


def _openaq(base_url: str | None, api_key: str, timeout: float) -> Source:
    # Its own key: the one passed is OpenWeatherMap's.
    return OpenAQSource(
        api_key=os.environ.get(OPENAQ_KEY_VARIABLE, "").strip(),
        base_url=base_url or _env_url("AIRQ_NB_OPENAQ_URL", OpenAQSource.base_url),
        timeout=timeout,
    )


#: Sources selectable by name (``AIRQ_NB_SOURCE``, ``--source``): name -> factory taking
#: (base_url or None, OpenWeatherMap key or "", timeout). A new source registers itself here.
SOURCES: dict[str, Callable[[str | None, str, float], Source]] = {
    "openweathermap": _openweathermap,
    "open-meteo": _openmeteo,
    "laqn": _laqn,
    "openaq": _openaq,
}


def source_from_env(
    name: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Source:
    """The source to use: ``name``, else ``AIRQ_NB_SOURCE``, else OpenWeatherMap when a key is
    set (``OPENWEATHER_API_KEY``) and Open-Meteo otherwise, so a newcomer gets data with no key.

    Base URLs come from ``base_url``, else ``AIRQ_NB_OPENWEATHER_URL`` /
    ``AIRQ_NB_OPENMETEO_URL`` / ``AIRQ_NB_LAQN_URL`` / ``AIRQ_NB_OPENAQ_URL``; OpenAQ's key
    from ``OPENAQ_API_KEY``.
    """
    key = api_key if api_key is not None else os.environ.get("OPENWEATHER_API_KEY", "").strip()
    chosen = (name or os.environ.get("AIRQ_NB_SOURCE") or "").strip().lower()
    if not chosen:
        chosen = "openweathermap" if key else "open-meteo"
    factory = SOURCES.get(chosen)
    if factory is None:
        raise ConfigurationError(
            f"unknown air-quality source {chosen!r}; set AIRQ_NB_SOURCE to one of "
            f"{', '.join(SOURCES)}"
        )
    return factory(base_url, key, timeout)
