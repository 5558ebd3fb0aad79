"""Air-quality indices with versions, pure Python: the UK DAQI (2013), the US EPA AQI (2012
and 2024) with its NowCast, the European AQI (2017 and 2024) and the WHO 2021 guidelines.

``classify(concentration, index=..., pollutant=..., version=None)`` places one value and says
which version it used; ``band_table(...)`` gives the bands to draw; ``nowcast(hours)`` the
EPA's hourly NowCast. What is computed, the tables and their sources: ``docs/indices.md``.
"""

from __future__ import annotations

from ._classify import INDICES, POLLUTANTS, VERSIONS, IndexResult, band_table, classify
from ._nowcast import NOWCAST_HOURS, NOWCAST_MIN_WEIGHT, nowcast
from ._region import default_index, index_for_point
from ._tables import Band, BandTable

__all__ = [
    "INDICES",
    "NOWCAST_HOURS",
    "NOWCAST_MIN_WEIGHT",
    "POLLUTANTS",
    "VERSIONS",
    "Band",
    "BandTable",
    "IndexResult",
    "band_table",
    "classify",
    "default_index",
    "index_for_point",
    "nowcast",
]
