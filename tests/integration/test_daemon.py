"""The daemon scheduling real runs: triggers over REST, schedules with catchup, batch windows,
and what survives SIGTERM and kill -9."""
import datetime
import os
import pathlib
import signal
import sqlite3
import unittest

from harness import Api, Daemon, Workspace, get, request, run, wait_for

UTC = datetime.timezone.utc


def hms(t):
    return t.strftime("%H:%M:%S")


def db_rows(ws, sql, *args):
    with sqlite3.connect(ws.db, timeout=30) as db:
        return db.execute(sql, args).fetchall()


class DaemonApiTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.out = os.path.join(self.ws.root, "out.txt")
        self.ws.write_dag("hello.yaml", f"""
            params: {{who: world}}
            tasks:
              - task_id: greet
                command: 'echo "hello $NIGHTSHIFT_PARAM_WHO" >> {self.out}'
              - task_id: after
                command: 'true'
                depends_on: [greet]
        """)
        self.daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(self.daemon.kill)
        self.api = Api(self.ws)

    def test_trigger_runs_to_success_with_conf_as_environment(self):
        run_ = self.api.trigger("hello", dag_run_id="r1", conf={"who": "$(touch /tmp/pwned) nightshift"})
        self.assertEqual(run_["dag_run_id"], "r1")
        self.assertEqual(run_["state"], "queued")
        self.assertEqual(self.api.wait_run("hello", "r1")["state"], "success")
        with open(self.out) as f:
            self.assertEqual(f.read(), "hello $(touch /tmp/pwned) nightshift\n")
        tis = self.api.task_instances("hello", "r1")
        self.assertEqual(tis["greet"]["state"], "success")
        self.assertEqual(tis["greet"]["try_number"], 1)
        self.assertGreaterEqual(tis["after"]["duration"], 0)
        for field in ["task_id", "map_index", "state", "try_number", "start_date", "end_date", "duration", "pool",
                      "priority_weight", "progress", "waiting_reason", "cached"]:
            self.assertIn(field, tis["greet"])

    def test_duplicate_run_id_is_409_and_default_id_is_manual(self):
        first = self.api.trigger("hello")
        self.assertTrue(first["dag_run_id"].startswith("manual__"))
        self.api.trigger("hello", dag_run_id="same")
        status, err = request("POST", f"{self.ws.url}/api/v1/dags/hello/dagRuns", body={"dag_run_id": "same"},
                              headers=self.api.auth())
        self.assertEqual(status, 409)
        self.assertEqual(err["status"], 409)
        _, runs = get(f"{self.ws.url}/api/v1/dags/hello/dagRuns")
        self.assertEqual(runs["total_entries"], 2)

    def test_wrong_token_and_bad_input_change_nothing(self):
        url = f"{self.ws.url}/api/v1/dags/hello/dagRuns"
        status, _ = request("POST", url, body={})
        self.assertEqual(status, 401)
        status, _ = request("POST", url, body={}, headers={"Authorization": "Bearer nope"})
        self.assertEqual(status, 401)
        status, err = request("POST", url, body={"conf": [1, 2]}, headers=self.api.auth())
        self.assertEqual(status, 400)
        self.assertIn("conf", err["detail"])
        status, err = request("POST", url, body=b"{not json", headers=self.api.auth())
        self.assertEqual(status, 400)
        status, err = request("POST", url, body={"dag_run_id": "../../etc"}, headers=self.api.auth())
        self.assertEqual(status, 400)
        status, _ = request("POST", f"{self.ws.url}/api/v1/dags/nope/dagRuns", body={}, headers=self.api.auth())
        self.assertEqual(status, 404)
        self.assertEqual(get(url)[1]["total_entries"], 0)
        mode = os.stat(os.path.join(self.ws.root, "state", "api-token")).st_mode & 0o777
        self.assertEqual(mode, 0o600)

    def test_pause_over_rest(self):
        status, dag = request("PATCH", f"{self.ws.url}/api/v1/dags/hello", body={"is_paused": True},
                              headers=self.api.auth())
        self.assertEqual(status, 200)
        self.assertTrue(dag["is_paused"])
        self.assertTrue(get(f"{self.ws.url}/api/v1/dags/hello")[1]["is_paused"])


