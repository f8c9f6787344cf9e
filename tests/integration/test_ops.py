"""Operations: health endpoints, Prometheus metrics, request ids, the access
log, secrets kept out of logs, `cairn config check`, root credential
generation and reuse, and configuration errors that stop the server.
"""

import http.client
import json
import os
import re
import stat
import subprocess
import uuid

import pytest

import sigv4
from conftest import (CAIRN_BIN, free_port, server_env, unique_bucket, wait_until, xml_text)


def http_get(srv, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# ---- health -------------------------------------------------------------------------------


def test_health_live(server):
    status, headers, body = http_get(server, "/health/live")
    assert status == 200
    assert headers.get("Content-Type", "").startswith("application/json")
    assert json.loads(body)["status"] == "ok"


def test_health_ready(server):
    status, _headers, body = http_get(server, "/health/ready")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["status"] == "ok"
    for check in ("database", "data_dir", "disk"):
        assert doc["checks"][check]["status"] == "ok", doc


def test_health_ready_fails_when_disk_is_short(make_server):
    # more free space required than any disk has: readiness fails, liveness does not
    srv = make_server(env={"CAIRN_MIN_FREE_DISK": str(2 ** 62)})
    status, _h, body = http_get(srv, "/health/ready")
    assert status == 503, body
    doc = json.loads(body)
    assert doc["status"] == "fail"
    assert doc["checks"]["disk"]["status"] == "fail"
    assert doc["checks"]["database"]["status"] == "ok"
    status, _h, _b = http_get(srv, "/health/live")
    assert status == 200


def test_health_needs_no_auth_and_ignores_bad_auth(server):
    status, _h, _b = http_get(server, "/health/live",
                              headers={"Authorization": "AWS4-HMAC-SHA256 garbage"})
    assert status == 200


# ---- metrics ----------------------------------------------------------------------------------


# Label values may hold '}' (and escaped quotes), so braces are matched per value.
METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)')


def scrape(srv):
    status, headers, body = http_get(srv, "/metrics")
    assert status == 200
    assert headers.get("Content-Type", "").startswith("text/plain")
    samples = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = m.group(2) or ""
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, body.decode()


def find(samples, name, **labels):
    """Sum of the samples of `name` whose labels include all of `labels`."""
    total, found = 0.0, False
    for (n, lab), v in samples.items():
        if n != name:
            continue
        if all(f'{k}="{val}"' in lab for k, val in labels.items()):
            total += v
            found = True
    return total if found else None


def test_metrics_names_present(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="m", Body=b"x")
    samples, text = scrape(server)
    for name in ("cairn_http_requests_total", "cairn_http_request_duration_seconds_bucket",
                 "cairn_http_request_duration_seconds_sum",
                 "cairn_http_request_duration_seconds_count", "cairn_http_received_bytes_total",
                 "cairn_http_sent_bytes_total", "cairn_http_requests_in_flight",
                 "process_resident_memory_bytes", "process_open_fds"):
        assert any(n == name for n, _ in samples), f"{name} missing from /metrics"
    assert "# TYPE cairn_http_requests_total counter" in text
    assert "# TYPE cairn_http_request_duration_seconds histogram" in text
    assert find(samples, "process_resident_memory_bytes") > 1024 * 1024
    assert find(samples, "process_open_fds") >= 3


