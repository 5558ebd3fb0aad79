"""Open-Meteo's air-quality API (CAMS model data) as a source; free, no key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .._errors import (
    RequestRejectedError,
)
from ._http import (
    DEFAULT_TIMEOUT,
    MAX_REPLY_BYTES,
    _checked_readings,
    _concentration,
    _coordinates,
    _field,
    _iso,
    _kind,
    _malformed,
    check_hour,
    get_json,
)
from ._model import Location, Reading

__all__ = ["OpenMeteoSource"]

_ISO_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$")


@dataclass(frozen=True)
class OpenMeteoSource:
    """Open-Meteo's air-quality API (CAMS model data); free, no key."""

    base_url: str = "https://air-quality-api.open-meteo.com"
    timeout: float = DEFAULT_TIMEOUT
    max_reply_bytes: int = MAX_REPLY_BYTES
    name: str = field(default="open-meteo", init=False)
    #: Model estimates (CAMS), not measurements; stored with each reading.
    kind: str = field(default="modelled", init=False)

    async def fetch(self, location: Location, *, start: int, end: int) -> list[Reading]:
        """Hourly PM2.5 and PM10 from ``/v1/air-quality`` (``start_hour``/``end_hour``, GMT)."""
        source = "Open-Meteo"
        latitude, longitude = _coordinates(source, location)
        body = await get_json(
            source,
            f"{self.base_url.rstrip('/')}/v1/air-quality",
            {
                "latitude": latitude,
                "longitude": longitude,
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
