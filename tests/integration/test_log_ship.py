"""Log shipping (log_ship_url; src/audit/logship.h) against a real HTTP
endpoint: a small receiver in this process (http.server on a free port)
stands for Loki or a JSON-lines collector, and can answer 500, 400, hang or
be absent.  What must hold: lines arrive in the endpoint's format; a failing
endpoint gets retries with growing delays and then everything; a 4xx is
sent once and never again; an absent endpoint blocks no request and the
queue stays within its bound; a stop flushes what is queued.  Sampling
under overload (warnings never sampled) is tests/unit/test_logship.c, where
the test can log warnings at will."""

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, unique_bucket, wait_until


class Receiver:
    """An HTTP endpoint recording every POST; mode: ok, fail (500), reject (400), hang."""

    def __init__(self, port=None, tls=None):
        self.port = port or free_port()
        self.scheme = "https" if tls else "http"
        self.posts = []           # (monotonic time, path, content type, body)
        self.mode = "ok"
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts.append((time.monotonic(), self.path, self.headers.get("Content-Type"), body))
                    mode = outer.mode
                if mode == "hang":
                    time.sleep(5)
                code = {"ok": 204, "fail": 500, "reject": 400, "hang": 204}[mode]
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if tls:   # (certificate, key): HTTPS
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/loki/api/v1/push"):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode

    def count(self):
        with self.lock:
            return len(self.posts)

    def loki_lines(self, accepted_only=True):
        """Every line of every Loki push received: (level label, ts ns, parsed line)."""
        out = []
        with self.lock:
            posts = list(self.posts)
        for _, _, ctype, body in posts:
            assert ctype == "application/json", ctype
            doc = json.loads(body)
            for stream in doc["streams"]:
                labels = stream["stream"]
                assert labels["job"] == "cairn" and labels["service"] in ("server", "gateway", "node"), labels
                for ts, line in stream["values"]:
                    rec = json.loads(line)
                    assert rec["level"] == labels["level"], (rec, labels)
                    out.append((labels["level"], int(ts), rec))
        return out


@pytest.fixture
def rx():
    """A receiver, closed after the test's servers stopped (it is set up
    before make_server, so torn down after it): their last lines land."""
    r = Receiver()
    yield r
    r.close()


