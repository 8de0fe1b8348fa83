-- GET /metrics counts task instances by state on every scrape. Without an index that is a scan
-- of the whole table (about 150 ms for 100,000 rows of history); with this one it reads the
-- index only (about 25 ms), off the API's other requests' way.
CREATE INDEX task_instances_by_state ON task_instances (state);
