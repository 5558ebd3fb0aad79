"""The EPA's PM NowCast: a weighted mean of the last 12 hours for the hourly view of the AQI."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .._errors import InvalidConcentrationError
from ._classify import check_concentration, check_pollutant, truncate
from ._tables import EPA_STEP

__all__ = ["NOWCAST_HOURS", "NOWCAST_MIN_WEIGHT", "nowcast"]

#: The NowCast looks at the most recent 12 hourly values…
NOWCAST_HOURS = 12
#: …with a weight factor of at least 0.5 (about a 3-hour mean when the air changes fast).
NOWCAST_MIN_WEIGHT = 0.5


def _hour(value: object) -> float | None:
    """One hourly value: None (or NaN, as pandas writes a gap) is a missing hour."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        return check_concentration(value)
    except InvalidConcentrationError as exc:
        raise InvalidConcentrationError(f"nowcast: {exc}") from None


def nowcast(
    hourly_oldest_first: Iterable[float | None], *, pollutant: str = "pm2_5"
) -> float | None:
    """The NowCast concentration (µg/m³) at the last of ``hourly_oldest_first``.

    The hours are consecutive clock hours, oldest first, the newest last; a missing hour is
    None (or NaN). Only the last 12 count. None when fewer than 2 of the last 3 hours are
    present (AirNow's one validity rule). Otherwise the weight factor
    ``w = max(c_min / c_max, 0.5)`` over the present hours, the mean of the present hours
    weighted ``w ** hours_ago``, truncated as the AQI truncates (PM2.5 to 0.1, PM10 to 1).
    """
    pollutant = check_pollutant(pollutant)
    hours = [_hour(value) for value in hourly_oldest_first][-NOWCAST_HOURS:]
    if sum(value is not None for value in hours[-3:]) < 2:
        return None
    present = [
        (hours_ago, value) for hours_ago, value in enumerate(reversed(hours)) if value is not None
    ]
    values = [value for _, value in present]
    c_max, c_min = max(values), min(values)
    weight = 1.0 if c_max == 0 else max(c_min / c_max, NOWCAST_MIN_WEIGHT)
    total = sum(weight**hours_ago * value for hours_ago, value in present)
    weights = sum(weight**hours_ago for hours_ago, _ in present)
    return float(truncate(total / weights, EPA_STEP[pollutant]))