def test_metrics_change_after_requests(server, s3, bucket):
    before, _ = scrape(server)
    body = b"z" * 5000
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
    s3.get_object(Bucket=bucket, Key="k0")["Body"].read()
    with pytest.raises(Exception):
        s3.get_object(Bucket=bucket, Key="absent")
    after, text = scrape(server)

    def delta(name, **labels):
        return (find(after, name, **labels) or 0) - (find(before, name, **labels) or 0)

    assert delta("cairn_http_requests_total", api="PutObject", code="200") >= 3
    assert delta("cairn_http_requests_total", api="GetObject", code="200") >= 1
    assert delta("cairn_http_requests_total", api="GetObject", code="404") >= 1
    assert delta("cairn_http_request_duration_seconds_count", api="PutObject") >= 3
    assert delta("cairn_http_request_duration_seconds_sum", api="PutObject") > 0
    assert delta("cairn_http_received_bytes_total") >= 3 * 5000
    assert delta("cairn_http_sent_bytes_total") >= 5000
    # histogram consistency: the +Inf bucket equals the count
    inf = find(after, "cairn_http_request_duration_seconds_bucket", api="PutObject", le="+Inf")
    count = find(after, "cairn_http_request_duration_seconds_count", api="PutObject")
    assert inf == count
    assert 'api="PutObject",code="200"' in text or 'code="200",api="PutObject"' in text


def test_metrics_in_flight_counts_an_open_upload(server, bucket):
    from conftest import open_put
    before = find(scrape(server)[0], "cairn_http_requests_in_flight") or 0
    sock = open_put(server, bucket, "inflight", 1024 * 1024)
    try:
        sock.sendall(b"x" * 1000)
        wait_until(lambda: (find(scrape(server)[0], "cairn_http_requests_in_flight") or 0)
                   >= before + 1, 5, what="in-flight gauge to count the open upload")
    finally:
        sock.close()


# ---- request ids ------------------------------------------------------------------------------


def test_every_response_has_request_id(server, bucket):
    responses = [
        server.request("GET", "/" + bucket, query={"list-type": "2"}),
        server.request("GET", sigv4.object_path(bucket, "missing")),
        server.request("GET", "/", anonymous=True),
        server.request("HEAD", "/" + unique_bucket("nx")),
        server.request("PUT", "/BadName"),
    ]
    ids = [r.header("x-amz-request-id") for r in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids), "request ids are unique"


def test_request_id_echo_and_access_log(server, bucket):
    rid = "itest-" + uuid.uuid4().hex
    body = b"logged body"
    r = server.request("PUT", sigv4.object_path(bucket, "logged"), body=body,
                       headers={"X-Request-Id": rid})
    assert r.status == 200
    assert r.header("x-amz-request-id") == rid
    rid2 = "itest-" + uuid.uuid4().hex
    r = server.request("GET", sigv4.object_path(bucket, "nothing-here"), headers={"X-Request-Id": rid2})
    assert r.status == 404
    assert r.header("x-amz-request-id") == rid2
    assert xml_text(r.xml(), "RequestId") == rid2

    def line_for(request_id):
        for rec in server.log_records():
            if rec.get("request_id") == request_id and rec.get("msg") == "request":
                return rec
        return None

    rec = wait_until(lambda: line_for(rid), 5, what="access log line")
    for key in ("msg", "method", "path", "status", "bytes_in", "bytes_out", "duration_ms",
                "principal", "request_id", "ts", "level"):
        assert key in rec, f"access log line lacks {key}: {rec}"
    assert rec["method"] == "PUT"
    assert rec["path"].startswith(f"/{bucket}/logged")
    assert str(rec["status"]) == "200"
    assert int(rec["bytes_in"]) == len(body)
    assert float(rec["duration_ms"]) >= 0
    assert rec["principal"], "the authenticated principal is logged"
    rec2 = wait_until(lambda: line_for(rid2), 5, what="access log line")
    assert str(rec2["status"]) == "404"
    assert int(rec2["bytes_out"]) > 0
    # exactly one access log line per request
    assert sum(1 for x in server.log_records()
               if x.get("request_id") == rid and x.get("msg") == "request") == 1


def test_hostile_request_id_is_not_echoed_raw(server):
    # a request id with CR/LF must never split the response or a log line
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("GET", "/health/live")
    conn.putheader("X-Request-Id", "abc\x01def")
    conn.endheaders()
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status in (200, 400)
    assert "\x01" not in (resp.getheader("x-amz-request-id") or "")
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            json.loads(line)  # every log line is still valid JSON


