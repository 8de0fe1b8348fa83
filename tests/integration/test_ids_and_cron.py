"""Names and schedules as a user writes them: the one id rule (never only dots), cron that can
never fire, and the @quarterly and @once presets."""
import json
import os
import unittest

from harness import Api, Daemon, Workspace, get, run, wait_for

ID_RULE = 'use 1 to 200 letters, digits, "_", "." or "-", not only dots'


def one_task_dag(first_line):
    """A DAG file's text: `first_line`, then one task."""
    return f'{first_line}\ntasks:\n  - task_id: a\n    command: "true"\n'


def validate(test, ws, returncode):
    """`nightshift dags validate` on the workspace's folder; its output lines."""
    result = run(["dags", "validate", ws.dags], cwd=ws.root)
    test.assertEqual(result.returncode, returncode, result.stdout + result.stderr)
    return result.stdout.splitlines()


def files_under(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


class IdsTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)

    def test_a_dag_id_made_only_of_dots_is_an_import_error(self):
        path = self.ws.write_dag("dots.yaml", one_task_dag('dag_id: ".."'))
        self.assertEqual(validate(self, self.ws, 1), [f'{path}:1:9: invalid dag_id "..": {ID_RULE}'])

    def test_run_refuses_it_and_writes_nothing(self):
        path = self.ws.write_dag("dots.yaml", """
            tasks:
              - task_id: ".."
                command: "true"
        """)
        before = files_under(self.ws.root)
        result = run(["run", path, "--state-dir", os.path.join(self.ws.root, "state")], cwd=self.ws.root)
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertIn(f'{path}:3:14: invalid task_id "..": {ID_RULE}', result.stderr)
        self.assertEqual(files_under(self.ws.root), before)

    def test_an_id_the_loader_accepts_the_api_serves(self):
        dotted = "a." + "b" * 196 + ".."  # 200 characters, dots inside and at the end
        self.ws.write_dag("dotted.yaml", f"""
            dag_id: {dotted}
            tasks:
              - task_id: ..c
                command: "true"
        """)
        daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(daemon.kill)
        status, body = get(f"{self.ws.url}/api/v1/dags/{dotted}")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["dag_id"], dotted)
        run_ = Api(self.ws).trigger(dotted, dag_run_id="by.hand")
        done = Api(self.ws).wait_run(dotted, run_["dag_run_id"])
        self.assertEqual(done["state"], "success")
        self.assertEqual(set(Api(self.ws).task_instances(dotted, "by.hand")), {"..c"})
        status, _ = get(f"{self.ws.url}/api/v1/dags/...")
        self.assertEqual(status, 400)


class CronPresetsTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)

    def test_validate_accepts_quarterly_and_once_and_refuses_a_date_that_never_comes(self):
        for name, schedule in [("q", "@quarterly"), ("o", "@once"), ("leap", "0 0 29 2 *")]:
            self.ws.write_dag(f"{name}.yaml", one_task_dag(f'schedule: "{schedule}"'))
        validate(self, self.ws, 0)
        path = self.ws.write_dag("never.yaml", one_task_dag('schedule: "0 0 30 2 *"'))
        self.assertEqual(validate(self, self.ws, 1),
                         [f'{path}:1:11: schedule: cron "0 0 30 2 *" never fires: February has no day 30'])

    def test_once_makes_one_run_and_no_second_after_a_restart(self):
        self.ws.write_dag("once.yaml", one_task_dag('schedule: "@once"'))
        self.ws.write_dag("probe.yaml", one_task_dag("description: triggered by hand"))

        def runs():
            status, body = get(f"{self.ws.url}/api/v1/dags/once/dagRuns")
            self.assertEqual(status, 200, body)
            return body["dag_runs"]

        daemon = Daemon(self.ws).wait_healthy()
        first = wait_for(lambda: runs(), what="the @once run")
        self.assertEqual(len(first), 1, json.dumps(first))
        self.assertEqual(first[0]["run_type"], "scheduled")
        Api(self.ws).wait_run("once", first[0]["dag_run_id"])
        self.assertEqual(daemon.stop(), 0, daemon.output())

        daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(daemon.kill)
        # A manual run of another DAG that has finished proves the scheduler has made its passes
        # since the restart.
        api = Api(self.ws)
        probe = api.trigger("probe")
        api.wait_run("probe", probe["dag_run_id"])
        self.assertEqual([r["dag_run_id"] for r in runs()], [first[0]["dag_run_id"]])


if __name__ == "__main__":
    unittest.main()
