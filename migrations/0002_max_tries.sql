-- Tries a task instance may use: retries + 1, plus one for each try a closing batch window
-- stopped (those do not use up a retry). Existing rows get the minimum, one try.
ALTER TABLE task_instances ADD COLUMN max_tries INTEGER NOT NULL DEFAULT 1 CHECK (max_tries >= 1);
