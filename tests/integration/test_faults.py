"""Faults the daemon must ride out without losing or repeating work."""
import os
import sqlite3
import threading
import time
import unittest

from harness import Api, Daemon, Workspace, run, wait_for


class LockedDatabaseTest(unittest.TestCase):
    def test_a_database_locked_by_another_process_delays_but_loses_nothing(self):
        ws = Workspace("parallelism: 4\n")
        self.addCleanup(ws.cleanup)
        ledger = os.path.join(ws.root, "ledger.txt")
        tasks = "\n".join(
            f"  - {{task_id: t{i}, command: 'sleep 0.2; echo t{i} >> {ledger}'{', depends_on: [t' + str(i - 1) + ']' if i % 5 else ''}}}"
            for i in range(20))
        ws.write_dag("locked.yaml", "tasks:\n" + tasks + "\n")
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        api = Api(ws)
        api.trigger("locked", dag_run_id="r")
        wait_for(lambda: os.path.exists(ledger), 30, "the first task to finish")

        # Another process takes the write lock for longer than the daemon's busy timeout.
        holder = sqlite3.connect(ws.db, timeout=30, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        held_until = time.monotonic() + 7
        wait_for(lambda: time.monotonic() > held_until, 10, "the lock to be held for 7 s")
        holder.execute("COMMIT")
        holder.close()

        self.assertEqual(api.wait_run("locked", "r", timeout=120)["state"], "success")
        self.assertIn("scheduler pass failed", daemon.output())
        with open(ledger) as f:
            ran = f.read().split()
        self.assertEqual(sorted(ran), sorted(f"t{i}" for i in range(20)), "a task was lost or ran twice")
        with sqlite3.connect(ws.db) as db:
            tries = db.execute("SELECT count(*) FROM task_tries WHERE state = 'success'").fetchone()[0]
        self.assertEqual(tries, 20)
        self.assertEqual(daemon.stop(), 0)
        check = run(["db", "check", "--config", ws.config])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    unittest.main()
