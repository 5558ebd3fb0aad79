"""Which index a place's people expect: the UK DAQI in the UK, the EPA AQI in the US, the
European AQI elsewhere in Europe. Rough boxes, documented in docs/indices.md, not borders."""

from __future__ import annotations

__all__ = ["EUROPE", "default_index", "index_for_point"]

#: ISO 3166-1 alpha-2 codes of the countries the EEA's index covers (EEA members and
#: cooperating countries), without the UK.
EUROPE = frozenset(
    [
        "AL",
        "AT",
        "BA",
        "BE",
        "BG",
        "CH",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IS",
        "IT",
        "LI",
        "LT",
        "LU",
        "LV",
        "ME",
        "MK",
        "MT",
        "NL",
        "NO",
        "PL",
        "PT",
        "RO",
        "RS",
        "SE",
        "SI",
        "SK",
        "TR",
        "XK",
        "AD",
        "MC",
        "SM",
    ]
)
_UK = frozenset({"GB", "UK"})
_US = frozenset({"US", "USA", "PR", "GU", "VI", "AS", "MP"})
# (south, north, west, east) in degrees.
_UK_BOX = (49.8, 60.9, -8.7, 1.8)
_US_BOXES = (
    (24.4, 49.4, -125.0, -66.9),  # the contiguous states
    (51.0, 71.5, -180.0, -129.9),  # Alaska
    (18.8, 22.4, -160.3, -154.7),  # Hawaii
)
_EUROPE_BOX = (34.5, 71.5, -25.0, 45.0)


def _inside(box: tuple[float, float, float, float], latitude: float, longitude: float) -> bool:
    south, north, west, east = box
    return south <= latitude <= north and west <= longitude <= east


def _in_ireland(latitude: float, longitude: float) -> bool:
    """The Republic of Ireland, roughly: west of the Irish Sea and south of Ulster."""
    return longitude < -5.9 and (latitude < 54.0 or longitude < -7.6)


def index_for_point(latitude: float, longitude: float) -> str | None:
    """ "daqi", "epa" or "eaqi" for a point in the UK, the US or Europe; None elsewhere."""
    if _inside(_UK_BOX, latitude, longitude) and not _in_ireland(latitude, longitude):
        return "daqi"
    if any(_inside(box, latitude, longitude) for box in _US_BOXES):
        return "epa"
    if _inside(_EUROPE_BOX, latitude, longitude):
        return "eaqi"
    return None


def default_index(
    *,
    latitude: float | None = None,
    longitude: float | None = None,
    country: str | None = None,
    location: str | None = None,
) -> str:
    """The index to show for a place: by its country code when known, else its coordinates,
    else its name (London and LAQN sites are in the UK). Anywhere else the EPA AQI, the index
    most used worldwide; with nothing to go on, the UK DAQI (airq_nb's home is London)."""
    if country:
        code = country.strip().upper()
        if code in _UK:
            return "daqi"
        if code in _US:
            return "epa"
        if code in EUROPE:
            return "eaqi"
        return "epa"
    if latitude is not None and longitude is not None:
        return index_for_point(latitude, longitude) or "epa"
    name = (location or "").strip().lower()
    if name == "london" or name.startswith("laqn:"):
        return "daqi"
    return "daqi"
