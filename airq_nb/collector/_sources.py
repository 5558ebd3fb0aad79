"""Air-quality sources: OpenWeatherMap and Open-Meteo over httpx, behind one small protocol.

A source turns "this location, these hours" into validated hourly :class:`Reading` objects,
or raises a :class:`~airq_nb.SourceError` subclass that says what went wrong. Replies are
checked strictly (fields, types, units, times) so a bad reply is rejected whole instead of
half-written. A third source is one more class with ``name`` and ``fetch``: pass an instance
as ``source=``, or add a factory to :data:`SOURCES` to make it selectable by name.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._errors import (
    ConfigurationError,
    InvalidApiKeyError,
    MalformedReplyError,
    RateLimitedError,
    RequestRejectedError,
    SourceUnavailableError,
)
from .._format import one_line

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = [
    "LONDON",
    "MAX_PLAUSIBLE_CONCENTRATION",
    "MAX_REPLY_BYTES",
    "SOURCES",
    "Location",
    "OpenMeteoSource",
    "OpenWeatherMapSource",
    "Reading",
    "Source",
    "check_hour",
    "mask_secrets",
    "source_from_env",
]

HOUR = 3600
#: µg/m³ above which a PM2.5 or PM10 value is treated as a broken reply, not as air.
#: The worst hourly values ever recorded in cities are around 1,000–1,500 µg/m³.
MAX_PLAUSIBLE_CONCENTRATION = 2000.0
DEFAULT_TIMEOUT = 30.0
#: Bytes a reply may have before it is refused unread: far above a year of hourly readings
#: (~2 MB from OpenWeatherMap), far below what would strain a kernel's memory.
MAX_REPLY_BYTES = 16 * 1024 * 1024
_TEXT_SNIPPET = 120


@dataclass(frozen=True, slots=True)
class Location:
    """A named place to collect for; ``name`` identifies its readings and its schedule."""

    name: str
    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError("a Location needs a non-empty name, e.g. 'London'")
        for what, value, limit in (
            ("latitude", self.latitude, 90),
            ("longitude", self.longitude, 180),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{what} must be a number, got {value!r}")
            if not -limit <= value <= limit:
                raise ConfigurationError(f"{what} must be within ±{limit}, got {value!r}")

    def as_dict(self) -> dict[str, Any]:
        """The location as JSON-ready data (for queue messages)."""
        return {"name": self.name, "latitude": self.latitude, "longitude": self.longitude}

    @classmethod
    def parse(cls, text: str) -> Location:
        """A location from text: ``"London"``, or ``"name,latitude,longitude"``."""
        if text.strip().lower() == LONDON.name.lower():
            return LONDON
        try:
            name, latitude, longitude = (part.strip() for part in text.split(","))
            return cls(name, float(latitude), float(longitude))
        except ValueError:
            raise ConfigurationError(
                f"location {text!r}: use 'London' or 'name,latitude,longitude', "
                "e.g. 'Paris,48.8566,2.3522'"
            ) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Location:
        """Rebuild a location from :meth:`as_dict` output."""
        try:
            return cls(str(data["name"]), float(data["latitude"]), float(data["longitude"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"not a location: {data!r}; expected name, latitude and longitude"
            ) from exc


#: Central London (Charing Cross), the default location.
LONDON = Location("London", 51.5074, -0.1278)


@dataclass(frozen=True, slots=True)
class Reading:
    """One hour of particulate pollution at a location: µg/m³, ``time`` in Unix seconds (UTC)."""

    time: int
    pm2_5: float | None
    pm10: float | None
    aqi: int | None = None


@runtime_checkable
class Source(Protocol):
    """What the collector needs from a source: a ``name`` and ``fetch`` for a window of hours."""

    name: str

    async def fetch(self, location: Location, *, start: int, end: int) -> list[Reading]:
        """Readings for each available whole hour from ``start`` to ``end`` (inclusive, UTC)."""
        ...


# -- secrets ------------------------------------------------------------------------------

_SECRET_PARAM = re.compile(r"(\b(?:appid|api_key|apikey|key|token)=)[^&\s'\"]+", re.IGNORECASE)


def mask_secrets(text: str, *secrets: str | None) -> str:
    """``text`` with ``appid=…``-style query values and any of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRET_PARAM.sub(r"\1***", text)