class ScheduleTest(unittest.TestCase):
    def test_catchup_creates_one_run_per_missed_interval(self):
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        today = datetime.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - datetime.timedelta(days=4)
        ws.write_dag("daily.yaml", f"""
            schedule: "0 0 * * *"
            start_date: {start.strftime('%Y-%m-%d')}
            catchup: true
            max_active_runs: 2
            tasks:
              - {{task_id: t, command: 'true'}}
        """)
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)

        def all_done():
            _, body = get(f"{ws.url}/api/v1/dags/daily/dagRuns")
            runs = body["dag_runs"]
            return len(runs) == 4 and all(r["state"] == "success" for r in runs) and runs
        runs = wait_for(all_done, 60, "four catchup runs to succeed")
        expected = [(today - datetime.timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in range(1, 5)]
        self.assertEqual([r["logical_date"] for r in runs], expected)  # newest first
        self.assertTrue(all(r["run_type"] == "scheduled" for r in runs))
        self.assertEqual(runs[0]["dag_run_id"], "scheduled__" + expected[0])


class WindowTest(unittest.TestCase):
    def test_a_window_opening_soon_holds_the_task_until_then(self):
        now = datetime.datetime.now(UTC).replace(microsecond=0)
        # Margins wide enough for a loaded machine and the sanitizer build.
        opens = now + datetime.timedelta(seconds=10)
        closes = opens + datetime.timedelta(minutes=5)
        ws = Workspace(f"""
            windows:
              soon:
                timezone: UTC
                open: ["{hms(opens)}-{hms(closes)}"]
        """)
        self.addCleanup(ws.cleanup)
        ws.write_dag("w.yaml", "window: soon\ntasks:\n  - {task_id: t, command: 'true'}\n")
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        api = Api(ws)
        api.trigger("w", dag_run_id="r")
        expected = f"window soon closed until {opens.strftime('%Y-%m-%dT%H:%M:%S')}+00:00"
        ti = wait_for(lambda: api.task_instances("w", "r")["t"]["waiting_reason"] == expected
                      and api.task_instances("w", "r")["t"], 8, "the waiting reason")
        self.assertEqual(ti["state"], "scheduled")
        api.wait_run("w", "r", timeout=30)
        started = api.task_instances("w", "r")["t"]["start_date"]
        self.assertGreaterEqual(started, opens.strftime("%Y-%m-%dT%H:%M:%S"))

    def test_on_close_kill_stops_and_requeues_without_using_a_retry(self):
        now = datetime.datetime.now(UTC).replace(microsecond=0)
        closes = now + datetime.timedelta(seconds=8)
        ws = Workspace(f"""
            windows:
              short:
                timezone: UTC
                open: ["{hms(now - datetime.timedelta(seconds=30))}-{hms(closes)}"]
                on_close: kill
        """)
        self.addCleanup(ws.cleanup)
        ws.write_dag("k.yaml", "window: short\ntasks:\n  - {task_id: long, command: 'sleep 60', retries: 0}\n")
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        api = Api(ws)
        api.trigger("k", dag_run_id="r")
        wait_for(lambda: api.task_instances("k", "r")["long"]["state"] == "running", 10, "the task to run")
        ti = wait_for(lambda: (t := api.task_instances("k", "r")["long"])["state"] == "scheduled"
                      and t["try_number"] == 1 and t, 30, "the closing window to stop the task")
        self.assertIn("window short closed until", ti["waiting_reason"])
        self.assertEqual(ti["max_tries"], 2)  # the stopped try used no retry
        (state, reason), = db_rows(ws, "SELECT state, reason FROM task_tries")
        self.assertEqual(state, "failed")
        self.assertIn("window short closed", reason)


class ShutdownAndCrashTest(unittest.TestCase):
    def test_sigterm_lets_running_tasks_finish(self):
        ws = Workspace("shutdown_grace: 30s\n")
        self.addCleanup(ws.cleanup)
        marker = os.path.join(ws.root, "finished")
        ws.write_dag("s.yaml", f"tasks:\n  - {{task_id: t, command: 'sleep 1; touch {marker}'}}\n")
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        api = Api(ws)
        api.trigger("s", dag_run_id="r")
        wait_for(lambda: api.task_instances("s", "r")["t"]["state"] == "running", 10, "the task to run")
        self.assertEqual(daemon.stop(), 0)
        self.assertTrue(os.path.exists(marker))
        (state,), = db_rows(ws, "SELECT state FROM task_instances")
        self.assertEqual(state, "success")

    def test_sighup_reloads_the_config_and_refuses_a_broken_one(self):
        ws = Workspace("pools: {db: 1}\n")
        self.addCleanup(ws.cleanup)
        ws.write_dag("a.yaml", "tasks:\n  - {task_id: t, command: 'true'}\n")
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)

        def slots():
            _, text = get(ws.url + "/metrics")
            return [line for line in text.splitlines() if line.startswith('nightshift_pool_slots{pool="db"}')]
        self.assertEqual(slots(), ['nightshift_pool_slots{pool="db"} 1'])
        ws.write("nightshift.yaml", pathlib.Path(ws.config).read_text().replace("db: 1", "db: 5"))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: slots() == ['nightshift_pool_slots{pool="db"} 5'], 10, "the new pool size")
        ws.write("nightshift.yaml", pathlib.Path(ws.config).read_text().replace("db: 5", "db: five"))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config not reloaded" in daemon.output(), 10, "the refusal in the log")
        self.assertEqual(slots(), ['nightshift_pool_slots{pool="db"} 5'])
        self.assertEqual(get(ws.url + "/api/v1/health")[0], 200)

    def test_kill_9_mid_run_loses_nothing_and_reruns_nothing(self):
        ws = Workspace("parallelism: 8\n")
        self.addCleanup(ws.cleanup)
        ledger = os.path.join(ws.root, "ledger.txt")
        lines = ["tasks:"]
        for layer in range(10):
            for i in range(20):
                deps = f", depends_on: [t{layer - 1}_{(i * 7) % 20}]" if layer else ""
                lines.append(f"  - {{task_id: t{layer}_{i}, command: 'sleep 0.0{(layer * 20 + i) % 9}; "
                             f"echo \"$NIGHTSHIFT_TASK_ID $NIGHTSHIFT_TRY_NUMBER\" >> {ledger}'{deps}}}")
        ws.write_dag("big.yaml", "\n".join(lines) + "\n")
        daemon = Daemon(ws).wait_healthy()
        api = Api(ws)
        api.trigger("big", dag_run_id="r")

        def successes():
            return db_rows(ws, "SELECT count(*) FROM task_instances WHERE state = 'success'")[0][0]
        wait_for(lambda: successes() >= 60, 60, "60 tasks to succeed")
        daemon.kill()
        before = successes()
        self.assertLess(before, 200)

        restarted = Daemon(ws).wait_healthy()
        self.addCleanup(restarted.kill)
        self.assertEqual(api.wait_run("big", "r", timeout=120)["state"], "success")
        per_task = db_rows(ws, "SELECT ti.task_id, count(*) FROM task_tries t JOIN task_instances ti "
                               "ON t.ti_pk = ti.id WHERE t.state = 'success' GROUP BY ti.task_id")
        self.assertEqual(len(per_task), 200)
        self.assertTrue(all(n == 1 for _, n in per_task), per_task)
        with open(ledger) as f:
            ran = [line.split()[0] for line in f.read().splitlines()]
        self.assertEqual(len(ran), 200, "a task ran twice or not at all")
        self.assertEqual(len(set(ran)), 200)
        self.assertEqual(restarted.stop(), 0)
        check = run(["db", "check", "--config", ws.config])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    unittest.main()
