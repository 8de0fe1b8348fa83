"""`nightshift serve`: starts on a DAGs folder, answers the read endpoints, follows the folder,
refuses a second daemon on the same state, stops cleanly on SIGTERM."""
import http.client
import os
import socket
import re
import shutil
import signal
import time
import unittest

from harness import SOURCE_DIR, Daemon, Workspace, get, request, run, wait_for

GOOD = """
dag_id: good_dag
description: "a good one"
schedule: "0 2 * * *"
timezone: Europe/Berlin
start_date: 2026-01-01
tags: [etl, nightly]
tasks:
  - task_id: extract
    command: echo extract
  - task_id: load
    command: echo load
    depends_on: [extract]
"""

BROKEN = """
dag_id: broken_dag
tasks:
  - task_id: a
    command: "true"
    depends_on: [nope]
"""


class ServeTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.ws.write_dag("good.yaml", GOOD)
        self.ws.write_dag("sub/broken.yaml", BROKEN)
        self.daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(self.daemon.kill)

    def test_serves_the_three_read_endpoints(self):
        status, health = get(self.ws.url + "/api/v1/health")
        self.assertEqual(status, 200)
        self.assertEqual(health["status"], "ok")
        self.assertRegex(health["scheduler"]["latest_heartbeat"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

        status, body = get(self.ws.url + "/api/v1/dags")
        self.assertEqual(status, 200)
        self.assertEqual(body["total_entries"], 1)
        dag = body["dags"][0]
        for field in ["dag_id", "description", "schedule", "is_paused", "window", "next_run", "tags",
                      "has_import_errors"]:
            self.assertIn(field, dag)
        self.assertEqual(dag["dag_id"], "good_dag")
        self.assertEqual(dag["description"], "a good one")
        self.assertEqual(dag["schedule"], "0 2 * * *")
        self.assertFalse(dag["is_paused"])
        self.assertIsNone(dag["window"])
        self.assertEqual(dag["tags"], ["etl", "nightly"])
        self.assertFalse(dag["has_import_errors"])
        # 02:00 in Berlin is 00:00 or 01:00 UTC depending on the season.
        self.assertRegex(dag["next_run"], r"T0[01]:00:00Z$")

        status, body = get(self.ws.url + "/api/v1/importErrors")
        self.assertEqual(status, 200)
        self.assertEqual(len(body["import_errors"]), 1)
        error = body["import_errors"][0]
        self.assertEqual(error["filename"], os.path.join(self.ws.dags, "sub/broken.yaml"))
        self.assertEqual((error["line"], error["column"]), (6, 18))
        self.assertIn("nope", error["message"])

    def test_one_dag_with_its_tasks(self):
        status, dag = get(self.ws.url + "/api/v1/dags/good_dag")
        self.assertEqual(status, 200)
        self.assertEqual([t["task_id"] for t in dag["tasks"]], ["extract", "load"])
        self.assertEqual(dag["tasks"][1]["depends_on"], ["extract"])
        status, err = get(self.ws.url + "/api/v1/dags/missing")
        self.assertEqual(status, 404)
        self.assertEqual(err["status"], 404)
        self.assertIn("missing", err["detail"])

    def test_unknown_route_is_a_json_404(self):
        status, err = get(self.ws.url + "/api/v1/nope")
        self.assertEqual(status, 404)
        self.assertEqual(set(err), {"status", "title", "detail"})

    def test_oversized_body_gets_413(self):
        status, err = request("POST", self.ws.url + "/api/v1/dags", body=b"x" * (1024 * 1024 + 1))
        self.assertEqual(status, 413)
        self.assertEqual(err["status"], 413)

    def test_picks_up_changed_files_without_restart(self):
        self.ws.write_dag("sub/broken.yaml", BROKEN.replace("[nope]", "[]"))
        self.ws.write_dag("new.yaml", "tasks:\n  - task_id: t\n    command: 'true'\n")

        def both_listed():
            _, body = get(self.ws.url + "/api/v1/dags")
            return sorted(d["dag_id"] for d in body["dags"]) == ["broken_dag", "good_dag", "new"]
        wait_for(both_listed, 30, "the fixed and the new DAG to appear")
        _, body = get(self.ws.url + "/api/v1/importErrors")
        self.assertEqual(body["import_errors"], [])

    def test_a_broken_edit_keeps_the_last_good_dag_and_flags_it(self):
        self.ws.write_dag("good.yaml", GOOD.replace("command: echo load", "command: [oops"))

        def flagged():
            _, body = get(self.ws.url + "/api/v1/dags")
            dags = {d["dag_id"]: d for d in body["dags"]}
            return "good_dag" in dags and dags["good_dag"]["has_import_errors"]
        wait_for(flagged, 30, "the broken edit to be flagged")
        _, errors = get(self.ws.url + "/api/v1/importErrors")
        self.assertIn(os.path.join(self.ws.dags, "good.yaml"), [e["filename"] for e in errors["import_errors"]])

    def test_half_open_clients_do_not_block_others_and_keep_alive_works(self):
        stalled = []
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", self.ws.port))
            sock.sendall(b"GET /api/v1/dags HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
            stalled.append(sock)
        self.addCleanup(lambda: [s.close() for s in stalled])
        conn = http.client.HTTPConnection("127.0.0.1", self.ws.port, timeout=5)
        for _ in range(3):  # three requests on one connection
            conn.request("GET", "/api/v1/health")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            resp.read()
        conn.close()

    def test_second_daemon_on_same_state_refuses(self):
        second = run(["serve", "--config", self.ws.config], timeout=30)
        self.assertEqual(second.returncode, 1)
        self.assertIn("another nightshift daemon", second.stdout + second.stderr)
        # The first one still serves.
        status, _ = get(self.ws.url + "/api/v1/health")
        self.assertEqual(status, 200)

    def test_sigterm_stops_cleanly_and_db_check_passes(self):
        self.assertEqual(self.daemon.stop(), 0, self.daemon.output())
        result = run(["db", "check", "--config", self.ws.config])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("ok", result.stdout)


class ServeExamplesTest(unittest.TestCase):
    def test_examples_load_without_import_errors(self):
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        shutil.rmtree(ws.dags)
        shutil.copytree(os.path.join(SOURCE_DIR, "examples/dags"), ws.dags)
        with open(os.path.join(SOURCE_DIR, "examples/nightshift.yaml")) as f:
            config = f.read()
        config = re.sub(r"(?m)^listen:.*$", f"listen: 127.0.0.1:{ws.port}", config)
        config = re.sub(r"(?m)^state_dir:.*$", "state_dir: ./state", config)
        ws.write("nightshift.yaml", config)
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        _, body = get(ws.url + "/api/v1/dags")
        self.assertGreaterEqual(body["total_entries"], 4)
        _, errors = get(ws.url + "/api/v1/importErrors")
        self.assertEqual(errors["import_errors"], [])
        daemon.signal(signal.SIGTERM)
        self.assertEqual(daemon.stop(), 0)



class ServeSignalsTest(unittest.TestCase):
    def test_a_sigterm_during_start_up_stops_it_cleanly(self):
        # Enough DAG files that loading them takes a while (1,000 of 20 tasks: over half a
        # second): the signal lands in the middle of the start, before the daemon serves anything.
        # It must stop as on any SIGTERM (exit 0), not die of the signal's default action.
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        tasks = "".join(f"  - task_id: t{j}\n    command: 'true'\n" for j in range(20))
        for i in range(1000):
            ws.write_dag(f"d{i}.yaml", f"dag_id: d{i}\ntasks:\n{tasks}")
        daemon = Daemon(ws)
        self.addCleanup(daemon.kill)
        deadline = time.monotonic() + 30
        while "schema version" not in daemon.output():  # polled closely: the window is short
            self.assertLess(time.monotonic(), deadline, "the daemon did not open its database")
            self.assertIsNone(daemon.proc.poll(), daemon.output())
            time.sleep(0.002)
        daemon.signal(signal.SIGTERM)
        self.assertNotIn("loaded 1000 DAGs", daemon.output(), "the start was over before the signal")
        self.assertEqual(daemon.proc.wait(60), 0, daemon.output())
        self.assertIn("received signal 15", daemon.output())


if __name__ == "__main__":
    unittest.main()
