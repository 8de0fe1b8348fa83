"""The Slurm executor against a real Slurm cluster (../shared/ci/slurm-up.sh starts one on this
machine). Skipped, with the reason printed, when the Slurm commands are missing or the controller
does not answer. Job states are read with `scontrol show job -o` (no accounting: no sacct)."""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import unittest

from harness import SOURCE_DIR, Api, Daemon, Workspace, get, wait_for


def slurm_unavailable():
    for tool in ("sinfo", "sbatch", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run ../shared/ci/slurm-up.sh as root)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"scontrol ping failed: {e}"
    if "UP" not in ping.stdout:
        return f"the Slurm controller is down: {ping.stdout.strip()} {ping.stderr.strip()}"
    return None


SKIP = slurm_unavailable()
if SKIP:
    print(f"test_slurm: skipped: {SKIP}", file=sys.stderr)

CONFIG = """\
executor: slurm
parallelism: 64
slurm:
  poll_interval: 300ms
"""


def db_rows(ws, sql, *args):
    with sqlite3.connect(ws.db, timeout=30) as db:
        return db.execute(sql, args).fetchall()


def job_field(job_id, field):
    out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith(field + "="):
            return word[len(field) + 1:]
    return None


def controller_up():
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return "UP" in ping.stdout


SLURMCTLD_PID = "/run/slurmctld.pid"  # where ../shared/ci/slurm-up.sh's slurmctld writes its pid


