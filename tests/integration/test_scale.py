"""A run of 100,000 task instances through `nightshift run`: one task mapped over a range in
chunks of one, each instance writing its chunk start as output, and a reducer summing the
100,000 outputs. It must finish with every instance succeeded exactly once and the right sum.
The peak memory is printed (the benchmark in bench/ records it; it is not asserted here).

NIGHTSHIFT_SCALE_INSTANCES sets another size (scripts/test.sh uses a smaller one for the
sanitizer build, which is many times slower)."""
import os
import resource
import sqlite3
import subprocess
import sys
import time
import unittest

from harness import BIN, Workspace

INSTANCES = int(os.environ.get("NIGHTSHIFT_SCALE_INSTANCES", "100000"))


class ScaleTest(unittest.TestCase):
    def test_a_run_of_100000_mapped_instances_finishes_with_the_right_result(self):
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        ws.write_dag("scale.yaml", f"""
            tasks:
              - task_id: work
                map: {{range: {INSTANCES}, chunk: 1}}
                command: 'echo $NIGHTSHIFT_CHUNK_START > "$NIGHTSHIFT_OUTPUT"'
              - task_id: total
                depends_on: [work]
                command: >-
                  python3 -c 'import json, os;
                  f = os.environ.get("NIGHTSHIFT_INPUT_WORK_FILE");
                  v = json.load(open(f)) if f else json.loads(os.environ["NIGHTSHIFT_INPUT_WORK"]);
                  print("sum", sum(v), "count", len(v))'
        """)
        state = os.path.join(ws.root, "state")
        started = time.monotonic()
        proc = subprocess.run([BIN, "run", os.path.join(ws.root, "dags", "scale.yaml"), "-j", "2",
                               "--state-dir", state], capture_output=True, text=True, timeout=3600)
        elapsed = time.monotonic() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"\nscale: {INSTANCES} instances in {elapsed:.1f} s ({INSTANCES / elapsed:.0f}/s), "
              f"peak RSS of nightshift run {peak_kib / 1024:.1f} MiB", file=sys.stderr)
        self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-2000:])

        with sqlite3.connect(os.path.join(state, "state.db")) as db:
            states = dict(db.execute("SELECT state, count(*) FROM task_instances WHERE task_id = 'work' "
                                     "GROUP BY state").fetchall())
            tries = db.execute("SELECT count(*), count(DISTINCT ti_pk) FROM task_tries t JOIN task_instances ti "
                               "ON t.ti_pk = ti.id WHERE ti.task_id = 'work'").fetchone()
            log_path = db.execute("SELECT t.log_path FROM task_tries t JOIN task_instances ti ON t.ti_pk = ti.id "
                                  "WHERE ti.task_id = 'total'").fetchone()[0]
        self.assertEqual(states, {"success": INSTANCES})
        self.assertEqual(tries, (INSTANCES, INSTANCES), "an instance ran more than once")
        with open(log_path) as f:
            self.assertEqual(f.read().strip(), f"sum {INSTANCES * (INSTANCES - 1) // 2} count {INSTANCES}")


if __name__ == "__main__":
    unittest.main()
