"""Every table of the store, made by one numbered list of migrations under ``PRAGMA user_version``.

A file's ``user_version`` says how many steps of :data:`MIGRATIONS` it has had; opening it
runs the rest, in order, in the opening transaction, so a file is upgraded whole or not at
all, and two processes opening it at once upgrade it once. Steps are never edited once
released: a change is a new step at the end. A file from a newer airq_nb is refused.

History (``git log``): schema 1 had an AUTOINCREMENT queue; schema 2 (1302ce7) replaced it
by a high-water mark; ``schedules`` and ``delivery_log`` were created by the scheduler and
``readings`` by each collection, ``schedules.broken`` added by an ad-hoc ALTER (7c740e2).
Steps 3-5 bring files of any of those shapes to one; step 6 re-encodes stored keys in
Deno's runtime order (int before float); steps 7-8 add readings' provenance and revisions;
step 10 the site each reading stands for (name, coordinates) and the source's details.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from ..._errors import StoreError
from .._keys import Key, KeyPart, _decode_float, encode_key

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]


def _run(conn: sqlite3.Connection, script: str) -> None:
    # Not executescript(): it would COMMIT the transaction the migration runs in.
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _create_core(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE IF NOT EXISTS "kv" (
           "key" BLOB PRIMARY KEY,
           "value" TEXT NOT NULL,
           "versionstamp" TEXT NOT NULL,
           "expires_at" REAL
        );
        CREATE INDEX IF NOT EXISTS "idx_kv_expires_at" ON "kv" ("expires_at");
        CREATE TABLE IF NOT EXISTS "meta" ("name" TEXT PRIMARY KEY, "value" INTEGER);
        INSERT OR IGNORE INTO "meta" VALUES ('versionstamp', 0);
        CREATE TABLE IF NOT EXISTS "paused_topics" ("topic" TEXT PRIMARY KEY, "paused_at" REAL);
        CREATE TABLE IF NOT EXISTS "queue" (
           "id" INTEGER PRIMARY KEY,
           "topic" TEXT NOT NULL,
           "value" TEXT NOT NULL,
           "state" TEXT NOT NULL,
           "deliver_at" REAL NOT NULL,
           "due_at" REAL,
           "attempts" INTEGER NOT NULL DEFAULT 0,
           "backoff_schedule" TEXT,
           "keys_if_undelivered" TEXT,
           "last_error" TEXT,
           "enqueued_at" REAL NOT NULL,
           "lease_token" TEXT,
           "lease_expires_at" REAL,
           "dedup_key" TEXT,
           "schedule" TEXT,
           "dead_at" REAL
        );
        -- Partial indexes: claim scans only live messages; a dedup key is unique among
        -- the messages that have one.
        CREATE INDEX IF NOT EXISTS queue_due ON queue (due_at) WHERE state IN ('queued', 'leased');
        CREATE UNIQUE INDEX IF NOT EXISTS queue_dedup ON queue (dedup_key)
            WHERE dedup_key IS NOT NULL;
        """,
    )


def _never_reuse_message_ids(conn: sqlite3.Connection) -> None:
    # Message ids are never reused, so a stale ack or a delivery-log row never points at a
    # newer message. AUTOINCREMENT (schema 1) cost a sqlite_sequence write per enqueue;
    # instead the highest id ever deleted is remembered, only when the newest row goes, and
    # inserts start above it (see _queue.insert_statement).
    high_water = 0
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'queue'").fetchone()
        high_water = row[0] if row else 0
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('queue_high_water', ?)", (high_water,))
    conn.execute(
        """CREATE TRIGGER IF NOT EXISTS queue_high_water AFTER DELETE ON queue
        WHEN OLD.id > IFNULL((SELECT MAX(id) FROM queue), 0)
        BEGIN
            UPDATE meta SET value = OLD.id
            WHERE name = 'queue_high_water' AND value < OLD.id;
        END"""
    )


