"""`nightshift run FILE.yaml`: real processes, real SQLite, the same scheduler as the daemon."""
import json
import os
import sqlite3
import textwrap
import unittest

from harness import SOURCE_DIR, Workspace, run

# Each task records when it started and ended (monotonic seconds) in a shared file.
RECORD = 'echo "start $NIGHTSHIFT_TASK_ID $(date +%s.%N)" >> {ledger}; sleep {sleep}; echo "end $NIGHTSHIFT_TASK_ID $(date +%s.%N)" >> {ledger}'


def read_events(path):
    events = []
    with open(path) as f:
        for line in f:
            kind, task, t = line.split()
            events.append((float(t), kind, task))
    return sorted(events)


def max_overlap(events):
    running = peak = 0
    for _, kind, _ in sorted(events, key=lambda e: (e[0], e[1] == "start")):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    return peak


class RunTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)
        self.ledger = os.path.join(self.ws.root, "ledger.txt")

    def dag(self, name, body):
        return self.ws.write_dag(name, body)

    def run_dag(self, path, *args, expect=0):
        result = run(["run", path, "--state-dir", os.path.join(self.ws.root, "state"), *args], cwd=self.ws.root,
                     timeout=120)
        self.assertEqual(result.returncode, expect, result.stdout + result.stderr)
        return result

    def db(self):
        return sqlite3.connect(os.path.join(self.ws.root, "state", "state.db"))

    def test_diamond_runs_in_dependency_order(self):
        cmd = RECORD.format(ledger=self.ledger, sleep="0.1")
        path = self.dag("diamond.yaml", f"""
            tasks:
              - {{task_id: a, command: '{cmd}'}}
              - {{task_id: b, command: '{cmd}', depends_on: [a]}}
              - {{task_id: c, command: '{cmd}', depends_on: [a]}}
              - {{task_id: d, command: '{cmd}', depends_on: [b, c]}}
        """)
        result = self.run_dag(path)
        self.assertIn("success", result.stdout)
        times = {(kind, task): t for t, kind, task in read_events(self.ledger)}
        self.assertLessEqual(times[("end", "a")], times[("start", "b")])
        self.assertLessEqual(times[("end", "a")], times[("start", "c")])
        self.assertLessEqual(max(times[("end", "b")], times[("end", "c")]), times[("start", "d")])
        # b and c had nothing between them: they ran side by side.
        self.assertLess(times[("start", "c")], times[("end", "b")])

    def test_parallelism_is_never_exceeded(self):
        cmd = RECORD.format(ledger=self.ledger, sleep="0.3")
        tasks = "\n".join(f"  - {{task_id: t{i}, command: '{cmd}'}}" for i in range(8))
        path = self.dag("wide.yaml", "tasks:\n" + tasks + "\n")
        self.run_dag(path, "-j", "2")
        events = read_events(self.ledger)
        self.assertEqual(len(events), 16)
        self.assertEqual(max_overlap(events), 2)

    def test_a_pool_of_two_holds_two(self):
        self.ws.write("nightshift.yaml", "dags_folder: ./dags\nstate_dir: ./state\npools: {db: 2}\n")
        cmd = RECORD.format(ledger=self.ledger, sleep="0.3")
        tasks = "\n".join(f"  - {{task_id: t{i}, command: '{cmd}', pool: db}}" for i in range(6))
        path = self.dag("pooled.yaml", "tasks:\n" + tasks + "\n")
        self.run_dag(path, "-j", "6", "--config", self.ws.config)
        self.assertEqual(max_overlap(read_events(self.ledger)), 2)

    def test_priority_weight_decides_order_under_contention(self):
        cmd = RECORD.format(ledger=self.ledger, sleep="0")
        path = self.dag("prio.yaml", f"""
            tasks:
              - {{task_id: low, command: '{cmd}', priority_weight: 1}}
              - {{task_id: high, command: '{cmd}', priority_weight: 100}}
              - {{task_id: mid, command: '{cmd}', priority_weight: 50}}
        """)
        self.run_dag(path, "-j", "1")
        starts = [task for _, kind, task in read_events(self.ledger) if kind == "start"]
        self.assertEqual(starts, ["high", "mid", "low"])

    def test_fails_twice_then_succeeds_on_try_three(self):
        path = self.dag("flaky.yaml", """
            tasks:
              - task_id: flaky
                command: 'echo "try $NIGHTSHIFT_TRY_NUMBER"; [ "$NIGHTSHIFT_TRY_NUMBER" -ge 3 ]'
                retries: 2
                retry_delay: 0s
        """)
        self.run_dag(path)
        with self.db() as db:
            rows = db.execute("SELECT t.try_number, t.state, t.exit_code, t.log_path FROM task_tries t "
                              "ORDER BY t.try_number").fetchall()
        self.assertEqual([(r[0], r[1], r[2]) for r in rows], [(1, "failed", 1), (2, "failed", 1), (3, "success", 0)])
        for number, _, _, log_path in rows:
            with open(log_path) as f:
                self.assertEqual(f.read(), f"try {number}\n")

    def test_execution_timeout_kills_the_task_and_its_children(self):
        pids = os.path.join(self.ws.root, "pids")
        path = self.dag("slow.yaml", f"""
            tasks:
              - task_id: sleepy
                command: 'sleep 1000 & echo $! >> {pids}; sleep 1000 & echo $! >> {pids}; wait'
                execution_timeout: 1s
        """)
        result = self.run_dag(path, expect=1)
        self.assertIn("failed", result.stdout)
        with open(pids) as f:
            children = [int(p) for p in f.read().split()]
        self.assertEqual(len(children), 2)
        for pid in children:
            self.assertFalse(alive(pid), f"child {pid} survived the timeout")
        with self.db() as db:
            reason, = db.execute("SELECT reason FROM task_tries").fetchone()
        self.assertEqual(reason, "execution_timeout 1s exceeded")

    def test_failure_fails_the_run_and_its_downstream(self):
        path = self.dag("fail.yaml", """
            tasks:
              - {task_id: a, command: 'exit 3'}
              - {task_id: b, command: 'true', depends_on: [a]}
              - {task_id: cleanup, command: 'true', depends_on: [a], trigger_rule: all_done}
        """)
        self.run_dag(path, expect=1)
        with self.db() as db:
            states = dict(db.execute("SELECT task_id, state FROM task_instances").fetchall())
            run_state, = db.execute("SELECT state FROM dag_runs").fetchone()
        self.assertEqual(states, {"a": "failed", "b": "upstream_failed", "cleanup": "success"})
        self.assertEqual(run_state, "failed")

    def test_task_selection_and_params(self):
        out = os.path.join(self.ws.root, "out.txt")
        path = self.dag("sel.yaml", f"""
            params: {{who: world}}
            tasks:
              - {{task_id: a, command: 'exit 1'}}
              - {{task_id: b, command: 'echo "hello $NIGHTSHIFT_PARAM_WHO" > {out}', depends_on: [a]}}
        """)
        self.run_dag(path, "--task", "b", "--param", "who=nightshift")
        with open(out) as f:
            self.assertEqual(f.read(), "hello nightshift\n")

    def test_the_pi_example_estimates_pi(self):
        path = os.path.join(SOURCE_DIR, "examples/dags/pi_estimate.yaml")
        self.run_dag(path, "-j", "4")
        with self.db() as db:
            output, = db.execute("SELECT output FROM task_instances WHERE task_id = 'estimate'").fetchone()
            chunks, = db.execute("SELECT count(*) FROM task_instances WHERE task_id = 'count_points'").fetchone()
        self.assertGreater(chunks, 1)
        self.assertAlmostEqual(json.loads(output)["pi"], 3.14159, delta=0.01)

    def test_the_reduce_example_sums_over_the_listed_files(self):
        self.run_dag(os.path.join(SOURCE_DIR, "examples/dags/reduce_files.yaml"))
        with self.db() as db:
            counts = db.execute("SELECT output FROM task_instances WHERE task_id = 'count_lines' "
                                "ORDER BY map_index").fetchall()
            total, = db.execute("SELECT output FROM task_instances WHERE task_id = 'total'").fetchone()
        lines = [json.loads(c)["lines"] for c, in counts]
        self.assertEqual(len(lines), 3)
        self.assertEqual(json.loads(total), {"total": sum(lines)})

    def test_map_from_an_upstream_list(self):
        out = os.path.join(self.ws.root, "out.txt")
        path = self.dag("files.yaml", f"""
            tasks:
              - task_id: list
                command: 'echo "[\\"a\\", \\"b\\", \\"c\\"]" > "$NIGHTSHIFT_OUTPUT"'
              - task_id: each
                command: 'echo "\\"$NIGHTSHIFT_MAP_ITEM-$NIGHTSHIFT_MAP_INDEX\\"" > "$NIGHTSHIFT_OUTPUT"'
                map: {{from: list}}
              - task_id: reduce
                command: 'echo "$NIGHTSHIFT_INPUT_EACH" > {out}'
                depends_on: [each]
        """)
        self.run_dag(path)
        with open(out) as f:
            self.assertEqual(json.loads(f.read()), ["a-0", "b-1", "c-2"])

    def test_db_clean_prunes_finished_runs_and_their_logs(self):
        path = self.dag("tiny.yaml", "tasks:\n  - {task_id: t, command: 'echo hi'}\n")
        self.run_dag(path)
        self.run_dag(path)
        logs = os.path.join(self.ws.root, "state", "logs", "tiny")
        self.assertEqual(len(os.listdir(logs)), 2)
        result = run(["db", "clean", "--older-than", "0s", "--config", self.ws.config])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("pruned 2 finished runs", result.stdout)
        with self.db() as db:
            self.assertEqual(db.execute("SELECT count(*) FROM dag_runs").fetchone()[0], 0)
            self.assertEqual(db.execute("SELECT count(*) FROM task_tries").fetchone()[0], 0)
        self.assertEqual(os.listdir(logs), [])
        self.assertEqual(run(["db", "check", "--config", self.ws.config]).returncode, 0)

    def cache_dag(self, command="sort data/in.csv > out/sorted.csv", param="x"):
        return self.dag("cached.yaml", f"""
            params: {{mode: {param}}}
            tasks:
              - task_id: sort
                command: 'mkdir -p out; {command}; echo run >> {self.ledger}; echo "{{\\"rows\\": 3}}" > "$NIGHTSHIFT_OUTPUT"'
                cwd: ..
                cache:
                  inputs: ["data/*.csv"]
                  outputs: ["out/sorted.csv"]
        """)

    def runs_of_sort(self):
        if not os.path.exists(self.ledger):
            return 0
        with open(self.ledger) as f:
            return len(f.read().splitlines())

    def test_cache_skips_unchanged_work_and_reruns_on_any_change(self):
        self.ws.write("data/in.csv", "b\na\nc\n")
        path = self.cache_dag()
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 1)
        self.run_dag(path)  # nothing changed: a hit
        self.assertEqual(self.runs_of_sort(), 1)
        with self.db() as db:
            cached, output = db.execute("SELECT cached, output FROM task_instances ORDER BY id DESC LIMIT 1").fetchone()
            log_path, = db.execute("SELECT log_path FROM task_tries ORDER BY id DESC LIMIT 1").fetchone()
        self.assertEqual(cached, 1)
        self.assertEqual(json.loads(output), {"rows": 3})
        with open(log_path) as f:
            self.assertIn("cache hit", f.read())

        # Touching an input without changing it is not a change.
        os.utime(os.path.join(self.ws.root, "data/in.csv"), (1, 1))
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 1)
        # Changing its content is.
        self.ws.write("data/in.csv", "b\na\nd\n")
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 2)
        # So is a new input file matching the glob.
        self.ws.write("data/more.csv", "z\n")
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 3)
        # A param change.
        path = self.cache_dag(param="y")
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 4)
        self.run_dag(path, "--param", "mode=z")
        self.assertEqual(self.runs_of_sort(), 5)
        # A command change.
        path = self.cache_dag(command="sort -r data/in.csv > out/sorted.csv", param="y")
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 6)
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 6)
        # A deleted output.
        os.remove(os.path.join(self.ws.root, "out/sorted.csv"))
        self.run_dag(path)
        self.assertEqual(self.runs_of_sort(), 7)
        # --no-cache always runs.
        self.run_dag(path, "--no-cache")
        self.assertEqual(self.runs_of_sort(), 8)

    def test_a_broken_dag_file_is_reported_not_run(self):
        path = self.dag("bad.yaml", "tasks:\n  - task_id: a\n    command: 'true'\n    depends_on: [zzz]\n")
        result = run(["run", path, "--state-dir", os.path.join(self.ws.root, "state")])
        self.assertEqual(result.returncode, 2)
        self.assertIn(f"{path}:4:", result.stderr)


def alive(pid):
    """True when the process exists and is not a zombie (init reaps orphans lazily here)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    unittest.main()
