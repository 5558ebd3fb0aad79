"""The London Air Quality Network (LAQN) as a source: measured hourly PM2.5 and PM10 by site.

The Environmental Research Group (Imperial College London) publishes the network's data
keylessly under the Open Government Licence at ``https://api.erg.ic.ac.uk/AirQuality``.
Two operations are used:

- ``Data/SiteSpecies/SiteCode={site}/SpeciesCode={PM25|PM10}/StartDate={d}/EndDate={d}/Json``
  → ``{"RawAQData": {"@SiteCode", "@SpeciesCode", "Data": [{"@MeasurementDateGMT",
  "@Value"}, ...]}}``: one row per hour of the whole days asked for (``EndDate`` is
  exclusive); every value a string, ``""`` for a missing hour.
- ``Information/MonitoringSiteSpecies/GroupName=London/Json`` → ``{"Sites": {"Site":
  [...]}}``: each site's code, name, coordinates, opening/closing dates and the species it
  measures (``Species``), cached in the store and refreshed at most daily.

The API's quirks, each handled here: every key begins with ``@`` and every value is a
string; ``Data``, ``Site`` and ``Species`` are a single object instead of a list when there
is one item, and may be absent; the reply may begin with a UTF-8 byte-order mark;
``@MeasurementDateGMT`` (``YYYY-MM-DD HH:MM:SS``, GMT all year) is the *start* of the
hourly mean, which is also what ``Reading.time`` means; ``@LatitudeWGS84`` and
``@LongitudeWGS84`` are Web-Mercator map metres despite their names, so only ``@Latitude``
and ``@Longitude`` (degrees) are read; negative values (instrument noise around zero) are
refused one by one: stored as missing and logged, never as a concentration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import SourceConfigurationError, SourceError
from ._http import (
    DEFAULT_TIMEOUT,
    MAX_PLAUSIBLE_CONCENTRATION,
    MAX_REPLY_BYTES,
    _kind,
    _malformed,
    get_json,
)
from ._model import HOUR, LAQN_PREFIX, Location, Provenance, Reading
from ._openaq import OPENAQ_ATTRIBUTION

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "DEFAULT_LAQN_SITES",
    "LAQN_ATTRIBUTION",
    "PM_SPECIES",
    "SITES_KEY",
    "SITES_MAX_AGE",
    "SOURCE_ATTRIBUTIONS",
    "LaqnSite",
    "LaqnSource",
    "parse_site_list",
]

logger = logging.getLogger("airq_nb.collector")

SOURCE = "LAQN"
#: The text to show under charts or tables of LAQN data (the licence asks for it).
LAQN_ATTRIBUTION = (
    "Measured data: London Air Quality Network (LAQN), Environmental Research Group, "
    "Imperial College London. Contains public sector information licensed under the "
    "Open Government Licence v3.0."
)
#: Attribution per source name, for charts that show several sources side by side.
SOURCE_ATTRIBUTIONS: Mapping[str, str] = {
    "laqn": LAQN_ATTRIBUTION,
    "open-meteo": "Modelled data: Open-Meteo.com (CC BY 4.0), generated using Copernicus "
    "Atmosphere Monitoring Service information.",
    "openweathermap": "Modelled data: OpenWeather (CC BY-SA 4.0).",
    "openaq": OPENAQ_ATTRIBUTION,
}
#: LAQN species codes for the pollutants airq_nb keeps, and the Reading field of each.
PM_SPECIES = {"PM25": "pm2_5", "PM10": "pm10"}
#: Sites collected when LAQN is chosen without naming one: North Kensington (urban
#: background) and Marylebone Road (kerbside); both measure PM2.5 and PM10.
DEFAULT_LAQN_SITES = ("KF1", "MY7")
#: Sites people ask for that measure no particulates at all (so say so plainly).
_NO_PM_NOTES = {
    "MY1": "Marylebone Road's MY1 measures gases only; its particulates are MY7's",
    "KC1": "North Kensington's KC1 measures gases only; its particulates are KF1's",
}
#: KV key of the cached site list.
SITES_KEY = ("airq_nb", "laqn", "sites")
#: How long the cached site list is used before it is fetched again.
SITES_MAX_AGE = timedelta(days=1)

# One site-list refresh at a time per event loop: runs for two sites delivered together
# must not both fetch the list (the second waits, then finds it stored).
_SITES_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)

_GMT_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


@dataclass(frozen=True, slots=True)
class LaqnSite:
    """A monitoring site from the network's site list (coordinates in degrees, or None)."""

    code: str
    name: str
    latitude: float | None
    longitude: float | None
    open: bool
    #: LAQN codes of the particulate species measured now ("PM25", "PM10").
    pm_species: tuple[str, ...]

    def as_list(self) -> list[Any]:
        return [self.code, self.name, self.latitude, self.longitude, self.open, self.pm_species]

    @classmethod
    def from_list(cls, row: list[Any]) -> LaqnSite:
        code, name, latitude, longitude, is_open, species = row
        return cls(code, name, latitude, longitude, bool(is_open), tuple(species))

    def distance_km(self, other: LaqnSite) -> float | None:
        """Great-circle distance to ``other``, or None when either has no coordinates."""
        if None in (self.latitude, self.longitude, other.latitude, other.longitude):
            return None
        lat1, lon1, lat2, lon2 = map(
            math.radians,
            (self.latitude, self.longitude, other.latitude, other.longitude),  # type: ignore[arg-type]
        )
        a = (
            math.sin((lat2 - lat1) / 2) ** 2
            + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
        )
        return 2 * 6371.0 * math.asin(math.sqrt(a))