# ---- secrets out of logs ---------------------------------------------------------------------


def test_no_secrets_in_logs(make_server):
    srv = make_server(env={"CAIRN_LOG_LEVEL": "debug"})
    s3 = srv.client()
    sent_auth = []

    def record(request, **_kw):
        sent_auth.append(request.headers.get("Authorization"))

    s3.meta.events.register("before-send.s3", record)
    name = unique_bucket("sec")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="a", Body=b"abc")
    s3.get_object(Bucket=name, Key="a")["Body"].read()
    s3.list_objects_v2(Bucket=name)
    user = srv.create_user()
    uc = srv.client(user.access_key, user.secret)
    uc.list_buckets()
    bad = srv.client(user.access_key, user.secret[::-1])
    with pytest.raises(Exception):
        bad.list_buckets()
    # a raw request with a wrong signature, and a chunked streaming upload
    r = srv.request("GET", "/" + name, creds=(srv.root[0], "wrong-secret-" + "x" * 20))
    assert r.status == 403
    url = s3.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "a"})
    from urllib.parse import urlsplit
    u = urlsplit(url)
    assert srv.get_url("GET", u.path + "?" + u.query).status == 200
    srv.stop()
    text = srv.log_text() + "".join(p.read_text() for p in srv.stdout_paths if p.exists())
    assert text.strip(), "the server wrote no log at all"
    for secret in (srv.root[1], user.secret, user.secret[::-1]):
        assert secret not in text, "a secret key appears in the server's output"
    for auth in filter(None, sent_auth):
        auth = auth.decode() if isinstance(auth, bytes) else auth
        assert auth not in text, "an Authorization header appears in the log"
        sig = auth.rsplit("Signature=", 1)[1]
        assert sig not in text, "a request signature appears in the log"
    assert "wrong-secret-" not in text


# ---- config check ----------------------------------------------------------------------------


