"""The CLI commands that talk to a running daemon: the real binary against a real daemon over HTTP."""
import os
import queue
import subprocess
import threading
import unittest

from harness import BIN, Api, Daemon, Workspace, get, run, wait_for

# A run id with the characters that need care in a URL path (':' and '+').
PLUS_RUN_ID = "manual__2026-01-01T00:00:00+00:00"


class CliTestBase(unittest.TestCase):
    config_extra = ""

    def setUp(self):
        self.ws = Workspace(self.config_extra)
        self.addCleanup(self.ws.cleanup)
        self.out = os.path.join(self.ws.root, "out.txt")
        self.gate = os.path.join(self.ws.root, "gate")
        self.ws.write_dag("hello.yaml", f"""
            description: says hello
            params: {{x: default-x, y: default-y}}
            tasks:
              - task_id: greet
                command: 'echo "greeting $NIGHTSHIFT_PARAM_X"; echo "$NIGHTSHIFT_PARAM_X $NIGHTSHIFT_PARAM_Y" > {self.out}'
              - task_id: after
                command: 'true'
                depends_on: [greet]
              - task_id: join
                command: 'true'
                depends_on: [greet, after]
                trigger_rule: all_done
        """)
        self.ws.write_dag("sleepy.yaml", """
            schedule: "@daily"
            is_paused_upon_creation: true
            tasks:
              - {task_id: t, command: 'true'}
        """)
        self.ws.write_dag("broken.yaml", """
            tasks:
              - {task_id: ok, command: 'true'}
              - {task_id: boom, command: 'echo about to fail; exit 3', retries: 0, depends_on: [ok]}
        """)
        # Prints a line, waits for the test to open the gate, then prints more with short pauses:
        # only a client that follows the log can see every line.
        self.ws.write_dag("chatty.yaml", f"""
            tasks:
              - task_id: talk
                command: >-
                  echo line-1;
                  for n in $(seq 600); do [ -e {self.gate} ] && break; sleep 0.05; done;
                  for i in 2 3 4 5; do echo line-$i; sleep 0.1; done
        """)
        self.daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(self.daemon.kill)
        self.api = Api(self.ws)

    def cli(self, *args, expect=0, config=True):
        extra = ["--config", self.ws.config] if config else []
        result = run([*args, *extra], cwd=self.ws.root, timeout=60)
        self.assertEqual(result.returncode, expect,
                         f"nightshift {' '.join(args)}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def is_paused(self, dag_id):
        return get(f"{self.ws.url}/api/v1/dags/{dag_id}")[1]["is_paused"]


class DagsCommandsTest(CliTestBase):
    def test_dags_list_shows_every_dag_and_its_paused_state(self):
        out = self.cli("dags", "list").stdout
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["DAG_ID", "PAUSED", "SCHEDULE", "WINDOW", "NEXT_RUN", "LAST_RUN"])
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        self.assertEqual(sorted(rows), ["broken", "chatty", "hello", "sleepy"])
        self.assertEqual(rows["hello"][1], "no")
        self.assertEqual(rows["sleepy"][1], "yes")
        self.assertEqual(rows["sleepy"][2], "@daily")
        self.assertEqual(rows["hello"][-1], "-")  # no run yet

        self.api.trigger("hello", dag_run_id="r1")
        self.api.wait_run("hello", "r1")
        rows = {line.split()[0]: line.split() for line in self.cli("dags", "list").stdout.splitlines()[1:]}
        self.assertEqual(rows["hello"][-1], "success")

    def test_dags_list_reports_import_errors(self):
        self.ws.write_dag("bad.yaml", "tasks:\n  - {task_id: a, command: x, depends_on: [missing]}\n")
        result = wait_for(lambda: "bad.yaml" in (r := run(["dags", "list", "--config", self.ws.config])).stderr and r,
                          30, "the daemon to report bad.yaml")
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, r"^import error: .*/dags/bad\.yaml:2:\d+: .*missing")
        self.assertIn("hello", result.stdout)

    def test_dags_show_prints_tasks_and_edges(self):
        out = self.cli("dags", "show", "hello").stdout
        self.assertIn("dag_id:       hello", out)
        self.assertIn("description:  says hello", out)
        lines = [line.split() for line in out.splitlines()]
        self.assertIn(["greet", "trigger_rule=all_success"], lines)
        self.assertIn(["after", "<-", "greet", "trigger_rule=all_success"], lines)
        self.assertIn(["join", "<-", "greet,", "after", "trigger_rule=all_done"], lines)
        self.assertIn("3 edges", out)

    def test_unknown_dag_is_one_line_with_the_api_detail(self):
        result = self.cli("dags", "show", "nope", expect=1)
        self.assertEqual(result.stderr, 'nightshift: DAG "nope" not found (404)\n')
        self.assertEqual(result.stdout, "")
        result = self.cli("dags", "trigger", "nope", expect=1)
        self.assertEqual(result.stderr, 'nightshift: DAG "nope" not found (404)\n')

    def test_trigger_conf_and_params_reach_the_task_environment(self):
        result = self.cli("dags", "trigger", "hello", "--conf", '{"x": "from-conf", "y": "conf-y"}',
                          "--param", "x=from-param")
        run_id = result.stdout.strip()
        self.assertTrue(run_id.startswith("manual__"), result.stdout)
        self.assertEqual(self.api.wait_run("hello", run_id)["state"], "success")
        with open(self.out) as f:
            self.assertEqual(f.read(), "from-param conf-y\n")
        self.assertEqual(self.api.run("hello", run_id)["conf"], {"x": "from-param", "y": "conf-y"})

    def test_trigger_params_are_strings_and_never_shell(self):
        run_id = self.cli("dags", "trigger", "hello", "--param", "x=$(echo pwned)", "--param", "y=a=b").stdout.strip()
        self.api.wait_run("hello", run_id)
        with open(self.out) as f:
            self.assertEqual(f.read(), "$(echo pwned) a=b\n")

    def test_trigger_rejects_bad_conf_before_sending(self):
        result = self.cli("dags", "trigger", "hello", "--conf", "[1, 2]", expect=2)
        self.assertIn("--conf must be a JSON object", result.stderr)
        self.cli("dags", "trigger", "hello", "--conf", "{not json", expect=2)
        self.cli("dags", "trigger", "hello", "--param", "novalue", expect=2)
        self.assertEqual(get(f"{self.ws.url}/api/v1/dags/hello/dagRuns")[1]["total_entries"], 0)

    def test_trigger_wait_exits_0_on_success(self):
        result = self.cli("dags", "trigger", "hello", "--run-id", PLUS_RUN_ID, "--wait")
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], PLUS_RUN_ID)
        # Not a terminal: one line per finished task, then the outcome.
        for task in ["greet", "after", "join"]:
            self.assertIn([task, "success", "(try", "1)"], [line.split() for line in lines])
        self.assertIn(f"run {PLUS_RUN_ID} succeeded: 3/3 tasks done", lines[-1])
        self.assertEqual(self.api.run("hello", PLUS_RUN_ID)["state"], "success")

    def test_trigger_wait_exits_1_on_failure(self):
        result = self.cli("dags", "trigger", "broken", "--wait", expect=1)
        self.assertIn("boom", result.stdout)
        self.assertIn("failed", result.stdout.splitlines()[-1])
        run_id = result.stdout.splitlines()[0]
        self.assertEqual(self.api.run("broken", run_id)["state"], "failed")
        self.assertIn("failed: boom", result.stderr)

    def test_pause_and_unpause(self):
        self.assertFalse(self.is_paused("hello"))
        self.assertEqual(self.cli("dags", "pause", "hello").stdout, "hello: paused\n")
        self.assertTrue(self.is_paused("hello"))
        self.assertEqual(self.cli("dags", "unpause", "hello").stdout, "hello: unpaused\n")
        self.assertFalse(self.is_paused("hello"))


