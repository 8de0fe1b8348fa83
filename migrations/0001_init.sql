-- 0001_init: the first schema of Nightshift's state store.
--
-- Rules for every migration file (see store/sqlite_store.cc, Migrate):
--   * Files are append-only: never edit an applied one, add NNNN+1 instead.
--   * The store runs each file inside its own BEGIN IMMEDIATE transaction with foreign keys off
--     (so a table rebuild cannot cascade-delete children) and runs foreign_key_check before
--     COMMIT. So: no BEGIN/COMMIT and no PRAGMA foreign_keys here.
--   * schema_migrations is managed by the store code, not by these files.
--
-- Conventions:
--   * Timestamps are INTEGER milliseconds since the Unix epoch, UTC; NULL means "not yet".
--   * STRICT tables, so a text timestamp or a stray float can never be stored by mistake.
--   * State columns accept exactly the tokens of core/states.cc (a test inserts every
--     RunState and TaskState to keep the two lists in step).
--   * AUTOINCREMENT keys are never reused, so a stale reference (an executor event for a
--     pruned task instance, a log path) can never hit a newer row.

CREATE TABLE dags (
  dag_id      TEXT    NOT NULL PRIMARY KEY,
  is_paused   INTEGER NOT NULL DEFAULT 0 CHECK (is_paused IN (0, 1)),
  fileloc     TEXT    NOT NULL DEFAULT '',
  last_parsed INTEGER
) STRICT;

CREATE TABLE dag_runs (
  id                  INTEGER PRIMARY KEY AUTOINCREMENT,
  dag_id              TEXT    NOT NULL REFERENCES dags (dag_id),
  run_id              TEXT    NOT NULL CHECK (run_id <> ''),
  run_type            TEXT    NOT NULL CHECK (run_type <> ''),
  state               TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed')),
  logical_date        INTEGER NOT NULL,
  data_interval_start INTEGER,
  data_interval_end   INTEGER,
  queued_at           INTEGER,
  start_date          INTEGER,
  end_date            INTEGER,
  conf                TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(conf)),
  dag_snapshot        TEXT    NOT NULL DEFAULT '',
  callback_done       INTEGER NOT NULL DEFAULT 0 CHECK (callback_done IN (0, 1)),
  UNIQUE (dag_id, run_id)
) STRICT;

-- The API lists a DAG's runs newest first; the scheduler looks up a DAG's latest run.
CREATE INDEX dag_runs_by_dag_date ON dag_runs (dag_id, logical_date);
-- Listing runs of all DAGs newest first (dashboard, retention).
CREATE INDEX dag_runs_by_date ON dag_runs (logical_date);
-- The scheduler reads unfinished runs every tick; a partial index stays small however much
-- history accumulates. Queries must repeat this WHERE clause verbatim for SQLite to use it.
CREATE INDEX dag_runs_unfinished ON dag_runs (logical_date) WHERE state IN ('queued', 'running');

CREATE TABLE task_instances (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  run_pk          INTEGER NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
  task_id         TEXT    NOT NULL CHECK (task_id <> ''),
  map_index       INTEGER NOT NULL DEFAULT -1 CHECK (map_index >= -1),
  state           TEXT    NOT NULL CHECK (state IN ('scheduled', 'queued', 'running', 'success', 'failed',
                                                    'up_for_retry', 'upstream_failed', 'skipped')),
  try_number      INTEGER NOT NULL DEFAULT 0 CHECK (try_number >= 0),
  queued_at       INTEGER,
  start_date      INTEGER,
  end_date        INTEGER,
  next_retry_at   INTEGER,
  pool            TEXT    NOT NULL DEFAULT 'default',
  priority_weight INTEGER NOT NULL DEFAULT 1,
  pid             INTEGER,
  external_id     TEXT,
  -- No CHECK on progress or output: a task's odd report must never make a state update fail.
  progress        REAL,
  output          TEXT,
  waiting_reason  TEXT,
  cached          INTEGER NOT NULL DEFAULT 0 CHECK (cached IN (0, 1)),
  -- Its index also serves "the task instances of a run" and the ON DELETE CASCADE lookup.
  UNIQUE (run_pk, task_id, map_index)
) STRICT;

CREATE TABLE task_tries (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  ti_pk       INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
  try_number  INTEGER NOT NULL CHECK (try_number >= 1),
  state       TEXT    NOT NULL CHECK (state IN ('scheduled', 'queued', 'running', 'success', 'failed',
                                                'up_for_retry', 'upstream_failed', 'skipped')),
  start_date  INTEGER,
  end_date    INTEGER,
  exit_code   INTEGER,
  pid         INTEGER,
  external_id TEXT,
  log_path    TEXT    NOT NULL DEFAULT '',
  reason      TEXT,
  -- Its index also serves "the tries of a task instance" and the ON DELETE CASCADE lookup.
  UNIQUE (ti_pk, try_number)
) STRICT;

-- Adoption after a restart reads the live tries; like dag_runs_unfinished, only they are indexed.
CREATE INDEX task_tries_active ON task_tries (id) WHERE state IN ('queued', 'running');

CREATE TABLE import_errors (
  id       INTEGER PRIMARY KEY,
  filename TEXT    NOT NULL,
  line     INTEGER NOT NULL DEFAULT 0,
  "column" INTEGER NOT NULL DEFAULT 0,
  message  TEXT    NOT NULL
) STRICT;
