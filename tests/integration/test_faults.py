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


class MisbehavingTaskTest(unittest.TestCase):
    def test_each_misbehaving_task_ends_in_a_clear_state_with_a_reason(self):
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        path = ws.write_dag("bad.yaml", """
            tasks:
              - {task_id: forks_a_daemon, command: 'sleep 30 & echo started'}
              - {task_id: killed_by_signal, command: 'kill -9 $$'}
              - {task_id: cwd_missing, command: 'true', cwd: /nonexistent/dir}
              - {task_id: closes_stdout, command: 'exec 1>&- 2>&-; sleep 0.2; exit 0'}
        """)
        started = time.monotonic()
        result = run(["run", path, "--state-dir", os.path.join(ws.root, "state")], cwd=ws.root, timeout=60)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        # The forked daemon holds no one up: the run ends long before its sleep would.
        self.assertLess(time.monotonic() - started, 25)
        with sqlite3.connect(os.path.join(ws.root, "state", "state.db")) as db:
            rows = {task: (state, code, reason) for task, state, code, reason in db.execute(
                "SELECT ti.task_id, t.state, t.exit_code, t.reason FROM task_tries t "
                "JOIN task_instances ti ON ti.id = t.ti_pk")}
            (log_path,), = db.execute("SELECT t.log_path FROM task_tries t JOIN task_instances ti "
                                      "ON ti.id = t.ti_pk WHERE ti.task_id = 'cwd_missing'").fetchall()
        self.assertEqual(rows["forks_a_daemon"][:2], ("success", 0))
        self.assertEqual(rows["killed_by_signal"], ("failed", 137, "killed by signal 9 (Killed)"))
        self.assertEqual(rows["cwd_missing"][:2], ("failed", 127))
        self.assertEqual(rows["closes_stdout"][:2], ("success", 0))
        with open(log_path) as f:
            self.assertIn("cannot change directory to /nonexistent/dir", f.read())


if __name__ == "__main__":
    unittest.main()