def run_cairn(*args, env=None, timeout=30):
    return subprocess.run([CAIRN_BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=server_env(env), stdin=subprocess.DEVNULL)


def test_config_check_valid(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("listen: 127.0.0.1:9999\nregion: us-east-1\nlog_level: info\n"
                   "max_object_size: 1GiB\nconnection_timeout: 30\nfsync: true\n")
    cp = run_cairn("config", "check", str(cfg))
    assert cp.returncode == 0, cp.stderr


def test_config_check_reports_every_problem(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("bogus_option: 1\nlog_level: loud\nmax_object_size: banana\n"
                   "listen: 127.0.0.1:9999\nanother_unknown: x\nconnection_timeout: -5\n")
    cp = run_cairn("config", "check", str(cfg))
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    for key in ("bogus_option", "log_level", "max_object_size", "another_unknown",
                "connection_timeout"):
        assert key in cp.stderr, f"{key} not named in: {cp.stderr}"


def test_config_check_missing_file(tmp_path):
    cp = run_cairn("config", "check", str(tmp_path / "nope.yaml"))
    assert cp.returncode == 2
    assert cp.stderr.strip()


def test_config_check_not_a_mapping(tmp_path):
    cfg = tmp_path / "list.yaml"
    cfg.write_text("- a\n- b\n")
    cp = run_cairn("config", "check", str(cfg))
    assert cp.returncode == 2


# ---- configuration errors stop the server ----------------------------------------------------------


def server_must_exit(tmp_path, args=(), env=None, deadline=8):
    """Starts `cairn server` expecting it to refuse to run; returns
    (exit code, stderr).  A server that keeps running is killed and fails the test."""
    cmd = [CAIRN_BIN, "server", "--listen", f"127.0.0.1:{free_port()}",
           "--data", str(tmp_path / "d"), *args]
    base = {"CAIRN_ROOT_USER": "rootuser", "CAIRN_ROOT_PASSWORD": "rootpassword123"}
    base.update(env or {})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=server_env(base), stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"cairn server started instead of refusing the configuration\n{err[-2000:]}")
    return proc.returncode, err


def test_unknown_env_option_stops_server(tmp_path):
    code, err = server_must_exit(tmp_path, env={"CAIRN_NO_SUCH_OPTION": "1"})
    assert code == 2, (code, err)
    assert "CAIRN_NO_SUCH_OPTION" in err or "no_such_option" in err.lower()


def test_unknown_key_in_config_file_stops_server(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("region: us-east-1\nno_such_key: 5\n")
    code, err = server_must_exit(tmp_path, args=["--config", str(cfg)])
    assert code == 2, (code, err)
    assert "no_such_key" in err


def test_cairn_config_env_names_the_file(tmp_path):
    # src/cmd/cmd.h: configuration comes from --config "(or CAIRN_CONFIG)"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("region: us-east-1\nno_such_key: 5\n")
    code, err = server_must_exit(tmp_path, env={"CAIRN_CONFIG": str(cfg)})
    assert code == 2, (code, err)
    assert "no_such_key" in err


def test_invalid_env_value_stops_server(tmp_path):
    code, err = server_must_exit(tmp_path, env={"CAIRN_MAX_OBJECT_SIZE": "banana"})
    assert code == 2, (code, err)
    assert "max_object_size" in err.lower()


def test_cairn_bin_in_env_does_not_stop_server(make_server):
    # `make test-integration` exports CAIRN_BIN; a server that inherits it must start
    srv = make_server(env={"CAIRN_BIN": CAIRN_BIN})
    assert srv.alive()


# ---- root credentials ------------------------------------------------------------------------


def parse_creds_file(path):
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def test_root_credentials_generated_and_reused(make_server):
    srv = make_server(root=None)
    cred_file = srv.data_dir / "root-credentials"
    assert cred_file.exists()
    mode = stat.S_IMODE(os.stat(cred_file).st_mode)
    assert mode == 0o600, oct(mode)
    creds = parse_creds_file(cred_file)
    ak, sk = creds["CAIRN_ROOT_USER"], creds["CAIRN_ROOT_PASSWORD"]
    assert len(ak) >= 8 and len(sk) >= 20
    wait_until(lambda: sk in srv.stdout_text(), 5, what="the generated secret on stdout")
    assert ak in srv.stdout_text()
    assert sk not in srv.log_text(), "the generated secret must not be in the JSON log"

    c = srv.client(ak, sk)
    name = unique_bucket("gen")
    c.create_bucket(Bucket=name)
    c.put_object(Bucket=name, Key="k", Body=b"v")

    assert srv.stop() == 0
    srv.start()
    assert parse_creds_file(cred_file) == creds, "a second start reuses the same pair"
    assert stat.S_IMODE(os.stat(cred_file).st_mode) == 0o600
    assert sk not in srv.stdout_text(), "a second start does not print the secret again"
    c = srv.client(ak, sk)
    assert c.get_object(Bucket=name, Key="k")["Body"].read() == b"v"


def test_env_root_credentials_take_effect(make_server):
    srv = make_server(root=("envrootkey", "envrootsecret-1234567890"))
    c = srv.client("envrootkey", "envrootsecret-1234567890")
    assert c.list_buckets()["Buckets"] == []
    assert "envrootsecret-1234567890" not in srv.stdout_text()
    assert "envrootsecret-1234567890" not in srv.log_text()


def test_clean_shutdown_exit_code(make_server):
    srv = make_server()
    srv.client().list_buckets()
    assert srv.stop() == 0


@pytest.mark.sqlite_only("hangs the database by holding the SQLite write lock from another process")
def test_ready_times_out_when_the_database_hangs(make_server):
    # Another process holds the SQLite write lock, so the readiness write probe
    # blocks (up to the 5 s busy timeout); readiness must answer within its own
    # deadline, say the database timed out, and recover when the lock goes.
    import sqlite3
    import time as _time
    srv = make_server(env={"CAIRN_HEALTH_TIMEOUT_MS": "300", "CAIRN_HEALTH_MAX_AGE_MS": "0"})
    status, _h, _b = http_get(srv, "/health/ready")
    assert status == 200
    db = sqlite3.connect(str(srv.data_dir / "meta.db"), timeout=5, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        status, _h, body = http_get(srv, "/health/ready")
        doc = json.loads(body)
        assert status == 503, body
        assert doc["checks"]["database"]["status"] == "fail"
        # only the deadline produces this detail (a 5 s busy wait would say "not answering")
        assert doc["checks"]["database"]["detail"] == "timed out"
    finally:
        db.execute("ROLLBACK")
        db.close()
    deadline = _time.monotonic() + 10
    while _time.monotonic() < deadline:
        status, _h, _b = http_get(srv, "/health/ready")
        if status == 200:
            break
        _time.sleep(0.2)
    assert status == 200


# A sample line of the text exposition format, label values with their escapes.
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
STRICT_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
                           r'(\{[a-zA-Z_][a-zA-Z0-9_]*=' + LABEL_VALUE +
                           r'(,[a-zA-Z_][a-zA-Z0-9_]*=' + LABEL_VALUE + r')*\})? \S+$')


def test_metrics_escape_label_values(server):
    # Job kinds are operator input; one with a quote, a backslash, a newline
    # and a brace must still give parseable exposition text.
    kind = 'we"ird\\kind\nx}'
    server.admin("jobs", "enqueue", kind, "{}", "--max-attempts", "1")
    status, _h, body = http_get(server, "/metrics")
    assert status == 200
    text = body.decode()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert STRICT_SAMPLE.match(line), f"not a valid sample line: {line!r}"
    escaped = kind.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    assert f'cairn_jobs{{kind="{escaped}",' in text


def thread_count(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.mark.deadline(120)
@pytest.mark.sqlite_only("hangs the database by holding the SQLite write lock from another process")
def test_ready_polled_hard_while_the_database_hangs_costs_no_threads(make_server):
    # Unauthenticated and cheap to send: each /health/ready once started two
    # threads, and with a hung database they piled up.  Now one checker runs
    # the checks and requests wait on its result, within the deadline.
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor
    srv = make_server(env={"CAIRN_HEALTH_TIMEOUT_MS": "200", "CAIRN_HEALTH_MAX_AGE_MS": "0"})
    assert http_get(srv, "/health/ready")[0] == 200
    before = thread_count(srv.proc.pid)
    db = sqlite3.connect(str(srv.data_dir / "meta.db"), timeout=5, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: http_get(srv, "/health/ready")[0], range(160)))
        assert set(statuses) == {503}
        # A connection's thread ends with it; allow for a few still closing.
        assert thread_count(srv.proc.pid) <= before + 12, (before, thread_count(srv.proc.pid))
    finally:
        db.execute("ROLLBACK")
        db.close()
    wait_until(lambda: http_get(srv, "/health/ready")[0] == 200, 15, what="readiness to recover")


@pytest.mark.sqlite_only("hangs the database by holding the SQLite write lock from another process")
def test_ready_answers_from_a_recent_result(make_server):
    # Within health_max_age_ms the last result answers: a database locked just
    # after a good check does not show until the result is older.
    import sqlite3
    srv = make_server(env={"CAIRN_HEALTH_TIMEOUT_MS": "200", "CAIRN_HEALTH_MAX_AGE_MS": "60000"})
    assert http_get(srv, "/health/ready")[0] == 200
    db = sqlite3.connect(str(srv.data_dir / "meta.db"), timeout=5, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        assert http_get(srv, "/health/ready")[0] == 200
    finally:
        db.execute("ROLLBACK")
        db.close()