class _MaskSecretsFilter(logging.Filter):
    """Masks API keys in httpx's "HTTP Request: GET <url>" log lines before they are emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(mask_secrets(str(a)) if _has_secret(a) else a for a in args)
        if isinstance(record.msg, str) and _SECRET_PARAM.search(record.msg):
            record.msg = mask_secrets(record.msg)
        return True


def _has_secret(value: object) -> bool:
    return not isinstance(value, int | float) and bool(_SECRET_PARAM.search(str(value)))


_LOG_FILTER = _MaskSecretsFilter()


def _mask_http_logs() -> None:
    # httpx logs every request URL (query string included) at INFO; the key must not leak there.
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


# -- HTTP ---------------------------------------------------------------------------------


async def _get_json(
    source: str,
    url: str,
    params: Mapping[str, str | int | float],
    *,
    timeout: float,
    max_bytes: int = MAX_REPLY_BYTES,
    secret: str | None = None,
) -> Any:
    """GET ``url`` and return its JSON body, turning every failure into a typed SourceError."""
    import httpx

    _mask_http_logs()
    try:
        shown = mask_secrets(str(httpx.URL(url, params=dict(params))), secret)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{source}'s base URL is not usable ({mask_secrets(str(exc), secret)}); "
            "check the base_url argument or AIRQ_NB_OPENWEATHER_URL / AIRQ_NB_OPENMETEO_URL"
        ) from None
    try:
        async with (
            httpx.AsyncClient(
                timeout=timeout, follow_redirects=True, verify=_ssl_context()
            ) as client,
            client.stream("GET", url, params=dict(params)) as response,
        ):
            content = await _read_at_most(response, max_bytes)
    except httpx.TimeoutException:
        # `from None`: httpx exceptions carry the request URL, key included.
        raise SourceUnavailableError(
            f"{source} did not answer within {timeout:g} s ({shown}); try again later"
        ) from None
    except httpx.UnsupportedProtocol:
        raise ConfigurationError(
            f"{source}'s base URL must start with http:// or https:// ({shown})"
        ) from None
    except httpx.HTTPError as exc:
        reason = mask_secrets(str(exc) or type(exc).__name__, secret)
        raise SourceUnavailableError(
            f"cannot reach {source} ({shown}): {reason}; check the network or the base URL"
        ) from None
    status = response.status_code
    text = "" if content is None else content.decode(response.encoding or "utf-8", "replace")
    if status >= 400:
        _raise_for_status(source, shown, response, text, secret)
    if content is None:
        raise MalformedReplyError(
            f"{source} sent a reply larger than {max_bytes:,} bytes ({shown}); nothing was "
            "read or written"
        )
    content_type = response.headers.get("content-type", "")
    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        raise MalformedReplyError(
            f"{source} sent an HTML page instead of JSON ({shown}, HTTP {status}): "
            f"{_snippet(text, secret)}"
        )
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise MalformedReplyError(
            f"{source} sent a reply that is not valid JSON ({shown}): {exc}; "
            f"it begins {_snippet(text, secret)}"
        ) from None
    except RecursionError:
        # Deeply nested arrays or objects exhaust the parser's stack; no real reply nests so.
        raise MalformedReplyError(
            f"{source} sent JSON nested too deeply to read ({shown}); "
            f"it begins {_snippet(text, secret)}"
        ) from None


async def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it proves longer than ``limit`` bytes (not read further)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building the default context (loading the CA bundle) costs ~50 ms; do it once.
    import httpx

    return httpx.create_ssl_context()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _snippet(text: str, secret: str | None) -> str:
    # Mask before cutting: a key cut in half by the clip would no longer match the mask.
    return repr(one_line(mask_secrets(text, secret), _TEXT_SNIPPET))


def _raise_for_status(
    source: str, shown: str, response: httpx.Response, text: str, secret: str | None
) -> None:
    status = response.status_code
    detail = _error_detail(text, secret)
    if status in (401, 403) and secret:
        raise InvalidApiKeyError(
            f"{source} rejected the API key (HTTP {status}{detail}): set OPENWEATHER_API_KEY "
            "to a valid key (a new key can take a couple of hours to activate), or unset it "
            "to use Open-Meteo, which needs none"
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        wait = f"asked to wait {retry_after:g} s" if retry_after is not None else "no wait given"
        raise RateLimitedError(
            f"{source} is rate-limiting requests (HTTP 429, {wait}); try again later",
            retry_after=retry_after,
        )
    if status >= 500:
        raise SourceUnavailableError(
            f"{source} failed with HTTP {status}{detail} ({shown}); try again later"
        )
    raise RequestRejectedError(
        f"{source} refused the request with HTTP {status}{detail} ({shown}); check the "
        "location and the base URL"
    )


def _error_detail(text: str, secret: str | None) -> str:
    # Both APIs explain errors in JSON: OWM {"cod", "message"}, Open-Meteo {"error", "reason"}.
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return ""
    if isinstance(body, dict):
        for key in ("reason", "message"):
            if isinstance(body.get(key), str):
                return ": " + mask_secrets(body[key][:200], secret)
    return ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# -- validation -----------------------------------------------------------------------------


def _malformed(source: str, problem: str) -> MalformedReplyError:
    return MalformedReplyError(f"{source} sent a malformed reply: {problem}; nothing was written")


def _field(source: str, container: Any, key: str, where: str) -> Any:
    if not isinstance(container, dict):
        raise _malformed(source, f"{where} is {_kind(container)}, expected an object")
    if key not in container:
        raise _malformed(source, f"{where} has no {key!r} field")
    return container[key]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _concentration(source: str, value: Any, where: str, *, nullable: bool) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(source, f"{where} is {_kind(value)}, expected a number in µg/m³")
    number = float(value)
    if not math.isfinite(number):
        raise _malformed(source, f"{where} is {number}, expected a finite number")
    if number < 0:
        raise _malformed(source, f"{where} is negative ({number:g} µg/m³)")
    if number > MAX_PLAUSIBLE_CONCENTRATION:
        raise _malformed(
            source,
            f"{where} is {number:g} µg/m³, beyond the plausible "
            f"{MAX_PLAUSIBLE_CONCENTRATION:g} µg/m³",
        )
    return number


def check_hour(source: str, when: int, where: str, start: int, end: int) -> None:
    """Raise MalformedReplyError unless ``when`` is a whole hour from ``start`` to ``end``."""
    if when % HOUR:
        raise _malformed(source, f"{where} ({_iso(when)}) is not on the hour")
    if not start <= when <= end:
        raise _malformed(
            source,
            f"{where} ({_iso(when)}) is outside the window asked for "
            f"({_iso(start)} to {_iso(end)})",
        )


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _checked_readings(source: str, readings: list[Reading]) -> list[Reading]:
    seen: set[int] = set()
    for reading in readings:
        if reading.time in seen:
            raise _malformed(source, f"the hour {_iso(reading.time)} appears twice")
        seen.add(reading.time)
    return sorted(readings, key=lambda r: r.time)


def _env_url(variable: str, default: str) -> str:
    return (os.environ.get(variable) or default).rstrip("/")


# -- OpenWeatherMap -------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenWeatherMapSource:
    """OpenWeatherMap's air-pollution history API; needs an API key (``OPENWEATHER_API_KEY``)."""

    api_key: str = field(repr=False)
    base_url: str = "https://api.openweathermap.org"
    timeout: float = DEFAULT_TIMEOUT
    max_reply_bytes: int = MAX_REPLY_BYTES
    name: str = field(default="openweathermap", init=False)

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.strip():
            raise ConfigurationError(
                "OpenWeatherMap needs an API key: set OPENWEATHER_API_KEY (free at "
                "openweathermap.org), or choose AIRQ_NB_SOURCE=open-meteo, which needs none"
            )

    def __repr__(self) -> str:
        return f"OpenWeatherMapSource(base_url={self.base_url!r}, api_key='***')"

    async def fetch(self, location: Location, *, start: int, end: int) -> list[Reading]:
        """Hourly PM2.5, PM10 and AQI (1–5) from ``/data/2.5/air_pollution/history``."""
        source = "OpenWeatherMap"
        body = await _get_json(
            source,
            f"{self.base_url.rstrip('/')}/data/2.5/air_pollution/history",
            {
                "lat": location.latitude,
                "lon": location.longitude,
                "start": int(start),
                "end": int(end),
                "appid": self.api_key,
            },
            timeout=self.timeout,
            max_bytes=self.max_reply_bytes,
            secret=self.api_key,
        )
        if not isinstance(body, dict):
            raise _malformed(source, f"the reply is {_kind(body)}, expected an object")
        coord = _field(source, body, "coord", "the reply")
        # The live API sends {"lon", "lat"}; the documentation shows [lon, lat].
        if isinstance(coord, dict):
            _field(source, coord, "lat", "coord")
            _field(source, coord, "lon", "coord")
        elif not (isinstance(coord, list) and len(coord) == 2):
            raise _malformed(source, f"coord is {_kind(coord)}, expected an object or a pair")
        items = _field(source, body, "list", "the reply")
        if not isinstance(items, list):
            raise _malformed(source, f"'list' is {_kind(items)}, expected a list")
        readings = []
        for index, item in enumerate(items):
            where = f"list[{index}]"
            dt = _field(source, item, "dt", where)
            if isinstance(dt, bool) or not isinstance(dt, int):
                raise _malformed(source, f"{where}.dt is {_kind(dt)}, expected Unix seconds")
            check_hour(source, dt, f"{where}.dt", start, end)
            aqi = _field(source, _field(source, item, "main", where), "aqi", f"{where}.main")
            if isinstance(aqi, bool) or not isinstance(aqi, int | float) or aqi not in range(1, 6):
                raise _malformed(source, f"{where}.main.aqi is {aqi!r}, expected 1 to 5")
            components = _field(source, item, "components", where)
            readings.append(
                Reading(
                    time=dt,
                    pm2_5=_concentration(
                        source,
                        _field(source, components, "pm2_5", f"{where}.components"),
                        f"{where}.components.pm2_5",
                        nullable=False,
                    ),
                    pm10=_concentration(
                        source,
                        _field(source, components, "pm10", f"{where}.components"),
                        f"{where}.components.pm10",
                        nullable=False,
                    ),
                    aqi=int(aqi),
                )
            )
        return _checked_readings(source, readings)


