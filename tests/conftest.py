"""Shared fixtures: every test gets its own real SQLite file under pytest's tmp_path.

Modules marked ``pytest.mark.backends("sqlite", "postgres")`` run their store tests on a
real PostgreSQL server too (tests/store_backends.py): there ``db_path`` is the store's URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import airq_nb

# Fake OpenWeatherMap / Open-Meteo / LAQN servers (fixtures openweathermap_server,
# openmeteo_server, laqn_server); the backend parametrization and the PostgreSQL server
# (backend, postgres_url, ...).
pytest_plugins = ["fake_sources", "fake_laqn", "fake_openaq", "store_backends"]


@pytest.fixture
def db_path(store_location: Path) -> Path:
    return store_location


@pytest.fixture
def store(db_path: Path) -> Iterator[airq_nb.Store]:
    with airq_nb.open_store(db_path) as opened:
        yield opened


@pytest.fixture
def fake_clock() -> airq_nb.FakeClock:
    return airq_nb.FakeClock(1_700_000_000.0)


@pytest.fixture
def clocked_store(db_path: Path, fake_clock: airq_nb.FakeClock) -> Iterator[airq_nb.Store]:
    with airq_nb.open_store(db_path, clock=fake_clock) as opened:
        yield opened
