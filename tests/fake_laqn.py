"""A fake LAQN (ERG AirQuality API) on 127.0.0.1, speaking the API's exact formats and quirks.

Fixture ``laqn_server`` -> :class:`FakeLaqn` (``.url``; use it as ``base_url=`` or in
``AIRQ_NB_LAQN_URL``). Shapes follow replies recorded in public repositories (see
docs/sources.md): ``{"RawAQData": {"@SiteCode", "@SpeciesCode", "Data": [{
"@MeasurementDateGMT": "2022-12-10 00:00:00", "@Value": "111.4"}, ...]}}`` for
``Data/SiteSpecies/...`` and ``{"Sites": {"Site": [{"@SiteCode", "@Latitude", ...,
"Species": [...]}]}}`` for ``Information/MonitoringSiteSpecies/GroupName=London/Json``.

Quirks, all on by default: every key starts with ``@`` and every value is a string; a
missing hour is ``"@Value": ""``; a one-item list is sent as the item itself and an empty
one is left out; ``EndDate`` is exclusive (whole GMT days from ``StartDate`` 00:00 up to
``EndDate`` 00:00); the body begins with a UTF-8 byte-order mark (``bom=False`` to drop
it); ``@LatitudeWGS84``/``@LongitudeWGS84`` are Web-Mercator metres. Scripted behaviour as
for the other fakes (``set_data``, ``fail``, ``malform``, ``delay``, ``drop_connection``,
``requests``), plus::

    server.published_until = t   # hours after t are not measured yet: "@Value": ""
    server.sites                 # the site list served (add, remove or edit entries)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fake_sources import _HTML, DEEP_JSON, HOUR, FakeServer, _Malformation, _running

#: Ways a LAQN reply can be broken, for ``server.malform(kind)``.
LAQN_MALFORMED_KINDS = (
    "truncated",  # valid JSON cut off half-way
    "html",  # an HTML error page with status 200
    "not_json",  # plain text
    "wrong_types",  # a value that is not a number ("n/a")
    "absurd",  # "99999"
    "nan",  # "NaN", which float() accepts
    "outside_window",  # a row 30 days before StartDate
    "non_hourly",  # a time at half past
    "missing_field",  # a row without @MeasurementDateGMT
    "deep",  # arrays nested 100,000 deep
    "wrong_species",  # the reply names another species than asked for
    "no_raw_data",  # a JSON object without RawAQData
)

_DATA_PATH = re.compile(
    r"^/Data/SiteSpecies/SiteCode=(?P<site>[^/]*)/SpeciesCode=(?P<species>[^/]*)/"
    r"StartDate=(?P<start>[^/]*)/EndDate=(?P<end>[^/]*)/Json$"
)
_SITES_PATH = "/Information/MonitoringSiteSpecies/GroupName=London/Json"

_SPECIES_NAMES = {
    "CO": "Carbon Monoxide",
    "NO2": "Nitrogen Dioxide",
    "O3": "Ozone",
    "PM10": "PM10 Particulate",
    "PM25": "PM2.5 Particulate",
    "SO2": "Sulphur Dioxide",
}


def _mercator(latitude: float, longitude: float) -> tuple[str, str]:
    # What the API calls @LatitudeWGS84/@LongitudeWGS84: Web-Mercator metres (EPSG:3857).
    radius = 6378137.0
    y = radius * math.log(math.tan(math.pi / 4 + math.radians(latitude) / 2))
    return f"{y:.5f}", f"{radius * math.radians(longitude):.7f}"


def laqn_site(
    code: str,
    name: str,
    latitude: float | None,
    longitude: float | None,
    species: list[str],
    *,
    closed: str = "",
    site_type: str = "Urban Background",
    finished: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One ``Site`` entry as MonitoringSiteSpecies sends it (a lone species is an object)."""
    entries = [
        {
            "@SpeciesCode": s,
            "@SpeciesDescription": _SPECIES_NAMES.get(s, s),
            "@DateMeasurementStarted": "2010-01-01 00:00:00",
            "@DateMeasurementFinished": (finished or {}).get(s, ""),
        }
        for s in species
    ]
    lat_m, lon_m = _mercator(latitude, longitude) if latitude is not None else ("", "")
    site: dict[str, Any] = {
        "@LocalAuthorityCode": "20",
        "@LocalAuthorityName": "Kensington and Chelsea",
        "@SiteCode": code,
        "@SiteName": name,
        "@SiteType": site_type,
        "@DateClosed": closed,
        "@DateOpened": "1996-04-01 00:00:00",
        "@Latitude": "" if latitude is None else str(latitude),
        "@Longitude": "" if longitude is None else str(longitude),
        "@LatitudeWGS84": lat_m,
        "@LongitudeWGS84": lon_m,
        "@DataOwner": "Kensington and Chelsea",
        "@DataManager": "Imperial College London",
        "@SiteLink": f"https://www.londonair.org.uk/london/asp/publicdetails.asp?site={code}",
    }
    if entries:  # no species at all: the key is absent
        site["Species"] = entries[0] if len(entries) == 1 else entries
    return site


