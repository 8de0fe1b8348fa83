"""Standbys (docs/adr/0006): the next try waits in a running try's slot and the supervisor starts
it the moment that one ends. Driven through the real binary: what a user must see is that a
downstream task still runs only after its upstream succeeded, exactly once, and that nothing
starts behind the back of a daemon that was killed, stopped or replaced."""
import os
import signal
import sqlite3
import unittest

from harness import Api, Daemon, Workspace, get, run, wait_for


def db_rows(ws, sql, *args):
    with sqlite3.connect(ws.db, timeout=30) as db:
        return db.execute(sql, args).fetchall()


def ledger_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def metric(ws, name):
    _, text = get(ws.url + "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


class StandbyRunTest(unittest.TestCase):
    """`nightshift run`: the outcome of an upstream decides whether its standby starts."""

    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.ledger = os.path.join(self.ws.root, "ledger.txt")

    def run_dag(self, body, expect):
        path = self.ws.write_dag("d.yaml", body)
        result = run(["run", path, "--state-dir", os.path.join(self.ws.root, "state"), "-j", "2"],
                     cwd=self.ws.root, timeout=120)
        self.assertEqual(result.returncode, expect, result.stdout + result.stderr)
        return dict(db_rows(self.ws, "SELECT task_id, state FROM task_instances"))

    def tries(self, task_id):
        return db_rows(self.ws, "SELECT t.try_number, t.state FROM task_tries t JOIN task_instances ti "
                                "ON t.ti_pk = ti.id WHERE ti.task_id = ? ORDER BY t.try_number", task_id)

    def test_a_failed_link_keeps_the_rest_of_the_chain_from_starting(self):
        rec = f'echo $NIGHTSHIFT_TASK_ID >> {self.ledger}'
        states = self.run_dag(f"""
tasks:
  - {{task_id: a, command: '{rec}'}}
  - {{task_id: b, command: '{rec}; sleep 0.2; exit 4', depends_on: [a]}}
  - {{task_id: c, command: '{rec}', depends_on: [b]}}
  - {{task_id: d, command: '{rec}', depends_on: [c]}}
""", expect=1)
        self.assertEqual(states, {"a": "success", "b": "failed", "c": "upstream_failed", "d": "upstream_failed"})
        self.assertEqual(ledger_lines(self.ledger), ["a", "b"])
        # c stood by in b's slot and was declined: no try of it is left on record.
        self.assertEqual(self.tries("c"), [])
        self.assertEqual(self.tries("d"), [])

    def test_an_output_that_is_not_json_keeps_the_downstream_from_starting(self):
        states = self.run_dag(f"""
tasks:
  - {{task_id: a, command: 'sleep 0.2; echo "{{not json" > "$NIGHTSHIFT_OUTPUT"'}}
  - {{task_id: b, command: 'echo b >> {self.ledger}', depends_on: [a]}}
""", expect=1)
        self.assertEqual(states, {"a": "failed", "b": "upstream_failed"})
        self.assertEqual(ledger_lines(self.ledger), [])
        (reason,), = db_rows(self.ws, "SELECT reason FROM task_tries")
        self.assertIn("not valid JSON", reason)

    def test_a_retried_upstream_runs_its_downstream_once_with_try_one(self):
        states = self.run_dag(f"""
tasks:
  - task_id: a
    command: 'sleep 0.2; [ "$NIGHTSHIFT_TRY_NUMBER" -ge 2 ]'
    retries: 1
    retry_delay: 0s
  - {{task_id: b, command: 'echo "b $NIGHTSHIFT_TRY_NUMBER" >> {self.ledger}', depends_on: [a]}}
""", expect=0)
        self.assertEqual(states, {"a": "success", "b": "success"})
        self.assertEqual(ledger_lines(self.ledger), ["b", "1"])
        self.assertEqual(self.tries("a"), [(1, "failed"), (2, "success")])
        self.assertEqual(self.tries("b"), [(1, "success")])


class StandbyDaemonTest(unittest.TestCase):
    """The daemon: standbys are used, and survive kill -9 and SIGTERM without running twice."""

    @staticmethod
    def chain(pause, ledger):
        lines = ["tasks:"]
        for i in range(5):
            deps = f", depends_on: [t{i - 1}]" if i else ""
            lines.append(f"  - {{task_id: t{i}, command: 'sleep {pause}; echo t{i} >> {ledger}'{deps}}}")
        return "\n".join(lines) + "\n"

    def start(self, pause):
        self.ws = Workspace("parallelism: 2\nshutdown_grace: 30s\n")
        self.addCleanup(self.ws.cleanup)
        self.ledger = os.path.join(self.ws.root, "ledger.txt")
        self.ws.write_dag("chain.yaml", self.chain(pause, self.ledger))
        daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(daemon.kill)
        self.api = Api(self.ws)
        self.api.trigger("chain", dag_run_id="r")
        return daemon

    def reason(self, task_id):
        return self.api.task_instances("chain", "r")[task_id].get("waiting_reason") or ""

    def assert_each_ran_once(self):
        self.assertEqual(sorted(ledger_lines(self.ledger)), [f"t{i}" for i in range(5)])
        tries = db_rows(self.ws, "SELECT ti.task_id, t.try_number, t.state FROM task_tries t JOIN task_instances ti "
                                 "ON t.ti_pk = ti.id ORDER BY ti.task_id")
        self.assertEqual(tries, [(f"t{i}", 1, "success") for i in range(5)])
        check = run(["db", "check", "--config", self.ws.config])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_each_link_starts_in_the_slot_of_the_one_before(self):
        daemon = self.start(pause="0.3")
        # While t0 runs, t1 already waits in its slot, queued, and says so.
        wait_for(lambda: "starts in the slot of chain/r/t0#1 as soon as that succeeds" in self.reason("t1"), 10,
                 "t1 to stand by in t0's slot")
        self.assertEqual(self.api.task_instances("chain", "r")["t1"]["state"], "queued")
        self.assertEqual(self.api.wait_run("chain", "r")["state"], "success")
        self.assertEqual(metric(self.ws, 'nightshift_standbys_total{outcome="started"}'), 4)
        self.assertEqual(metric(self.ws, 'nightshift_standbys_total{outcome="declined"}'), 0)
        self.assertEqual(daemon.stop(), 0)
        self.assert_each_ran_once()

    def test_kill_9_while_a_standby_waits_starts_nothing_twice(self):
        daemon = self.start(pause="1")
        def t1_runs_with_t2_in_its_slot():
            tis = self.api.task_instances("chain", "r")
            return tis["t1"]["state"] == "running" and "slot of chain/r/t1#1" in (tis["t2"]["waiting_reason"] or "")
        wait_for(t1_runs_with_t2_in_its_slot, 20, "t1 to run with t2 standing by in its slot")
        daemon.kill()
        # The old supervisor finishes t1 but, with its daemon gone, does not start t2.
        wait_for(lambda: "t1" in ledger_lines(self.ledger), 20, "t1 to finish without its daemon")
        restarted = Daemon(self.ws).wait_healthy()
        self.addCleanup(restarted.kill)
        self.assertEqual(self.api.wait_run("chain", "r", timeout=60)["state"], "success")
        self.assertEqual(restarted.stop(), 0)
        self.assert_each_ran_once()

    def test_kill_9_and_restart_while_the_holder_runs(self):
        daemon = self.start(pause="1")
        wait_for(lambda: "starts in the slot of chain/r/t0#1" in self.reason("t1"), 20, "t1 to stand by in t0's slot")
        daemon.kill()
        # Back before t0 ends: t0 is adopted, t1 (never started) waits again for t0's success.
        restarted = Daemon(self.ws).wait_healthy()
        self.addCleanup(restarted.kill)
        self.assertEqual(self.api.wait_run("chain", "r", timeout=60)["state"], "success")
        self.assertEqual(restarted.stop(), 0)
        self.assert_each_ran_once()

    def test_sigterm_withdraws_the_standbys_and_the_next_start_runs_them(self):
        daemon = self.start(pause="1")
        wait_for(lambda: "starts in the slot of chain/r/t0#1" in self.reason("t1"), 20, "t1 to stand by in t0's slot")
        daemon.signal(signal.SIGTERM)
        self.assertEqual(daemon.stop(timeout=60), 0, daemon.output()[-2000:])
        # t0 was let finish; t1 was withdrawn, not started, and waits in the database.
        self.assertEqual(ledger_lines(self.ledger), ["t0"])
        states = dict(db_rows(self.ws, "SELECT task_id, state FROM task_instances"))
        self.assertEqual(states["t0"], "success")
        self.assertEqual(states["t1"], "scheduled")
        self.assertEqual(db_rows(self.ws, "SELECT count(*) FROM task_tries"), [(1,)])
        restarted = Daemon(self.ws).wait_healthy()
        self.addCleanup(restarted.kill)
        self.assertEqual(self.api.wait_run("chain", "r", timeout=60)["state"], "success")
        self.assertEqual(restarted.stop(), 0)
        self.assert_each_ran_once()


if __name__ == "__main__":
    unittest.main()
