"""Reading OpenAQ v3 replies: locations (with their PM sensors, provider and licences) and a
sensor's hourly values.

Shapes are those of replies recorded in public repositories (docs/sources.md): every reply
is ``{"meta": {"page", "limit", "found"}, "results": [...]}``. A location has ``id``,
``name``, ``locality``, ``timezone``, ``country``, ``owner``, ``provider`` (``{"id",
"name"}``), ``isMobile``, ``isMonitor``, ``sensors`` (``[{"id", "name", "parameter":
{"id", "name": "pm25", "units": "µg/m³"}}]``), ``coordinates`` (degrees), ``distance``
(metres from the coordinates asked for, else null), ``datetimeFirst``/``datetimeLast``
(``{"utc", "local"}``) and, on the live API, ``licenses``. An hour of
``/v3/sensors/{id}/hours`` has ``period`` (``{"label": "1hour", "interval": "01:00:00",
"datetimeFrom": {"utc", "local"}, "datetimeTo": ...}``), ``value``, ``parameter``,
``summary`` and ``coverage`` (``expectedCount``, ``observedCount``, ``percentComplete``...).

``period.datetimeFrom`` is the **start** of the hour (the API serves
``hourly_data.datetime - 1 hour``, its hour-ending stamp less an hour) and ``datetimeTo``
its end: the hour is stored under ``datetimeFrom``, as ``Reading.time`` means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._http import MAX_PLAUSIBLE_CONCENTRATION, _kind, _malformed
from ._model import HOUR

__all__ = [
    "PM_PARAMETERS",
    "OpenAQHour",
    "OpenAQLocation",
    "parse_hours",
    "parse_locations",
]

logger = logging.getLogger("airq_nb.collector")

SOURCE = "OpenAQ"
#: OpenAQ parameter names for the pollutants airq_nb keeps, and the Reading field of each.
PM_PARAMETERS = {"pm25": "pm2_5", "pm10": "pm10"}
_UNITS = "µg/m³"


@dataclass(frozen=True, slots=True)
class OpenAQLocation:
    """An OpenAQ location: where it is, who provides its data, and its PM sensors."""

    id: int
    name: str
    latitude: float | None
    longitude: float | None
    provider: str | None
    owner: str | None
    #: Licence texts the location's data come under ("CC BY 4.0 (attribution: ...)").
    licenses: tuple[str, ...]
    #: Sensor id per Reading field ("pm2_5", "pm10") of the PM sensors in µg/m³.
    sensors: Mapping[str, int] = field(hash=False)
    #: Metres from the coordinates searched for, when the reply gives it.
    distance: float | None
    #: Unix seconds of the newest value OpenAQ holds, when given.
    last: float | None
    #: The location's IANA time zone ("Europe/London"), when the reply names a known one.
    timezone: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the store's KV cache."""
        return {
            "id": self.id,
            "name": self.name,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "provider": self.provider,
            "owner": self.owner,
            "licenses": list(self.licenses),
            "sensors": dict(self.sensors),
            "distance": self.distance,
            "last": self.last,
            "timezone": self.timezone,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenAQLocation:
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            latitude=data.get("latitude"),
            longitude=data.get("longitude"),
            provider=data.get("provider"),
            owner=data.get("owner"),
            licenses=tuple(data.get("licenses") or ()),
            sensors={str(k): int(v) for k, v in (data.get("sensors") or {}).items()},
            distance=data.get("distance"),
            last=data.get("last"),
            timezone=data.get("timezone"),
        )

    def label(self) -> str:
        """``openaq:2178 (Del Norte, AirNow)``, for messages."""
        behind = f", {self.provider}" if self.provider else ""
        away = f", {self.distance / 1000:.1f} km" if self.distance is not None else ""
        return f"openaq:{self.id} ({self.name}{behind}{away})"


@dataclass(frozen=True, slots=True)
class OpenAQHour:
    """One hour of one sensor: its start (Unix seconds, UTC), value and coverage."""

    time: int
    value: float | None
    observed: int | None
    expected: int | None


def _results(body: Any, what: str) -> list[Any]:
    if not isinstance(body, dict):
        raise _malformed(SOURCE, f"the {what} reply is {_kind(body)}, expected an object")
    results = body.get("results")
    if not isinstance(results, list):
        raise _malformed(SOURCE, f"the {what} reply has no 'results' list ({_kind(results)})")
    return results