def _create_schedules(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS "schedules" (
           "name" TEXT PRIMARY KEY,
           "every_seconds" REAL,
           "cron" TEXT,
           "tz" TEXT NOT NULL,
           "topic" TEXT NOT NULL,
           "message" TEXT NOT NULL,
           "misfire" TEXT NOT NULL,
           "max_catch_up" INTEGER NOT NULL,
           "backoff_schedule" TEXT,
           "paused" INTEGER NOT NULL DEFAULT 0,
           "next_run_at" REAL,
           "last_run_at" REAL,
           "last_outcome" TEXT,
           "last_error" TEXT,
           "run_id" INTEGER,
           "run_slot" REAL,
           "created_at" REAL,
           "updated_at" REAL,
           "broken" INTEGER NOT NULL DEFAULT 0
        )"""
    )
    # A table made by a scheduler from before 7c740e2 lacks ``broken`` (paused by the
    # planner because the definition is damaged, not by the user).
    columns = {row[1] for row in conn.execute('PRAGMA table_info("schedules")')}
    if "broken" not in columns:
        conn.execute('ALTER TABLE "schedules" ADD COLUMN "broken" INTEGER NOT NULL DEFAULT 0')


def _create_delivery_log(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE IF NOT EXISTS "delivery_log" (
           "id" INTEGER PRIMARY KEY,
           "message_id" INTEGER NOT NULL,
           "topic" TEXT NOT NULL,
           "schedule" TEXT,
           "attempt" INTEGER NOT NULL,
           "scheduled_at" REAL,
           "started_at" REAL NOT NULL,
           "finished_at" REAL NOT NULL,
           "outcome" TEXT NOT NULL,
           "error" TEXT,
           "lateness_ms" REAL
        );
        CREATE INDEX IF NOT EXISTS "idx_delivery_log_finished_at"
            ON "delivery_log" ("finished_at");
        CREATE INDEX IF NOT EXISTS "idx_delivery_log_schedule_finished_at"
            ON "delivery_log" ("schedule", "finished_at");
        """,
    )


def _create_readings(conn: sqlite3.Connection) -> None:
    # ``time``: Unix seconds (UTC) of the hour the reading is for; an integer so hours
    # compare exactly and the primary key makes "each hour once" a database rule.
    _run(
        conn,
        """
        CREATE TABLE IF NOT EXISTS "readings" (
           "source" TEXT NOT NULL,
           "location" TEXT NOT NULL,
           "time" INTEGER NOT NULL,
           "pm2_5" REAL,
           "pm10" REAL,
           "aqi" INTEGER,
           "fetched_at" REAL NOT NULL,
           PRIMARY KEY ("source", "location", "time")
        );
        CREATE INDEX IF NOT EXISTS "idx_readings_time" ON "readings" ("time");
        """,
    )


def _readings_provenance(conn: sqlite3.Connection) -> None:
    # ``kind``: measured or modelled; ``point``: the site code or "lat,lon" asked for.
    # Rows from before were all modelled (OpenWeatherMap, Open-Meteo). Idempotent, like
    # every step, so a file whose user_version was wound back is brought up again.
    have = {row[1] for row in conn.execute("PRAGMA table_info(readings)")}
    if "kind" not in have:
        conn.execute("ALTER TABLE readings ADD COLUMN kind TEXT NOT NULL DEFAULT 'modelled'")
    if "point" not in have:
        conn.execute("ALTER TABLE readings ADD COLUMN point TEXT")


def _reading_revisions(conn: sqlite3.Connection) -> None:
    # The change log: one row per stored value a later fetch changed.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS reading_revisions ("
        " id INTEGER PRIMARY KEY,"
        " time INTEGER NOT NULL,"
        " source TEXT NOT NULL,"
        " location TEXT NOT NULL,"
        " pollutant TEXT NOT NULL,"
        " old REAL,"
        " new REAL,"
        " noticed_at REAL NOT NULL)"
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS reading_revisions_series "
        "ON reading_revisions (source, location, time)"
    )


