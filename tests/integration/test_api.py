"""The REST API against the real daemon: pause, clear, mark, following logs, hostile ids."""
import datetime
import os
import time
import unittest
import urllib.parse
import urllib.request

from harness import Api, Daemon, Workspace, get, request, wait_for


class ApiBehaviourTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.ledger = os.path.join(self.ws.root, "ledger.txt")

    def start(self):
        self.daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(self.daemon.kill)
        self.api = Api(self.ws)
        return self.api

    def test_pause_stops_new_scheduled_runs(self):
        start = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.ws.write_dag("tick.yaml", f"""
            schedule: "@every 2s"
            start_date: {start}
            tasks:
              - {{task_id: t, command: 'true'}}
        """)
        api = self.start()
        runs_url = f"{self.ws.url}/api/v1/dags/tick/dagRuns"
        wait_for(lambda: get(runs_url)[1]["total_entries"] >= 2, 30, "two scheduled runs")
        status, _ = request("PATCH", f"{self.ws.url}/api/v1/dags/tick", body={"is_paused": True}, headers=api.auth())
        self.assertEqual(status, 200)
        count = get(runs_url)[1]["total_entries"]
        # Wait until two more fire times have certainly passed, then count again.
        resume_at = time.monotonic() + 5
        wait_for(lambda: time.monotonic() > resume_at, 10, "two schedule intervals to pass")
        self.assertEqual(get(runs_url)[1]["total_entries"], count)
        request("PATCH", f"{self.ws.url}/api/v1/dags/tick", body={"is_paused": False}, headers=api.auth())
        wait_for(lambda: get(runs_url)[1]["total_entries"] > count, 30, "runs to resume after unpausing")

    def test_clear_reruns_a_task_and_its_downstream_in_the_same_run(self):
        self.ws.write_dag("c.yaml", f"""
            tasks:
              - {{task_id: a, command: 'echo "a $NIGHTSHIFT_TRY_NUMBER" >> {self.ledger}'}}
              - {{task_id: b, command: 'echo "b $NIGHTSHIFT_TRY_NUMBER" >> {self.ledger}', depends_on: [a]}}
        """)
        api = self.start()
        api.trigger("c", dag_run_id="r")
        self.assertEqual(api.wait_run("c", "r")["state"], "success")
        status, _ = request("POST", f"{self.ws.url}/api/v1/dags/c/dagRuns/r/taskInstances/a/clear",
                            body={"downstream": True}, headers=api.auth())
        self.assertEqual(status, 200)
        wait_for(lambda: api.task_instances("c", "r")["b"]["try_number"] == 2
                 and api.run("c", "r")["state"] == "success", 30, "the cleared tasks to run again")
        with open(self.ledger) as f:
            self.assertEqual(f.read().splitlines(), ["a 1", "b 1", "a 2", "b 2"])

    def test_marking_a_failed_task_success_moves_the_run_on(self):
        self.ws.write_dag("m.yaml", f"""
            tasks:
              - {{task_id: flaky, command: 'exit 1'}}
              - {{task_id: after, command: 'echo ran >> {self.ledger}', depends_on: [flaky]}}
        """)
        api = self.start()
        api.trigger("m", dag_run_id="r")
        self.assertEqual(api.wait_run("m", "r")["state"], "failed")
        self.assertEqual(api.task_instances("m", "r")["after"]["state"], "upstream_failed")
        status, _ = request("PATCH", f"{self.ws.url}/api/v1/dags/m/dagRuns/r/taskInstances/flaky",
                            body={"state": "success"}, headers=api.auth())
        self.assertEqual(status, 200)
        self.assertEqual(api.wait_run("m", "r", states=("success",))["state"], "success")
        with open(self.ledger) as f:
            self.assertEqual(f.read(), "ran\n")

    def test_the_log_endpoint_follows_a_running_task(self):
        self.ws.write_dag("l.yaml", """
            tasks:
              - task_id: chatty
                command: 'for i in 1 2 3 4 5; do echo "line $i"; sleep 0.2; done'
        """)
        api = self.start()
        api.trigger("l", dag_run_id="r")
        url = f"{self.ws.url}/api/v1/dags/l/dagRuns/r/taskInstances/chatty/logs/1"
        wait_for(lambda: api.task_instances("l", "r")["chatty"]["state"] == "running", 10, "the task to start")
        text, offset, chunks = "", 0, 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            req = urllib.request.Request(f"{url}?offset={offset}")
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = resp.read().decode()
                offset = int(resp.headers["X-Next-Offset"])
                complete = resp.headers["X-Log-Complete"] == "true"
            if body:
                chunks += 1
                text += body
            if complete:
                break
            time.sleep(0.05)
        self.assertEqual(text, "".join(f"line {i}\n" for i in range(1, 6)))
        self.assertGreater(chunks, 1, "the log arrived in one piece: nothing was followed")

    def test_clear_ignores_the_cache(self):
        self.ws.write_dag("k.yaml", f"""
            tasks:
              - task_id: t
                command: 'echo ran >> {self.ledger}'
                cache: {{inputs: [], outputs: []}}
        """)
        api = self.start()
        api.trigger("k", dag_run_id="r1")
        api.wait_run("k", "r1")
        api.trigger("k", dag_run_id="r2")
        api.wait_run("k", "r2")
        self.assertTrue(api.task_instances("k", "r2")["t"]["cached"])
        status, _ = request("POST", f"{self.ws.url}/api/v1/dags/k/dagRuns/r2/taskInstances/t/clear", body={},
                            headers=api.auth())
        self.assertEqual(status, 200)
        wait_for(lambda: (t := api.task_instances("k", "r2")["t"])["state"] == "success" and t["try_number"] == 2,
                 30, "the cleared task to run")
        self.assertFalse(api.task_instances("k", "r2")["t"]["cached"])
        with open(self.ledger) as f:
            self.assertEqual(f.read(), "ran\nran\n")

    def test_hostile_ids_cannot_reach_outside_the_logs(self):
        self.ws.write_dag("h.yaml", "tasks:\n  - {task_id: t, command: 'true'}\n")
        api = self.start()
        api.trigger("h", dag_run_id="r")
        api.wait_run("h", "r")
        base = f"{self.ws.url}/api/v1/dags"
        for path in ["/h/dagRuns/r/taskInstances/..%2F..%2F..%2Fetc%2Fpasswd/logs/1",
                     "/h/dagRuns/..%2F..%2Fetc/taskInstances/t/logs/1",
                     "/..%2F..%2Fetc/dagRuns/r/taskInstances/t/logs/1",
                     "/h/dagRuns/r/taskInstances/t/logs/..%2F..%2Fpasswd",
                     "/h/dagRuns/r/taskInstances/t/logs/1/../../../../etc/passwd"]:
            status, body = get(base + path)
            self.assertIn(status, (400, 404), path)
            self.assertNotIn("root:", str(body))

    def test_shell_in_conf_is_never_executed(self):
        out = os.path.join(self.ws.root, "out.txt")
        canary = os.path.join(self.ws.root, "pwned")
        self.ws.write_dag("s.yaml", f"""
            params: {{v: x}}
            tasks:
              - {{task_id: t, command: 'printf "%s" "$NIGHTSHIFT_PARAM_V" > {out}'}}
        """)
        api = self.start()
        for i, value in enumerate([f"$(touch {canary})", f"\"; touch {canary}; echo \"", f"`touch {canary}`"]):
            api.trigger("s", dag_run_id=f"r{i}", conf={"v": value})
            self.assertEqual(api.wait_run("s", f"r{i}")["state"], "success")
            with open(out) as f:
                self.assertEqual(f.read(), value)
        self.assertFalse(os.path.exists(canary))


if __name__ == "__main__":
    unittest.main()
