-- The state CHECKs of dag_runs, task_instances and task_tries, written as chains of OR instead of
-- IN lists. They accept exactly the same tokens. Why: SQLite (3.40) evaluates `x IN (list of
-- more than two constants)` by building a temporary b-tree of the list, and a CHECK does that
-- again for every row it checks, so on every insert and on every update of these rows. That was
-- about a third of an insert's or an update's cost (3.5 of 9 us per row, measured on this
-- schema), paid several times per try by the scheduler.
--
-- SQLite cannot change a CHECK in place, so each table is rebuilt by its documented recipe:
-- create the new table, copy the rows (ids included), drop the old one, rename the new one,
-- create its indexes again. Foreign keys are off while a migration runs (see 0001), so dropping
-- a parent does not cascade, and references by name find the renamed table.
--
-- AUTOINCREMENT promises ids are never reused, also after the newest rows were deleted, so each
-- new table takes over the old one's counter in sqlite_sequence, not just the largest id copied.

-- dag_runs -------------------------------------------------------------------------------------

CREATE TABLE dag_runs_new (
  id                  INTEGER PRIMARY KEY AUTOINCREMENT,
  dag_id              TEXT    NOT NULL REFERENCES dags (dag_id),
  run_id              TEXT    NOT NULL CHECK (run_id <> ''),
  run_type            TEXT    NOT NULL CHECK (run_type <> ''),
  state               TEXT    NOT NULL CHECK (state = 'queued' OR state = 'running' OR state = 'success' OR
                                              state = 'failed'),
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

INSERT INTO dag_runs_new (id, dag_id, run_id, run_type, state, logical_date, data_interval_start,
                          data_interval_end, queued_at, start_date, end_date, conf, dag_snapshot,
                          callback_done)
  SELECT id, dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end,
         queued_at, start_date, end_date, conf, dag_snapshot, callback_done
  FROM dag_runs;
DELETE FROM sqlite_sequence WHERE name = 'dag_runs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'dag_runs_new', seq FROM sqlite_sequence WHERE name = 'dag_runs';
DROP TABLE dag_runs;
ALTER TABLE dag_runs_new RENAME TO dag_runs;

CREATE INDEX dag_runs_by_dag_date ON dag_runs (dag_id, logical_date);
CREATE INDEX dag_runs_by_date ON dag_runs (logical_date);
CREATE INDEX dag_runs_unfinished ON dag_runs (logical_date) WHERE state IN ('queued', 'running');

-- task_instances -------------------------------------------------------------------------------

CREATE TABLE task_instances_new (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  run_pk          INTEGER NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
  task_id         TEXT    NOT NULL CHECK (task_id <> ''),
  map_index       INTEGER NOT NULL DEFAULT -1 CHECK (map_index >= -1),
  state           TEXT    NOT NULL CHECK (state = 'scheduled' OR state = 'queued' OR state = 'running' OR
                                          state = 'success' OR state = 'failed' OR state = 'up_for_retry' OR
                                          state = 'upstream_failed' OR state = 'skipped'),
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
  max_tries       INTEGER NOT NULL DEFAULT 1 CHECK (max_tries >= 1),
  -- Its index also serves "the task instances of a run" and the ON DELETE CASCADE lookup.
  UNIQUE (run_pk, task_id, map_index)
) STRICT;

INSERT INTO task_instances_new (id, run_pk, task_id, map_index, state, try_number, queued_at, start_date,
                                end_date, next_retry_at, pool, priority_weight, pid, external_id, progress,
                                output, waiting_reason, cached, max_tries)
  SELECT id, run_pk, task_id, map_index, state, try_number, queued_at, start_date, end_date, next_retry_at,
         pool, priority_weight, pid, external_id, progress, output, waiting_reason, cached, max_tries
  FROM task_instances;
DELETE FROM sqlite_sequence WHERE name = 'task_instances_new';
INSERT INTO sqlite_sequence (name, seq)
  SELECT 'task_instances_new', seq FROM sqlite_sequence WHERE name = 'task_instances';
DROP TABLE task_instances;
ALTER TABLE task_instances_new RENAME TO task_instances;

CREATE INDEX task_instances_by_state ON task_instances (state);

-- task_tries -----------------------------------------------------------------------------------

CREATE TABLE task_tries_new (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  ti_pk       INTEGER NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
  try_number  INTEGER NOT NULL CHECK (try_number >= 1),
  state       TEXT    NOT NULL CHECK (state = 'scheduled' OR state = 'queued' OR state = 'running' OR
                                      state = 'success' OR state = 'failed' OR state = 'up_for_retry' OR
                                      state = 'upstream_failed' OR state = 'skipped'),
  start_date  INTEGER,
  end_date    INTEGER,
  exit_code   INTEGER,
  pid         INTEGER,
  external_id TEXT,
  log_path    TEXT    NOT NULL DEFAULT '',
  reason      TEXT,
  cache_key   TEXT,
  -- Its index also serves "the tries of a task instance" and the ON DELETE CASCADE lookup.
  UNIQUE (ti_pk, try_number)
) STRICT;

INSERT INTO task_tries_new (id, ti_pk, try_number, state, start_date, end_date, exit_code, pid, external_id,
                            log_path, reason, cache_key)
  SELECT id, ti_pk, try_number, state, start_date, end_date, exit_code, pid, external_id, log_path, reason,
         cache_key
  FROM task_tries;
DELETE FROM sqlite_sequence WHERE name = 'task_tries_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'task_tries_new', seq FROM sqlite_sequence WHERE name = 'task_tries';
DROP TABLE task_tries;
ALTER TABLE task_tries_new RENAME TO task_tries;

CREATE INDEX task_tries_active ON task_tries (id) WHERE state IN ('queued', 'running');
CREATE INDEX task_tries_cache ON task_tries (cache_key) WHERE cache_key IS NOT NULL;
