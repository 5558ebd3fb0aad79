"""The two schemas hold the same tables with the same columns, both created for real.

The SQLite migrations (``store/sqlite/_schema.py``) and PostgreSQL's steps
(``store/postgres/_schema.py``) mirror one table list by hand; a column added to one and
forgotten in the other would pass every test that does not touch it. Backend-only
bookkeeping (none today) would be named here, with why.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store_backends import drop_schema, fresh_schema_url

import airq_nb

#: Tables one backend keeps for itself: (backend, table) -> why.
BACKEND_ONLY: dict[tuple[str, str], str] = {}


def sqlite_columns(path: Path) -> dict[str, list[str]]:
    with airq_nb.open_store(path):
        pass
    conn = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {
            table: sorted(row[1] for row in conn.execute(f'PRAGMA table_info("{table}")'))
            for table in tables
        }
    finally:
        conn.close()


def postgres_columns(postgres_url: str) -> dict[str, list[str]]:
    psycopg = pytest.importorskip("psycopg")
    url, schema = fresh_schema_url(postgres_url)
    try:
        with airq_nb.open_store(url):
            pass
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.table_name, c.column_name FROM information_schema.columns c "
                "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
                "AND t.table_name = c.table_name "
                "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE'",
                (schema,),
            ).fetchall()
    finally:
        drop_schema(postgres_url, schema)
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return {table: sorted(columns) for table, columns in sorted(found.items())}


def _shared(columns: dict[str, list[str]], backend: str) -> dict[str, list[str]]:
    return {t: c for t, c in columns.items() if (backend, t) not in BACKEND_ONLY}


def test_both_schemas_have_the_same_tables_and_columns(tmp_path: Path, postgres_url: str) -> None:
    on_sqlite = _shared(sqlite_columns(tmp_path / "airq.db"), "sqlite")
    on_postgres = _shared(postgres_columns(postgres_url), "postgres")
    assert {"kv", "queue", "meta", "schedules", "delivery_log", "readings"} <= set(on_sqlite)
    assert sorted(on_sqlite) == sorted(on_postgres), "tables differ"
    differing = {
        table: {
            "sqlite only": sorted(set(on_sqlite[table]) - set(on_postgres[table])),
            "postgres only": sorted(set(on_postgres[table]) - set(on_sqlite[table])),
        }
        for table in on_sqlite
        if on_sqlite[table] != on_postgres[table]
    }
    assert differing == {}


def test_a_column_missing_on_one_side_is_seen(tmp_path: Path) -> None:
    # The comparison above reads the real file: drop a column and it is gone from the list.
    path = tmp_path / "airq.db"
    before = sqlite_columns(path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE delivery_log DROP COLUMN error")
    conn.commit()
    conn.close()
    after = sqlite_columns(path)
    assert "error" in before["delivery_log"]
    assert "error" not in after["delivery_log"]