class RunsAndLogsTest(CliTestBase):
    def test_runs_list_shows_the_run(self):
        self.cli("dags", "trigger", "hello", "--run-id", PLUS_RUN_ID, "--wait")
        self.cli("dags", "trigger", "broken", "--run-id", "b1", "--wait", expect=1)

        rows = [line.split() for line in self.cli("runs", "list").stdout.splitlines()]
        self.assertEqual(rows[0], ["DAG_ID", "RUN_ID", "STATE", "RUN_TYPE", "LOGICAL_DATE", "START_DATE", "DURATION"])
        self.assertEqual([r[:3] for r in rows[1:]], [["broken", "b1", "failed"], ["hello", PLUS_RUN_ID, "success"]])

        rows = [line.split() for line in self.cli("runs", "list", "hello").stdout.splitlines()]
        self.assertEqual([r[:3] for r in rows[1:]], [["hello", PLUS_RUN_ID, "success"]])
        rows = [line.split() for line in self.cli("runs", "list", "--state", "failed").stdout.splitlines()]
        self.assertEqual([r[1] for r in rows[1:]], ["b1"])
        result = self.cli("runs", "list", "--limit", "1")
        self.assertEqual(len(result.stdout.splitlines()), 2)
        self.assertIn("1 of 2 runs", result.stderr)
        result = self.cli("runs", "list", "--state", "bogus", expect=1)
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertIn("(400)", result.stderr)

    def test_logs_of_a_finished_task(self):
        run_id = self.cli("dags", "trigger", "hello", "--run-id", PLUS_RUN_ID, "--param", "x=logged",
                          "--wait").stdout.splitlines()[0]
        result = self.cli("tasks", "logs", "hello", run_id, "greet")
        self.assertEqual(result.stdout, "greeting logged\n")
        self.assertEqual(self.cli("tasks", "logs", "hello", run_id, "greet", "--try", "1").stdout,
                         "greeting logged\n")
        result = self.cli("tasks", "logs", "hello", run_id, "greet", "--try", "2", expect=1)
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertIn("(404)", result.stderr)
        result = self.cli("tasks", "logs", "hello", run_id, "nope", expect=1)
        self.assertEqual(len(result.stderr.splitlines()), 1)
        self.assertIn('"nope" not found', result.stderr)

    def test_logs_follow_a_running_task_until_it_ends(self):
        self.api.trigger("chatty", dag_run_id=PLUS_RUN_ID)
        wait_for(lambda: self.api.task_instances("chatty", PLUS_RUN_ID)["talk"]["state"] == "running", 30,
                 "the task to run")
        proc = subprocess.Popen([BIN, "tasks", "logs", "chatty", PLUS_RUN_ID, "talk", "-f", "--config", self.ws.config],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
        reader.start()
        first = lines.get(timeout=30)
        self.assertEqual(first, "line-1\n")
        # The task is still running (it waits for the gate): whatever comes next was followed.
        self.assertEqual(self.api.task_instances("chatty", PLUS_RUN_ID)["talk"]["state"], "running")
        open(self.gate, "w").close()
        self.assertEqual(proc.wait(timeout=60), 0, proc.stderr.read())
        reader.join(timeout=10)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        self.assertEqual(rest, [f"line-{i}\n" for i in range(2, 6)])
        self.assertEqual(proc.stderr.read(), "")
        self.assertEqual(self.api.task_instances("chatty", PLUS_RUN_ID)["talk"]["state"], "success")


class AuthAndReachabilityTest(CliTestBase):
    def test_wrong_token_gets_a_clear_401_and_changes_nothing(self):
        result = self.cli("dags", "pause", "hello", "--token", "wrong", expect=1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("rejected the API token given with --token (401)", result.stderr)
        self.assertFalse(self.is_paused("hello"))
        result = self.cli("dags", "trigger", "hello", "--token", "wrong", expect=1)
        self.assertIn("(401)", result.stderr)
        self.assertEqual(get(f"{self.ws.url}/api/v1/dags/hello/dagRuns")[1]["total_entries"], 0)
        # The right token, given explicitly, works.
        self.cli("dags", "pause", "hello", "--token", self.api.token)
        self.assertTrue(self.is_paused("hello"))

    def test_a_missing_token_file_says_where_it_looked(self):
        # --server without --config: the token file is looked for under ./.nightshift.
        result = run(["dags", "pause", "hello", "--server", self.ws.url], cwd=self.ws.dags)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn("needs an API token (401)", result.stderr)
        self.assertIn(".nightshift/api-token", result.stderr)
        self.assertFalse(self.is_paused("hello"))
        # Reads need no token.
        result = run(["dags", "list", "--server", self.ws.url], cwd=self.ws.dags)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("hello", result.stdout)

    def test_no_daemon_is_one_line_and_exit_1(self):
        self.daemon.stop()
        for args in (["dags", "list"], ["dags", "trigger", "hello", "--wait"], ["runs", "list"],
                     ["tasks", "logs", "hello", "r", "greet", "-f"], ["dags", "pause", "hello"]):
            result = self.cli(*args, expect=1)
            self.assertEqual(result.stdout, "")
            self.assertEqual(result.stderr,
                             f'nightshift: cannot reach the daemon at {self.ws.url} (connection refused); '
                             f'is "nightshift serve" running?\n')

    def test_server_flag_overrides_the_config(self):
        other = Workspace()
        self.addCleanup(other.cleanup)
        result = run(["dags", "list", "--config", other.config, "--server", self.ws.url + "/"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("hello", result.stdout)
        result = run(["dags", "list", "--server", "https://127.0.0.1:1"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("https is not supported", result.stderr)


class ReadTokenTest(CliTestBase):
    config_extra = "auth: {read_requires_token: true}\n"

    def test_reads_use_the_token_file_when_the_daemon_asks(self):
        self.assertEqual(get(f"{self.ws.url}/api/v1/dags")[0], 401)
        self.assertIn("hello", self.cli("dags", "list").stdout)
        result = self.cli("runs", "list", "--token", "wrong", expect=1)
        self.assertIn("rejected the API token given with --token (401)", result.stderr)


class UsageErrorTest(unittest.TestCase):
    """docs/cli.md: 0 success, 1 failure, 2 usage error, with the parser's message on stderr."""

    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.dag = self.ws.write_dag("hello.yaml", "tasks:\n  - {task_id: t, command: 'true'}\n")

    def test_every_usage_error_of_every_command_exits_2_with_a_message_on_stderr(self):
        cases = [
            ["--bogus"],                                          # unknown option
            ["bogus"],                                            # unknown command
            [],                                                   # no command
            ["serve", "--bogus"],
            ["serve", "extra"],                                   # extra positional
            ["run"],                                              # missing argument
            ["run", self.dag, "-j", "0"],                         # bad value
            ["run", self.dag, "-j", "many"],
            ["run", self.dag, "--bogus"],
            ["dags"],                                             # missing subcommand
            ["dags", "bogus"],                                    # unknown subcommand
            ["dags", "validate", "--bogus"],
            ["dags", "list", "extra"],
            ["dags", "show"],
            ["dags", "show", "a", "b"],
            ["dags", "trigger", "hello", "--conf"],               # option without its value
            ["dags", "trigger", "hello", "--bogus"],
            ["dags", "pause"],
            ["dags", "unpause", "hello", "--wait"],
            ["runs"],
            ["runs", "list", "--limit", "0"],
            ["runs", "list", "--limit", "abc"],
            ["runs", "list", "a", "b"],
            ["tasks", "logs", "hello", "r"],
            ["tasks", "logs", "hello", "r", "t", "--try", "0"],
            ["tasks", "logs", "hello", "r", "t", "--map-index", "-2"],
            ["db"],
            ["db", "check", "--bogus"],
            ["db", "migrate", "extra"],
            ["db", "clean", "--older-than"],
        ]
        for args in cases:
            with self.subTest(args=args):
                result = run([*args, "--config", self.ws.config] if args else args, cwd=self.ws.root)
                self.assertEqual(result.returncode, 2,
                                 f"nightshift {' '.join(args)}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
                self.assertEqual(result.stdout, "")
                self.assertIn("Run with --help for more information.", result.stderr)
        # Nothing ran and nothing was created: a usage error does nothing else.
        self.assertFalse(os.path.exists(os.path.join(self.ws.root, "state")))
        self.assertFalse(os.path.exists(os.path.join(self.ws.root, ".nightshift")))

    def test_bad_values_the_cli_checks_itself_exit_2(self):
        for args in (["run", self.dag, "--param", "novalue"], ["dags", "trigger", "hello", "--conf", "[1]"],
                     ["dags", "list", "--server", "ftp://127.0.0.1:1"]):
            with self.subTest(args=args):
                result = run([*args, "--config", self.ws.config], cwd=self.ws.root)
                self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
                self.assertNotEqual(result.stderr, "")

    def test_help_and_version_exit_0_on_stdout(self):
        for args in (["--help"], ["-h"], ["serve", "--help"], ["run", "--help"], ["dags", "--help"],
                     ["dags", "trigger", "--help"], ["runs", "list", "--help"], ["tasks", "logs", "--help"],
                     ["db", "check", "--help"]):
            with self.subTest(args=args):
                result = run(args, cwd=self.ws.root)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertIn("Usage:", result.stdout)
                self.assertEqual(result.stderr, "")
        result = run(["--version"], cwd=self.ws.root)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith("nightshift "), result.stdout)


if __name__ == "__main__":
    unittest.main()
