#!/usr/bin/env python3
"""Runs Nightshift and its peers on the same task graphs, in one invocation, and reports ratios.

    python3 bench/run.py --nightshift build/nightshift            # the full run
    python3 bench/run.py --nightshift build/nightshift --quick    # a short check, a few minutes

For every shape, each repetition runs every peer once, in a rotating order, with the same
parallelism: the C posix_spawn floor, make -jN, ninja -jN, snakemake --cores N, GNU parallel
(mapped shapes only), `nightshift run -j N` and the Nightshift daemon (trigger over REST, wait
through REST). Then: dispatch latency over a chain from the database, peak RSS of the daemon for
a 100,000-instance mapped run, time and memory to load 1,000 DAG files, and API latency under wrk.
The table goes to stdout and, with the machine, versions and date, to bench/RESULTS.md.

Python 3 standard library only. See bench/README.md for what each figure means.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

PEERS = ["floor", "make", "ninja", "snakemake", "parallel", "nightshift-run", "nightshift-daemon"]
# With --baseline PATH, each Nightshift mode also runs with that second binary under this name.
BASELINE_PEERS = {"nightshift-run": "nightshift-before-run", "nightshift-daemon": "nightshift-before-daemon"}
ALL_PEERS = PEERS + list(BASELINE_PEERS.values())
STAMP_PEERS = {"make", "ninja", "snakemake"}

DEFAULT_SHAPES = "chain:1000,wide:1000,wide:10000,layers:10x20,mapped:10000/10"
QUICK_SHAPES = "chain:200,wide:500,layers:5x20,mapped:2000/10"
EXTRAS = ["dispatch", "rss", "load", "wrk"]


class Skip(Exception):
    """A measurement that cannot be made here (missing tool, shape not applicable)."""


class Failed(Exception):
    """A measurement that was attempted and did not complete (timeout, non-zero exit)."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes, HTTP, statistics

def run_timed(argv, cwd, timeout, logfile, env=None):
    """Runs argv to completion in its own process group; returns wall seconds.

    Raises Failed on a timeout (the whole process group is killed) or a non-zero exit."""
    with open(logfile, "ab") as out:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            raise Failed(f"cannot start {argv[0]}: {e}")
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise Failed(f"timeout after {timeout:g}s")
        elapsed = time.monotonic() - t0
    if rc != 0:
        raise Failed(f"exit code {rc}; last output: {tail(logfile)}")
    return elapsed