def _items(value: Any) -> list[Any]:
    # The API turns a one-item list into the item itself, and leaves an empty one out.
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    return value.strip() if isinstance(value, str) else ""


def _degrees(text: str, limit: float) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and -limit <= value <= limit else None


def parse_site_list(body: Any) -> dict[str, LaqnSite]:
    """Sites by code from a ``MonitoringSiteSpecies`` reply; raises MalformedReplyError."""
    if not isinstance(body, dict) or not isinstance(body.get("Sites"), dict):
        raise _malformed(SOURCE, f"the site list is {_kind(body)} without a 'Sites' object")
    sites = {}
    for item in _items(body["Sites"].get("Site")):
        if not isinstance(item, dict) or not _text(item, "@SiteCode"):
            continue
        code = _text(item, "@SiteCode").upper()
        measured = {
            _text(species, "@SpeciesCode").upper()
            for species in _items(item.get("Species"))
            if isinstance(species, dict) and not _text(species, "@DateMeasurementFinished")
        }
        sites[code] = LaqnSite(
            code=code,
            name=_text(item, "@SiteName") or code,
            latitude=_degrees(_text(item, "@Latitude"), 90),
            longitude=_degrees(_text(item, "@Longitude"), 180),
            open=not _text(item, "@DateClosed"),
            pm_species=tuple(s for s in PM_SPECIES if s in measured),
        )
    if not sites:
        raise _malformed(SOURCE, "the site list names no sites")
    return sites


