"""What every source shares: one guarded HTTP GET with typed errors, secret masking for logs
and messages, and the strict checks that turn a reply into validated readings."""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._errors import (
    ConfigurationError,
    InvalidApiKeyError,
    MalformedReplyError,
    RateLimitedError,
    RequestRejectedError,
    SourceConfigurationError,
    SourceUnavailableError,
)
from .._format import one_line
from .._version import __version__
from ._model import HOUR, Location, Reading

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_PLAUSIBLE_CONCENTRATION",
    "MAX_REPLY_BYTES",
    "check_hour",
    "get_json",
    "mask_secrets",
    "parse_retry_after",
    "user_agent",
]

#: µg/m³ above which a PM2.5 or PM10 value is treated as a broken reply, not as air.
#: The worst hourly values ever recorded in cities are around 1,000–1,500 µg/m³.
MAX_PLAUSIBLE_CONCENTRATION = 2000.0
DEFAULT_TIMEOUT = 30.0
#: Bytes a reply may have before it is refused unread: far above a year of hourly readings
#: (~2 MB from OpenWeatherMap), far below what would strain a kernel's memory.
MAX_REPLY_BYTES = 16 * 1024 * 1024
_TEXT_SNIPPET = 120

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


def user_agent() -> str:
    """The User-Agent airq_nb sends: its name and version, so API operators can tell us apart."""
    return f"airq_nb/{__version__} (hourly air-quality collector; python-httpx)"


async def get_json(
    source: str,
    url: str,
    params: Mapping[str, str | int | float],
    *,
    timeout: float,
    max_bytes: int = MAX_REPLY_BYTES,
    secret: str | None = None,
    headers: Mapping[str, str] | None = None,
    inspect: Callable[[httpx.Response, str], None] | None = None,
) -> Any:
    """GET ``url`` and return its JSON body, turning every failure into a typed SourceError.

    A leading UTF-8 byte-order mark (the LAQN API sends one) is skipped. ``headers`` are
    sent as well (an API key in a header: pass it as ``secret`` too, so it is masked);
    ``inspect(response, error_detail)`` sees every reply before its status is checked (rate
    limit headers) and may raise a source's own error for a status.
    """
    import httpx

    _mask_http_logs()
    try:
        shown = mask_secrets(str(httpx.URL(url, params=dict(params))), secret)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{source}'s base URL is not usable ({mask_secrets(str(exc), secret)}); "
            "check the base_url argument or AIRQ_NB_OPENWEATHER_URL / AIRQ_NB_OPENMETEO_URL / "
            "AIRQ_NB_LAQN_URL / AIRQ_NB_OPENAQ_URL"
        ) from None
    try:
        async with (
            httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=True,
                verify=_ssl_context(),
                headers={"User-Agent": user_agent(), **(headers or {})},
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
    text = text.removeprefix("\ufeff")
    if inspect is not None:
        inspect(response, _error_detail(text, secret) if status >= 400 else "")
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
    # The APIs explain errors in JSON: OWM {"cod", "message"}, Open-Meteo {"error", "reason"},
    # OpenAQ (FastAPI) {"detail"} or {"message"}.
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return ""
    if isinstance(body, dict):
        for key in ("reason", "message", "detail"):
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


def _coordinates(source: str, location: Location) -> tuple[float, float]:
    if location.latitude is None or location.longitude is None:
        raise SourceConfigurationError(
            f"{source} models a point and {location.name} has no coordinates; collect it "
            "with the source that names it (AIRQ_NB_SOURCE=laqn for laqn:<site>, openaq for "
            "openaq:<id>), or give a 'name,latitude,longitude'"
        )
    return location.latitude, location.longitude
