"""The harness itself: every wait waits for its condition, and for this test's own daemon.

ctest runs test files in parallel (-j2), so two tests can pick the same port, and a daemon's
token file appears a moment after it starts. Both once made a test read a token that did not
exist yet (FileNotFoundError in test_slurm)."""
import json
import os
import subprocess
import sys
import threading
import unittest

from harness import Api, Daemon, Workspace, free_port, wait_for


class HarnessTest(unittest.TestCase):
    def test_free_ports_differ_across_test_processes(self):
        count = 400
        mine = {free_port() for _ in range(count)}
        self.assertEqual(len(mine), count)
        other = subprocess.run(
            [sys.executable, "-c",
             f"import json, harness; print(json.dumps([harness.free_port() for _ in range({count})]))"],
            cwd=os.path.dirname(os.path.abspath(__file__)), capture_output=True, text=True, timeout=60, check=True)
        theirs = set(json.loads(other.stdout))
        self.assertEqual(len(theirs), count)
        self.assertEqual(mine & theirs, set(), "two test processes were given the same port")

    def test_waiting_for_a_daemon_ignores_another_daemon_on_the_same_port(self):
        first = Workspace()
        self.addCleanup(first.cleanup)
        daemon = Daemon(first).wait_healthy()
        self.addCleanup(daemon.kill)
        # A second workspace that was given the same port: its daemon cannot listen and exits.
        second = Workspace()
        self.addCleanup(second.cleanup)
        second.port = first.port
        second.write("nightshift.yaml", f"dags_folder: ./dags\nstate_dir: ./state\nlisten: 127.0.0.1:{first.port}\n")
        loser = Daemon(second)
        self.addCleanup(loser.kill)
        with self.assertRaisesRegex(AssertionError, "daemon exited with 1"):
            loser.wait_healthy()
        self.assertIsNone(daemon.proc.poll())

    def test_the_api_token_is_waited_for_not_read_early(self):
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        got = {}
        reader = threading.Thread(target=lambda: got.update(api=Api(ws)))
        reader.start()  # before the daemon has even started
        daemon = Daemon(ws)
        self.addCleanup(daemon.kill)
        reader.join(60)
        self.assertFalse(reader.is_alive())
        with open(ws.token_file) as f:
            self.assertEqual(got["api"].token, f.read().strip())
        daemon.wait_healthy()


if __name__ == "__main__":
    unittest.main()
