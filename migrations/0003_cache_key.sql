-- The cache key a try ran (or was skipped) under: a hash of its command, environment and
-- input files. A task whose key equals its last successful try's key is not run again.
ALTER TABLE task_tries ADD COLUMN cache_key TEXT;
CREATE INDEX task_tries_cache ON task_tries (cache_key) WHERE cache_key IS NOT NULL;