def kill_group(proc):
    """SIGKILLs the process group of a child we started (start_new_session=True)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tail(path, lines=3):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, token=None, timeout=10):
    """Returns (status, parsed JSON or None)."""
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def percentile(values, pct):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def proc_status(pid, field):
    """A field of /proc/PID/status in MiB (VmHWM, VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- the daemon

class Daemon:
    """`nightshift serve` in a fresh folder: its own dags/, state/ and port."""

    def __init__(self, ctx, dag_files=(), parallelism=None, binary=None):
        self.ctx = ctx
        self.binary = binary or ctx.nightshift
        self.root = tempfile.mkdtemp(prefix="daemon-", dir=ctx.work)
        self.dags = os.path.join(self.root, "dags")
        os.makedirs(self.dags)
        for path in dag_files:
            shutil.copy(path, self.dags)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(self.root, "nightshift.yaml")
        with open(self.config, "w") as f:
            f.write("dags_folder: ./dags\nstate_dir: ./state\n"
                    f"listen: 127.0.0.1:{self.port}\n"
                    f"parallelism: {parallelism or ctx.jobs}\n"
                    "pools: {default: 1000000}\n")
        self.db = os.path.join(self.root, "state", "state.db")
        self.proc = None
        self.log_path = os.path.join(self.root, "daemon.log")

    def start(self):
        self.started = time.monotonic()
        self.log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([self.binary, "serve", "--config", self.config],
                                         cwd=self.root, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self.log.close()
            self.proc = None
            raise Failed(f"cannot start the daemon: {e}")
        return self

    def wait_until(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise Failed(f"daemon exited with {self.proc.returncode}: {tail(self.log_path)}")
            try:
                value = condition()
            except OSError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failed(f"timeout after {timeout:g}s waiting for {what}")
            time.sleep(0.01)

    def wait_dag(self, dag_id, timeout):
        self.wait_until(lambda: http("GET", f"{self.url}/api/v1/dags/{dag_id}")[0] == 200, timeout,
                        f"DAG {dag_id} to load")

    def token(self):
        with open(os.path.join(self.root, "state", "api-token")) as f:
            return f.read().strip()

    def trigger(self, dag_id, run_id="bench"):
        status, body = http("POST", f"{self.url}/api/v1/dags/{dag_id}/dagRuns",
                            body={"dag_run_id": run_id}, token=self.token())
        if status != 200:
            raise Failed(f"trigger: HTTP {status} {body}")
        return run_id

    def run_state(self, dag_id, run_id):
        status, body = http("GET", f"{self.url}/api/v1/dags/{dag_id}/dagRuns/{run_id}")
        return body.get("state") if status == 200 and body else None

    def wait_run(self, dag_id, run_id, timeout, poll=0.02):
        """Polls the run until it ends; returns its final state. Raises Failed on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise Failed(f"daemon exited with {self.proc.returncode}: {tail(self.log_path)}")
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                raise Failed(f"timeout after {timeout:g}s (run still {state})")
            time.sleep(poll)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
        if self.proc:
            self.log.close()
            self.proc = None


# ---------------------------------------------------------------- one measurement per peer

class Context:
    def __init__(self, args):
        self.jobs = args.jobs
        self.timeout = args.timeout
        self.snakemake_max = args.snakemake_max
        self.work = tempfile.mkdtemp(prefix="nightshift-bench-")
        self.nightshift_source, self.nightshift_built, self.nightshift = self.private_copy(args.nightshift, "nightshift")
        self.baseline_source = self.baseline_built = self.baseline = None
        if args.baseline:
            self.baseline_source, self.baseline_built, self.baseline = self.private_copy(args.baseline,
                                                                                        "nightshift-before")
        self.floor = None
        self.tools = {}
        self.last_state_db = {}   # (shape, peer) -> state.db of the latest Nightshift measurement

    def private_copy(self, path, name):
        """Measures a private copy: a rebuild of the binary during the run changes nothing here.
        Returns (absolute source path, its build time, the copy's path)."""
        source = os.path.abspath(path)
        copy = os.path.join(self.work, name)
        shutil.copy2(source, copy)
        check = subprocess.run([copy, "--version"], capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            sys.exit(f"run.py: {source} --version failed (being rebuilt?): {check.stderr.strip()}")
        return source, os.path.getmtime(source), copy


def fresh_stamps(shape_dir):
    for name in ("stamps", ".snakemake", ".ninja_log", ".ninja_deps"):
        path = os.path.join(shape_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    os.makedirs(os.path.join(shape_dir, "stamps"))


def measure(ctx, peer, shape_dir, info, rep):
    """Returns wall seconds of one run of `peer` on the graph in shape_dir."""
    j = ctx.jobs
    logfile = os.path.join(shape_dir, f"{peer}.{rep}.log")
    mapped = info["kind"] == "mapped"
    if peer in STAMP_PEERS and mapped:
        raise Skip("mapped shapes are compared against GNU parallel")
    if peer == "parallel" and not mapped:
        raise Skip("GNU parallel runs the mapped shapes only")
    if peer in ctx.tools and ctx.tools[peer] is None:
        raise Skip(f"{peer} not installed")

    if peer == "floor":
        if not ctx.floor:
            raise Skip("no C compiler to build bench/floor.c")
        # the graph allows at most `width` tasks at once: a chain is serial even with -j 2
        p = max(1, min(j, info["width"]))
        return run_timed([ctx.floor, str(info["processes"]), str(p), info["command"]], shape_dir,
                         ctx.timeout, logfile)
    if peer == "make":
        fresh_stamps(shape_dir)
        return run_timed([ctx.tools["make"], f"-j{j}", "-s", "-f", "Makefile"], shape_dir, ctx.timeout, logfile)
    if peer == "ninja":
        fresh_stamps(shape_dir)
        return run_timed([ctx.tools["ninja"], f"-j{j}", "-f", "build.ninja"], shape_dir, ctx.timeout, logfile)
    if peer == "snakemake":
        if info["tasks"] > ctx.snakemake_max:
            raise Skip(f"graph has more than --snakemake-max {ctx.snakemake_max} tasks "
                       "(snakemake needs minutes at this size; raise the option to run it)")
        fresh_stamps(shape_dir)
        return run_timed([ctx.tools["snakemake"], "--cores", str(j), "--quiet", "--snakefile", "Snakefile"],
                         shape_dir, ctx.timeout, logfile)
    if peer == "parallel":
        env = dict(os.environ, PARALLEL_SHELL="/bin/sh")
        return run_timed([ctx.tools["parallel"], "--will-cite", "-j", str(j), "-N0", info["command"],
                          "::::", "chunks.txt"], shape_dir, ctx.timeout, logfile, env=env)
    # the baseline binary runs exactly as the main one does, under its own peer name
    binary = ctx.nightshift
    mode = peer
    if peer in BASELINE_PEERS.values():
        binary = ctx.baseline
        mode = next(main for main, before in BASELINE_PEERS.items() if before == peer)
    if mode == "nightshift-run":
        state = tempfile.mkdtemp(prefix="run-", dir=ctx.work)
        seconds = run_timed([binary, "run", "dag.yaml", "-j", str(j), "--state-dir", state],
                            shape_dir, ctx.timeout, logfile)
        keep_state(ctx, info, peer, os.path.join(state, "state.db"), state)
        return seconds
    if mode == "nightshift-daemon":
        daemon = Daemon(ctx, [os.path.join(shape_dir, "dag.yaml")], binary=binary)
        try:
            daemon.start()
            daemon.wait_dag(info["dag_id"], ctx.timeout)
            t0 = time.monotonic()
            run_id = daemon.trigger(info["dag_id"])
            state = daemon.wait_run(info["dag_id"], run_id, ctx.timeout)
            seconds = time.monotonic() - t0
        finally:
            daemon.stop()
        if state != "success":
            raise Failed(f"run ended {state}")
        keep_state(ctx, info, peer, daemon.db, daemon.root)
        return seconds
    raise ValueError(peer)


def keep_state(ctx, info, peer, db, folder):
    """Keeps the latest chain run's database (for dispatch latency); removes everything else."""
    key = (info["shape"], peer)
    if info["kind"] == "chain":
        old = ctx.last_state_db.get(key)
        if old:
            shutil.rmtree(old[1], ignore_errors=True)
        ctx.last_state_db[key] = (db, folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- the extra measurements

def chain_dispatch_latencies(db, dag_id):
    """start_date of each chain task's try minus end_date of its upstream's try, in ms."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT ti.task_id, tt.start_date, tt.end_date FROM task_tries tt "
            "JOIN task_instances ti ON tt.ti_pk = ti.id JOIN dag_runs r ON ti.run_pk = r.id "
            "WHERE r.dag_id = ? AND tt.try_number = 1", (dag_id,)).fetchall()
    finally:
        con.close()
    times = {task: (start, end) for task, start, end in rows}
    out = []
    i = 1
    while f"t{i}" in times and f"t{i - 1}" in times:
        start = times[f"t{i}"][0]
        upstream_end = times[f"t{i - 1}"][1]
        if start is not None and upstream_end is not None:
            out.append(start - upstream_end)
        i += 1
    return out


def extra_dispatch(ctx, args, results):
    """Dispatch latency p50/p99 from the chain runs already measured, or a chain run of its own."""
    chains = [(shape, peer, db) for (shape, peer), (db, _) in ctx.last_state_db.items()]
    if not chains:
        n = 200 if args.quick else 1000
        shape_dir = os.path.join(ctx.work, f"dispatch-chain-{n}")
        info = gen.generate(shape_dir, "chain", str(n), args.cmd)
        for peer in ("nightshift-run", "nightshift-daemon"):
            try:
                measure(ctx, peer, shape_dir, info, 0)
            except Failed as e:
                results.append(f"dispatch latency, {peer}, chain {n}: not measured ({e})")
        chains = [(shape, peer, db) for (shape, peer), (db, _) in ctx.last_state_db.items()]
    for shape, peer, db in sorted(chains):
        dag_id = "bench_" + shape.replace(" ", "_")
        lat = chain_dispatch_latencies(db, dag_id)
        if not lat:
            results.append(f"dispatch latency, {peer}, {shape}: no tries found in {db}")
            continue
        results.append(f"dispatch latency, {peer}, {shape} (latest repetition, {len(lat)} edges): "
                       f"p50 {percentile(lat, 50)} ms, p99 {percentile(lat, 99)} ms, max {max(lat)} ms")


def extra_rss(ctx, args, results):
    """Peak RSS (VmHWM) of the daemon for one mapped run of N instances."""
    n = args.rss_instances
    shape_dir = os.path.join(ctx.work, f"rss-mapped-{n}")
    info = gen.generate(shape_dir, "mapped", f"{n}/1", "true")
    daemon = Daemon(ctx, [os.path.join(shape_dir, "dag.yaml")])
    label = f"daemon peak RSS, mapped {n}/1 (`true`, -j {ctx.jobs})"
    try:
        daemon.start()
        daemon.wait_dag(info["dag_id"], 60)
        t0 = time.monotonic()
        run_id = daemon.trigger(info["dag_id"])
        try:
            state = daemon.wait_run(info["dag_id"], run_id, args.rss_timeout, poll=0.5)
            finished = f"run {state} in {time.monotonic() - t0:.1f} s"
        except Failed as e:
            finished = f"run NOT finished: {e}; {count_done(daemon.db, info['dag_id'])} of {n} instances done"
        hwm = proc_status(daemon.proc.pid, "VmHWM")
        results.append(f"{label}: VmHWM {hwm:.1f} MiB; {finished}")
    except Failed as e:
        results.append(f"{label}: not measured ({e})")
    finally:
        daemon.stop()
        shutil.rmtree(daemon.root, ignore_errors=True)
        shutil.rmtree(shape_dir, ignore_errors=True)


def count_done(db, dag_id):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM task_instances ti JOIN dag_runs r ON ti.run_pk = r.id "
                               "WHERE r.dag_id = ? AND ti.state = 'success'", (dag_id,)).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"? ({e})"


def extra_load(ctx, args, results):
    """Daemon start until /api/v1/dags lists all N DAG files of 20 tasks; then its memory."""
    n, tasks = args.load_dags, 20
    folder = os.path.join(ctx.work, f"load-{n}")
    os.makedirs(folder)
    paths = []
    for k in range(n):
        info = gen.generate(os.path.join(folder, f"g{k}"), "chain", str(tasks), "true")
        # one DAG file per id: rename the dag_id so that the N files are N DAGs
        path = os.path.join(folder, f"dag{k:04d}.yaml")
        with open(os.path.join(folder, f"g{k}", "dag.yaml")) as src, open(path, "w") as dst:
            dst.write(src.read().replace(f"dag_id: {info['dag_id']}", f"dag_id: load_{k:04d}"))
        shutil.rmtree(os.path.join(folder, f"g{k}"))
        paths.append(path)
    daemon = Daemon(ctx, paths)
    label = f"load {n} DAG files of {tasks} tasks"

    def total():
        status, body = http("GET", f"{daemon.url}/api/v1/dags?limit=1")
        return status == 200 and body and body.get("total_entries", 0) >= n

    try:
        daemon.start()
        t0 = daemon.started
        daemon.wait_until(lambda: http("GET", f"{daemon.url}/api/v1/health")[0] == 200, 60, "health")
        healthy = time.monotonic() - t0
        daemon.wait_until(total, args.timeout, f"{n} DAGs in /api/v1/dags")
        loaded = time.monotonic() - t0
        rss = proc_status(daemon.proc.pid, "VmRSS")
        hwm = proc_status(daemon.proc.pid, "VmHWM")
        results.append(f"{label}: {loaded:.2f} s from daemon start to /api/v1/dags total_entries={n} "
                       f"(health answered after {healthy:.2f} s); VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB")
    except Failed as e:
        results.append(f"{label}: not measured ({e})")
    finally:
        daemon.stop()
        shutil.rmtree(daemon.root, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


def parse_wrk(text):
    """{'50%': ms, '99%': ms, 'requests/s': x} from `wrk --latency` output."""
    out = {}
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    for pct, value, unit in re.findall(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out[pct + "%"] = float(value) * units[unit]
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if m:
        out["requests/s"] = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    out["non-2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:(.*)", text)
    out["socket errors"] = m.group(1).strip() if m else "none"
    return out


def extra_wrk(ctx, args, results):
    """API latency under wrk -c 64 against /api/v1/dags while a wide run of N tasks executes."""
    wrk = ctx.tools.get("wrk")
    if not wrk:
        results.append("API latency under wrk: skipped, wrk is not installed "
                       "(apt-get install -y --no-install-recommends wrk)")
        return
    n = args.wrk_tasks
    shape_dir = os.path.join(ctx.work, f"wrk-wide-{n}")
    info = gen.generate(shape_dir, "wide", str(n), "true")
    daemon = Daemon(ctx, [os.path.join(shape_dir, "dag.yaml")])
    label = f"API latency, wrk -t2 -c64 -d{args.wrk_seconds}s GET /api/v1/dags during a wide {n} run"
    try:
        daemon.start()
        daemon.wait_dag(info["dag_id"], 60)
        run_id = daemon.trigger(info["dag_id"])
        time.sleep(1.0)
        proc = subprocess.run([wrk, "-t2", "-c64", f"-d{args.wrk_seconds}s", "--latency", "--timeout", "10s",
                               f"{daemon.url}/api/v1/dags"], capture_output=True, text=True,
                              timeout=args.wrk_seconds + 60)
        state_after = daemon.run_state(info["dag_id"], run_id)
        w = parse_wrk(proc.stdout)
        if "99%" not in w:
            results.append(f"{label}: wrk gave no latency figures: {proc.stdout.strip()} {proc.stderr.strip()}")
            return
        during = ("the run was still going when wrk ended" if state_after not in ("success", "failed")
                  else f"WARNING: the run had already ended ({state_after}) when wrk ended")
        results.append(f"{label}: p50 {w['50%']:.2f} ms, p99 {w['99%']:.2f} ms, "
                       f"{w.get('requests/s', 0):.0f} requests/s, non-2xx {w['non-2xx']}, "
                       f"socket errors: {w['socket errors']}; {during}")
    except (Failed, subprocess.TimeoutExpired) as e:
        results.append(f"{label}: not measured ({e})")
    finally:
        daemon.stop()
        shutil.rmtree(daemon.root, ignore_errors=True)
        shutil.rmtree(shape_dir, ignore_errors=True)


# ---------------------------------------------------------------- machine, versions, report

def first_line(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        text = (p.stdout or p.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def versions(ctx):
    built = datetime.datetime.fromtimestamp(ctx.nightshift_built, datetime.timezone.utc)
    head = first_line(["git", "-C", REPO, "log", "-1", "--format=%h %s"])
    v = {"nightshift": f"{first_line([ctx.nightshift, '--version'])} (copy of {ctx.nightshift_source}, "
                       f"built {built.strftime('%Y-%m-%d %H:%M UTC')}; repo HEAD {head})"}
    if ctx.baseline:
        built = datetime.datetime.fromtimestamp(ctx.baseline_built, datetime.timezone.utc)
        v["nightshift-before (--baseline)"] = (f"{first_line([ctx.baseline, '--version'])} (copy of "
                                               f"{ctx.baseline_source}, built {built.strftime('%Y-%m-%d %H:%M UTC')})")
    commands = {"make": ["--version"], "ninja": ["--version"], "snakemake": ["--version"],
                "parallel": ["--version"], "wrk": ["-v"]}
    for tool, flags in commands.items():
        path = ctx.tools.get(tool)
        v[tool] = first_line([path, *flags]) if path else "not installed"
    cc = shutil.which("cc")
    v["cc"] = first_line([cc, "--version"]) if cc else "not installed"
    v["sqlite (python)"] = sqlite3.sqlite_version
    return v


def build_floor(ctx):
    cc = shutil.which("cc")
    if not cc:
        log("floor: skipped, no C compiler (cc) found")
        return None
    out = os.path.join(ctx.work, "floor")
    p = subprocess.run([cc, "-O2", "-o", out, os.path.join(BENCH_DIR, "floor.c")],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        log(f"floor: skipped, cc failed: {p.stderr.strip()}")
        return None
    return out


def fmt_s(x):
    return "-" if x is None else f"{x:.3f}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def table(rows, shapes, baseline=False):
    """rows: {(shape, peer): {'times': [...], 'note': str}} -> list of text lines (markdown).
    With baseline, two more ratio columns: the --baseline binary's median divided by the peer's."""
    ratio_peers = ["nightshift-run", "nightshift-daemon"]
    if baseline:
        ratio_peers += [BASELINE_PEERS[p] for p in ratio_peers]
    lines = ["| shape | peer | runs | median s | min s | " + " | ".join(f"{p} / peer" for p in ratio_peers) + " | note |",
             "|---|---|---|---|---|" + "---|" * len(ratio_peers) + "---|"]
    for shape in shapes:
        med = {}
        for peer in ALL_PEERS:
            r = rows.get((shape, peer))
            med[peer] = statistics.median(r["times"]) if r and r["times"] else None
        for peer in ALL_PEERS:
            r = rows.get((shape, peer))
            if r is None:
                continue
            times = r["times"]
            ratios = " | ".join(fmt_ratio(med[p], med[peer]) for p in ratio_peers)
            lines.append(f"| {shape} | {peer} | {len(times)}/{r['attempts']} | {fmt_s(med[peer])} | "
                         f"{fmt_s(min(times) if times else None)} | {ratios} | {r['note']} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nightshift", default=os.path.join(REPO, "build", "nightshift"),
                    help="the nightshift binary (default: build/nightshift)")
    ap.add_argument("--baseline", metavar="PATH",
                    help="a second nightshift binary (e.g. main's) measured beside --nightshift as the peers "
                         "nightshift-before-run and nightshift-before-daemon, for a before/after comparison")
    ap.add_argument("--shapes", help=f"comma list of KIND:SIZE (default {DEFAULT_SHAPES}; "
                                     f"--quick: {QUICK_SHAPES})")
    ap.add_argument("--reps", type=int, help="repetitions per peer and shape (default 3; --quick: 2)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="parallelism for every peer (default 2)")
    ap.add_argument("--cmd", default="true", help="task command: true (default), sleep:S or cpu:K")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="comma list of peers to run (default: all); nightshift means both of its modes")
    ap.add_argument("--timeout", type=float, help="seconds per measurement (default 120; --quick: 60)")
    ap.add_argument("--snakemake-max", type=int, default=2000,
                    help="skip snakemake on graphs with more tasks than this (default 2000)")
    ap.add_argument("--extras", default=",".join(EXTRAS),
                    help="comma list of dispatch,rss,load,wrk, or 'none' (default: all)")
    ap.add_argument("--rss-instances", type=int, help="instances in the RSS run (default 100000; --quick: 10000)")
    ap.add_argument("--rss-timeout", type=float, help="seconds for the RSS run (default 300; --quick: 90)")
    ap.add_argument("--load-dags", type=int, default=1000, help="DAG files for the load test (default 1000)")
    ap.add_argument("--wrk-tasks", type=int, help="tasks in the run under wrk (default 10000; --quick: 2000)")
    ap.add_argument("--wrk-seconds", type=int, help="wrk duration (default 10; --quick: 5)")
    ap.add_argument("--quick", action="store_true", help="small shapes, 2 repetitions, short extras")
    ap.add_argument("--results", default=os.path.join(BENCH_DIR, "RESULTS.md"), help="where to write the report")
    ap.add_argument("--note", default="", help="a line to put at the top of the report")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    quick = args.quick
    args.shapes = args.shapes or (QUICK_SHAPES if quick else DEFAULT_SHAPES)
    args.reps = args.reps or (2 if quick else 3)
    args.timeout = args.timeout or (60.0 if quick else 120.0)
    args.rss_instances = args.rss_instances or (10000 if quick else 100000)
    args.rss_timeout = args.rss_timeout or (90.0 if quick else 300.0)
    args.wrk_tasks = args.wrk_tasks or (2000 if quick else 10000)
    args.wrk_seconds = args.wrk_seconds or (5 if quick else 10)
    extras = [] if args.extras == "none" else [e.strip() for e in args.extras.split(",") if e.strip()]
    peers = []
    for p in (p.strip() for p in args.peers.split(",")):
        expanded = ["nightshift-run", "nightshift-daemon"] if p == "nightshift" else [p] if p else []
        for q in expanded:
            if q not in PEERS:
                sys.exit(f"run.py: unknown peer {q!r}; peers: nightshift, {', '.join(PEERS)}")
            if q not in peers:
                peers.append(q)
    if args.baseline:
        if not os.access(args.baseline, os.X_OK):
            sys.exit(f"run.py: --baseline {args.baseline} is not an executable")
        # each Nightshift mode measured is measured with the baseline too, in the same rotation
        peers += [BASELINE_PEERS[p] for p in list(peers) if p in BASELINE_PEERS]
    for e in extras:
        if e not in EXTRAS:
            sys.exit(f"run.py: unknown extra {e!r}; extras: {', '.join(EXTRAS)}")
    if not os.access(args.nightshift, os.X_OK):
        sys.exit(f"run.py: {args.nightshift} is not an executable; build it (cmake --build build) "
                 "or pass --nightshift PATH")

    os.environ.pop("NIGHTSHIFT_CONFIG", None)   # every nightshift command here uses the config given to it
    ctx = Context(args)
    started_at = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    load_before = loadavg()
    for tool in ("make", "ninja", "snakemake", "parallel", "wrk"):
        ctx.tools[tool] = shutil.which(tool)
        if tool != "wrk" and tool in peers and not ctx.tools[tool]:
            log(f"{tool}: skipped, not installed (apt-get install -y --no-install-recommends "
                f"{'ninja-build' if tool == 'ninja' else tool})")
    if "floor" in peers:
        ctx.floor = build_floor(ctx)
    v = versions(ctx)   # before the runs: the binary measured is the one described

    shapes = []
    rows = {}
    try:
        for spec in args.shapes.split(","):
            kind, _, size = spec.strip().partition(":")
            info = gen.generate(os.path.join(ctx.work, spec.replace(":", "-").replace("/", "_")),
                                kind, size, args.cmd)
            shape_dir = os.path.join(ctx.work, spec.replace(":", "-").replace("/", "_"))
            shape = info["shape"]
            shapes.append(shape)
            log(f"== {shape}: {info['tasks']} tasks, {info['edges']} edges, command {info['command']!r}, "
                f"-j {ctx.jobs}, {args.reps} repetitions")
            given_up = {}
            for rep in range(args.reps):
                # rotate the order so that no peer always runs first (or right after another)
                order = peers[rep % len(peers):] + peers[:rep % len(peers)]
                for peer in order:
                    row = rows.setdefault((shape, peer), {"times": [], "attempts": 0, "note": ""})
                    if peer in given_up:
                        continue
                    row["attempts"] += 1
                    try:
                        seconds = measure(ctx, peer, shape_dir, info, rep)
                    except Skip as e:
                        row["attempts"] -= 1
                        row["note"] = f"skipped: {e}"
                        given_up[peer] = True
                        log(f"   {peer:24s} skipped: {e}")
                        continue
                    except Failed as e:
                        row["note"] = f"failed: {e}"
                        given_up[peer] = True
                        log(f"   {peer:24s} FAILED: {e} (no further repetitions)")
                        continue
                    row["times"].append(seconds)
                    log(f"   {peer:24s} rep {rep + 1}: {seconds:.3f} s")
        extra_results = []
        for name in extras:
            log(f"== extra: {name}")
            before = len(extra_results)
            {"dispatch": extra_dispatch, "rss": extra_rss, "load": extra_load, "wrk": extra_wrk}[name](
                ctx, args, extra_results)
            for r in extra_results[before:]:
                log("   " + r)
    finally:
        if not args.keep:
            shutil.rmtree(ctx.work, ignore_errors=True)
        else:
            log(f"kept {ctx.work}")

    # peers that do not apply to a shape (stamp peers on mapped, parallel elsewhere) are left out
    not_applicable = ("skipped: mapped shapes", "skipped: GNU parallel runs")
    shown = {k: v for k, v in rows.items() if not v["note"].startswith(not_applicable)}
    lines = table(shown, shapes, baseline=bool(args.baseline))
    elapsed = time.monotonic() - t_start
    print()
    print("\n".join(lines))
    print()
    for r in extra_results:
        print("- " + r)

    m = machine()
    report = [
        "# Nightshift benchmark results",
        "",
    ]
    if args.note:
        report += [f"**{args.note}**", ""]
    report += [
        f"- date: {started_at.strftime('%Y-%m-%d %H:%M UTC')}, {elapsed:.0f} s in all",
        f"- command: `python3 bench/run.py {shlex.join(sys.argv[1:])}`",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}",
        f"- load average before: {load_before}; after: {loadavg()}",
        f"- parallelism -j {ctx.jobs}; task command `{gen.task_command(args.cmd)}`; "
        f"{args.reps} repetitions per peer, alternating; timeout {args.timeout:g} s per measurement",
        "",
        "## Versions",
        "",
    ]
    report += [f"- {k}: {val}" for k, val in v.items()]
    report += [
        "",
        "## Wall time (seconds; the ratio columns are Nightshift's median divided by the peer's median"
        + ("; nightshift-before-* is the --baseline binary)" if args.baseline else ")"),
        "",
        *lines,
        "",
        "## Other figures",
        "",
        *[f"- {r}" for r in extra_results],
        "",
        "See bench/README.md for how each figure is measured.",
        "",
    ]
    with open(args.results, "w") as f:
        f.write("\n".join(report))
    log(f"wrote {args.results} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
