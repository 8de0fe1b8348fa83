"""Hostile HTTP against the real daemon: traversal in every path parameter, oversized and
malformed requests, trigger floods, idle connections and token guessing. After each, the daemon
still answers and nothing it should not have done shows in its database.

NIGHTSHIFT_ABUSE_FULL=1 runs the trigger floods at their full size (10,000 POSTs each) instead
of 300.
"""
import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import unittest

from harness import Api, Daemon, Workspace, get, wait_for

FULL = os.environ.get("NIGHTSHIFT_ABUSE_FULL") == "1"
FLOOD = 10_000 if FULL else 300
SECRET = "nightshift-abuse-secret-5b1e"


class RawHttp:
    """One keep-alive connection sending exactly the bytes given (no client-side normalizing)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def send(self, method, target, headers=None, body=b""):
        """Returns (status, headers dict, body bytes)."""
        if isinstance(target, str):
            target = target.encode("latin-1")
        if isinstance(body, str):
            body = body.encode()
        lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
        for name, value in (headers or {}).items():
            lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")))
        if body or method in ("POST", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        return self.read_response()

    def read_response(self):
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before a response")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body


def one_request(port, method, target, headers=None, body=b""):
    conn = RawHttp(port)
    try:
        return conn.send(method, target, dict(headers or {}, Connection="close"), body)
    finally:
        conn.close()


class HttpAbuseTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = Workspace()
        # A file outside everything the daemon serves, reachable only by escaping.
        cls.ws.write("secret.txt", SECRET + "\n")
        cls.ws.write_dag("target.yaml", """
            tasks:
              - {task_id: hello, command: 'echo hello'}
        """)
        cls.ws.write_dag("flood.yaml", """
            tasks:
              - {task_id: t, command: 'true'}
        """)
        cls.daemon = Daemon(cls.ws).wait_healthy()
        cls.api = Api(cls.ws)
        cls.port = cls.ws.port
        cls.api.trigger("target", dag_run_id="r1")
        assert cls.api.wait_run("target", "r1")["state"] == "success"

    @classmethod
    def tearDownClass(cls):
        code = cls.daemon.stop()
        cls.ws.cleanup()
        assert code == 0, f"daemon exited {code}"

    def assert_json_error(self, status, body, codes):
        self.assertIn(status, codes, body[:300])
        error = json.loads(body)
        self.assertEqual(error["status"], status)
        self.assertTrue(error["title"])
        self.assertTrue(error["detail"])
        return error

    def assert_still_serving(self):
        status, body = get(self.ws.url + "/api/v1/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")

    def db_state(self):
        """What a request to DAG target could change, as comparable rows. (Runs other tests
        started move on meanwhile; the finished run r1 and the set of runs must not.)"""
        with contextlib.closing(sqlite3.connect(f"file:{self.ws.db}?mode=ro", uri=True)) as db:
            r1 = "SELECT id FROM dag_runs WHERE dag_id = 'target' AND run_id = 'r1'"
            return {
                "dags": db.execute("SELECT dag_id, is_paused FROM dags ORDER BY dag_id").fetchall(),
                "runs": db.execute("SELECT run_id FROM dag_runs WHERE dag_id = 'target' ORDER BY id").fetchall(),
                "r1": db.execute(f"SELECT state, end_date FROM dag_runs WHERE id = ({r1})").fetchall(),
                "tis": db.execute(f"SELECT id, state, try_number, max_tries FROM task_instances "
                                  f"WHERE run_pk = ({r1}) ORDER BY id").fetchall(),
                "tries": db.execute(f"SELECT t.id, t.state FROM task_tries t JOIN task_instances i ON t.ti_pk = i.id "
                                    f"WHERE i.run_pk = ({r1}) ORDER BY t.id").fetchall(),
            }

    # ---- traversal ----------------------------------------------------------------------------

    def test_traversal_in_every_path_parameter_is_refused(self):
        escapes = ["..", "%2e%2e", "%2E%2E", ".%2e", "..%2f..%2f..%2fsecret.txt", "%2e%2e%2f%2e%2e%2fsecret.txt",
                   "..%5c..%5csecret.txt", "%2fetc%2fpasswd", "%2F" + "%2F".join(self.ws.root.strip("/").split("/"))
                   + "%2Fsecret.txt", "..%00", "%00", "~%2f..", "....%2f%2f"]
        base = "/api/v1/dags/target/dagRuns/r1/taskInstances/hello"
        targets = []
        for e in escapes:
            targets += [f"/api/v1/dags/{e}", f"/api/v1/dags/{e}/dagRuns", f"/api/v1/dags/target/dagRuns/{e}",
                        f"/api/v1/dags/target/dagRuns/{e}/taskInstances",
                        f"/api/v1/dags/target/dagRuns/r1/taskInstances/{e}/tries",
                        f"/api/v1/dags/target/dagRuns/r1/taskInstances/{e}/logs/1",
                        f"{base}/logs/{e}", f"{base}/logs/1{e}", f"/static/{e}", f"/static/{e}/nightshift.yaml",
                        f"/static/{e}/state/api-token", f"/{e}/{e}/{e}/etc/passwd"]
        # Unencoded dot segments too, sent as is (no client normalizes them away here).
        targets += ["/static/../nightshift.yaml", "/static/../../secret.txt", "/../../../../etc/passwd",
                    f"{base}/logs/../../../../secret.txt", "/api/v1/dags/target/dagRuns/r1/../../../../secret.txt",
                    "/static//etc/passwd", "//etc/passwd", "/static/" + self.ws.root + "/secret.txt"]
        conn = RawHttp(self.port)
        try:
            for target in targets:
                with self.subTest(target=target):
                    status, headers, body = conn.send("GET", target)
                    self.assertIn(status, (400, 404), body[:200])
                    self.assertIn("json", headers.get("content-type", ""))
                    self.assertNotIn(SECRET.encode(), body)
                    self.assertNotIn(b"root:x:0:0", body)
                    self.assertNotIn(self.api.token.encode(), body)
        finally:
            conn.close()
        # The real log is still served: refusals did not come from a broken route.
        status, _, body = one_request(self.port, "GET", f"{base}/logs/1")
        self.assertEqual(status, 200)
        self.assertIn(b"hello", body)

    def test_traversal_in_trigger_bodies_is_refused(self):
        for run_id in ["..", "../../secret", "/etc/passwd", "a/b", "a\\b", "\u0000", "", "x" * 251]:
            with self.subTest(run_id=run_id):
                status, _, body = one_request(self.port, "POST", "/api/v1/dags/target/dagRuns",
                                              {**self.api.auth(), "Content-Type": "application/json"},
                                              json.dumps({"dag_run_id": run_id}))
                self.assert_json_error(status, body, (400,))

    # ---- sizes ----------------------------------------------------------------------------------

    def test_oversized_headers_get_431_and_the_daemon_goes_on(self):
        cases = {"one huge header": {"X-Big": "a" * 20_000},
                 "many headers": {f"X-H{i}": "b" * 100 for i in range(300)},
                 "huge target": None}
        for name, headers in cases.items():
            with self.subTest(name):
                target = "/api/v1/dags?" + "q=" + "c" * 20_000 if headers is None else "/api/v1/dags"
                status, _, body = one_request(self.port, "GET", target, headers)
                self.assert_json_error(status, body, (431,))
        self.assert_still_serving()

    def test_oversized_bodies_get_413_and_the_daemon_goes_on(self):
        big = json.dumps({"conf": {"x": "y" * (2 << 20)}})
        for auth in (self.api.auth(), {}):
            with self.subTest(authorized=bool(auth)):
                status, _, body = one_request(self.port, "POST", "/api/v1/dags/target/dagRuns",
                                              {**auth, "Content-Type": "application/json"}, big)
                self.assert_json_error(status, body, (413,))
        # Declared too big, nothing sent: refused from the header alone.
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn.sendall(b"POST /api/v1/dags/target/dagRuns HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        self.assertIn(b" 413 ", conn.recv(4096).split(b"\r\n")[0] + b" ")
        conn.close()
        self.assert_still_serving()

    # ---- malformed content ------------------------------------------------------------------------

    def test_malformed_bodies_get_a_clear_400(self):
        auth = {**self.api.auth(), "Content-Type": "application/json"}
        before = self.db_state()
        bodies = [b"{", b"[1,2", b"null", b'"text"', b"[]", b"42", b'{"dag_run_id": 5}', b'{"conf": []}',
                  b'{"dag_run_id": "ok", "dag_run_id": }', b'{"unknown": 1}', b"\xef\xbb\xbf{}garbage",
                  b'{"dag_run_id": "\xff\xfe"}', b'{"conf": {"k": "\xc3\x28"}}', b'{"conf": {"\xed\xa0\x80": 1}}',
                  b'{"dag_run_id": "\\ud800"}', b"\x00\x01\x02"]
        for body in bodies:
            with self.subTest(body=body):
                status, headers, text = one_request(self.port, "POST", "/api/v1/dags/target/dagRuns", auth, body)
                error = self.assert_json_error(status, text, (400,))
                self.assertIn("application/json", headers["content-type"])
                json.loads(text.decode("utf-8"))  # the error itself is valid UTF-8 JSON
                self.assertGreater(len(error["detail"]), 10)
        for target, method in [("/api/v1/dags/target", "PATCH"), ("/api/v1/dags/target/dagRuns/r1", "PATCH"),
                               ("/api/v1/dags/target/dagRuns/r1/taskInstances/hello", "PATCH"),
                               ("/api/v1/dags/target/dagRuns/r1/taskInstances/hello/clear", "POST")]:
            for body in (b"{", b'{"state": "\xff"}', b"[]"):
                with self.subTest(target=target, body=body):
                    status, _, text = one_request(self.port, method, target, auth, body)
                    self.assert_json_error(status, text, (400,))
        self.assertEqual(self.db_state(), before)

    def test_bodies_that_say_they_are_not_json_get_415(self):
        before = self.db_state()
        for ctype in ("text/plain", "application/xml", "multipart/form-data; boundary=x", "image/png"):
            with self.subTest(ctype=ctype):
                status, _, text = one_request(self.port, "POST", "/api/v1/dags/target/dagRuns",
                                              {**self.api.auth(), "Content-Type": ctype}, b'{"dag_run_id": "ct"}')
                error = self.assert_json_error(status, text, (415,))
                self.assertIn("application/json", error["detail"])
        self.assertEqual(self.db_state(), before)
        # What curl -d sends (form-urlencoded) and no type at all are still read as JSON.
        for run_id, headers in (("ct-form", {"Content-Type": "application/x-www-form-urlencoded"}),
                                ("ct-none", {}), ("ct-json", {"Content-Type": "application/json; charset=utf-8"})):
            status, _, text = one_request(self.port, "POST", "/api/v1/dags/target/dagRuns",
                                          {**self.api.auth(), **headers}, json.dumps({"dag_run_id": run_id}))
            self.assertEqual(status, 200, text)

    def test_invalid_utf8_and_control_bytes_in_paths_get_400_or_404(self):
        conn = RawHttp(self.port)
        try:
            for target in [b"/api/v1/dags/%ff%fe", b"/api/v1/dags/target/dagRuns/%c3%28",
                           b"/api/v1/dags/target/dagRuns/r1/taskInstances/%ed%a0%80/tries",
                           b"/api/v1/dags/\xff\xfe", b"/api/v1/dags/target/dagRuns/r1%0d%0aX-Injected:%201",
                           b"/api/v1/dags/%00"]:
                with self.subTest(target=target):
                    try:
                        status, headers, body = conn.send("GET", target)
                    except ConnectionError:
                        conn.close()
                        conn = RawHttp(self.port)
                        self.fail("connection dropped without an answer")
                    self.assert_json_error(status, body, (400, 404))
                    self.assertNotIn("x-injected", headers)
                    json.loads(body.decode("utf-8"))
                    if headers.get("connection", "").lower() == "close":
                        conn.close()
                        conn = RawHttp(self.port)
        finally:
            conn.close()
        self.assert_still_serving()

    def test_garbage_instead_of_http_gets_400_or_a_close(self):
        for garbage in [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, b"GET\r\n\r\n",
                        b"GET / HTTP/9.9\r\n\r\n", b"G\x00T / HTTP/1.1\r\n\r\n",
                        b"POST /api/v1/dags/target/dagRuns HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                        b"POST /api/v1/dags/target/dagRuns HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]:
            with self.subTest(garbage=garbage[:20]):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                s.sendall(garbage)
                s.shutdown(socket.SHUT_WR)
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
                s.close()
                if reply:
                    self.assertRegex(reply.split(b"\r\n")[0], rb"^HTTP/1\.[01] 400 ")
        self.assert_still_serving()

    # ---- floods -------------------------------------------------------------------------------------

    def count_runs(self, dag_id, run_id=None):
        with contextlib.closing(sqlite3.connect(f"file:{self.ws.db}?mode=ro", uri=True)) as db:
            if run_id is None:
                return db.execute("SELECT COUNT(*) FROM dag_runs WHERE dag_id = ?", (dag_id,)).fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM dag_runs WHERE dag_id = ? AND run_id = ?",
                              (dag_id, run_id)).fetchone()[0]

    def flood(self, n, run_id_of, threads=4):
        """n trigger POSTs of DAG flood over `threads` keep-alive connections; status -> count."""
        counts = {}
        lock = threading.Lock()
        auth = {**self.api.auth(), "Content-Type": "application/json"}

        def worker(indices):
            conn = RawHttp(self.port, timeout=60)
            try:
                for i in indices:
                    status, _, _ = conn.send("POST", "/api/v1/dags/flood/dagRuns", auth,
                                             json.dumps({"dag_run_id": run_id_of(i)}))
                    with lock:
                        counts[status] = counts.get(status, 0) + 1
            finally:
                conn.close()

        started = time.monotonic()
        pool = [threading.Thread(target=worker, args=(range(t, n, threads),)) for t in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return counts, time.monotonic() - started

    def test_a_flood_of_triggers_with_one_run_id_creates_exactly_one_run(self):
        counts, seconds = self.flood(FLOOD, lambda i: "same-id")
        print(f"\n{FLOOD} triggers with one run_id over 4 connections: {counts} in {seconds:.1f} s "
              f"({FLOOD / seconds:.0f}/s)")
        self.assertEqual(counts.get(200), 1, counts)
        self.assertEqual(counts.get(409), FLOOD - 1, counts)
        self.assertEqual(self.count_runs("flood", "same-id"), 1)
        self.assert_still_serving()

    def test_a_flood_of_triggers_with_distinct_run_ids_creates_one_run_per_success(self):
        before = self.count_runs("flood")
        counts, seconds = self.flood(FLOOD, lambda i: f"many-{i}")
        print(f"\n{FLOOD} triggers with distinct run_ids over 4 connections: {counts} in {seconds:.1f} s "
              f"({FLOOD / seconds:.0f}/s)")
        self.assertEqual(set(counts), {200}, counts)
        self.assertEqual(self.count_runs("flood") - before, counts[200])
        self.assert_still_serving()

    def test_idle_connections_do_not_keep_others_from_being_served(self):
        idle = []
        try:
            for i in range(200):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                if i % 2:
                    s.sendall(b"GET /api/v1/dags HTTP/1.1\r\nHost: x\r\n")  # half a request, never finished
                idle.append(s)
            worst = 0.0
            for _ in range(20):
                started = time.monotonic()
                status, body = get(self.ws.url + "/api/v1/dags/target")
                worst = max(worst, time.monotonic() - started)
                self.assertEqual(status, 200)
            print(f"\nwith 200 idle connections open, the slowest of 20 GETs took {worst * 1000:.1f} ms")
            self.assertLess(worst, 2.0)
        finally:
            for s in idle:
                s.close()
        self.assert_still_serving()

    def test_a_thousand_wrong_tokens_get_401_and_change_nothing(self):
        # (A trailing space or tab after the token is not a wrong token: HTTP strips it.)
        before = self.db_state()
        token = self.api.token
        wrong = ["", "Bearer", "Bearer ", f"Bearer {token[:-1]}", f"Bearer {token}x", f"bearer {token}",
                 f"Bearer  {token}", f"Basic {token}", f"Bearer {token.upper()}", f"Bearer {token[1:]}",
                 "Bearer " + "A" * len(token)]
        changes = [("POST", "/api/v1/dags/target/dagRuns", b'{"dag_run_id": "guess"}'),
                   ("PATCH", "/api/v1/dags/target", b'{"is_paused": true}'),
                   ("PATCH", "/api/v1/dags/target/dagRuns/r1", b'{"state": "failed"}'),
                   ("PATCH", "/api/v1/dags/target/dagRuns/r1/taskInstances/hello", b'{"state": "failed"}'),
                   ("POST", "/api/v1/dags/target/dagRuns/r1/taskInstances/hello/clear", b"{}")]
        conn = RawHttp(self.port)
        statuses = {}
        try:
            for i in range(1000):
                method, target, body = changes[i % len(changes)]
                headers = {"Content-Type": "application/json"}
                if wrong[i % len(wrong)]:
                    headers["Authorization"] = wrong[i % len(wrong)]
                status, _, text = conn.send(method, target, headers, body)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 401:
                    self.fail(f"{method} {target} with {headers.get('Authorization')!r}: {status} {text[:200]}")
        finally:
            conn.close()
        self.assertEqual(statuses, {401: 1000})
        self.assertEqual(self.db_state(), before)


if __name__ == "__main__":
    unittest.main()
