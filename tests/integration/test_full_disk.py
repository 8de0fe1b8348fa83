"""A state folder whose file system fills up: the daemon must back off instead of spinning, say
why in /api/v1/health and in its answers to changes, and carry on by itself once space is back.

Needs root (a small tmpfs is mounted as the state folder); skipped, with the reason printed,
where mounting is not allowed."""
import errno
import os
import subprocess
import sys
import tempfile
import time
import unittest

from harness import Api, Daemon, Workspace, get, request, run, wait_for


def tmpfs_unavailable():
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    probe = tempfile.mkdtemp(prefix="nightshift-tmpfs-probe-")
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            return f"mount -t tmpfs is not allowed here: {mounted.stderr.strip()}"
        subprocess.run(["umount", probe], check=True)
        return None
    except OSError as e:
        return f"cannot run mount: {e}"
    finally:
        os.rmdir(probe)


SKIP = tmpfs_unavailable()
if SKIP:
    print(f"test_full_disk: skipped: {SKIP}", file=sys.stderr)


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill(folder):
    """Writes a file into `folder` until its file system has no byte left; returns its path."""
    path = os.path.join(folder, "filler")
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            while True:
                try:
                    f.write(b"\0" * chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return path


@unittest.skipIf(SKIP, SKIP or "")
class FullStateDiskTest(unittest.TestCase):
    def test_a_full_state_disk_backs_off_reports_503_and_recovers_by_itself(self):
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        state = os.path.join(ws.root, "state")
        os.makedirs(state)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", state], check=True)
        self.addCleanup(lambda: subprocess.run(["umount", "-l", state]))
        gate = os.path.join(ws.root, "gate")  # outside the full file system
        ws.write_dag("hold.yaml", f"""
            tasks:
              - {{task_id: wait, command: 'while [ ! -e {gate} ]; do sleep 0.05; done'}}
              - {{task_id: after, command: 'true', depends_on: [wait]}}
        """)
        ws.write_dag("other.yaml", "tasks:\n  - {task_id: t, command: 'true'}\n")
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        api = Api(ws)
        api.trigger("hold", dag_run_id="r")
        wait_for(lambda: api.task_instances("hold", "r")["wait"]["state"] == "running", 30, "the task to start")

        filler = fill(state)
        # The task ends: the scheduler must record that, and cannot.
        open(gate, "w").close()
        def unhealthy():
            status, body = get(ws.url + "/api/v1/health")
            return status == 503 and body
        health = wait_for(unhealthy, 30, "/api/v1/health to answer 503")
        self.assertEqual(health["status"], "unhealthy")
        self.assertRegex(health["detail"],
                         r"^state store cannot commit: .*database or disk is full \(\d+ failures? since \S+Z\)$")

        # A few seconds of a full disk: the daemon waits between tries instead of spinning, and
        # its log grows by a few lines, not thousands.
        lines_before = daemon.output().count("\n")
        cpu_before, wall_before = cpu_seconds(daemon.proc.pid), time.monotonic()
        watched_until = wall_before + 5
        wait_for(lambda: time.monotonic() >= watched_until, 10, "five seconds of a full disk")
        cpu = cpu_seconds(daemon.proc.pid) - cpu_before
        wall = time.monotonic() - wall_before
        new_lines = daemon.output().count("\n") - lines_before
        print(f"\nfull state disk: {cpu:.2f} s of CPU and {new_lines} log lines in {wall:.1f} s", file=sys.stderr)
        self.assertLess(cpu, 0.25 * wall, f"the daemon used {cpu:.2f} s of CPU in {wall:.1f} s")
        # Six tries at most in these 5 s (0.05 s, doubling), each a few lines (the rolled-back pass
        # and the reload); without the back-off it was thousands of lines a second.
        self.assertLess(new_lines, 60, daemon.output()[-3000:])
        self.assertIn("state store cannot commit", daemon.output())

        # Changes are refused with 503 and the reason; reads go on.
        status, body = request("POST", ws.url + "/api/v1/dags/other/dagRuns", body={"dag_run_id": "x"},
                               headers=api.auth())
        self.assertEqual(status, 503, body)
        self.assertIn("state store cannot commit", body["detail"])
        self.assertIn("nothing was changed", body["detail"])
        status, body = request("PATCH", ws.url + "/api/v1/dags/other", body={"is_paused": True}, headers=api.auth())
        self.assertEqual(status, 503, body)
        self.assertEqual(get(ws.url + "/api/v1/dags/other")[1]["is_paused"], False)
        self.assertEqual(api.run("hold", "r")["state"], "running")

        # Space is back: the next try commits, health is 200 again, and the run goes on.
        os.remove(filler)
        wait_for(lambda: get(ws.url + "/api/v1/health")[0] == 200, 30, "/api/v1/health to answer 200 again")
        self.assertEqual(api.wait_run("hold", "r", timeout=60)["state"], "success", daemon.output()[-3000:])
        self.assertIn("state store commits again", daemon.output())
        api.trigger("other", dag_run_id="x")
        self.assertEqual(api.wait_run("other", "x", timeout=60)["state"], "success")
        self.assertEqual(daemon.stop(), 0)
        check = run(["db", "check", "--config", ws.config])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    unittest.main()
