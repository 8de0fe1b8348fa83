#!/usr/bin/env python3
"""1,000 no-op tasks through the Slurm executor against the same DAG through the local executor:
the time from trigger to run end, and how many sbatch/squeue/scontrol/scancel calls it took.
A third row runs 1,000 no-op instances of one mapped task with `slurm: {array: true}`.

Needs a running Slurm (../shared/ci/slurm-up.sh) and a built nightshift:
    NIGHTSHIFT_BIN=build/nightshift python3 bench/slurm/bench_slurm.py [--tasks 1000] [--only slurm]

The Slurm commands are counted by shims put first on the daemon's PATH: each appends its name
to a file, then execs the real command, so the jobs still run on the real cluster.
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/integration"))
from harness import Api, Daemon, Workspace  # noqa: E402

TOOLS = ("sbatch", "squeue", "scontrol", "scancel")


def dag(tasks, mapped):
    if mapped:
        return ("max_active_tasks: 100000\ntasks:\n"
                f"  - {{task_id: t, command: 'true', map: {{range: {tasks}, chunk: 1}}, slurm: {{array: true}}}}\n")
    return "max_active_tasks: 100000\ntasks:\n" + "".join(
        f"  - {{task_id: t{i}, command: 'true'}}\n" for i in range(tasks))


VARIANTS = {  # name: (executor, one mapped task as a job array)
    "local": ("local", False),
    "slurm": ("slurm", False),
    "array": ("slurm", True),
}


def shims(folder, counts_file):
    os.makedirs(folder, exist_ok=True)
    for tool in TOOLS:
        real = shutil.which(tool)
        path = os.path.join(folder, tool)
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\necho {tool} >> '{counts_file}'\nexec '{real}' \"$@\"\n")
        os.chmod(path, 0o755)


def run_once(executor, mapped, tasks, poll):
    ws = Workspace(f"executor: {executor}\nparallelism: {tasks}\npools: {{default: {tasks}}}\n"
                   f"slurm: {{poll_interval: {poll}}}\n")
    counts_file = os.path.join(ws.root, "calls.txt")
    shims(os.path.join(ws.root, "bin"), counts_file)
    ws.write_dag("noop.yaml", dag(tasks, mapped))
    old_path = os.environ["PATH"]
    os.environ["PATH"] = os.path.join(ws.root, "bin") + ":" + old_path
    try:
        daemon = Daemon(ws).wait_healthy()
    finally:
        os.environ["PATH"] = old_path
    try:
        api = Api(ws)
        start = time.monotonic()
        api.trigger("noop", dag_run_id="bench")
        run = api.wait_run("noop", "bench", timeout=3600)
        elapsed = time.monotonic() - start
    finally:
        daemon.stop()
    calls = {tool: 0 for tool in TOOLS}
    if os.path.exists(counts_file):
        with open(counts_file) as f:
            for line in f:
                calls[line.strip()] = calls.get(line.strip(), 0) + 1
    if run["state"] != "success":
        import sqlite3
        with sqlite3.connect(ws.db) as db:
            for row in db.execute("SELECT ti.task_id, t.try_number, t.state, t.exit_code, t.external_id, t.reason "
                                  "FROM task_tries t JOIN task_instances ti ON t.ti_pk = ti.id "
                                  "WHERE t.state != 'success' LIMIT 10"):
                print("    not successful:", row)
        print(f"    workspace kept: {ws.root}")
    else:
        ws.cleanup()
    return run["state"], elapsed, calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--poll-interval", default="500ms")
    parser.add_argument("--only", action="append", choices=sorted(VARIANTS),
                        help="run only this variant (repeatable); default: all")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        sys.exit("bench_slurm: sbatch not found; start Slurm with ../shared/ci/slurm-up.sh")
    print(f"{args.tasks} no-op tasks, trigger to run end (slurm poll_interval {args.poll_interval})")
    for name in args.only or VARIANTS:
        executor, mapped = VARIANTS[name]
        state, elapsed, calls = run_once(executor, mapped, args.tasks, args.poll_interval)
        print(f"  {name:5}  {state:7}  {elapsed:8.2f} s  {args.tasks / elapsed:8.1f} tasks/s  " +
              "  ".join(f"{tool}={n}" for tool, n in calls.items()), flush=True)


if __name__ == "__main__":
    main()
