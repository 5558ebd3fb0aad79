"""OpenAQ (API v3) as a source: measured hourly PM2.5 and PM10 from monitors anywhere.

OpenAQ gathers the data of many providers (the UK's AURN, the US's AirNow, ...) behind one
API at ``https://api.openaq.org/v3``, which needs a free key (``OPENAQ_API_KEY``, sent as
the ``X-API-Key`` header). A place is either an OpenAQ location (``openaq:2178``, from
``/v3/locations/{id}``) or a named point, resolved to the nearest locations with a PM2.5
and a PM10 sensor (``/v3/locations?coordinates=lat,lon&radius=...``). Either is kept in the
store's KV and looked up again at most daily. Values come from
``/v3/sensors/{id}/hours?datetime_from&datetime_to`` — one request (page) per sensor per
run. See :mod:`._openaq_replies` for the shapes and the hour convention.

The API's limits (by default 60 requests a minute and 2,000 an hour per key) are kept: the
``x-ratelimit-remaining``/``x-ratelimit-reset`` headers of each reply, and a count of this
process's own requests, stop a run before it would exceed them (RateLimitedError with the
wait, which the collector sleeps or leaves to the scheduler's retry).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._errors import (
    InvalidApiKeyError,
    RateLimitedError,
    RequestRejectedError,
    SourceConfigurationError,
    SourceError,
)
from ._http import DEFAULT_TIMEOUT, MAX_REPLY_BYTES, _malformed, get_json, parse_retry_after
from ._model import HOUR, OPENAQ_PREFIX, Location, Provenance, Reading
from ._openaq_replies import PM_PARAMETERS, OpenAQLocation, parse_hours, parse_locations

if TYPE_CHECKING:
    import httpx

    from ..store import Store

__all__ = [
    "LOCATIONS_KEY",
    "LOCATIONS_MAX_AGE",
    "OPENAQ_ATTRIBUTION",
    "OPENAQ_KEY_VARIABLE",
    "OpenAQSource",
]

logger = logging.getLogger("airq_nb.collector")

SOURCE = "OpenAQ"
OPENAQ_KEY_VARIABLE = "OPENAQ_API_KEY"
#: The text to show under charts of OpenAQ data; each provider's own licence follows it.
OPENAQ_ATTRIBUTION = (
    "Measured data: OpenAQ (openaq.org), from the providers named; each provider's licence applies."
)
#: KV prefix of the resolved places: ``(*LOCATIONS_KEY, location name)``.
LOCATIONS_KEY = ("airq_nb", "openaq", "locations")
#: How long a resolved place is used before it is looked up again.
LOCATIONS_MAX_AGE = 24 * HOUR
#: The published limits per key, kept even before a reply's headers say otherwise.
PER_MINUTE, PER_HOUR = 60, 2000
#: The widest search OpenAQ allows around coordinates (metres).
MAX_RADIUS = 25_000
#: Pages of hours read per sensor and run at most (a week is one page of 1,000).
MAX_PAGES = 20
_FIELDS = tuple(PM_PARAMETERS.values())
_PARAMETER = {f: p for p, f in PM_PARAMETERS.items()}

_RESOLVE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


class _RateLimit:
    """What the API's headers and this process's requests say is left, per key."""

    def __init__(self) -> None:
        self.sent: deque[float] = deque()
        self.remaining: int | None = None
        self.reset_at = 0.0

    def wait(self, now: float) -> float:
        """Seconds until a request may be sent (0: now)."""
        while self.sent and now - self.sent[0] >= HOUR:
            self.sent.popleft()
        waits = [0.0]
        if self.remaining is not None and self.remaining <= 0 and self.reset_at > now:
            waits.append(self.reset_at - now)
        in_minute = [t for t in self.sent if now - t < 60]
        if len(in_minute) >= PER_MINUTE:
            waits.append(in_minute[-PER_MINUTE] + 60 - now)
        if len(self.sent) >= PER_HOUR:
            waits.append(self.sent[-PER_HOUR] + HOUR - now)
        return max(waits)

    def update(self, headers: httpx.Headers, now: float) -> None:
        remaining = _int_header(headers, "x-ratelimit-remaining")
        reset = _int_header(headers, "x-ratelimit-reset")
        if remaining is not None:
            self.remaining = remaining
            self.reset_at = now + (reset if reset is not None else 60)


_LIMITS: dict[tuple[str, str], _RateLimit] = {}


class _NotFound(RequestRejectedError):
    """HTTP 404: the location or sensor asked for does not exist."""


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    try:
        return int(headers.get(name, ""))
    except ValueError:
        return None


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class OpenAQSource:
    """Measured hourly PM2.5 and PM10 from OpenAQ (v3); needs a key (``OPENAQ_API_KEY``).

    ``openaq:<id>`` collects that location's PM sensors; a named point
    (``Location("Leeds", 53.8, -1.55)``) the nearest locations within ``radius`` metres that
    have a PM2.5 and a PM10 sensor (one location for both when it has both).
    """

    api_key: str = field(repr=False)
    base_url: str = "https://api.openaq.org/v3"
    timeout: float = DEFAULT_TIMEOUT
    max_reply_bytes: int = MAX_REPLY_BYTES
    radius: int = MAX_RADIUS
    #: Hours asked for per page (the API allows at most 1,000).
    page_size: int = 1000
    #: The location measuring each pollutant ("pm2_5", "pm10"); prepare() sets them.
    picked: tuple[tuple[str, OpenAQLocation], ...] = ()
    name: str = field(default="openaq", init=False)
    kind: str = field(default="measured", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise SourceConfigurationError(
                f"OpenAQ needs an API key: set {OPENAQ_KEY_VARIABLE} (free at "
                "explore.openaq.org/register), or choose AIRQ_NB_SOURCE=laqn or open-meteo, "
                "which need none"
            )
        if isinstance(self.radius, bool) or not 1 <= self.radius <= MAX_RADIUS:
            raise SourceConfigurationError(
                f"OpenAQ searches at most {MAX_RADIUS:,} m around a point; radius is "
                f"{self.radius!r}"
            )
        if isinstance(self.page_size, bool) or not 1 <= self.page_size <= 1000:
            raise SourceConfigurationError(f"page_size must be 1 to 1000, got {self.page_size!r}")

    def __repr__(self) -> str:
        return f"OpenAQSource(base_url={self.base_url!r}, api_key='***')"

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def _limit(self) -> _RateLimit:
        return _LIMITS.setdefault((self.base_url.rstrip("/"), self.api_key), _RateLimit())

    async def _get(
        self, path: str, params: Mapping[str, str | int | float], *, missing: str
    ) -> Any:
        limit = self._limit
        wait = limit.wait(time.monotonic())
        if wait > 0:
            raise RateLimitedError(
                f"OpenAQ's rate limit for this key is used up ({PER_MINUTE} requests a "
                f"minute, {PER_HOUR:,} an hour, or as its last reply said); waiting "
                f"{wait:.0f} s",
                retry_after=math.ceil(wait),
            )
        limit.sent.append(time.monotonic())
        return await get_json(
            SOURCE,
            f"{self.base_url.rstrip('/')}/{path}",
            params,
            timeout=self.timeout,
            max_bytes=self.max_reply_bytes,
            secret=self.api_key,
            headers={"X-API-Key": self.api_key, "Accept": "application/json"},
            inspect=functools.partial(self._inspect, missing=missing),
        )

    def _inspect(self, response: httpx.Response, detail: str, *, missing: str) -> None:
        self._limit.update(response.headers, time.monotonic())
        status = response.status_code
        if status in (401, 403):
            raise InvalidApiKeyError(
                f"OpenAQ rejected the API key (HTTP {status}{detail}): set "
                f"{OPENAQ_KEY_VARIABLE} to a valid key (explore.openaq.org, your account's "
                "API key)"
            )
        if status == 429:
            after = parse_retry_after(response.headers.get("retry-after"))
            if after is None:
                after = _int_header(response.headers, "x-ratelimit-reset")
            wait = f"asked to wait {after:g} s" if after is not None else "no wait given"
            raise RateLimitedError(
                f"OpenAQ is rate-limiting this key (HTTP 429, {wait}); airq_nb waits and "
                "tries again",
                retry_after=after,
            )
        if status == 410:
            raise RequestRejectedError(
                f"OpenAQ has retired this API (HTTP 410{detail}): its v1 and v2 paths are "
                "gone; set AIRQ_NB_OPENAQ_URL to a v3 base URL such as "
                "https://api.openaq.org/v3 (or unset it)"
            )
        if status == 404:
            raise _NotFound(f"{missing} (HTTP 404{detail})")

    # -- places ----------------------------------------------------------------------------

    async def location(self, location_id: int) -> OpenAQLocation:
        """One OpenAQ location by id (``/v3/locations/{id}``)."""
        body = await self._get(
            f"locations/{location_id}",
            {},
            missing=f"OpenAQ has no location {OPENAQ_PREFIX}{location_id}",
        )
        found = [loc for loc in parse_locations(body) if loc.id == location_id]
        if not found:
            raise _malformed(SOURCE, f"the reply for location {location_id} does not list it")
        return found[0]

    async def locations_near(self, latitude: float, longitude: float) -> list[OpenAQLocation]:
        """Locations within ``radius`` of a point, nearest first (``/v3/locations``)."""
        body = await self._get(
            "locations",
            {
                "coordinates": f"{latitude:.4f},{longitude:.4f}",
                "radius": self.radius,
                "limit": 1000,
            },
            missing="OpenAQ has no locations search at this base URL; check AIRQ_NB_OPENAQ_URL",
        )
        found = parse_locations(body)
        found = [
            loc
            if loc.distance is not None or loc.latitude is None
            else dataclasses.replace(
                loc, distance=_metres(latitude, longitude, loc.latitude, loc.longitude)
            )
            for loc in found
        ]
        return sorted(found, key=lambda loc: (loc.distance is None, loc.distance or 0.0))

    async def _pick(
        self, location: Location, known: OpenAQLocation | None = None
    ) -> dict[str, OpenAQLocation]:
        """The location measuring each pollutant; raises SourceConfigurationError if none.
        ``known``: what the store last knew of an ``openaq:<id>`` location, so that one
        OpenAQ no longer has (HTTP 404) is refused naming the locations near where it was."""
        location_id = location.openaq_id
        if location_id is not None:
            try:
                found = await self.location(location_id)
            except _NotFound as exc:
                if known is not None and known.latitude is not None:
                    nearby = await self._nearby_text(known)
                    raise SourceConfigurationError(
                        f"{exc}: OpenAQ no longer has {known.label()}, which this store "
                        f"collected; {nearby}"
                    ) from None
                raise SourceConfigurationError(
                    f"{exc}: check the id on explore.openaq.org, or collect a place by its "
                    "coordinates ('name,latitude,longitude'), which finds its nearest monitors"
                ) from None
            picked = {f: found for f in _FIELDS if f in found.sensors}
            if not picked:
                nearby = await self._nearby_text(found)
                raise SourceConfigurationError(
                    f"{found.label()} measures no PM2.5 or PM10 in µg/m³; {nearby}"
                )
            return picked
        if location.latitude is None or location.longitude is None:
            raise SourceConfigurationError(
                f"OpenAQ needs an OpenAQ location ({OPENAQ_PREFIX}2178) or coordinates, and "
                f"{location.name!r} is neither; give 'name,latitude,longitude'"
            )
        near = await self.locations_near(location.latitude, location.longitude)
        with_pm = [loc for loc in near if loc.sensors]
        both = [loc for loc in with_pm if all(f in loc.sensors for f in _FIELDS)]
        picked = {}
        for f in _FIELDS:
            # The nearest location with both, unless one measuring only this is nearer.
            candidates = [loc for loc in with_pm if f in loc.sensors]
            if candidates:
                best = candidates[0]
                if both and both[0].distance == best.distance:
                    best = both[0]
                picked[f] = best
        if not picked:
            shown = ", ".join(loc.label() for loc in near[:3])
            raise SourceConfigurationError(
                f"no OpenAQ location within {self.radius / 1000:g} km of {location.name} "
                "measures PM2.5 or PM10"
                + (f" (the nearest, measuring other things: {shown})" if shown else "")
                + "; try a nearby city's coordinates, or AIRQ_NB_SOURCE=open-meteo (modelled, "
                "anywhere)"
            )
        return picked

    async def _nearby_text(self, around: OpenAQLocation) -> str:
        if around.latitude is None or around.longitude is None:
            return "find one that does on explore.openaq.org"
        try:
            near = await self.locations_near(around.latitude, around.longitude)
        except SourceError:
            return "find one that does on explore.openaq.org"
        shown = [loc.label() for loc in near if loc.sensors and loc.id != around.id][:3]
        if not shown:
            return "no location within 25 km measures PM; try AIRQ_NB_SOURCE=open-meteo"
        return "nearby locations that measure PM: " + ", ".join(shown)

    async def resolve(self, store: Store, location: Location) -> dict[str, OpenAQLocation]:
        """The location measuring each pollutant for ``location``, from the store's KV
        (looked up again after a day; if that fails, the stored answer is used)."""
        loop = asyncio.get_running_loop()
        lock = _RESOLVE_LOCKS.get(loop)
        if lock is None:
            lock = _RESOLVE_LOCKS[loop] = asyncio.Lock()
        async with lock:
            key = (*LOCATIONS_KEY, location.name)
            now = store.clock.now()
            cached = store.get(key).value
            usable = isinstance(cached, dict) and cached.get("point") == location.point
            if usable and now - cached.get("fetched_at", -math.inf) < LOCATIONS_MAX_AGE:
                return _from_cache(cached)
            known = _from_cache(cached) if usable else {}
            try:
                picked = await self._pick(location, next(iter(known.values()), None))
            except (SourceConfigurationError, InvalidApiKeyError):
                raise
            except SourceError as exc:
                if not usable:
                    raise
                logger.warning("OpenAQ locations of %s not refreshed, using the stored ones: %s",
                               location.name, exc)  # fmt: skip
                return _from_cache(cached)
            store.set(
                key,
                {
                    "fetched_at": now,
                    "point": location.point,
                    "picked": {f: loc.as_dict() for f, loc in picked.items()},
                },
            )
            return picked

    async def prepare(self, store: Store, location: Location) -> OpenAQSource:
        """This source with the locations that measure ``location``'s PM2.5 and PM10."""
        picked = await self.resolve(store, location)
        return dataclasses.replace(self, picked=tuple(picked.items()))

    def provenance(self, location: Location) -> Provenance:
        """The OpenAQ location(s) behind the readings: ids, names, coordinates, provider,
        licences and sensor ids (stored with every reading)."""
        if not self.picked:
            return Provenance(location.point)
        picked = dict(self.picked)
        chosen = list({loc.id: loc for loc in picked.values()}.values())
        first = chosen[0]
        details = {
            "openaq_locations": [loc.id for loc in chosen],
            "sensors": {f: loc.sensors[f] for f, loc in picked.items()},
            "provider": " / ".join(dict.fromkeys(loc.provider or "unknown" for loc in chosen)),
            "owner": " / ".join(dict.fromkeys(loc.owner or "unknown" for loc in chosen)),
            "licenses": list(dict.fromkeys(lic for loc in chosen for lic in loc.licenses)),
        }
        if first.timezone:
            details["timezone"] = first.timezone
        return Provenance(
            "/".join(str(loc.id) for loc in chosen),
            " / ".join(loc.name for loc in chosen),
            first.latitude,
            first.longitude,
            details,
        )

    # -- data ------------------------------------------------------------------------------

    async def fetch(self, location: Location, *, start: int, end: int) -> list[Reading]:
        """Hourly values from ``start`` to ``end`` (hour starts, inclusive, UTC): one request
        per sensor (more only past ``page_size`` hours). Unprepared, the locations are looked
        up first (without the store's cache)."""
        picked = dict(self.picked) if self.picked else await self._pick(location)
        by_hour: dict[int, dict[str, Any]] = {}
        for f, loc in picked.items():
            sensor = loc.sensors[f]
            for hour in await self._sensor_hours(sensor, _PARAMETER[f], start, end):
                entry = by_hour.setdefault(hour.time, {"coverage": {}})
                entry[f] = hour.value
                if hour.observed is not None or hour.expected is not None:
                    entry["coverage"][f] = {
                        "observedCount": hour.observed,
                        "expectedCount": hour.expected,
                    }
        return [
            Reading(
                time=when,
                pm2_5=entry.get("pm2_5"),
                pm10=entry.get("pm10"),
                details={"coverage": entry["coverage"]} if entry["coverage"] else None,
            )
            for when, entry in sorted(by_hour.items())
        ]

    async def _sensor_hours(self, sensor: int, parameter: str, start: int, end: int) -> list[Any]:
        # The API filters on its hour-ending stamp: datetime_from < end of hour <= datetime_to.
        params: dict[str, str | int | float] = {
            "datetime_from": _iso(start),
            "datetime_to": _iso(end + HOUR),
            "limit": self.page_size,
        }
        hours = []
        for page in range(1, MAX_PAGES + 1):
            body = await self._get(
                f"sensors/{sensor}/hours",
                {**params, "page": page},
                missing=f"OpenAQ has no sensor {sensor} (any more); its location is looked up "
                "again within a day",
            )
            found, count = parse_hours(body, sensor=sensor, parameter=parameter)
            for hour in found:
                if start <= hour.time <= end:
                    hours.append(hour)
                else:
                    logger.warning(
                        "OpenAQ sensor %d lists %s, outside the hours asked for (%s to %s): "
                        "left out", sensor, _iso(hour.time), _iso(start), _iso(end),
                    )  # fmt: skip
            if count < self.page_size:
                return hours
        raise _malformed(
            SOURCE, f"sensor {sensor} sent more than {MAX_PAGES} pages for {_iso(start)} to "
            f"{_iso(end)}"
        )  # fmt: skip


def _from_cache(cached: Mapping[str, Any]) -> dict[str, OpenAQLocation]:
    return {f: OpenAQLocation.from_dict(loc) for f, loc in cached["picked"].items()}


def _metres(lat1: float, lon1: float, lat2: float, lon2: float | None) -> float | None:
    if lon2 is None:
        return None
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))
