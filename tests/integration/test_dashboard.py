"""The web dashboard in a real headless Chromium (tests/browser/dashboard.mjs, playwright-core).

Starts the daemon on a copy of examples/dags plus a DAG whose description is HTML and a broken DAG
file, runs a few DAGs over the API so the pages have something to show, then lets the browser script
trigger fanout_report from the UI, follow it to success, read a log, clear a task, pause a DAG and save
screenshots.

Needs /usr/bin/chromium and tests/browser/node_modules (../shared/ci/browser-up.sh tests/browser
installs both); skipped with the reason printed when they are missing.

Screenshots go to $NIGHTSHIFT_ARTIFACTS/dashboard, else to artifacts/dashboard next to the nightshift
binary (the build folder). With NIGHTSHIFT_UPDATE_SCREENSHOTS=1 they are also copied to
docs/screenshots/ for docs/dashboard.md.
"""
import os
import shutil
import subprocess
import sys
import time
import unittest

from harness import BIN, SOURCE_DIR, Api, Daemon, Workspace, get, wait_for

BROWSER_DIR = os.path.join(SOURCE_DIR, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "dashboard.mjs")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
NODE = shutil.which("node")


def _missing():
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} is missing")
    if not NODE:
        missing.append("node is not on PATH")
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        missing.append("tests/browser/node_modules/playwright-core is missing")
    return missing


MISSING = _missing()
SKIP_REASON = "browser test needs Chromium and playwright-core: " + "; ".join(MISSING) + \
    " (run ../shared/ci/browser-up.sh tests/browser)"
if MISSING:
    print(f"test_dashboard: SKIPPED: {SKIP_REASON}", file=sys.stderr)

# The windows and pools the example DAGs use (as in examples/nightshift.yaml).
CONFIG = """
windows:
  nightly:
    timezone: Europe/Berlin
    open:
      - "mon-fri 22:00-06:00"
      - "sat,sun 00:00-24:00"
    on_close: drain
pools:
  default: 128
  db: 2
"""

XSS_DAG = """
dag_id: html_in_description
description: "<img src=x onerror=alert(1)>"
schedule: null
tags: ["<script>alert(2)</script>"]
tasks:
  # Slow enough for the browser to follow its log while it runs; the output has markup too.
  - task_id: echo_markup
    command: for i in 1 2 3 4 5; do echo "line $i <b>not bold</b>"; sleep 1; done
"""

BROKEN_DAG = """
dag_id: broken_example
tasks:
  - task_id: a
    command: "true"
    depends_on: [missing_task]
"""


@unittest.skipUnless(not MISSING, SKIP_REASON)
class DashboardTest(unittest.TestCase):
    def setUp(self):
        self.ws = Workspace(config_extra=CONFIG)
        self.addCleanup(self.ws.cleanup)
        shutil.copytree(os.path.join(SOURCE_DIR, "examples", "dags"), self.ws.dags, dirs_exist_ok=True)
        self.ws.write_dag("html_in_description.yaml", XSS_DAG)
        self.ws.write_dag("broken/broken_example.yaml", BROKEN_DAG)
        self.daemon = Daemon(self.ws).wait_healthy()
        self.addCleanup(self.daemon.kill)
        self.api = Api(self.ws)

        def all_loaded():
            _, body = get(self.ws.url + "/api/v1/dags")
            return {"fanout_report", "nightly_etl", "pi_estimate", "trigger_rules",
                    "html_in_description"} <= {d["dag_id"] for d in body.get("dags", [])}
        wait_for(all_loaded, 30, "the example DAGs to load")

        artifacts = os.environ.get("NIGHTSHIFT_ARTIFACTS") or os.path.join(
            os.path.dirname(os.path.abspath(BIN)), "artifacts")
        self.outdir = os.path.join(artifacts, "dashboard")
        shutil.rmtree(self.outdir, ignore_errors=True)
        os.makedirs(self.outdir)

    def test_dashboard_in_chromium(self):
        # History for the pages to show: a failed run, a mapped run and two fanout runs.
        started = time.monotonic()
        runs = [("trigger_rules", self.api.trigger("trigger_rules")),
                ("pi_estimate", self.api.trigger("pi_estimate")),
                ("fanout_report", self.api.trigger("fanout_report", dag_run_id="warmup_1")),
                ("fanout_report", self.api.trigger("fanout_report", dag_run_id="warmup_2", conf={"note": "second"}))]
        for dag_id, run in runs:
            self.api.wait_run(dag_id, run["dag_run_id"], timeout=120)
        print(f"\n  seeded {len(runs)} runs in {time.monotonic() - started:.1f}s", file=sys.stderr)

        started = time.monotonic()
        result = subprocess.run([NODE, SCRIPT, self.ws.url, self.api.token, self.outdir],
                                cwd=BROWSER_DIR, capture_output=True, text=True, timeout=300)
        elapsed = time.monotonic() - started
        sys.stderr.write(result.stdout)
        sys.stderr.write(result.stderr)
        self.assertEqual(result.returncode, 0,
                         f"browser test failed after {elapsed:.1f}s (screenshots in {self.outdir}):\n"
                         f"{result.stdout}\n{result.stderr}\ndaemon log:\n{self.daemon.output()[-4000:]}")

        for name in ["dags.png", "dags-narrow.png", "dag.png", "run.png"]:
            path = os.path.join(self.outdir, name)
            self.assertTrue(os.path.isfile(path) and os.path.getsize(path) > 10_000, f"{name} was saved")

        # What the browser did is real: a manual run with the conf typed into the editor.
        _, page = get(self.ws.url + "/api/v1/dags/fanout_report/dagRuns?limit=100")
        manual = [r for r in page["dag_runs"] if r["dag_run_id"].startswith("manual__")]
        self.assertEqual(len(manual), 1, page)
        self.assertEqual(manual[0]["conf"], {"greeting": "<b>hello</b>"})
        # The run succeeded in the browser; after the UI's "clear with downstream" it ends either way.
        self.assertIn(manual[0]["state"], ("success", "failed"))
        tis = self.api.task_instances("fanout_report", manual[0]["dag_run_id"])
        self.assertEqual(tis["prepare"]["try_number"], 2, "the UI cleared prepare and downstream once")
        self.assertGreaterEqual(tis["report"]["try_number"], 2, "report ran again (a retry may follow)")
        _, dag = get(self.ws.url + "/api/v1/dags/nightly_etl")
        self.assertTrue(dag["is_paused"], "the UI paused nightly_etl")

        if os.environ.get("NIGHTSHIFT_UPDATE_SCREENSHOTS") == "1":
            docs = os.path.join(SOURCE_DIR, "docs", "screenshots")
            os.makedirs(docs, exist_ok=True)
            for name in ["dags.png", "dags-narrow.png", "dag.png", "run.png"]:
                shutil.copy(os.path.join(self.outdir, name), os.path.join(docs, name))
            print(f"  copied the screenshots to {docs}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
