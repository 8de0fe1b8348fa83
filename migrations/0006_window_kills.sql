-- Tries of a task instance that a closing batch window stopped. They do not use up a retry:
-- the instance may make max_tries + window_kills tries. Existing rows stopped by a window
-- already had max_tries raised for it, so they start at 0.
ALTER TABLE task_instances ADD COLUMN window_kills INTEGER NOT NULL DEFAULT 0 CHECK (window_kills >= 0);