def _name(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"].strip() or None
    return None


def _degrees(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and -limit <= value <= limit else None


def _utc(value: Any) -> float | None:
    """Unix seconds from ``{"utc": "2023-10-16T12:00:00+00:00" | "...Z"}``, or None."""
    text = value.get("utc") if isinstance(value, dict) else None
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _zone(value: Any) -> str | None:
    """An IANA zone name this machine knows ("Europe/London"), else None."""
    from zoneinfo import ZoneInfo

    if not isinstance(value, str) or not value.strip():
        return None
    try:
        ZoneInfo(value.strip())
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return None
    return value.strip()


def _licence(item: Any) -> str | None:
    # {"id", "name", "attribution": {"name", "url"}, "dateFrom", "dateTo"}; only the name
    # and the attribution asked for are kept.
    name = _name(item)
    if name is None:
        return None
    attribution = _name(item.get("attribution"))
    return f"{name} (attribution: {attribution})" if attribution else name


def parse_locations(body: Any) -> list[OpenAQLocation]:
    """The locations of a ``/v3/locations`` reply; raises MalformedReplyError.

    An entry without an integer ``id`` is left out (and logged); so is a sensor that is not
    PM2.5 or PM10 in µg/m³. A location keeps its first sensor of each pollutant.
    """
    found = []
    for index, item in enumerate(_results(body, "locations")):
        if not isinstance(item, dict) or isinstance(item.get("id"), bool):
            logger.warning("OpenAQ locations results[%d] is not a location: left out", index)
            continue
        if not isinstance(item.get("id"), int):
            logger.warning("OpenAQ locations results[%d] has no integer id: left out", index)
            continue
        sensors: dict[str, int] = {}
        for sensor in item.get("sensors") or []:
            parameter = sensor.get("parameter") if isinstance(sensor, dict) else None
            if not isinstance(parameter, dict) or not isinstance(sensor.get("id"), int):
                continue
            pollutant = PM_PARAMETERS.get(str(parameter.get("name", "")).lower())
            if pollutant is not None and parameter.get("units") == _UNITS:
                sensors.setdefault(pollutant, sensor["id"])
        coordinates = item.get("coordinates") if isinstance(item.get("coordinates"), dict) else {}
        distance = item.get("distance")
        found.append(
            OpenAQLocation(
                id=item["id"],
                name=(item.get("name") or "").strip() or f"location {item['id']}",
                latitude=_degrees(coordinates.get("latitude"), 90),
                longitude=_degrees(coordinates.get("longitude"), 180),
                provider=_name(item.get("provider")),
                owner=_name(item.get("owner")),
                licenses=tuple(text for text in map(_licence, item.get("licenses") or []) if text),
                sensors=sensors,
                distance=float(distance)
                if isinstance(distance, int | float) and not isinstance(distance, bool)
                else None,
                last=_utc(item.get("datetimeLast")),
                timezone=_zone(item.get("timezone")),
            )
        )
    return found


def _bad_row(sensor: int, index: int, problem: str) -> None:
    logger.warning(
        "OpenAQ sensor %d results[%d] %s: left out, nothing of it is stored", sensor, index, problem
    )


def parse_hours(body: Any, *, sensor: int, parameter: str) -> tuple[list[OpenAQHour], int]:
    """The hours of a ``/v3/sensors/{id}/hours`` page and how many results it had.

    A reply that is not an object with a ``results`` list raises MalformedReplyError (and
    nothing of it is written). A row that is broken on its own — no period, a period that
    is not one whole hour, another parameter, a value that is not a number — is left out
    and logged, the rest kept; a negative or implausible value is kept as missing (logged),
    as for LAQN. The same hour twice is a malformed reply.
    """
    results = _results(body, "hours")
    hours: dict[int, OpenAQHour] = {}
    for index, row in enumerate(results):
        if not isinstance(row, dict):
            _bad_row(sensor, index, f"is {_kind(row)}, not an object")
            continue
        period = row.get("period") if isinstance(row.get("period"), dict) else {}
        start, end = _utc(period.get("datetimeFrom")), _utc(period.get("datetimeTo"))
        if start is None or end is None:
            _bad_row(sensor, index, "has no period.datetimeFrom/datetimeTo in UTC")
            continue
        if start % HOUR or end - start != HOUR:
            _bad_row(sensor, index, "is not one whole hour (period.datetimeFrom to datetimeTo)")
            continue
        named = _name(row.get("parameter"))
        if named is not None and named.lower() != parameter:
            _bad_row(sensor, index, f"is for {named!r}, not {parameter!r}")
            continue
        value = row.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            _bad_row(sensor, index, f"has a value that is {_kind(value)}, not a number")
            continue
        if value is not None and not math.isfinite(value):
            _bad_row(sensor, index, f"has the value {value!r}")
            continue
        if value is not None and not 0 <= value <= MAX_PLAUSIBLE_CONCENTRATION:
            logger.warning(
                "OpenAQ sensor %d at %s is %g µg/m³ (negative or beyond the plausible "
                "%g µg/m³): stored as missing",
                sensor, period["datetimeFrom"].get("utc"), value, MAX_PLAUSIBLE_CONCENTRATION,
            )  # fmt: skip
            value = None
        when = int(start)
        if when in hours:
            raise _malformed(SOURCE, f"sensor {sensor} lists the hour {start:.0f} twice")
        coverage = row.get("coverage") if isinstance(row.get("coverage"), dict) else {}
        hours[when] = OpenAQHour(
            when,
            None if value is None else float(value),
            _count(coverage.get("observedCount")),
            _count(coverage.get("expectedCount")),
        )
    return sorted(hours.values(), key=lambda h: h.time), len(results)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
