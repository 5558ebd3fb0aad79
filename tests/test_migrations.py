"""Upgrades: a store written by every released schema opens in this airq_nb with its data.

The fixtures under tests/data/ are SQL dumps of stores made by released commits (see
tests/data/make_store_fixture.py): schema 1 (AUTOINCREMENT queue), schema 2 before the
``broken`` schedules column, and schema 2 as f774d0e wrote it. Each holds KV keys whose
order changed with Deno's runtime order, queued and dead messages, a schedule, delivery-log
rows and readings.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import airq_nb
from airq_nb.store._keys import encode_key
from airq_nb.store.sqlite._schema import MIGRATIONS, SCHEMA_VERSION, _reencode

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(DATA.glob("store-schema*.sql"))
TABLES = ("kv", "meta", "paused_topics", "queue", "schedules", "delivery_log", "readings")

# The fixture's ("n", ...) keys in Deno's runtime order: bytes, str, int, float, False, True.
DENO_ORDER = [
    ("n", b"b\x00"),
    ("n", "s"),
    ("n", -(2**70)),
    ("n", 0),
    ("n", 1),
    ("n", 2**70),
    ("n", -1e300),
    ("n", -0.0),
    ("n", 0.0),
    ("n", 3.14),
    ("n", math.nan),
    ("n", False),
    ("n", True),
]


def _load(sql_file: Path, db_path: Path, *, then: str = "") -> dict[str, list[tuple]]:
    """Restore a dump into ``db_path`` and run ``then`` (SQL) on it; returns its rows per
    table, read before any upgrade."""
    raw = sqlite3.connect(db_path)
    raw.executescript(sql_file.read_text(encoding="utf-8") + then)
    before = {
        table: raw.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
        for table in ("schedules", "delivery_log", "readings")
    }
    before["stamps"] = raw.execute("SELECT value, versionstamp FROM kv").fetchall()
    raw.close()
    return before


def _shape(path: Path) -> dict[str, object]:
    raw = sqlite3.connect(path)
    shape: dict[str, object] = {
        table: raw.execute(f'PRAGMA table_info("{table}")').fetchall() for table in TABLES
    }
    shape["objects"] = sorted(
        raw.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
    )
    raw.close()
    return shape


def test_every_released_schema_has_a_fixture() -> None:
    versions = set()
    for fixture in FIXTURES:
        last = fixture.read_text(encoding="utf-8").strip().splitlines()[-1]
        versions.add(int(last.removeprefix("PRAGMA user_version = ").rstrip(";")))
    assert versions == {1, 2}
    assert len(FIXTURES) == 3  # schema 2 twice: without and with schedules.broken


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_an_old_store_opens_with_its_data_in_deno_order(fixture: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = _load(fixture, path)
    with airq_nb.open_store(path) as store:
        assert store.execute("PRAGMA user_version") == [(SCHEMA_VERSION,)]
        listed = store.list(prefix=("n",))
        assert [entry.value for entry in listed] == [repr(key) for key in DENO_ORDER]
        assert [entry.key for entry in listed][:6] == DENO_ORDER[:6]
        assert math.copysign(1.0, listed[7].key[1]) == -1.0
        stamps = {json.loads(value): stamp for value, stamp in before["stamps"]}
        assert [entry.versionstamp for entry in listed] == [stamps[e.value] for e in listed]
        assert store.get(("n", 0)).value == "('n', 0)"
        assert store.get(("n", 0.0)).value == "('n', 0.0)"
        assert store.get(("m", 1, "nested", 2.5)).value == "('m', 1, 'nested', 2.5)"
        assert store.get(("ttl", 1)).value == "expires in 2033"
        assert store.get(("dead", 7)).value == "doomed"

        messages = {m.id: m for m in store.queue.list()}
        assert {i: (m.value, m.state) for i, m in messages.items()} == {
            2: ("doomed", "dead"),
            3: ({"job": 1}, "queued"),
            4: ("plain", "queued"),
        }
        assert messages[3].max_attempts == 3
        # Message 5 was acked: ids are never reused, whichever way the release kept them.
        assert store.enqueue("new") == 6
        # keys_if_undelivered were re-encoded too: a dead letter lands at the same keys.
        deliveries = store.claim_many(10, topics=["default"])
        job = next(d for d in deliveries if d.id == 3)
        assert store.fail(job, "gave up", retry=False) == "dead"
        assert store.get(("failed", 1)).value == {"job": 1}
        assert store.get(("failed", 2.5)).value == {"job": 1}
        assert [e.key for e in store.list(prefix=("failed",))] == [("failed", 1), ("failed", 2.5)]

        schedules = store.execute("SELECT * FROM schedules ORDER BY 1")
        assert [row[:18] for row in schedules] == [row[:18] for row in before["schedules"]]
        assert [row[-1] for row in schedules] == [0]  # broken, added where missing
        assert store.execute("SELECT * FROM delivery_log ORDER BY 1") == before["delivery_log"]
        readings = store.execute("SELECT * FROM readings ORDER BY 1")
        assert [row[:7] for row in readings] == before["readings"]
        assert {row[7:9] for row in readings} == {("modelled", None)}  # kind, point added
        # site_name, latitude, longitude, provenance (step 10): not known for these rows.
        assert {row[9:] for row in readings} == {(None, None, None, None)}
    # Reopening runs no step again (a second re-encoding would garble the keys).
    with airq_nb.open_store(path) as store:
        assert [entry.value for entry in store.list(prefix=("n",))] == [
            repr(key) for key in DENO_ORDER
        ]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_an_upgraded_store_has_the_shape_of_a_new_one(fixture: Path, tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _load(fixture, old)
    airq_nb.open_store(old).close()
    airq_nb.open_store(new).close()
    assert _shape(old) == _shape(new)


def test_a_new_store_has_every_table(store: airq_nb.Store) -> None:
    names = {row[0] for row in store.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert set(TABLES) <= names
    assert store.execute("PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(len(MIGRATIONS),)]


def test_a_key_not_written_by_airq_nb_stops_the_upgrade_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _load(
        FIXTURES[-1],
        path,
        then="INSERT INTO kv VALUES (X'7f01', '1', '0000000000000000009a', NULL);",
    )
    with pytest.raises(airq_nb.StoreError, match=r"X'7f01'.*DELETE FROM kv"):
        airq_nb.open_store(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone() == (2,)
    assert raw.execute("SELECT COUNT(*) FROM kv WHERE key = X'026E00300100'").fetchone() == (1,)
    raw.close()


OPENER = """
import json, sys, airq_nb
with airq_nb.open_store(sys.argv[1]) as store:
    print(json.dumps([entry.value for entry in store.list(prefix=("n",))]))
