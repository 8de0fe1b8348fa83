"""Hostile or broken input from outside (a DAG file that is not UTF-8, a trigger whose conf nests
400,000 deep, a task output nested as deep) is refused with a clear error, and the daemon keeps
serving everything else."""
import os
import sqlite3
import unittest

from harness import Api, Daemon, Workspace, get, request, run, wait_for

LATIN1_DAG = b"""schedule: "@every 1s"
description: "caf\xe9 au lait"
tasks:
  - task_id: a
    command: "true"
"""
LATIN1_ERROR = ":2:18: not valid UTF-8 (byte 0xE9); save the file as UTF-8"


def db_rows(ws, sql, *args):
    with sqlite3.connect(ws.db, timeout=30) as db:
        return db.execute(sql, args).fetchall()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


class BadDagFileTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.bad = write_bytes(os.path.join(self.ws.dags, "latin1.yaml"), LATIN1_DAG)

    def test_validate_reports_the_byte_and_exits_1(self):
        result = run(["dags", "validate", self.bad])
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertEqual(result.stdout.splitlines(), [self.bad + LATIN1_ERROR])

    def test_run_refuses_the_file_instead_of_aborting(self):
        result = run(["run", "--config", self.ws.config, self.bad], cwd=self.ws.root)
        # docs/cli.md: a DAG file with errors is not run; its errors go to stderr, exit 2.
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertEqual(result.stderr.splitlines(), [self.bad + LATIN1_ERROR])

    def test_serve_lists_the_file_and_keeps_running_the_other_dags(self):
        self.ws.write_dag("good.yaml", """
            schedule: "@every 1s"
            tasks:
              - task_id: a
                command: "true"
        """)
        daemon = Daemon(self.ws)
        self.addCleanup(daemon.kill)
        daemon.wait_healthy()
        _, errors = get(self.ws.url + "/api/v1/importErrors")
        self.assertEqual([(e["filename"], e["line"], e["column"], e["message"]) for e in errors["import_errors"]],
                         [(self.bad, 2, 18, "not valid UTF-8 (byte 0xE9); save the file as UTF-8")])

        def good_run_succeeded():
            _, runs = get(self.ws.url + "/api/v1/dags/good/dagRuns")
            return any(r["state"] == "success" for r in runs.get("dag_runs", []))
        wait_for(good_run_succeeded, 60, "a scheduled run of the good DAG to succeed")
        self.assertIsNone(daemon.proc.poll(), daemon.output())
        self.assertEqual(get(self.ws.url + "/api/v1/health")[0], 200)


class DeepNestingTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)

    def start(self):
        self.daemon = Daemon(self.ws)
        self.addCleanup(self.daemon.kill)
        self.daemon.wait_healthy()
        self.api = Api(self.ws)

    def test_trigger_with_conf_nested_400000_deep_is_a_400(self):
        self.ws.write_dag("d.yaml", """
            tasks:
              - task_id: a
                command: "true"
        """)
        self.start()
        depth = 400000
        body = b'{"conf": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
        self.assertLess(len(body), 1 << 20)  # under the body limit: the parser sees all of it
        status, answer = request("POST", self.ws.url + "/api/v1/dags/d/dagRuns", body=body,
                                 headers=self.api.auth(), timeout=60)
        self.assertEqual(status, 400, answer)
        self.assertEqual(answer["status"], 400)
        self.assertEqual(answer["title"], "Bad Request")
        self.assertRegex(answer["detail"], r"^request body is nested deeper than 64 levels \(at byte \d+\)$")
        self.assertEqual(get(self.ws.url + "/api/v1/health")[0], 200)
        self.assertIsNone(self.daemon.proc.poll(), self.daemon.output())
        # Nesting up to the limit is a conf like any other.
        conf = {"a": [[[[1]]]]}
        self.assertEqual(self.api.trigger("d", conf=conf)["conf"], conf)

    def test_cli_conf_nested_too_deep_is_a_usage_error(self):
        # Checked before any request is sent: no daemon is needed.
        conf = '{"a": ' + "[" * 1000 + "]" * 1000 + "}"
        result = run(["dags", "trigger", "d", "--config", self.ws.config, "--conf", conf])
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertEqual(result.stderr.strip(), "nightshift: --conf is nested deeper than 64 levels (at byte 69)")

    def test_output_nested_too_deep_fails_the_try_with_the_reason(self):
        # 30,000 levels: under the 64 KiB output limit.
        self.ws.write_dag("out.yaml", """
            tasks:
              - task_id: deep
                command: python3 -c "import os; open(os.environ['NIGHTSHIFT_OUTPUT'], 'w').write('[' * 30000 + ']' * 30000)"
              - task_id: after
                command: "true"
                depends_on: [deep]
        """)
        self.start()
        run_id = self.api.trigger("out")["dag_run_id"]
        self.assertEqual(self.api.wait_run("out", run_id)["state"], "failed")
        tis = self.api.task_instances("out", run_id)
        self.assertEqual(tis["deep"]["state"], "failed")
        self.assertEqual(tis["after"]["state"], "upstream_failed")
        (reason,), = db_rows(self.ws, "SELECT reason FROM task_tries")
        self.assertIn("output is nested deeper than 64 levels", reason)
        self.assertEqual(get(self.ws.url + "/api/v1/health")[0], 200)
        self.assertIsNone(self.daemon.proc.poll(), self.daemon.output())


if __name__ == "__main__":
    unittest.main()