def _readings_sites(conn: sqlite3.Connection) -> None:
    # One schema across sources: the site or point's name and coordinates, and the source's
    # own details as JSON (OpenAQ's sensor ids, provider and coverage). Rows of a point
    # ("lat,lon") get their coordinates back from it; a site's name and coordinates are
    # filled by the next run of its series (the collector knows them, SQL does not).
    have = {row[1] for row in conn.execute("PRAGMA table_info(readings)")}
    for column, kind in (
        ("site_name", "TEXT"),
        ("latitude", "REAL"),
        ("longitude", "REAL"),
        ("provenance", "TEXT"),
    ):
        if column not in have:
            conn.execute(f"ALTER TABLE readings ADD COLUMN {column} {kind}")
    conn.execute(
        "UPDATE readings SET "
        "latitude = CAST(substr(point, 1, instr(point, ',') - 1) AS REAL), "
        "longitude = CAST(substr(point, instr(point, ',') + 1) AS REAL) "
        "WHERE latitude IS NULL AND instr(point, ',') > 0"
    )


def _alerts(conn: sqlite3.Connection) -> None:
    # Alert rules (definitions as JSON), each (rule, place)'s state and one history of
    # transitions and sends; owned by store/alerts.py.
    _run(
        conn,
        """
        CREATE TABLE IF NOT EXISTS alert_rules (
           name TEXT PRIMARY KEY,
           definition TEXT NOT NULL,
           created_at REAL NOT NULL,
           updated_at REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS alert_state (
           rule TEXT NOT NULL,
           place TEXT NOT NULL,
           state TEXT NOT NULL,
           since REAL,
           transition INTEGER NOT NULL,
           value REAL,
           peak REAL,
           firing_since REAL,
           notified TEXT NOT NULL,
           notified_at REAL,
           repeats INTEGER NOT NULL DEFAULT 0,
           updated_at REAL,
           PRIMARY KEY (rule, place)
        );
        CREATE TABLE IF NOT EXISTS alert_history (
           id INTEGER PRIMARY KEY,
           at REAL NOT NULL,
           rule TEXT NOT NULL,
           place TEXT NOT NULL,
           event TEXT NOT NULL,
           transition INTEGER,
           channel TEXT,
           value REAL,
           detail TEXT
        );
        CREATE INDEX IF NOT EXISTS alert_history_at ON alert_history (at);
        CREATE INDEX IF NOT EXISTS alert_history_rule ON alert_history (rule, place, at);
        """,
    )


# The key encoding of schemas 1-5: like Deno's but with its own int tag (0x30, a sign byte,
# a length byte) sorting after floats, bools at 0x40/0x41, and one NaN.
_OLD_BYTES, _OLD_STR, _OLD_FLOAT, _OLD_INT, _OLD_FALSE, _OLD_TRUE = 1, 2, 0x21, 0x30, 0x40, 0x41