"""


def test_two_processes_opening_an_old_file_at_once_upgrade_it_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _load(FIXTURES[0], path)
    openers = [
        subprocess.Popen([sys.executable, "-c", OPENER, str(path)], stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [opener.communicate(timeout=60)[0] for opener in openers]
    assert [opener.returncode for opener in openers] == [0, 0, 0]
    expected = [repr(key) for key in DENO_ORDER]
    assert [json.loads(output) for output in outputs] == [expected] * 3


def test_a_damaged_keys_if_undelivered_is_left_for_the_consumer(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _load(
        FIXTURES[-1], path, then="UPDATE queue SET keys_if_undelivered = 'not json' WHERE id = 3;"
    )
    with airq_nb.open_store(path) as store:
        assert store.execute("SELECT keys_if_undelivered FROM queue WHERE id = 3") == [
            ("not json",)
        ]
        assert store.get(("n", 0)).value == "('n', 0)"


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    airq_nb.open_store(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(airq_nb.StoreError, match=r"newer airq_nb.*upgrade airq_nb"):
        airq_nb.open_store(path)


def _old_encode(key: tuple) -> bytes:
    """How schemas 1-5 encoded a key (airq_nb/_keys.py up to f774d0e), for the property below."""
    out = b""
    for part in key:
        if isinstance(part, bool):
            out += b"\x41" if part else b"\x40"
        elif isinstance(part, bytes | str):
            raw = part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass")
            tag = b"\x01" if isinstance(part, bytes) else b"\x02"
            out += tag + raw.replace(b"\x00", b"\x00\xff") + b"\x00"
        elif isinstance(part, int):
            digits = abs(part).to_bytes((abs(part).bit_length() + 7) // 8, "big")
            if part >= 0:
                out += bytes([0x30, 1, len(digits)]) + digits
            else:
                out += bytes([0x30, 0, 255 - len(digits)]) + bytes(0xFF - b for b in digits)
        else:
            bits = int.from_bytes(struct.pack(">d", math.nan if math.isnan(part) else part), "big")
            bits = bits ^ (2**64 - 1) if bits >> 63 else bits | (1 << 63)
            out += b"\x21" + bits.to_bytes(8, "big")
    return out


old_parts = st.one_of(
    st.binary(max_size=6),
    st.text(max_size=6),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False),
    st.just(math.nan),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(old_parts, min_size=1, max_size=4).map(tuple))
def test_every_old_key_is_re_encoded_to_its_deno_encoding(key: tuple) -> None:
    assert _reencode(_old_encode(key)) == encode_key(key)


def test_a_key_written_later_by_an_old_process_names_the_cause(store: airq_nb.Store) -> None:
    # An older airq_nb still open on an upgraded file writes ints with its own tag 0x30.
    store.set(("n", 1), "new")
    old_key = _old_encode(("n", 2))
    with sqlite3.connect(store.path) as raw:
        raw.execute(
            "INSERT INTO kv VALUES (?, '\"old\"', '00000000000000000099', NULL)", (old_key,)
        )
    with pytest.raises(airq_nb.InvalidKeyError, match="older airq_nb process is still writing"):
        store.list(prefix=("n",))