def default_sites() -> list[dict[str, Any]]:
    """A small London: the defaults, the two gas-only sites people confuse with them, a
    PM10-only site (a lone Species object), a closed site and one with no Species key."""
    return [
        laqn_site(
            "KF1", "Kensington and Chelsea - North Ken FIDAS", 51.52105, -0.213492,
            ["PM10", "PM25"],
        ),
        laqn_site(
            "KC1", "Kensington and Chelsea - North Ken", 51.52105, -0.213492,
            ["CO", "NO2", "O3", "SO2"],
        ),
        laqn_site(
            "MY7", "Westminster - Marylebone Road FDMS", 51.52254, -0.15459,
            ["PM10", "PM25"], site_type="Kerbside",
        ),
        laqn_site(
            "MY1", "Westminster - Marylebone Road", 51.52253, -0.15461,
            ["CO", "NO2", "O3", "SO2"], site_type="Kerbside",
        ),
        laqn_site(
            "BL0", "Camden - Bloomsbury", 51.522287, -0.125848, ["NO2", "O3", "PM10", "PM25"]
        ),
        laqn_site(
            "CT3", "City of London - Sir John Cass School", 51.51383, -0.077766, ["PM10"]
        ),
        laqn_site(
            "EA1", "Ealing - Ealing Town Hall", 51.5134, -0.3035, ["NO2", "PM10"],
            closed="2009-02-05 00:00:00",
        ),
        laqn_site("ZZ1", "Nowhere - Never Measured", None, None, []),
    ]  # fmt: skip


def _text(value: float | None) -> str:
    # The API's strings: "77", "111.4"; "" for a missing hour.
    if value is None:
        return ""
    return f"{value:.1f}".removesuffix(".0")


def _day(text: str) -> date:
    return date.fromisoformat(text)


@dataclass
class FakeLaqn(FakeServer):
    """The ERG AirQuality API's two operations used by airq_nb, as it answers them."""

    bom: bool = True
    published_until: float | None = None
    sites: list[dict[str, Any]] = field(default_factory=default_sites)

    def error_body(self, status: int) -> Any:
        # The API's errors are HTML pages ("Request Error"), not JSON.
        return (
            "<!DOCTYPE html><html><head><title>Request Error</title></head><body>"
            f"<p>The server encountered an error processing the request (HTTP {status}).</p>"
            "</body></html>"
        )

    def encode(self, body: Any) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return ("\ufeff" + text) if self.bom and not isinstance(body, str) else text

    def route(self, path: str, params: dict[str, str]) -> tuple[int, Any] | None:
        if path == _SITES_PATH:
            return 200, {"Sites": {"Site": self.sites[0] if len(self.sites) == 1 else self.sites}}
        match = _DATA_PATH.match(path)
        if match is None:
            return None
        try:
            first, end = _day(match["start"]), _day(match["end"])
        except ValueError:
            return 400, self.error_body(400)
        site, species = match["site"], match["species"]
        raw: dict[str, Any] = {"@SiteCode": site, "@SpeciesCode": species}
        measured = self._measures(site, species)
        rows = []
        low = int(datetime.combine(first, datetime.min.time(), UTC).timestamp())
        high = int(datetime.combine(end, datetime.min.time(), UTC).timestamp())
        for hour, values in self.hours(low, high - HOUR) if measured else []:
            key = "pm2_5" if species == "PM25" else "pm10"
            value = None if values is None else values[key]
            if self.published_until is not None and hour > self.published_until:
                value = None
            stamp = datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%d %H:%M:%S")
            rows.append({"@MeasurementDateGMT": stamp, "@Value": _text(value)})
        if rows:
            raw["Data"] = rows[0] if len(rows) == 1 else rows
        return 200, {"RawAQData": raw}

    def _measures(self, code: str, species: str) -> bool:
        for site in self.sites:
            if site.get("@SiteCode") == code:
                entries = site.get("Species") or []
                entries = entries if isinstance(entries, list) else [entries]
                return any(e["@SpeciesCode"] == species for e in entries)
        return False

    def data_requests(self) -> list[tuple[str, str, str, str]]:
        """(site, species, StartDate, EndDate) of each data request received, in order."""
        found = [_DATA_PATH.match(r.path) for r in self.requests]
        return [(m["site"], m["species"], m["start"], m["end"]) for m in found if m]

    def site_list_requests(self) -> int:
        """How many times the site list was asked for."""
        return sum(r.path == _SITES_PATH for r in self.requests)

    def break_reply(self, kind: str, body: Any) -> Any:
        if kind == "html":
            return _HTML, "text/html; charset=utf-8"
        if kind == "not_json":
            return "Internal error, please try later", "text/plain"
        if kind == "deep":
            return DEEP_JSON, "application/json"
        if kind == "truncated":
            text = self.encode(body)
            return text[: max(1, len(text) // 2)], "application/json"
        if kind == "no_raw_data":
            return {"Message": "An error has occurred."}
        if "RawAQData" not in body:  # the site list: only the generic kinds apply
            return body
        raw = body["RawAQData"]
        rows = raw.get("Data", [])
        rows = rows if isinstance(rows, list) else [rows]
        if kind == "wrong_species":
            raw["@SpeciesCode"] = "NO2"
        elif kind == "wrong_types":
            rows[0]["@Value"] = "n/a"
        elif kind == "absurd":
            rows[0]["@Value"] = "99999"
        elif kind == "nan":
            rows[0]["@Value"] = "NaN"
        elif kind == "missing_field":
            del rows[len(rows) // 2]["@MeasurementDateGMT"]
        elif kind == "outside_window":
            when = datetime.strptime(rows[0]["@MeasurementDateGMT"], "%Y-%m-%d %H:%M:%S")
            rows[0]["@MeasurementDateGMT"] = (when - timedelta(days=30)).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
        elif kind == "non_hourly":
            rows[0]["@MeasurementDateGMT"] = rows[0]["@MeasurementDateGMT"][:-5] + "30:00"
        return body

    def malform(self, kind: str, *, times: int | None = None) -> None:
        if kind not in LAQN_MALFORMED_KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {LAQN_MALFORMED_KINDS}")
        self._script.append((_Malformation(kind), times))


@pytest.fixture
def laqn_server() -> Iterator[FakeLaqn]:
    """A fake LAQN API on 127.0.0.1 (``.url``), stopped after the test."""
    yield from _running(FakeLaqn())