def _gmt(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


def _value(raw: Any, where: str) -> float | None:
    """A concentration from the API's string value; None for "", negative and absurd values."""
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            raise _malformed(SOURCE, f"{where} is {raw[:40]!r}, expected a number") from None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        number = float(raw)
    else:
        raise _malformed(SOURCE, f"{where} is {_kind(raw)}, expected a number as text")
    if not math.isfinite(number):
        raise _malformed(SOURCE, f"{where} is {raw!r}, expected a finite number")
    # One bad hour must not cost the rest of the reply: refused alone, the collector's
    # window moves on past it (a refused whole reply would be asked for again forever).
    if number > MAX_PLAUSIBLE_CONCENTRATION:
        logger.warning(
            "LAQN %s is %g µg/m³, beyond the plausible %g µg/m³: stored as missing",
            where,
            number,
            MAX_PLAUSIBLE_CONCENTRATION,
        )
        return None
    if number < 0:
        logger.warning("LAQN %s is negative (%g µg/m³): stored as missing", where, number)
        return None
    return number


def parse_species_reply(
    body: Any, *, site: str, species: str, first_day: date, end_day: date
) -> dict[int, float | None]:
    """Hour → value from a ``Data/SiteSpecies`` reply for [``first_day``, ``end_day``)."""
    raw = body.get("RawAQData") if isinstance(body, dict) else None
    if not isinstance(raw, dict):
        raise _malformed(SOURCE, f"the reply is {_kind(body)} without a 'RawAQData' object")
    for key, expected in (("@SiteCode", site), ("@SpeciesCode", species)):
        got = _text(raw, key)
        if got and got.upper() != expected:
            raise _malformed(SOURCE, f"the reply is for {key[1:]} {got!r}, not {expected!r}")
    low = int(datetime.combine(first_day, datetime.min.time(), UTC).timestamp())
    high = int(datetime.combine(end_day, datetime.min.time(), UTC).timestamp())
    values: dict[int, float | None] = {}
    for index, row in enumerate(_items(raw.get("Data"))):
        where = f"{species} Data[{index}]"
        if not isinstance(row, dict):
            raise _malformed(SOURCE, f"{where} is {_kind(row)}, expected an object")
        if "@MeasurementDateGMT" not in row:
            raise _malformed(SOURCE, f"{where} has no '@MeasurementDateGMT' field")
        stamp = row["@MeasurementDateGMT"]
        if not isinstance(stamp, str) or not _GMT_HOUR.match(stamp):
            raise _malformed(
                SOURCE, f"{where}.@MeasurementDateGMT is {_kind(stamp)}, "
                "expected 'YYYY-MM-DD HH:MM:SS'"
            )  # fmt: skip
        try:
            when = _gmt(stamp)
        except ValueError:
            raise _malformed(SOURCE, f"{where} ({stamp!r}) is not a real time") from None
        if when % HOUR:
            raise _malformed(SOURCE, f"{where} ({stamp!r}) is not on the hour")
        if not low <= when < high:
            logger.warning(
                "LAQN %s (%r) is outside the days asked for (%s to %s, exclusive): left out",
                where,
                stamp,
                first_day,
                end_day,
            )
            continue
        if when in values:
            raise _malformed(SOURCE, f"the hour {stamp!r} appears twice in {species}")
        # An absent @Value is read like "": the hour is there, its value is not.
        values[when] = _value(row.get("@Value", ""), f"{where}.@Value")
    return values


@dataclass(frozen=True)
class LaqnSource:
    """Measured hourly PM2.5 and PM10 of one LAQN monitoring site (``laqn:<code>``); no key.

    One request per species per run; the site list (fetched at most daily, cached in the
    store) is checked first, so a closed site or one without particulates is refused with
    the names of nearby sites that have them.
    """

    base_url: str = "https://api.erg.ic.ac.uk/AirQuality"
    timeout: float = DEFAULT_TIMEOUT
    max_reply_bytes: int = MAX_REPLY_BYTES
    #: Species fetched: both by default; prepare() narrows it to what the site measures.
    species: tuple[str, ...] = tuple(PM_SPECIES)
    #: The site from the site list; prepare() sets it (its name and coordinates are stored).
    site: LaqnSite | None = None
    name: str = field(default="laqn", init=False)
    kind: str = field(default="measured", init=False)
    #: The API asks clients to poll no more often than hourly; schedules may not be faster.
    min_interval: timedelta = field(default=timedelta(hours=1), init=False, repr=False)

    def _url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path}"

    async def fetch_sites(self) -> dict[str, LaqnSite]:
        """The network's London sites from ``Information/MonitoringSiteSpecies`` (one request)."""
        body = await get_json(
            SOURCE,
            self._url("Information/MonitoringSiteSpecies/GroupName=London/Json"),
            {},
            timeout=self.timeout,
            max_bytes=self.max_reply_bytes,
        )
        return parse_site_list(body)

    async def sites(self, store: Store) -> dict[str, LaqnSite]:
        """The site list from the store, fetched again when it is older than a day.

        If fetching fails and an older list is stored, that list is used (and logged).
        """
        loop = asyncio.get_running_loop()
        lock = _SITES_LOCKS.get(loop)
        if lock is None:
            lock = _SITES_LOCKS[loop] = asyncio.Lock()
        async with lock:
            return await self._sites(store)

    async def _sites(self, store: Store) -> dict[str, LaqnSite]:
        now = store.clock.now()
        cached = store.get(SITES_KEY).value
        if isinstance(cached, dict) and now - cached.get("fetched_at", -math.inf) < (
            SITES_MAX_AGE.total_seconds()
        ):
            return {row[0]: LaqnSite.from_list(row) for row in cached["sites"]}
        try:
            sites = await self.fetch_sites()
        except SourceError as exc:
            if not isinstance(cached, dict):
                raise
            logger.warning("LAQN site list not refreshed, using the stored one: %s", exc)
            return {row[0]: LaqnSite.from_list(row) for row in cached["sites"]}
        store.set(SITES_KEY, {"fetched_at": now, "sites": [s.as_list() for s in sites.values()]})
        return sites

    async def prepare(self, store: Store, location: Location) -> LaqnSource:
        """This source narrowed to the PM species ``location``'s site measures now.

        Raises SourceConfigurationError for a location that is not an LAQN site, an unknown
        or closed site, or one measuring no particulates, naming nearby sites that do.
        """
        code = location.site
        if code is None:
            raise SourceConfigurationError(
                f"LAQN measures at monitoring sites and {location.name!r} is not one: use a "
                f"location such as {LAQN_PREFIX}KF1 (North Kensington) or {LAQN_PREFIX}MY7 "
                "(Marylebone Road)"
            )
        sites = await self.sites(store)
        site = sites.get(code)
        if site is None:
            raise SourceConfigurationError(
                f"{location.name}: no LAQN site has the code {code!r}; "
                f"{_suggest(sites, None, code)}"
            )
        if not site.open:
            problem = "is closed"
        elif not site.pm_species:
            problem = "measures no PM2.5 or PM10" + (
                f" ({_NO_PM_NOTES[code]})" if code in _NO_PM_NOTES else ""
            )
        else:
            return dataclasses.replace(self, species=site.pm_species, site=site)
        raise SourceConfigurationError(
            f"{location.name} ({site.name}) {problem}; {_suggest(sites, site, code)}"
        )

    def provenance(self, location: Location) -> Provenance:
        """The site's code, name and coordinates (from the site list, once prepared)."""
        site = self.site if self.site is not None and self.site.code == location.site else None
        if site is None:
            return Provenance(location.point)
        return Provenance(site.code, site.name, site.latitude, site.longitude)

    async def fetch(self, location: Location, *, start: int, end: int) -> list[Reading]:
        """Hourly values from ``start`` to ``end`` (inclusive, UTC): whole GMT days are asked
        for (``EndDate`` the day after ``end``, as it is exclusive) and trimmed to the window.

        Every hour the API lists is returned, with None for each species without a value.
        """
        code = location.site
        if code is None:
            raise SourceConfigurationError(
                f"LAQN measures at monitoring sites: use a location such as {LAQN_PREFIX}KF1, "
                f"not {location.name!r}"
            )
        first_day = datetime.fromtimestamp(start, UTC).date()
        end_day = datetime.fromtimestamp(end, UTC).date() + timedelta(days=1)
        by_hour: dict[int, dict[str, float | None]] = {}
        for species in self.species:
            body = await get_json(
                SOURCE,
                self._url(
                    f"Data/SiteSpecies/SiteCode={code}/SpeciesCode={species}/"
                    f"StartDate={first_day.isoformat()}/EndDate={end_day.isoformat()}/Json"
                ),
                {},
                timeout=self.timeout,
                max_bytes=self.max_reply_bytes,
            )
            values = parse_species_reply(
                body, site=code, species=species, first_day=first_day, end_day=end_day
            )
            for when, value in values.items():
                if start <= when <= end:
                    by_hour.setdefault(when, {})[PM_SPECIES[species]] = value
        # Hours the API listed without a value are returned too (all None): the collector
        # stores no new empty hour, but one whose value was withdrawn is updated and logged.
        return [
            Reading(time=when, pm2_5=values.get("pm2_5"), pm10=values.get("pm10"))
            for when, values in sorted(by_hour.items())
        ]


def _suggest(sites: Mapping[str, LaqnSite], near: LaqnSite | None, code: str) -> str:
    """Sites to offer instead: by distance from ``near``, else by a similar code."""
    candidates = [s for s in sites.values() if s.open and s.pm_species and s.code != code]
    shown: list[str] = []
    if near is not None and near.latitude is not None:
        ranked = sorted(
            ((d, s) for s in candidates if (d := near.distance_km(s)) is not None),
            key=lambda pair: pair[0],
        )
        shown = [f"{LAQN_PREFIX}{s.code} ({s.name}, {d:.1f} km)" for d, s in ranked[:3]]
        lead = "nearby sites that measure PM"
    else:
        similar = [s for s in candidates if s.code[:2] == code[:2]]
        defaults = [sites[c] for c in DEFAULT_LAQN_SITES if c in sites and sites[c] in candidates]
        picked = list(dict.fromkeys([*similar[:3], *defaults]))
        shown = [f"{LAQN_PREFIX}{s.code} ({s.name})" for s in picked]
        lead = "sites that measure PM include"
    if not shown:
        return "no open LAQN site measuring PM is known; check the code at londonair.org.uk"
    return f"{lead}: {', '.join(shown)}"
