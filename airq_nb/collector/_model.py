"""The collector's data types: where to collect (:class:`Location`), what a source returns
(:class:`Reading`) and what a source is (:class:`Source`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._errors import (
    ConfigurationError,
)

__all__ = [
    "HOUR",
    "LAQN_PREFIX",
    "LONDON",
    "OPENAQ_PREFIX",
    "Location",
    "Provenance",
    "Reading",
    "Source",
]

HOUR = 3600

#: Prefix of a location that names a London Air Quality Network site: ``laqn:KF1``.
LAQN_PREFIX = "laqn:"
_SITE_CODE = re.compile(r"^[A-Z0-9]{2,4}$")
#: Prefix of a location that names an OpenAQ (v3) location by its id: ``openaq:2178``.
OPENAQ_PREFIX = "openaq:"
_OPENAQ_ID = re.compile(r"^[1-9][0-9]{0,11}$")


@dataclass(frozen=True, slots=True)
class Location:
    """A named place to collect for; ``name`` identifies its readings and its schedule.

    A point has a latitude and longitude (for the modelled sources, and for OpenAQ, which
    finds the monitors nearest to it). A monitoring site of the London Air Quality Network
    is named ``laqn:<code>`` (``laqn:KF1``), an OpenAQ location ``openaq:<id>``
    (``openaq:2178``); they need none: their coordinates come from the network.
    """

    name: str
    latitude: float | None
    longitude: float | None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError("a Location needs a non-empty name, e.g. 'London'")
        if self.name[: len(OPENAQ_PREFIX)].lower() == OPENAQ_PREFIX:
            if not _OPENAQ_ID.match(self.name[len(OPENAQ_PREFIX) :]):
                raise ConfigurationError(
                    f"{self.name!r} is not an OpenAQ location: use openaq:<location id>, "
                    "e.g. openaq:2178 (ids are on explore.openaq.org)"
                )
            if self.latitude is not None or self.longitude is not None:
                raise ConfigurationError(
                    f"{self.name}: an OpenAQ location has the network's coordinates; give "
                    "none, or a 'name,latitude,longitude' to collect its nearest monitors"
                )
            return
        if self.site is not None:
            if not _SITE_CODE.match(self.site):
                raise ConfigurationError(
                    f"{self.name!r} is not an LAQN site: use laqn:<site code>, e.g. laqn:KF1"
                )
            if (self.latitude is None) != (self.longitude is None):
                raise ConfigurationError(
                    f"{self.name}: give both latitude and longitude, or neither"
                )
            if self.latitude is None:
                return
        for what, value, limit in (
            ("latitude", self.latitude, 90),
            ("longitude", self.longitude, 180),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{what} must be a number, got {value!r}")
            if not -limit <= value <= limit:
                raise ConfigurationError(f"{what} must be within ±{limit}, got {value!r}")

    @property
    def site(self) -> str | None:
        """The LAQN site code of a ``laqn:<code>`` location, else None."""
        if self.name[: len(LAQN_PREFIX)].lower() == LAQN_PREFIX:
            return self.name[len(LAQN_PREFIX) :]
        return None

    @property
    def openaq_id(self) -> int | None:
        """The OpenAQ location id of an ``openaq:<id>`` location, else None."""
        if self.name[: len(OPENAQ_PREFIX)].lower() == OPENAQ_PREFIX:
            return int(self.name[len(OPENAQ_PREFIX) :])
        return None

    @property
    def point(self) -> str:
        """What the readings stand for: the site code, the OpenAQ id or "latitude,longitude"."""
        if self.site is not None:
            return self.site
        if self.openaq_id is not None:
            return str(self.openaq_id)
        return f"{self.latitude:.4f},{self.longitude:.4f}"

    def as_dict(self) -> dict[str, Any]:
        """The location as JSON-ready data (for queue messages)."""
        return {"name": self.name, "latitude": self.latitude, "longitude": self.longitude}

    @classmethod
    def parse(cls, text: str) -> Location:
        """A location from text: ``"London"``, ``"laqn:KF1"`` (an LAQN monitoring site),
        ``"openaq:2178"`` (an OpenAQ location), or ``"name,latitude,longitude"``."""
        if text.strip().lower() == LONDON.name.lower():
            return LONDON
        if text.strip()[: len(OPENAQ_PREFIX)].lower() == OPENAQ_PREFIX:
            return cls(OPENAQ_PREFIX + text.strip()[len(OPENAQ_PREFIX) :].strip(), None, None)
        if text.strip()[: len(LAQN_PREFIX)].lower() == LAQN_PREFIX:
            code = text.strip()[len(LAQN_PREFIX) :].strip().upper()
            return cls(LAQN_PREFIX + code, None, None)
        try:
            name, latitude, longitude = (part.strip() for part in text.split(","))
            return cls(name, float(latitude), float(longitude))
        except ValueError:
            raise ConfigurationError(
                f"location {text!r}: use 'London', an LAQN site such as 'laqn:KF1', an OpenAQ "
                "location such as 'openaq:2178', or 'name,latitude,longitude', e.g. "
                "'Paris,48.8566,2.3522'"
            ) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Location:
        """Rebuild a location from :meth:`as_dict` output."""
        try:
            latitude, longitude = data.get("latitude"), data.get("longitude")
            return cls(
                str(data["name"]),
                None if latitude is None else float(latitude),
                None if longitude is None else float(longitude),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
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
    #: The source's details for this hour (JSON-ready; OpenAQ: sensor ids and coverage),
    #: stored in the ``provenance`` column with the series' own :attr:`Provenance.details`.
    details: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True, slots=True)
class Provenance:
    """What a series' readings stand for: the site or point, its name and coordinates, and
    the source's own details (JSON-ready: an OpenAQ location's id, provider and licences).

    A source that knows its site says so with ``provenance(location)``; for any other the
    collector uses :meth:`of` the location (a point, named after the location).
    """

    point: str
    site_name: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    details: Mapping[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def of(cls, location: Location) -> Provenance:
        """A location's own provenance: its point, name and coordinates."""
        if location.latitude is None:
            return cls(location.point)
        return cls(location.point, location.name, location.latitude, location.longitude)


@runtime_checkable
class Source(Protocol):
    """What the collector needs from a source: a ``name`` and ``fetch`` for a window of hours.

    A source may also have ``kind`` ("measured" or "modelled"; "modelled" if absent), stored
    with each reading, and ``prepare(store, location)``, awaited before each run's fetch: it
    may refuse the location (raising a SourceError) or return the source to fetch with;
    ``provenance(location)``, the :class:`Provenance` its readings are stored with (else the
    location's own); and ``min_interval`` (a timedelta), the shortest schedule interval its
    API allows.
    """

    name: str

    async def fetch(self, location: Location, *, start: int, end: int) -> list[Reading]:
        """Readings for each available whole hour from ``start`` to ``end`` (inclusive, UTC)."""
        ...
