"""What one try may use: its log's size, CPU time, address space, open files, niceness; and what
happens when the logs folder is full or read-only.

A second daemon on the same state folder is covered by test_serve.py
(test_second_daemon_on_same_state_refuses).
"""
import os
import subprocess
import unittest
import urllib.parse

from harness import Api, Daemon, Workspace, get, run, wait_for

# How much the flooding task prints; 1 GB by default, smaller for a quick local run.
FLOOD_BYTES = int(os.environ.get("NIGHTSHIFT_LOG_FLOOD_BYTES", str(1_000_000_000)))


def tries(ws, dag_id, run_id, task_id):
    run_q = urllib.parse.quote(run_id, safe="")
    status, body = get(f"{ws.url}/api/v1/dags/{dag_id}/dagRuns/{run_q}/taskInstances/{task_id}/tries")
    assert status == 200, body
    return body["tries"]


def log_text(ws, dag_id, run_id, task_id, try_number=1):
    run_q = urllib.parse.quote(run_id, safe="")
    status, body = get(f"{ws.url}/api/v1/dags/{dag_id}/dagRuns/{run_q}/taskInstances/{task_id}/logs/{try_number}",
                       timeout=60)
    assert status == 200, body
    return body


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


def mount_tmpfs(test, path, size="2m"):
    """Mounts a small tmpfs at `path` (skipping the test where that is not permitted); unmounted
    by the test's cleanup."""
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        test.skipTest(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    test.addCleanup(subprocess.run, ["umount", "-l", path], capture_output=True)


def remount(path, mode):
    result = subprocess.run(["mount", "-o", f"remount,{mode}", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


class LogSizeTest(unittest.TestCase):
    def test_a_task_printing_a_gigabyte_keeps_a_log_of_log_size_and_succeeds(self):
        cap = 1 << 20
        ws = Workspace(f"limits: {{log_size: {cap}}}\n")
        self.addCleanup(ws.cleanup)
        ws.write_dag("flood.yaml", f"""
            tasks:
              - task_id: flood
                command: "head -c {FLOOD_BYTES} /dev/zero | tr '\\\\0' x; echo; echo the end"
        """)
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        api = Api(ws)
        api.trigger("flood", dag_run_id="r")
        self.assertEqual(api.wait_run("flood", "r", timeout=300)["state"], "success")
        [only] = tries(ws, "flood", "r", "flood")
        self.assertEqual(only["exit_code"], 0)

        logs = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ws.root, "state", "logs"))
                for f in fs if f.endswith(".log")]
        self.assertEqual(len(logs), 1, logs)
        size = os.path.getsize(logs[0])
        print(f"\nlog of a task printing {FLOOD_BYTES} bytes with log_size {cap}: {size} bytes; "
              f"daemon peak RSS {peak_rss_kib(daemon.proc.pid)} KiB")
        self.assertGreaterEqual(size, cap)
        self.assertLess(size, cap + 1024)  # the notes are a couple of short lines

        with open(logs[0]) as f:
            text = f.read()
        self.assertEqual(text[:cap], "x" * cap)
        dropped = FLOOD_BYTES + len("\nthe end\n") - cap
        self.assertEqual(text[cap:], "\nnightshift: the log reached limits.log_size (1MiB); the rest of the task's "
                                     "output is dropped\n"
                                     f"nightshift: {dropped} bytes of output were dropped: the log is limited to "
                                     "1MiB (limits.log_size)\n")
        # The API serves the same log.
        self.assertTrue(log_text(ws, "flood", "r", "flood").startswith("x" * 1000))
        # The daemon never holds the output; a generous bound that a copy of it would break.
        self.assertLess(peak_rss_kib(daemon.proc.pid), 200 * 1024)


class ProcessLimitsTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace("limits: {open_files: 64, nice: 7}\n")
        self.addCleanup(self.ws.cleanup)

    def start(self):
        daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(daemon.kill)
        return Api(self.ws)

    def test_config_limits_reach_the_task_and_a_task_overrides_them_field_by_field(self):
        self.ws.write_dag("limits.yaml", """
            tasks:
              - {task_id: config_limits, command: "ulimit -n; cut -d' ' -f19 /proc/self/stat"}
              - {task_id: own_nice, command: "ulimit -n; cut -d' ' -f19 /proc/self/stat", limits: {nice: 3}}
        """)
        api = self.start()
        api.trigger("limits", dag_run_id="r")
        self.assertEqual(api.wait_run("limits", "r")["state"], "success")
        self.assertEqual(log_text(self.ws, "limits", "r", "config_limits"), "64\n7\n")
        self.assertEqual(log_text(self.ws, "limits", "r", "own_nice"), "64\n3\n")

    def test_a_task_over_its_cpu_time_is_killed_with_a_reason_naming_the_limit(self):
        self.ws.write_dag("spin.yaml", """
            tasks:
              - {task_id: spin, command: "while :; do :; done", limits: {cpu_time: 1s}}
        """)
        api = self.start()
        api.trigger("spin", dag_run_id="r")
        self.assertEqual(api.wait_run("spin", "r", timeout=60)["state"], "failed")
        [only] = tries(self.ws, "spin", "r", "spin")
        self.assertNotEqual(only["exit_code"], 0)
        self.assertIn("CPU time limit exceeded (limits.cpu_time: 1s)", only["reason"])

    def test_a_task_allocating_beyond_its_address_space_fails(self):
        self.ws.write_dag("hog.yaml", """
            tasks:
              - task_id: hog
                command: python3 -c 'bytearray(1 << 30)'
                limits: {address_space: 256MiB}
        """)
        api = self.start()
        api.trigger("hog", dag_run_id="r")
        self.assertEqual(api.wait_run("hog", "r", timeout=60)["state"], "failed")
        [only] = tries(self.ws, "hog", "r", "hog")
        self.assertIn("address_space=256MiB", only["reason"])
        self.assertIn("MemoryError", log_text(self.ws, "hog", "r", "hog"))

    def test_bad_limits_in_a_dag_are_an_import_error_with_a_position(self):
        path = self.ws.write_dag("bad.yaml", """
            tasks:
              - {task_id: a, command: x, limits: {nice: 40}}
        """)
        result = run(["dags", "validate", path, "--config", self.ws.config])
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{path}:3:45: limits.nice: must be at most 19, got 40", result.stdout + result.stderr)


class LogsFolderFaultTest(unittest.TestCase):
    """The logs folder on a tiny tmpfs: full, then read-only. SQLite stays on the real disk."""

    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.logs = os.path.join(self.ws.root, "state", "logs")
        mount_tmpfs(self, self.logs)
        self.ws.write_dag("flood.yaml", """
            tasks:
              - {task_id: flood, command: "head -c 5000000 /dev/zero | tr '\\\\0' x; echo done"}
        """)
        self.ws.write_dag("small.yaml", "tasks:\n  - {task_id: hello, command: 'echo hello'}\n")
        self.daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(self.daemon.kill)  # before the unmount
        self.api = Api(self.ws)

    def check_database(self):
        self.assertEqual(self.daemon.stop(), 0, self.daemon.output())
        check = run(["db", "check", "--config", self.ws.config])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_a_full_logs_folder_fails_the_tries_with_the_reason_and_the_daemon_goes_on(self):
        self.api.trigger("flood", dag_run_id="full")
        self.assertEqual(self.api.wait_run("flood", "full", timeout=60)["state"], "failed")
        [flood] = tries(self.ws, "flood", "full", "flood")
        self.assertIn("cannot write the log", flood["reason"])
        self.assertIn("No space left on device", flood["reason"])

        # Still full: the next try cannot even start, and says why.
        self.api.trigger("small", dag_run_id="while-full")
        self.assertEqual(self.api.wait_run("small", "while-full")["state"], "failed")
        [small] = tries(self.ws, "small", "while-full", "hello")
        self.assertIn("No space left on device", small["reason"] or "", small)

        # Space freed: work goes on, on the same daemon.
        for folder, _, files in os.walk(self.logs):
            for name in files:
                if "flood" in folder:
                    os.remove(os.path.join(folder, name))
        self.api.trigger("small", dag_run_id="after")
        self.assertEqual(self.api.wait_run("small", "after")["state"], "success")
        self.assertEqual(log_text(self.ws, "small", "after", "hello"), "hello\n")
        self.check_database()

    def test_a_read_only_logs_folder_fails_the_tries_with_the_reason_and_the_daemon_goes_on(self):
        remount(self.logs, "ro")
        self.api.trigger("small", dag_run_id="ro")
        self.assertEqual(self.api.wait_run("small", "ro")["state"], "failed")
        [small] = tries(self.ws, "small", "ro", "hello")
        self.assertIn("Read-only file system", small["reason"] or "", small)
        self.assertEqual(get(self.ws.url + "/api/v1/health")[0], 200)

        remount(self.logs, "rw")
        self.api.trigger("small", dag_run_id="rw")
        self.assertEqual(self.api.wait_run("small", "rw")["state"], "success")
        self.check_database()


if __name__ == "__main__":
    unittest.main()