def process_alive(pid):
    """Running and not a zombie (PID 1 here reaps orphans only every few seconds)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_slurmctld():
    with open(SLURMCTLD_PID) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not process_alive(pid), 60, "slurmctld to stop")


def start_slurmctld():
    if not controller_up():
        subprocess.run(["slurmctld"], check=True, timeout=60)
    wait_for(controller_up, 120, "slurmctld to answer again")


def instances(api, dag_id, run_id):
    """Every task instance of a run, mapped ones included, as (task_id, map_index) -> instance."""
    url = f"{api.ws.url}/api/v1/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
    return {(ti["task_id"], ti["map_index"]): ti for ti in get(url)[1]["task_instances"]}


def tries(ws, task_id=None):
    sql = ("SELECT ti.task_id, ti.map_index, t.try_number, t.state, t.exit_code, t.external_id, t.reason "
           "FROM task_tries t JOIN task_instances ti ON t.ti_pk = ti.id")
    if task_id:
        return db_rows(ws, sql + " WHERE ti.task_id = ? ORDER BY t.try_number", task_id)
    return db_rows(ws, sql)


@unittest.skipIf(SKIP, SKIP or "")
class SlurmExecutorTest(unittest.TestCase):
    def start(self, dag_name, dag_text, config=CONFIG):
        ws = Workspace(config)
        self.addCleanup(ws.cleanup)
        ws.write_dag(dag_name, dag_text)
        daemon = Daemon(ws).wait_healthy()
        self.addCleanup(daemon.kill)
        return ws, daemon, Api(ws)

    def test_diamond_and_fan_out_of_20_tasks_succeeds_with_outputs_and_job_ids(self):
        # start -> 18 fan-out tasks in two diamonds (mid_i depends on start, mid_{i+9} on mid_i) -> end
        lines = ["params: {x: nothing}", "tasks:",
                 "  - {task_id: start, command: 'echo \"::progress 1/2\"; echo \"[\\\"a\\\",1]\" > \"$NIGHTSHIFT_OUTPUT\"'}"]
        for i in range(9):
            lines.append(f"  - {{task_id: mid{i}, command: 'echo \"in=$NIGHTSHIFT_INPUT_START x=$NIGHTSHIFT_PARAM_X\"', "
                         f"depends_on: [start]}}")
        for i in range(9, 18):
            lines.append(f"  - {{task_id: mid{i}, command: 'true', depends_on: [mid{i - 9}]}}")
        lines.append("  - {task_id: end, command: 'echo done', depends_on: [" +
                     ", ".join(f"mid{i}" for i in range(18)) + "]}")
        ws, daemon, api = self.start("fan.yaml", "\n".join(lines) + "\n")
        pwned = os.path.join(ws.root, "PWNED")
        api.trigger("fan", dag_run_id="r", conf={"x": f"$(touch {pwned}) `touch {pwned}` 'q"})
        run = api.wait_run("fan", "r", timeout=300)
        self.assertEqual(run["state"], "success", daemon.output())
        tis = api.task_instances("fan", "r")
        self.assertEqual(len(tis), 20)
        self.assertTrue(all(ti["state"] == "success" for ti in tis.values()), tis)
        rows = tries(ws)
        job_ids = {r[5] for r in rows}
        self.assertEqual(len(rows), 20)
        self.assertEqual(len(job_ids), 20, "one Slurm job per try")
        self.assertTrue(all(j and j.isdigit() for j in job_ids), job_ids)
        self.assertEqual(job_field(tis["end"].get("external_id") or rows[0][5], "JobState"), "COMPLETED")
        # The conf reached the task as a literal value, through the batch script's quoting.
        with open(os.path.join(ws.root, "state/logs/fan/r/mid0.1.log")) as f:
            log = f.read()
        self.assertIn('in=["a",1]', log)
        self.assertIn(f"x=$(touch {pwned}) `touch {pwned}` 'q", log)
        self.assertFalse(os.path.exists(pwned))
        self.assertEqual(job_field(rows[0][5], "JobName").split(":")[:2], ["ns", "fan"])
        self.assertEqual(daemon.stop(), 0)

    def test_exit_3_fails_with_exit_code_3_and_retries(self):
        ws, daemon, api = self.start("fail.yaml", """\
            tasks:
              - {task_id: bad, command: 'echo trying; exit 3', retries: 1, retry_delay: 0}
            """)
        api.trigger("fail", dag_run_id="r")
        self.assertEqual(api.wait_run("fail", "r", timeout=120)["state"], "failed")
        rows = tries(ws, "bad")
        self.assertEqual([(r[2], r[3], r[4]) for r in rows], [(1, "failed", 3), (2, "failed", 3)])
        self.assertNotEqual(rows[0][5], rows[1][5], "each try is its own job")
        for r in rows:
            self.assertEqual(job_field(r[5], "JobState"), "FAILED")
            self.assertEqual(job_field(r[5], "ExitCode"), "3:0")

    def test_execution_timeout_cancels_the_job_in_slurm(self):
        ws, daemon, api = self.start("slow.yaml", """\
            tasks:
              - {task_id: slow, command: 'sleep 300', execution_timeout: 2s}
            """)
        api.trigger("slow", dag_run_id="r")
        self.assertEqual(api.wait_run("slow", "r", timeout=120)["state"], "failed")
        [row] = tries(ws, "slow")
        self.assertEqual(row[3], "failed")
        self.assertIn("execution_timeout", row[6])
        wait_for(lambda: job_field(row[5], "JobState") == "CANCELLED", 30, "the job to show CANCELLED")

    def test_a_job_slurm_holds_pending_says_why(self):
        # Two jobs that each want every CPU of the node: one must wait for the other.
        cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0]
        ws, daemon, api = self.start("big.yaml", f"""\
            default_args: {{slurm: {{cpus_per_task: {cpus}}}}}
            tasks:
              - {{task_id: first, command: 'sleep 10'}}
              - {{task_id: second, command: 'sleep 10'}}
            """)
        api.trigger("big", dag_run_id="r")
        # Slurm says Resources, or Priority while another job is ahead of it (and, for a moment
        # right after submission, no reason at all).
        pattern = re.compile(r"^slurm: PENDING \((Resources|Priority)\)$")
        waiting = wait_for(lambda: [ti for ti in api.task_instances("big", "r").values()
                                    if pattern.match(ti["waiting_reason"] or "")], 60,
                           "a task to show why Slurm holds it pending")
        self.assertEqual(waiting[0]["state"], "queued")
        self.assertEqual(api.wait_run("big", "r", timeout=120)["state"], "success")
        self.assertTrue(all(ti["waiting_reason"] is None for ti in api.task_instances("big", "r").values()))

    def test_kill_9_while_jobs_run_adopts_them_without_resubmitting(self):
        ledger_dir = None
        lines = ["tasks:"]
        for i in range(6):
            lines.append(f"  - {{task_id: t{i}, command: 'sleep 3; echo \"$NIGHTSHIFT_TASK_ID\" >> ../ledger.txt'}}")
        lines.append("  - {task_id: last, command: 'echo \"$NIGHTSHIFT_TASK_ID\" >> ../ledger.txt', "
                     "depends_on: [" + ", ".join(f"t{i}" for i in range(6)) + "]}")
        ws, daemon, api = self.start("adopt.yaml", "\n".join(lines) + "\n")
        ledger_dir = ws.root
        api.trigger("adopt", dag_run_id="r")
        # Killed while some jobs run (job id recorded) and others may still be pending.
        wait_for(lambda: db_rows(ws, "SELECT count(*) FROM task_tries WHERE state = 'running' "
                                     "AND external_id IS NOT NULL")[0][0] >= 1, 60, "a job to run")
        daemon.kill()
        restarted = Daemon(ws).wait_healthy()
        self.addCleanup(restarted.kill)
        self.assertEqual(api.wait_run("adopt", "r", timeout=180)["state"], "success", restarted.output())
        rows = tries(ws)
        self.assertEqual(len(rows), 7, rows)
        self.assertEqual(len({r[5] for r in rows}), 7, "a job was submitted twice")
        self.assertTrue(all(r[3] == "success" for r in rows), rows)
        with open(os.path.join(ledger_dir, "ledger.txt")) as f:
            ran = f.read().split()
        self.assertEqual(sorted(ran), sorted([f"t{i}" for i in range(6)] + ["last"]), "a task ran twice or not at all")
        self.assertIn("adopted", restarted.output())

    def test_mixed_mode_runs_only_the_slurm_task_on_slurm(self):
        ws, daemon, api = self.start("mixed.yaml", """\
            tasks:
              - {task_id: here, command: 'true'}
              - {task_id: there, command: 'true', executor: slurm, depends_on: [here],
                 slurm: {cpus_per_task: 1, time: "00:05:00"}}
            """, config="slurm: {poll_interval: 300ms}\n")
        api.trigger("mixed", dag_run_id="r")
        self.assertEqual(api.wait_run("mixed", "r", timeout=120)["state"], "success", daemon.output())
        here, there = tries(ws, "here")[0], tries(ws, "there")[0]
        self.assertIsNone(here[5])
        self.assertTrue(there[5].isdigit())
        self.assertEqual(job_field(there[5], "TimeLimit"), "00:05:00")
        self.assertEqual(api.task_instances("mixed", "r")["there"]["external_id"], there[5])

    def test_mapped_task_with_array_goes_as_one_job_array(self):
        ws, daemon, api = self.start("arr.yaml", """\
            tasks:
              - task_id: fan
                command: >-
                  echo "::progress 1/2";
                  printf '"%s-%s"' "$NIGHTSHIFT_MAP_ITEM" "$NIGHTSHIFT_MAP_INDEX" > "$NIGHTSHIFT_OUTPUT"
                map: {items: [a, b, c, d, e, f]}
                slurm: {array: true}
              - {task_id: collect, command: 'printf %s "$NIGHTSHIFT_INPUT_FAN" > "$NIGHTSHIFT_OUTPUT"',
                 depends_on: [fan]}
            """)
        api.trigger("arr", dag_run_id="r")
        self.assertEqual(api.wait_run("arr", "r", timeout=180)["state"], "success", daemon.output())
        tis = instances(api, "arr", "r")
        self.assertEqual(sorted(k for k in tis if k[0] == "fan"), [("fan", i) for i in range(6)])
        self.assertTrue(all(ti["state"] == "success" for ti in tis.values()), tis)
        # One sbatch: every element's job id is ARRAY_INDEX with the same ARRAY and its map index.
        ids = {r[1]: r[5] for r in tries(ws, "fan")}
        parsed = {i: re.fullmatch(r"(\d+)_(\d+)", job) for i, job in ids.items()}
        self.assertTrue(all(parsed.values()), ids)
        self.assertEqual(len({m.group(1) for m in parsed.values()}), 1, f"more than one job array: {ids}")
        self.assertEqual({i: int(m.group(2)) for i, m in parsed.items()}, {i: i for i in range(6)})
        self.assertEqual(tis[("fan", 3)]["external_id"], ids[3])
        self.assertEqual(job_field(ids[3], "JobName"), "ns:arr:r:fan:array:1")
        self.assertEqual(job_field(ids[3], "JobState"), "COMPLETED")
        # Each element ran as its own try: its own log, output and progress.
        for i in range(6):
            self.assertTrue(os.path.exists(os.path.join(ws.root, f"state/logs/arr/r/fan[{i}].1.log")))
            self.assertEqual(tis[("fan", i)]["output"], f"{'abcdef'[i]}-{i}")
        self.assertEqual(tis[("collect", -1)]["output"], [f"{'abcdef'[i]}-{i}" for i in range(6)])
        self.assertTrue(tries(ws, "collect")[0][5].isdigit(), "an unmapped task is a plain job")

    @unittest.skipUnless(os.geteuid() == 0 and os.path.exists(SLURMCTLD_PID),
                         "stopping slurmctld needs root and the slurmctld of ../shared/ci/slurm-up.sh")
    def test_unreachable_slurmctld_keeps_tries_queued_with_a_reason_until_it_is_back(self):
        ws, daemon, api = self.start("outage.yaml", """\
            tasks:
              - {task_id: first, command: 'echo one'}
              - {task_id: second, command: 'echo two', depends_on: [first]}
            """)
        self.addCleanup(start_slurmctld)  # whatever happens, the next test finds it running
        stop_slurmctld()
        api.trigger("outage", dag_run_id="r")
        # sbatch needs ~10 s to give up on a controller that does not answer.
        first = wait_for(lambda: (ti := api.task_instances("outage", "r")["first"])["waiting_reason"] and
                         "controller unreachable" in ti["waiting_reason"] and ti, 120,
                         "the try to say the controller is unreachable")
        self.assertEqual(first["state"], "queued")
        self.assertIn("Unable to contact slurm controller", first["waiting_reason"])
        self.assertEqual(get(ws.url + "/api/v1/health")[0], 200, "the daemon keeps serving")
        self.assertIsNone(daemon.proc.poll(), "the daemon keeps running")
        start_slurmctld()
        self.assertEqual(api.wait_run("outage", "r", timeout=240)["state"], "success", daemon.output())
        rows = tries(ws)
        self.assertEqual(len(rows), 2, rows)
        self.assertTrue(all(r[3] == "success" and r[5].isdigit() for r in rows), rows)
        self.assertIn("Slurm controller unreachable", daemon.output())

    def test_kill_9_between_sbatch_and_recording_the_job_id_finds_the_job_by_name(self):
        ws = Workspace(CONFIG)
        self.addCleanup(ws.cleanup)
        ws.write_dag("race.yaml", """\
            tasks:
              - {task_id: once, command: 'echo ran >> ../ledger.txt'}
            """)
        # An sbatch that submits for real, then holds its answer back until released.
        shim_dir = os.path.join(ws.root, "bin")
        os.makedirs(shim_dir)
        submitted, release = os.path.join(ws.root, "submitted"), os.path.join(ws.root, "release")
        with open(os.path.join(shim_dir, "sbatch"), "w") as f:
            f.write(f"#!/bin/sh\nout=$('{shutil.which('sbatch')}' \"$@\") || exit $?\n"
                    f"echo \"$out\" > '{submitted}'\n"
                    f"n=0; while [ ! -e '{release}' ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done\n"
                    f"echo \"$out\"\n")
        os.chmod(os.path.join(shim_dir, "sbatch"), 0o755)
        self.addCleanup(lambda: open(release, "w").close())
        path = os.environ["PATH"]
        os.environ["PATH"] = shim_dir + ":" + path
        try:
            daemon = Daemon(ws).wait_healthy()
        finally:
            os.environ["PATH"] = path
        self.addCleanup(daemon.kill)
        api = Api(ws)
        api.trigger("race", dag_run_id="r")
        def submitted_job_id():
            if not os.path.exists(submitted):
                return None
            with open(submitted) as f:
                return f.read().strip()
        job_id = wait_for(submitted_job_id, 60, "sbatch to submit")
        daemon.kill()  # sbatch succeeded; its answer never reached the daemon
        open(release, "w").close()
        restarted = Daemon(ws).wait_healthy()
        self.addCleanup(restarted.kill)
        self.assertEqual(api.wait_run("race", "r", timeout=120)["state"], "success", restarted.output())
        [row] = tries(ws, "once")
        self.assertEqual(row[5], job_id, "the try follows the job submitted before the kill")
        # Earlier runs of this test left jobs of the same name: this workspace's are in its folder.
        named = subprocess.run(["squeue", "-h", "-t", "all", "-n", "ns:race:r:once:-1:1", "-o", "%i|%Z"],
                               capture_output=True, text=True).stdout.split()
        ours = [line.split("|")[0] for line in named if line.split("|", 1)[1].startswith(ws.root + "/")]
        self.assertEqual(ours, [job_id], "submitted twice")
        with open(os.path.join(ws.root, "ledger.txt")) as f:
            self.assertEqual(f.read().split(), ["ran"])
        self.assertIn(f"found Slurm job {job_id} by its name", restarted.output())


if __name__ == "__main__":
    unittest.main()
