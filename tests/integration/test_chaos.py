"""Chaos: a run of short tasks while the daemon is killed with -9, stopped with SIGTERM and
reloaded with SIGHUP at random moments. At the end the run has succeeded, every task has exactly
one successful try, no task ran twice (each appends to a ledger when it succeeds), and
`nightshift db check` passes.

The default is a short version (200 tasks, 5 kills, 2 SIGTERMs, 3 SIGHUPs) that `.ci/run` runs;
NIGHTSHIFT_CHAOS_FULL=1 runs the issue's full version (500 tasks, 20 kills, 5 SIGTERMs,
5 SIGHUPs). NIGHTSHIFT_CHAOS_SEED replays a given seed; the seed used is printed."""
import os
import random
import signal
import sqlite3
import sys
import time
import unittest

from harness import Api, Daemon, Workspace, run, wait_for

FULL = os.environ.get("NIGHTSHIFT_CHAOS_FULL") == "1"
TASKS, KILLS, TERMS, HUPS = (500, 20, 5, 5) if FULL else (200, 5, 2, 3)
WIDTH = 20


def db_rows(ws, sql, *args):
    with sqlite3.connect(ws.db, timeout=30) as db:
        return db.execute(sql, args).fetchall()


class ChaosTest(unittest.TestCase):
    def test_random_kills_terms_and_hups_lose_nothing_and_rerun_nothing(self):
        seed = int(os.environ.get("NIGHTSHIFT_CHAOS_SEED", time.time_ns() % 1_000_000))
        print(f"\nchaos: seed {seed}, {TASKS} tasks, {KILLS} kill -9, {TERMS} SIGTERM, {HUPS} SIGHUP",
              file=sys.stderr)
        rng = random.Random(seed)
        ws = Workspace("parallelism: 4\nshutdown_grace: 30s\n")
        self.addCleanup(ws.cleanup)
        ledger = os.path.join(ws.root, "ledger.txt")
        lines = ["tasks:"]
        for n in range(TASKS):
            layer, i = divmod(n, WIDTH)
            # Each task depends on two of the layer before, so kills land between dependents too.
            deps = f", depends_on: [t{n - WIDTH - i + (i * 7) % WIDTH}, t{n - WIDTH - i + (i * 3 + 1) % WIDTH}]" \
                if layer else ""
            pause = rng.choice(["0", "0.01", "0.05", "0.1", "0.2"])
            lines.append(f"  - {{task_id: t{n}, command: 'sleep {pause}; "
                         f"echo \"$NIGHTSHIFT_TASK_ID $NIGHTSHIFT_TRY_NUMBER\" >> {ledger}'{deps}}}")
        ws.write_dag("chaos.yaml", "\n".join(lines) + "\n")

        def successes():
            return db_rows(ws, "SELECT count(*) FROM task_instances WHERE state = 'success'")[0][0]

        def run_state():
            rows = db_rows(ws, "SELECT state FROM dag_runs WHERE run_id = 'r'")
            return rows[0][0] if rows else None

        daemon = Daemon(ws).wait_healthy()
        api = Api(ws)
        api.trigger("chaos", dag_run_id="r")
        events = ["kill"] * KILLS + ["term"] * TERMS + ["hup"] * HUPS
        rng.shuffle(events)
        done = []
        for event in events:
            if run_state() == "success":
                break
            # A random moment: after some progress since the last event, plus a random delay.
            floor = successes()
            wait_for(lambda: successes() > floor or run_state() == "success", 60, "progress between events")
            time.sleep(rng.uniform(0, 0.3))
            if event == "kill":
                daemon.kill()
            elif event == "term":
                daemon.signal(signal.SIGTERM)
                self.assertEqual(daemon.stop(timeout=90), 0, daemon.output()[-2000:])
            else:
                daemon.signal(signal.SIGHUP)
                wait_for(lambda: "SIGHUP" in daemon.output(), 10, "the daemon to log the reload")
                done.append(event)
                continue
            done.append(event)
            daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        print(f"chaos: events applied before the run ended: {done}", file=sys.stderr)

        self.assertEqual(api.wait_run("chaos", "r", timeout=300)["state"], "success", daemon.output()[-3000:])
        per_task = db_rows(ws, "SELECT ti.task_id, count(*) FROM task_tries t JOIN task_instances ti "
                               "ON t.ti_pk = ti.id WHERE t.state = 'success' GROUP BY ti.task_id")
        self.assertEqual(len(per_task), TASKS)
        self.assertTrue(all(n == 1 for _, n in per_task), [row for row in per_task if row[1] != 1])
        with open(ledger) as f:
            ran = [line.split()[0] for line in f.read().splitlines()]
        twice = sorted({t for t in ran if ran.count(t) > 1})
        self.assertEqual(twice, [], "tasks that ran to success more than once")
        self.assertEqual(len(set(ran)), TASKS, "a task never ran")
        self.assertEqual(daemon.stop(), 0)
        check = run(["db", "check", "--config", ws.config])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    unittest.main()
