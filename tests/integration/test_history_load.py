"""A long history in the database: the dashboard's DAG page stays quick, and retention keeps the
database bounded.

The history (finished runs of a 200-task DAG, every task with one successful try) is written
with sqlite3 straight into the daemon's schema while the daemon is stopped: going through the
scheduler would take far longer than the test. By default 100 runs; NIGHTSHIFT_HISTORY_FULL=1
writes 500 (100,000 task instances), the figure docs/ quote.
"""
import contextlib
import os
import sqlite3
import statistics
import time
import unittest
import urllib.parse

from harness import Daemon, Workspace, get, run, wait_for

FULL = os.environ.get("NIGHTSHIFT_HISTORY_FULL") == "1"
RUNS = 500 if FULL else 100
TASKS = 200
KEEP = 50
HOUR_MS = 3_600_000


def write_history(db_path, dag_id, runs, first_hour):
    """`runs` finished runs an hour apart, newest last, starting `first_hour` hours ago."""
    now_ms = int(time.time() * 1000)
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("PRAGMA foreign_keys = ON")
        for r in range(runs):
            logical = now_ms - (first_hour - r) * HOUR_MS
            cur = db.execute(
                "INSERT INTO dag_runs (dag_id, run_id, run_type, state, logical_date, queued_at, start_date, end_date)"
                " VALUES (?, ?, 'scheduled', ?, ?, ?, ?, ?)",
                (dag_id, f"hist__{logical}", "failed" if r % 10 == 9 else "success", logical, logical, logical,
                 logical + 60_000))
            run_pk = cur.lastrowid
            tis = [(run_pk, f"t{t:03d}", "failed" if (r % 10 == 9 and t == 7) else "success",
                    logical + t * 100, logical + t * 100 + 50) for t in range(TASKS)]
            db.executemany(
                "INSERT INTO task_instances (run_pk, task_id, state, try_number, max_tries, start_date, end_date)"
                " VALUES (?, ?, ?, 1, 1, ?, ?)", tis)
            db.execute(
                "INSERT INTO task_tries (ti_pk, try_number, state, start_date, end_date, exit_code, log_path)"
                " SELECT id, 1, state, start_date, end_date, CASE state WHEN 'success' THEN 0 ELSE 1 END, ''"
                " FROM task_instances WHERE run_pk = ?", (run_pk,))
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so the file's size is the data's


def count(db_path, sql):
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchone()[0]


class HistoryLoadTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        tasks = "".join(f"  - {{task_id: t{t:03d}, command: 'true'}}\n" for t in range(TASKS))
        self.ws.write_dag("history.yaml", "tasks:\n" + tasks)
        self.configure(max_runs=100_000)

    def configure(self, max_runs):
        with open(self.ws.config) as f:
            lines = [line for line in f.read().splitlines() if not line.startswith("retention:")]
        lines.append(f"retention: {{max_runs_per_dag: {max_runs}, max_age: 3650d}}")
        with open(self.ws.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def serve(self):
        daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(daemon.kill)
        return daemon

    def stop(self, daemon):
        self.assertEqual(daemon.stop(), 0, daemon.output())

    def timed_get(self, path, repeat=5):
        """Median and worst milliseconds of `repeat` GETs of path (all must answer 200)."""
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            status, body = get(self.ws.url + path, timeout=30)
            times.append((time.perf_counter() - started) * 1000)
            self.assertEqual(status, 200, f"{path}: {body}")
        return statistics.median(times), max(times), body

    def test_the_dag_page_of_a_long_history_answers_quickly_and_retention_bounds_it(self):
        db = self.ws.db
        self.stop(self.serve())  # creates the schema and the DAG's row
        started = time.monotonic()
        write_history(db, "history", RUNS, first_hour=RUNS + 10)
        print(f"\nwrote {RUNS} runs x {TASKS} tasks in {time.monotonic() - started:.1f} s; "
              f"database {os.path.getsize(db) / 1e6:.1f} MB")
        full_size = os.path.getsize(db)

        daemon = self.serve()
        _, _, runs = self.timed_get("/api/v1/dags/history/dagRuns?limit=25", repeat=1)
        self.assertEqual(runs["total_entries"], RUNS)
        newest = urllib.parse.quote(runs["dag_runs"][0]["dag_run_id"], safe="")
        # What the dashboard's DAG list and DAG page ask for (web/static/app.js), largest grid included.
        pages = ["/api/v1/dags?limit=1000", "/api/v1/dags/history", "/api/v1/dags/history/grid?limit=25",
                 "/api/v1/dags/history/grid?limit=500", "/api/v1/dags/history/dagRuns?limit=25",
                 f"/api/v1/dags/history/dagRuns/{newest}", f"/api/v1/dags/history/dagRuns/{newest}/taskInstances",
                 f"/api/v1/dags/history/dagRuns/{newest}/taskInstances/t007/tries"]
        print(f"DAG page reads with {RUNS} runs x {TASKS} tasks in the database (median / worst of 5):")
        for path in pages:
            median, worst, body = self.timed_get(path)
            print(f"  {median:7.1f} ms / {worst:7.1f} ms  GET {path}")
            # Generous: a bound for a broken query plan (a full scan per run), not for a slow machine.
            self.assertLess(median, 5000, path)
        grid = self.timed_get("/api/v1/dags/history/grid?limit=500", repeat=1)[2]
        self.assertEqual(len(grid["runs"]), min(RUNS, 500))
        self.assertEqual(len(grid["tasks"]), TASKS)
        failed_run = next(r for r in grid["runs"] if r["state"] == "failed")
        self.assertEqual(failed_run["states"][7], "failed")
        self.stop(daemon)

        # Retention at start: only the newest KEEP finished runs stay, with their rows.
        self.configure(max_runs=KEEP)
        daemon = self.serve()
        wait_for(lambda: count(db, "SELECT COUNT(*) FROM dag_runs") == KEEP, 60, f"retention to keep {KEEP} runs")
        self.assertEqual(count(db, "SELECT COUNT(*) FROM task_instances"), KEEP * TASKS)
        self.assertEqual(count(db, "SELECT COUNT(*) FROM task_tries"), KEEP * TASKS)
        newest_kept = get(self.ws.url + "/api/v1/dags/history/dagRuns?limit=1")[1]["dag_runs"][0]["dag_run_id"]
        self.assertEqual(urllib.parse.quote(newest_kept, safe=""), newest)
        self.stop(daemon)
        check = run(["db", "check", "--config", self.ws.config])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

        # The space freed is reused: as much history again does not grow the file past the first fill.
        write_history(db, "history", RUNS - KEEP, first_hour=RUNS + 10)
        grown = os.path.getsize(db)
        print(f"database {full_size / 1e6:.1f} MB with {RUNS} runs, {grown / 1e6:.1f} MB after pruning to "
              f"{KEEP} and writing {RUNS - KEEP} more")
        self.assertLessEqual(grown, full_size * 1.1)
        daemon = self.serve()
        wait_for(lambda: count(db, "SELECT COUNT(*) FROM dag_runs") == KEEP, 60, f"retention to keep {KEEP} runs")
        self.stop(daemon)


if __name__ == "__main__":
    unittest.main()
