"""Drives the real nightshift binary: temporary folders, real processes, real HTTP on 127.0.0.1.

NIGHTSHIFT_BIN and NIGHTSHIFT_SOURCE_DIR come from CTest (tests/CMakeLists.txt).
"""
import atexit
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request

BIN = os.environ.get("NIGHTSHIFT_BIN", os.path.join(os.path.dirname(__file__), "../../build/nightshift"))
SOURCE_DIR = os.environ.get("NIGHTSHIFT_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))


def run(args, cwd=None, timeout=60, env=None):
    """Runs `nightshift ARGS...` to completion; returns the CompletedProcess (text mode)."""
    return subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


_reserved_ports = {}  # port -> the open lock file that reserves it for this process
atexit.register(lambda: [lock.close() for lock in _reserved_ports.values()])


def _port_range():
    """Ports outside the kernel's ephemeral range: no outgoing connection takes one meanwhile."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return (10000, low) if low - 10000 >= 1000 else (high + 1, 65536)


def free_port():
    """A port no other test process picks (ctest runs tests in parallel): each one is reserved
    by a lock on a file for as long as this process lives, and nothing listens on it now."""
    lock_dir = os.path.join(tempfile.gettempdir(), "nightshift-it-ports")
    os.makedirs(lock_dir, exist_ok=True)
    low, high = _port_range()
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(low, high)
        if port in _reserved_ports:
            continue
        lock = open(os.path.join(lock_dir, str(port)), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                lock.close()
                continue
        _reserved_ports[port] = lock
        return port
    raise AssertionError(f"no free port in {low}..{high}")


def wait_for(condition, timeout=30.0, what="condition"):
    """Polls `condition` until it returns a truthy value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class Workspace:
    """A temporary folder with a dags/ folder and a nightshift.yaml pointing at it."""

    def __init__(self, config_extra=""):
        self.root = tempfile.mkdtemp(prefix="nightshift-it-")
        self.dags = os.path.join(self.root, "dags")
        os.makedirs(self.dags)
        self.port = free_port()
        self.config = os.path.join(self.root, "nightshift.yaml")
        self.write(
            "nightshift.yaml",
            f"dags_folder: ./dags\nstate_dir: ./state\nlisten: 127.0.0.1:{self.port}\n" + textwrap.dedent(config_extra),
        )

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self):
        return os.path.join(self.root, "state", "state.db")

    @property
    def token_file(self):
        return os.path.join(self.root, "state", "api-token")

    def read_token(self):
        """The daemon's API token once it has written the whole line; None before."""
        try:
            with open(self.token_file) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return text.strip() if text.endswith("\n") and text.strip() else None

    def write(self, relpath, text):
        path = os.path.join(self.root, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def write_dag(self, name, text):
        return self.write(os.path.join("dags", name), text)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class Daemon:
    """`nightshift serve` as a child process, with its output captured to a file."""

    def __init__(self, workspace, extra_args=()):
        self.ws = workspace
        self.log_path = os.path.join(workspace.root, "daemon.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--config", workspace.config, *extra_args],
            cwd=workspace.root, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_serving(self, timeout=30.0):
        """Waits until this daemon (not another process on the same port) listens and its API
        token is written; returns the status of /api/v1/health."""
        serving = f"serving {self.ws.url} (pid {self.proc.pid})"
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            if serving not in self.output() or self.ws.read_token() is None:
                return None
            try:
                return get(self.ws.url + "/api/v1/health")[0]
            except OSError:
                return None
        return wait_for(ready, timeout, f"the daemon to log \"{serving}\", write its token and answer /api/v1/health")

    def wait_healthy(self, timeout=30.0):
        """Waits until this daemon serves, its token is written and /api/v1/health answers 200."""
        deadline = time.monotonic() + timeout
        self.wait_serving(timeout)
        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return get(self.ws.url + "/api/v1/health")[0] == 200
            except OSError:
                return False
        wait_for(healthy, max(deadline - time.monotonic(), 1), "/api/v1/health to answer 200")
        return self

    def signal(self, signo):
        self.proc.send_signal(signo)

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.log.close()


def request(method, url, body=None, headers=None, timeout=10):
    """Returns (status, parsed JSON or text) without raising on HTTP errors."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        raw, status, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
    text = raw.decode("utf-8", errors="replace")
    if "json" in ctype:
        return status, json.loads(text)
    return status, text


def get(url, **kw):
    return request("GET", url, **kw)


class Api:
    """The daemon's REST API with its token, as a client script would use it."""

    def __init__(self, workspace, timeout=30.0):
        self.ws = workspace
        # The daemon writes the token as it starts: wait for the whole line, never read early.
        self.token = wait_for(workspace.read_token, timeout, f"the API token in {workspace.token_file}")

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    def trigger(self, dag_id, **body):
        status, run = request("POST", f"{self.ws.url}/api/v1/dags/{dag_id}/dagRuns", body=body, headers=self.auth())
        if status != 200:
            raise AssertionError(f"trigger {dag_id}: {status} {run}")
        return run

    def run(self, dag_id, run_id):
        return get(f"{self.ws.url}/api/v1/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")[1]

    def task_instances(self, dag_id, run_id):
        url = f"{self.ws.url}/api/v1/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        return {ti["task_id"]: ti for ti in get(url)[1]["task_instances"]}

    def wait_run(self, dag_id, run_id, timeout=60, states=("success", "failed")):
        return wait_for(lambda: (r := self.run(dag_id, run_id)).get("state") in states and r, timeout,
                        f"run {dag_id}/{run_id} to reach {states}")
