"""Run the store's contract tests on both backends: SQLite files and a real PostgreSQL server.

A test module opts in with ``pytestmark = pytest.mark.backends("sqlite", "postgres")``:
each of its tests that uses ``store``, ``clocked_store`` or ``db_path`` then runs once per
backend (ids ``[sqlite]``, ``[postgres]``). A test about SQLite itself (file paths, WAL,
``PRAGMA``s, raw ``sqlite3``) says so with ``@pytest.mark.sqlite_only("why")``. Modules
without the marker run on SQLite only, as before.

On PostgreSQL, ``db_path`` is the store's URL — a fresh schema per test, dropped after
it — so ``airq_nb.open_store(db_path)`` opens the same store again, in this process or in
a child process, exactly as it reopens a SQLite file.

The server comes from ``scripts/test`` (``scripts/_postgres.sh`` exports
``AIRQ_NB_TEST_PG``). Without it the PostgreSQL cases skip, except under ``CI``, where
they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POSTGRES_ENV = "AIRQ_NB_TEST_PG"
_STORE_FIXTURES = {"store", "clocked_store", "db_path"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None or metafunc.definition.get_closest_marker("sqlite_only"):
        return
    if _STORE_FIXTURES & set(metafunc.fixturenames):
        metafunc.parametrize("backend", marker.args, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Which backend this test's store fixtures use: "sqlite" unless parametrized."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test server's URL (a database on a Unix socket), from ``scripts/test``."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        message = (
            f"{POSTGRES_ENV} is not set: no PostgreSQL server for the PostgreSQL backend "
            "tests; run them with scripts/test, which starts one"
        )
        if os.environ.get("CI"):
            pytest.fail(
                "PostgreSQL tests must run in CI; scripts/test starts the server. " + message
            )
        pytest.skip(message)
    return url


def fresh_schema_url(postgres_url: str) -> tuple[str, str]:
    """A URL naming a new, unused schema in the test database, and that schema's name."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    separator = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{separator}schema={schema}", schema


def drop_schema(postgres_url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def postgres_store_url(postgres_url: str) -> Iterator[str]:
    """A URL (with ``?schema=``) of an empty PostgreSQL store, dropped after the test."""
    url, schema = fresh_schema_url(postgres_url)
    yield url
    drop_schema(postgres_url, schema)


@pytest.fixture
def store_location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """What ``open_store`` is given: a file path (SQLite) or a URL with a schema (PostgreSQL)."""
    if backend == "sqlite":
        return tmp_path / "airq.db"
    if backend == "postgres":
        return request.getfixturevalue("postgres_store_url")
    raise ValueError(f"unknown backend {backend!r}")


def behind_the_back(location: Path | str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement (``?`` placeholders) on a store's database without the store:
    how the tests damage rows the way another program could."""
    if isinstance(location, str) and location.startswith("postgresql://"):
        import psycopg

        url, schema = location.rsplit("schema=", 1)
        with psycopg.connect(url.rstrip("?&"), autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(re.sub(r"\?", "%s", statement), params)
        return
    import sqlite3

    raw = sqlite3.connect(location)
    raw.execute(statement, params)
    raw.commit()
    raw.close()