# -- Open-Meteo -------------------------------------------------------------------------------

_ISO_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$")


@dataclass(frozen=True)
class OpenMeteoSource:
    """Open-Meteo's air-quality API (CAMS model data); free, no key."""

    base_url: str = "https://air-quality-api.open-meteo.com"
    timeout: float = DEFAULT_TIMEOUT
    max_reply_bytes: int = MAX_REPLY_BYTES
    name: str = field(default="open-meteo", init=False)

    async def fetch(self, location: Location, *, start: int, end: int) -> list[Reading]:
        """Hourly PM2.5 and PM10 from ``/v1/air-quality`` (``start_hour``/``end_hour``, GMT)."""
        source = "Open-Meteo"
        body = await _get_json(
            source,
            f"{self.base_url.rstrip('/')}/v1/air-quality",
            {
                "latitude": location.latitude,
                "longitude": location.longitude,
                "hourly": "pm10,pm2_5",
                "start_hour": _iso(start)[:-1],
                "end_hour": _iso(end)[:-1],
                "timezone": "GMT",
            },
            timeout=self.timeout,
            max_bytes=self.max_reply_bytes,
        )
        if not isinstance(body, dict):
            raise _malformed(source, f"the reply is {_kind(body)}, expected an object")
        if body.get("error"):
            reason = body.get("reason")
            raise RequestRejectedError(
                f"Open-Meteo refused the request: {reason if isinstance(reason, str) else body!r}"
            )
        offset = body.get("utc_offset_seconds", 0)
        if offset != 0:
            raise _malformed(source, f"times are not in GMT (utc_offset_seconds={offset!r})")
        hourly = _field(source, body, "hourly", "the reply")
        columns = {}
        for key in ("time", "pm2_5", "pm10"):
            column = _field(source, hourly, key, "hourly")
            if not isinstance(column, list):
                raise _malformed(source, f"hourly.{key} is {_kind(column)}, expected a list")
            columns[key] = column
        if not len(columns["time"]) == len(columns["pm2_5"]) == len(columns["pm10"]):
            raise _malformed(
                source,
                f"hourly.time, pm2_5 and pm10 differ in length ({len(columns['time'])}, "
                f"{len(columns['pm2_5'])}, {len(columns['pm10'])})",
            )
        readings = []
        for index, stamp in enumerate(columns["time"]):
            where = f"hourly.time[{index}]"
            if not isinstance(stamp, str) or not _ISO_HOUR.match(stamp):
                raise _malformed(source, f"{where} is {_kind(stamp)}, expected 'YYYY-MM-DDTHH:MM'")
            try:
                when = int(datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp())
            except ValueError:
                raise _malformed(source, f"{where} ({stamp!r}) is not a real time") from None
            check_hour(source, when, where, start, end)
            pm2_5 = _concentration(
                source, columns["pm2_5"][index], f"hourly.pm2_5[{index}]", nullable=True
            )
            pm10 = _concentration(
                source, columns["pm10"][index], f"hourly.pm10[{index}]", nullable=True
            )
            # Open-Meteo lists every hour asked for, with nulls where the model has no value
            # yet; those hours are not stored, and the collector asks for them again while
            # they are within its look-back (a day).
            if pm2_5 is not None or pm10 is not None:
                readings.append(Reading(time=when, pm2_5=pm2_5, pm10=pm10))
        return _checked_readings(source, readings)


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


#: Sources selectable by name (``AIRQ_NB_SOURCE``, ``--source``): name -> factory taking
#: (base_url or None, OpenWeatherMap key or "", timeout). A new source registers itself here.
SOURCES: dict[str, Callable[[str | None, str, float], Source]] = {
    "openweathermap": _openweathermap,
    "open-meteo": _openmeteo,
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

    Base URLs come from ``base_url``, else ``AIRQ_NB_OPENWEATHER_URL`` / ``AIRQ_NB_OPENMETEO_URL``.
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