def _old_escaped(raw: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        byte = raw[pos]
        if byte == 0x00:
            if pos + 1 < len(raw) and raw[pos + 1] == 0xFF:
                out.append(0x00)
                pos += 2
                continue
            return bytes(out), pos + 1
        out.append(byte)
        pos += 1


def _decode_old_key(raw: bytes) -> Key:
    """A key as schemas 1-5 encoded it; IndexError/ValueError if it is not one."""
    parts: list[KeyPart] = []
    pos = 0
    while pos < len(raw):
        tag = raw[pos]
        pos += 1
        if tag in (_OLD_BYTES, _OLD_STR):
            value, pos = _old_escaped(raw, pos)
            parts.append(value if tag == _OLD_BYTES else value.decode("utf-8", "surrogatepass"))
        elif tag == _OLD_FLOAT:
            if pos + 8 > len(raw):
                raise ValueError("truncated float")
            parts.append(_decode_float(raw[pos : pos + 8]))  # the same 8 bytes as Deno's
            pos += 8
        elif tag == _OLD_INT:
            sign, length = raw[pos], raw[pos + 1]
            pos += 2
            if sign not in (0, 1):
                raise ValueError(f"integer sign byte 0x{sign:02x}")
            if sign == 0:
                length = 255 - length
            digits = raw[pos : pos + length]
            if len(digits) != length:
                raise ValueError("truncated integer")
            if sign == 1:
                parts.append(int.from_bytes(digits, "big"))
            else:
                parts.append(-int.from_bytes(bytes(0xFF - b for b in digits), "big"))
            pos += length
        elif tag in (_OLD_FALSE, _OLD_TRUE):
            parts.append(tag == _OLD_TRUE)
        else:
            raise ValueError(f"unknown part tag 0x{tag:02x}")
    return tuple(parts)


def _reencode(raw: bytes) -> bytes:
    return encode_key(_decode_old_key(raw))


def _reencode_keys_json(text: str) -> str:
    """A queue row's ``keys_if_undelivered`` (JSON list of hex keys), re-encoded."""
    return json.dumps([_reencode(bytes.fromhex(item)).hex() for item in json.loads(text)])


def _deno_key_order(conn: sqlite3.Connection) -> None:
    moved: list[tuple[bytes, bytes]] = []
    for (raw,) in conn.execute("SELECT key FROM kv"):
        try:
            new = _reencode(raw)
        except (IndexError, ValueError, UnicodeDecodeError) as exc:
            raise StoreError(
                f"the KV key X'{raw.hex()}' was not written by airq_nb ({exc}), so the upgrade "
                "to Deno's key order cannot re-encode it; nothing was changed. Delete that row "
                f"(sqlite3 <file> \"DELETE FROM kv WHERE key = X'{raw.hex()}'\") and open again."
            ) from None
        if new != raw:
            moved.append((raw, new))
    # Two passes so no row ever takes a key another row still holds: first to 0xFF + new
    # key (no old or new key starts with 0xFF), then drop that byte.
    conn.executemany("UPDATE kv SET key = ? WHERE key = ?", [(b"\xff" + n, o) for o, n in moved])
    conn.execute("UPDATE kv SET key = substr(key, 2) WHERE key >= X'FF'")
    updates = []
    for message_id, text in conn.execute(
        "SELECT id, keys_if_undelivered FROM queue WHERE keys_if_undelivered IS NOT NULL"
    ):
        try:
            updates.append((_reencode_keys_json(text), message_id))
        except (TypeError, IndexError, ValueError, UnicodeDecodeError, AttributeError):
            # A damaged row stays as it is: a consumer dead-letters it with a note.
            continue
    conn.executemany("UPDATE queue SET keys_if_undelivered = ? WHERE id = ?", updates)


#: The steps, in order; step N (1-based) brings a file from user_version N-1 to N.
MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("kv, meta, paused_topics and queue tables", _create_core),
    ("queue ids never reused, without AUTOINCREMENT", _never_reuse_message_ids),
    ("schedules table, with its broken column", _create_schedules),
    ("delivery_log table", _create_delivery_log),
    ("readings table", _create_readings),
    ("keys re-encoded in Deno's runtime order (int before float, -NaN apart)", _deno_key_order),
    ("readings provenance: kind (measured/modelled) and point", _readings_provenance),
    ("reading_revisions table (values a later fetch changed)", _reading_revisions),
    ("alert_rules, alert_state and alert_history tables", _alerts),
    ("readings' site name, coordinates and provenance details", _readings_sites),
)
#: The ``user_version`` of a file this airq_nb has fully migrated.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, where: str) -> int:
    """Run the steps ``conn``'s file has not had, inside the caller's write transaction.

    Returns the version the file was at. ``where`` names the file in errors.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where} was written by a newer airq_nb (schema {version}, this one "
            f"knows {SCHEMA_VERSION}); upgrade airq_nb to use it"
        )
    for _name, step in MIGRATIONS[version:]:
        step(conn)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return version
