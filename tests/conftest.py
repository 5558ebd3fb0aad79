"""Shared fixtures: every test gets its own real SQLite file under pytest's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import airq_nb

# Fake OpenWeatherMap / Open-Meteo / LAQN servers (fixtures openweathermap_server,
# openmeteo_server, laqn_server).
pytest_plugins = ["fake_sources", "fake_laqn"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "airq.db"


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