def ship_env(receiver, **extra):
    env = {"CAIRN_LOG_SHIP_URL": receiver.url(), "CAIRN_LOG_SHIP_FLUSH_MS": "100"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def request_ids(lines):
    return {rec.get("request_id") for _, _, rec in lines if rec.get("msg") == "request"}


def test_every_line_reaches_a_loki_endpoint(rx, make_server):
    srv = make_server(env=ship_env(rx))
    bucket = unique_bucket("ship")
    assert srv.request("PUT", f"/{bucket}").status == 200
    sent = set()
    for i in range(30):
        r = srv.request("PUT", f"/{bucket}/k{i}", body=b"x" * i)
        assert r.status == 200
        sent.add(r.header("x-amz-request-id"))
    wait_until(lambda: sent <= request_ids(rx.loki_lines()), 20, what="every request's log line shipped")
    lines = rx.loki_lines()
    # The server's own start lines came too, and timestamps are nanoseconds of the line's time.
    assert any(rec["msg"] == "listening" for _, _, rec in lines)
    now_ns = time.time_ns()
    assert all(now_ns - 600 * 10**9 < ts <= now_ns + 10**9 for _, ts, _ in lines)
    m = srv.metrics()
    assert m["cairn_log_ship_lines_total"] >= len(lines) - 5  # the newest may be in flight
    assert m["cairn_log_ship_dropped_total"] == 0 and m["cairn_log_ship_rejected_lines_total"] == 0


def test_json_lines_format(rx, make_server):
    srv = make_server(env=ship_env(rx, CAIRN_LOG_SHIP_FORMAT="json"))
    r = srv.request("GET", "/")
    rid = r.header("x-amz-request-id")

    def shipped():
        with rx.lock:
            bodies = [(ctype, body) for _, _, ctype, body in rx.posts]
        recs = []
        for ctype, body in bodies:
            assert ctype == "application/x-ndjson"
            assert body.endswith(b"\n")
            recs += [json.loads(line) for line in body.decode().splitlines()]
        return any(rec.get("request_id") == rid for rec in recs)
    wait_until(shipped, 20, what="the request's line as JSON lines")


def test_a_failing_endpoint_gets_retries_with_growing_delays_then_everything(rx, make_server):
    rx.set_mode("fail")
    srv = make_server(env=ship_env(rx, CAIRN_LOG_SHIP_RETRY_MAX_MS=2000))
    bucket = unique_bucket("retry")
    assert srv.request("PUT", f"/{bucket}").status == 200
    rid = srv.request("PUT", f"/{bucket}/k", body=b"v").header("x-amz-request-id")
    wait_until(lambda: rx.count() >= 6, 30, what="six attempts at the failing endpoint")
    m = srv.metrics()
    assert m["cairn_log_ship_failures_total"] >= 3 and m["cairn_log_ship_retries_total"] >= 3
    assert m["cairn_log_ship_breaker_state"] == 1
    # Backoff: the attempts spread out (full jitter, so compare sums, not each gap).
    with rx.lock:
        times = [t for t, _, _, _ in rx.posts]
    early, late = times[1] - times[0], times[-1] - times[-4]
    assert late > early, f"no backoff between attempts: {times}"
    rx.set_mode("ok")
    wait_until(lambda: rid in request_ids(rx.loki_lines()), 30, what="the retried batch accepted")
    wait_until(lambda: srv.metrics()["cairn_log_ship_breaker_state"] == 0, 10, what="the breaker closed")
    assert srv.metrics()["cairn_log_ship_dropped_total"] == 0


def test_a_rejected_batch_is_sent_once(rx, make_server):
    rx.set_mode("reject")
    srv = make_server(env=ship_env(rx, CAIRN_LOG_SHIP_BATCH_LINES=100000, CAIRN_LOG_SHIP_FLUSH_MS=200))
    wait_until(lambda: rx.count() >= 1, 20, what="a first batch")
    wait_until(lambda: srv.metrics()["cairn_log_ship_rejected_lines_total"] >= 1, 10,
               what="the rejection counted")
    with rx.lock:
        bodies = [body for _, _, _, body in rx.posts]
    assert len(bodies) == len(set(bodies)), "a batch refused with 400 was sent again"
    assert srv.metrics()["cairn_log_ship_retries_total"] == 0


def test_an_absent_endpoint_blocks_no_request_and_the_queue_stays_bounded(make_server):
    port = free_port()  # nothing listens there (yet)
    bound = 64 * 1024
    srv = make_server(env={"CAIRN_LOG_SHIP_URL": f"http://127.0.0.1:{port}/loki/api/v1/push",
                           "CAIRN_LOG_SHIP_BUFFER_BYTES": str(bound), "CAIRN_LOG_SHIP_RETRY_MAX_MS": "500",
                           "CAIRN_LOG_SHIP_FLUSH_MS": "100"})
    bucket = unique_bucket("absent")
    assert srv.request("PUT", f"/{bucket}").status == 200
    for i in range(600):
        assert srv.request("PUT", f"/{bucket}/k{i}", body=b"v").status == 200
    m = srv.metrics()
    assert m["cairn_log_ship_queued_bytes"] <= bound
    assert m["cairn_log_ship_failures_total"] >= 1
    assert m["cairn_log_ship_dropped_total"] + m["cairn_log_ship_sampled_total"] > 0, \
        "600 request lines fit a 64 KiB queue: the bound was never tested"
    # The endpoint appears: what is queued gets there, and lines flow again.
    rx = Receiver(port)
    try:
        wait_until(lambda: srv.metrics()["cairn_log_ship_queued_lines"] < 5, 30,
                   what="the queue shipped once the endpoint is up")
        # A batch leaves the queue when it is taken, before its POST (and its
        # retries after backoff) lands: wait for the lines to arrive.
        wait_until(lambda: len(request_ids(rx.loki_lines())) > 50, 30,
                   what="more than 50 of the queued request lines received")
        last = srv.request("PUT", f"/{bucket}/last", body=b"v").header("x-amz-request-id")
        wait_until(lambda: last in request_ids(rx.loki_lines()), 30, what="a new line shipped")
        assert srv.stop() == 0
    finally:
        rx.close()


def test_a_stop_flushes_what_is_queued(rx, make_server):
    srv = make_server(env=ship_env(rx, CAIRN_LOG_SHIP_FLUSH_MS=600000, CAIRN_LOG_SHIP_BATCH_LINES=100000))
    rid = srv.request("GET", "/").header("x-amz-request-id")
    assert srv.stop() == 0
    lines = rx.loki_lines()
    assert rid in request_ids(lines), "a line queued at the stop was lost"


def test_an_https_endpoint_is_verified_against_tls_ca(tmp_path, make_server):
    """log_ship_url https:// with a private CA: tls_ca is what the shipper
    trusts (the same bundle that verifies storage nodes and audit_url)."""
    from test_tls import make_ca
    ca = make_ca(tmp_path / "pki", "cairn-logs")
    rx = Receiver(tls=(str(ca / "node.pem"), str(ca / "node.key")))
    try:
        srv = make_server(env={**ship_env(rx), "CAIRN_TLS_CA": str(ca / "ca.pem")})
        bucket = unique_bucket("tlsship")
        assert srv.request("PUT", f"/{bucket}", headers={"X-Request-Id": "tls-ship-" + bucket}).status == 200
        wait_until(lambda: "tls-ship-" + bucket in request_ids(rx.loki_lines()), 20, what="the line over https")
        srv.stop()
    finally:
        rx.close()


def test_a_storage_node_ships_its_lines_too(rx, tmp_path):
    """`cairn node` runs log shipping like a gateway (service "node"): its
    start and stop lines reach the endpoint, the last ones at SIGTERM."""
    import os
    import signal
    import subprocess
    from conftest import CAIRN_BIN
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_CLUSTER_SECRET": "node-ship-secret-0123456789", **ship_env(rx)})
    port = free_port()
    p = subprocess.Popen([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{port}", "--drives", str(tmp_path / "d")],
                         env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "node.log", "w"))
    try:
        wait_until(lambda: [r for lvl, _, r in rx.loki_lines() if r.get("msg") == "node listening"], 20,
                   what="the node's start line shipped")
        services = {stream["stream"]["service"] for _, _, _, body in rx.posts for stream in json.loads(body)["streams"]}
        assert services == {"node"}, services
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    msgs = [r.get("msg") for _, _, r in rx.loki_lines()]
    assert "node stopped" in msgs and "shutting down" in msgs, msgs
