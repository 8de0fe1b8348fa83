"""`nightshift dags validate` on good and bad folders, as a user runs it from the repo root."""
import os
import unittest

from harness import SOURCE_DIR, Workspace, run


class ValidateTest(unittest.TestCase):
    def test_bad_folder_prints_one_error_per_problem_and_exits_1(self):
        result = run(["dags", "validate", "tests/testdata/bad_dags"], cwd=SOURCE_DIR)
        with open(os.path.join(SOURCE_DIR, "tests/testdata/bad_dags/EXPECTED.txt")) as f:
            expected = [line for line in f.read().splitlines() if line.strip()]
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertEqual(result.stdout.splitlines(), expected)

    def test_examples_are_valid(self):
        result = run(["dags", "validate", "--config", "examples/nightshift.yaml", "examples/dags"], cwd=SOURCE_DIR)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertRegex(result.stderr, r"\d+ DAGs OK")

    def test_default_folder_comes_from_the_config(self):
        ws = Workspace()
        self.addCleanup(ws.cleanup)
        ws.write_dag("a.yaml", """
            tasks:
              - task_id: one
                command: "true"
        """)
        result = run(["dags", "validate", "--config", ws.config], cwd=ws.root)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        ws.write_dag("b.yaml", """
            tasks:
              - task_id: one
                command: "true"
                retries: three
        """)
        result = run(["dags", "validate", "--config", ws.config], cwd=ws.root)
        self.assertEqual(result.returncode, 1)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 1, result.stdout)
        self.assertTrue(lines[0].startswith(os.path.join(ws.dags, "b.yaml") + ":5:"), lines[0])
        self.assertIn("retries", lines[0])

    def test_window_and_pool_are_checked_against_the_config(self):
        ws = Workspace("""
            pools: {db: 2}
            windows:
              nightly:
                timezone: UTC
                open: ["22:00-06:00"]
        """)
        self.addCleanup(ws.cleanup)
        path = ws.write_dag("w.yaml", """
            window: nightly
            tasks:
              - task_id: load
                command: "true"
                pool: db
        """)
        result = run(["dags", "validate", "--config", ws.config, path])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        # The same file against a config without them fails on both.
        bare = Workspace()
        self.addCleanup(bare.cleanup)
        result = run(["dags", "validate", "--config", bare.config, path])
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{path}:2:9: window: unknown window \"nightly\"", result.stdout)
        self.assertIn(f"{path}:6:11: pool: unknown pool \"db\"", result.stdout)

    def test_missing_path_is_an_error(self):
        result = run(["dags", "validate", "/nonexistent/dags"])
        self.assertEqual(result.returncode, 1)
        self.assertIn("/nonexistent/dags", result.stdout)


if __name__ == "__main__":
    unittest.main()
