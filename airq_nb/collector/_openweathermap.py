"""OpenWeatherMap's air-pollution history API as a source (modelled; needs an API key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import (
    ConfigurationError,
)
from ._http import (
    DEFAULT_TIMEOUT,
    MAX_REPLY_BYTES,
    _checked_readings,
    _concentration,
    _coordinates,
    _field,
    _kind,
    _malformed,
    check_hour,
    get_json,
)
from ._model import Location, Reading

__all__ = ["OpenWeatherMapSource"]


@dataclass(frozen=True)
class OpenWeatherMapSource:
    """OpenWeatherMap's air-pollution history API; needs an API key (``OPENWEATHER_API_KEY``)."""

    api_key: str = field(repr=False)
    base_url: str = "https://api.openweathermap.org"
    timeout: float = DEFAULT_TIMEOUT
    max_reply_bytes: int = MAX_REPLY_BYTES
    name: str = field(default="openweathermap", init=False)
    #: Model estimates (CAMS), not measurements; stored with each reading.
    kind: str = field(default="modelled", init=False)

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
        latitude, longitude = _coordinates(source, location)
        body = await get_json(
            source,
            f"{self.base_url.rstrip('/')}/data/2.5/air_pollution/history",
            {
                "lat": latitude,
                "lon": longitude,
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
