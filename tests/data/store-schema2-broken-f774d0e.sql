BEGIN TRANSACTION;
CREATE TABLE "delivery_log" (
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
INSERT INTO "delivery_log" VALUES(1,1,'hourly','hourly',1,1700000000.0,1700000000.0,1700000000.0,'ok',NULL,0.0);
CREATE TABLE "kv" (
   "key" BLOB PRIMARY KEY,
   "value" TEXT NOT NULL,
   "versionstamp" TEXT NOT NULL,
   "expires_at" REAL
);
INSERT INTO "kv" VALUES(X'026E00300100','"(''n'', 0)"','00000000000000000001',NULL);
INSERT INTO "kv" VALUES(X'026E00218000000000000000','"(''n'', 0.0)"','00000000000000000002',NULL);
INSERT INTO "kv" VALUES(X'026E0030010101','"(''n'', 1)"','00000000000000000003',NULL);
INSERT INTO "kv" VALUES(X'026E0021C0091EB851EB851F','"(''n'', 3.14)"','00000000000000000004',NULL);
INSERT INTO "kv" VALUES(X'026E003000F6BFFFFFFFFFFFFFFFFF','"(''n'', -1180591620717411303424)"','00000000000000000005',NULL);
INSERT INTO "kv" VALUES(X'026E00300109400000000000000000','"(''n'', 1180591620717411303424)"','00000000000000000006',NULL);
INSERT INTO "kv" VALUES(X'026E002101C81BC377FF8A63','"(''n'', -1e+300)"','00000000000000000007',NULL);
INSERT INTO "kv" VALUES(X'026E00217FFFFFFFFFFFFFFF','"(''n'', -0.0)"','00000000000000000008',NULL);
INSERT INTO "kv" VALUES(X'026E0021FFF8000000000000','"(''n'', nan)"','00000000000000000009',NULL);
INSERT INTO "kv" VALUES(X'026E0040','"(''n'', False)"','0000000000000000000a',NULL);
INSERT INTO "kv" VALUES(X'026E0041','"(''n'', True)"','0000000000000000000b',NULL);
INSERT INTO "kv" VALUES(X'026E00027300','"(''n'', ''s'')"','0000000000000000000c',NULL);
INSERT INTO "kv" VALUES(X'026E00016200FF00','"(''n'', b''b\\x00'')"','0000000000000000000d',NULL);
INSERT INTO "kv" VALUES(X'026D0030010101026E65737465640021C004000000000000','"(''m'', 1, ''nested'', 2.5)"','0000000000000000000e',NULL);
INSERT INTO "kv" VALUES(X'0274746C0030010101','"expires in 2033"','0000000000000000000f',2015360000.0);
INSERT INTO "kv" VALUES(X'02646561640030010107','"doomed"','00000000000000000010',NULL);
CREATE TABLE "meta" (
   "name" TEXT PRIMARY KEY,
   "value" INTEGER
);
INSERT INTO "meta" VALUES('versionstamp',16);
INSERT INTO "meta" VALUES('queue_high_water',5);
CREATE TABLE "paused_topics" (
   "topic" TEXT PRIMARY KEY,
   "paused_at" REAL
);
CREATE TABLE "queue" (
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
INSERT INTO "queue" VALUES(2,'default','"doomed"','dead',1700000000.0,NULL,1,'[]','["02646561640030010107"]','boom',1700000000.0,NULL,NULL,NULL,NULL,1700000000.0);
INSERT INTO "queue" VALUES(3,'default','{"job":1}','queued',1700003600.0,1700003600.0,0,'[1.0, 2.0]','["026661696c65640030010101", "026661696c65640021c004000000000000"]',NULL,1700000000.0,NULL,NULL,NULL,NULL,NULL);
INSERT INTO "queue" VALUES(4,'default','"plain"','queued',1700000000.0,1700000000.0,0,NULL,NULL,NULL,1700000000.0,NULL,NULL,NULL,NULL,NULL);
CREATE TABLE "readings" (
   "source" TEXT NOT NULL,
   "location" TEXT NOT NULL,
   "time" INTEGER NOT NULL,
   "pm2_5" REAL,
   "pm10" REAL,
   "aqi" INTEGER,
   "fetched_at" REAL NOT NULL,
   PRIMARY KEY ("source", "location", "time")
);
INSERT INTO "readings" VALUES('open-meteo','london',1699999200,12.5,20.0,NULL,1700000000.0);
INSERT INTO "readings" VALUES('open-meteo','london',1700002800,NULL,7.0,NULL,1700000000.0);
CREATE TABLE "schedules" (
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
);
INSERT INTO "schedules" VALUES('hourly',3600.0,NULL,'UTC','hourly','{"what":"tick"}','coalesce',10,NULL,0,1700002800.0,1700000000.0,'ok',NULL,1,1700000000.0,1700000000.0,1700000000.0,0);
CREATE INDEX "idx_kv_expires_at"
    ON "kv" ("expires_at");
CREATE INDEX queue_due ON queue (due_at) WHERE state IN ('queued', 'leased');
CREATE UNIQUE INDEX queue_dedup ON queue (dedup_key) WHERE dedup_key IS NOT NULL;
CREATE TRIGGER queue_high_water AFTER DELETE ON queue
                WHEN OLD.id > IFNULL((SELECT MAX(id) FROM queue), 0)
                BEGIN
                    UPDATE meta SET value = OLD.id
                    WHERE name = 'queue_high_water' AND value < OLD.id;
                END;
CREATE INDEX "idx_delivery_log_finished_at"
    ON "delivery_log" ("finished_at");
CREATE INDEX "idx_delivery_log_schedule_finished_at"
    ON "delivery_log" ("schedule", "finished_at");
CREATE INDEX "idx_readings_time"
    ON "readings" ("time");
COMMIT;
PRAGMA user_version = 2;
