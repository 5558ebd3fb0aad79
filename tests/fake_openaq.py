"""A fake OpenAQ API v3 on 127.0.0.1, speaking v3's exact formats.

Fixture ``openaq_server`` -> :class:`FakeOpenAQ` (``.url`` ends in ``/v3``; ``.api_key``).
Shapes are copied from replies recorded in the official SDK's tests (openaq/openaq-python
``tests/unit/responses/locations.json`` and ``measurements.json``, commit 6dd7a114; see
docs/sources.md): ``{"meta": {"name": "openaq-api", "website": "/", "page", "limit",
"found"}, "results": [...]}``; a location with ``country``, ``owner``, ``provider``,
``isMobile``, ``isMonitor``, ``instruments``, ``sensors`` (``parameter.name`` "pm25",
``units`` "µg/m³"), ``coordinates``, ``bounds``, ``distance``, ``datetimeFirst/Last``
(``{"utc", "local"}``); an hour with ``period`` (label "1hour", ``datetimeFrom`` the
start of the hour, ``datetimeTo`` its end, as the API's ``fetch_hours`` builds it from its
hour-ending stamp), ``value``, ``parameter``, ``summary`` and ``coverage``.

Behaviour as the API: the key must come as ``X-API-Key`` (else 401); every reply carries
``x-ratelimit-limit``/``-remaining``/``-used``/``-reset``; ``/v3/sensors/{id}/hours``
filters on the hour's end (``datetime_from < end <= datetime_to``) and pages with
``limit``/``page``; an unknown location or sensor is a 404; ``/v1/`` and ``/v2/`` paths are
410 Gone. Scripted behaviour as for the other fakes (``set_data``, ``fail``, ``malform``,
``requests``), plus::

    server.locations          # the locations served (add, remove or edit entries)
    server.remaining = 0      # what x-ratelimit-remaining says (None: count down from 60)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from fake_sources import _HTML, HOUR, FakeServer, _Malformation, _running

#: Ways an OpenAQ reply can be broken, for ``server.malform(kind)``.
OPENAQ_MALFORMED_KINDS = (
    "truncated",  # valid JSON cut off half-way
    "html",  # an HTML error page with status 200
    "no_results",  # an object without "results"
    "string_value",  # one hour's value is "12.5", not a number
    "no_period",  # one hour without its period
    "half_hour",  # one hour's period starts at half past
    "negative",  # one hour's value is negative
    "duplicate",  # one hour listed twice
)

_SENSORS = {"pm25": (2, "PM2.5"), "pm10": (1, "PM10"), "no2": (7, "NO₂"), "o3": (10, "O₃")}


def openaq_location(
    location_id: int,
    name: str,
    latitude: float,
    longitude: float,
    sensors: dict[str, int],
    *,
    provider: str = "AURN",
    owner: str = "Department for Environment, Food & Rural Affairs",
    licenses: list[dict[str, Any]] | None = None,
    last: str = "2030-01-01T00:00:00Z",
    timezone: str = "Europe/London",
    country: tuple[int, str, str] = (79, "GB", "United Kingdom"),
) -> dict[str, Any]:
    """One location as ``/v3/locations`` sends it; ``sensors`` maps "pm25" etc. to ids."""
    entries = []
    for parameter, sensor_id in sensors.items():
        parameter_id, display = _SENSORS[parameter]
        units = "µg/m³" if parameter.startswith("pm") else "ppm"
        entries.append(
            {
                "id": sensor_id,
                "name": f"{parameter} {units}",
                "parameter": {
                    "id": parameter_id,
                    "name": parameter,
                    "units": units,
                    "displayName": display,
                },
            }
        )
    location: dict[str, Any] = {
        "id": location_id,
        "name": name,
        "locality": None,
        "timezone": timezone,
        "country": dict(zip(("id", "code", "name"), country, strict=True)),
        "owner": {"id": 4, "name": owner},
        "provider": {"id": 71, "name": provider},
        "isMobile": False,
        "isMonitor": True,
        "instruments": [{"id": 2, "name": "Government Monitor"}],
        "sensors": entries,
        "coordinates": {"latitude": latitude, "longitude": longitude},
        "bounds": [longitude, latitude, longitude, latitude],
        "distance": None,
        "datetimeFirst": {"utc": "2016-03-06T19:00:00Z", "local": "2016-03-06T19:00:00+00:00"},
        "datetimeLast": {"utc": last, "local": last.replace("Z", "+00:00")},
    }
    if licenses is not None:
        location["licenses"] = licenses
    return location


OGL = {
    "id": 33,
    "name": "Open Government Licence v3.0",
    "attribution": {"name": "Defra, UK-AIR", "url": "https://uk-air.defra.gov.uk"},
    "dateFrom": "2016-01-01",
    "dateTo": None,
}


def default_locations() -> list[dict[str, Any]]:
    """A small London: two AURN monitors, one measuring PM2.5 only, one with gases only."""
    return [
        openaq_location(
            2178, "London Marylebone Road", 51.52253, -0.15461,
            {"pm25": 3920, "pm10": 3919, "no2": 3916}, licenses=[OGL],
        ),
        openaq_location(
            2179, "London Bloomsbury", 51.52229, -0.12589, {"pm25": 3930}, licenses=[OGL]
        ),
        openaq_location(159, "London Westminster", 51.49467, -0.13193, {"no2": 401, "o3": 402}),
    ]  # fmt: skip


def _stamp(when: float) -> dict[str, str]:
    iso = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {"utc": iso + "Z", "local": iso + "+00:00"}


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_HOURS_PATH = re.compile(r"^/v3/sensors/(?P<id>\d+)/hours$")
_LOCATION_PATH = re.compile(r"^/v3/locations/(?P<id>\d+)$")


@dataclass
class FakeOpenAQ(FakeServer):
    """OpenAQ v3's locations and sensor hours, as the API answers them."""

    api_key: str = "openaq-test-key-5f1c9a"
    locations: list[dict[str, Any]] = field(default_factory=default_locations)
    remaining: int | None = None
    reset: int = 37

    @property
    def url(self) -> str:
        return super().url + "/v3"

    def error_body(self, status: int) -> Any:
        return {"detail": {401: "Unauthorized", 404: "Not found", 410: "Gone"}.get(status, "")}

    def _meta(self, page: int, limit: int, found: int) -> dict[str, Any]:
        return {"name": "openaq-api", "website": "/", "page": page, "limit": limit, "found": found}

    def route(self, path: str, params: dict[str, str]) -> tuple[int, Any] | None:
        if path.startswith(("/v1/", "/v2/")):
            return 410, self.error_body(410)
        if path == "/v3/locations":
            return 200, self._near(params)
        match = _LOCATION_PATH.match(path)
        if match:
            found = [loc for loc in self.locations if loc["id"] == int(match["id"])]
            if not found:
                return 404, {"detail": "Location not found"}
            return 200, {"meta": self._meta(1, 100, 1), "results": found}
        match = _HOURS_PATH.match(path)
        if match:
            return self._hours(int(match["id"]), params)
        return None

    def _near(self, params: dict[str, str]) -> dict[str, Any]:
        latitude, longitude = (float(part) for part in params["coordinates"].split(","))
        radius = int(params.get("radius", "25000"))
        results = []
        for loc in self.locations:
            where = loc["coordinates"]
            distance = _metres(latitude, longitude, where["latitude"], where["longitude"])
            if distance <= radius:
                results.append({**loc, "distance": round(distance, 1)})
        limit = int(params.get("limit", "100"))
        return {"meta": self._meta(1, limit, len(results)), "results": results[:limit]}

    def _sensor(self, sensor_id: int) -> str | None:
        for loc in self.locations:
            for sensor in loc["sensors"]:
                if sensor["id"] == sensor_id:
                    return sensor["parameter"]["name"]
        return None

    def _hours(self, sensor_id: int, params: dict[str, str]) -> tuple[int, Any]:
        parameter = self._sensor(sensor_id)
        if parameter is None:
            return 404, {"detail": "Sensor not found"}
        low, high = _when(params["datetime_from"]), _when(params["datetime_to"])
        limit, page = int(params.get("limit", "100")), int(params.get("page", "1"))
        key = "pm2_5" if parameter == "pm25" else "pm10"
        parameter_id = _SENSORS[parameter][0]
        rows = []
        # The API's hourly_data.datetime ends the hour: datetime_from < end <= datetime_to.
        for start, values in self.hours(low, high - HOUR):
            value = None if values is None else values.get(key)
            if value is None:
                continue
            rows.append(
                {
                    "period": {
                        "label": "1hour",
                        "interval": "01:00:00",
                        "datetimeFrom": _stamp(start),
                        "datetimeTo": _stamp(start + HOUR),
                    },
                    "value": value,
                    "parameter": {
                        "id": parameter_id,
                        "name": parameter,
                        "units": "µg/m³",
                        "displayName": None,
                    },
                    "coordinates": None,
                    "summary": {
                        "min": value,
                        "q02": value,
                        "q25": value,
                        "median": value,
                        "q75": value,
                        "q98": value,
                        "max": value,
                        "sd": None,
                    },
                    "coverage": {
                        "expectedCount": 1,
                        "expectedInterval": "01:00:00",
                        "observedCount": 1,
                        "observedInterval": "01:00:00",
                        "percentComplete": 100,
                        "percentCoverage": 100,
                        "datetimeFrom": _stamp(start + HOUR),
                        "datetimeTo": _stamp(start + HOUR),
                    },
                }
            )
        shown = rows[(page - 1) * limit : page * limit]
        return 200, {"meta": self._meta(page, limit, len(rows)), "results": shown}

    def refuse(self, handler: BaseHTTPRequestHandler) -> int | None:
        return 401 if handler.headers.get("X-API-Key") != self.api_key else None

    def reply_headers(self) -> dict[str, str]:
        used = len(self.requests)
        remaining = self.remaining if self.remaining is not None else max(0, 60 - used)
        return {
            "x-ratelimit-limit": "60",
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(used),
            "x-ratelimit-reset": str(self.reset),
        }

    def break_reply(self, kind: str, body: Any) -> Any:
        if kind == "html":
            return _HTML, "text/html; charset=utf-8"
        if kind == "truncated":
            text = json.dumps(body)
            return text[: max(1, len(text) // 2)], "application/json"
        if kind == "no_results":
            return {"meta": body.get("meta"), "detail": "unexpected"}
        rows = body.get("results") or []
        if not rows or "period" not in rows[0]:
            return body  # the kinds below break hours, not locations
        if kind == "string_value":
            rows[0]["value"] = str(rows[0]["value"])
        elif kind == "no_period":
            del rows[len(rows) // 2]["period"]
        elif kind == "half_hour":
            period = rows[0]["period"]
            period["datetimeFrom"]["utc"] = period["datetimeFrom"]["utc"][:-6] + "30:00Z"
        elif kind == "negative":
            rows[0]["value"] = -3.2
        elif kind == "duplicate":
            rows.append(dict(rows[0]))
        return body

    def malform(self, kind: str, *, times: int | None = None) -> None:
        if kind not in OPENAQ_MALFORMED_KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {OPENAQ_MALFORMED_KINDS}")
        self._script.append((_Malformation(kind), times))

    def hour_requests(self) -> list[tuple[int, str, str, str]]:
        """(sensor, datetime_from, datetime_to, page) of each hours request, in order."""
        out = []
        for request in self.requests:
            match = _HOURS_PATH.match(request.path)
            if match:
                p = request.params
                out.append((int(match["id"]), p["datetime_from"], p["datetime_to"], p["page"]))
        return out

    def location_requests(self) -> list[str]:
        """The path (and coordinates) of each locations request."""
        return [
            r.path
            + (f"?coordinates={r.params['coordinates']}" if "coordinates" in r.params else "")
            for r in self.requests
            if r.path.startswith("/v3/locations")
        ]


@pytest.fixture
def openaq_server() -> Iterator[FakeOpenAQ]:
    """A fake OpenAQ v3 API on 127.0.0.1 (``.url``, ``.api_key``), stopped after the test."""
    yield from _running(FakeOpenAQ())
