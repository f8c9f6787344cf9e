"""The audit store (docs/audit.md): a real `cairn audit-server` and a real
`cairn server` (which serves the same API embedded), on SQLite or on
PostgreSQL (--metadata), driven over HTTP with SigV4 as an audit client
would: batches stored once whatever the retries, bad events named by index
and field with nothing stored, size bounds, every filter, the cursor over
more than a page, who may call it, retention through the job queue, and
`cairn admin audit query` locally and against a server."""

import http.client
import json
import secrets
import subprocess
import time

import pytest

import sigv4
from conftest import CAIRN_BIN, free_port, server_env, unique_name, wait_until

PATH = "/audit/v1/events"


@pytest.fixture
def make_audit(make_audit_server):
    return make_audit_server


@pytest.fixture
def store(make_audit):
    return make_audit()


# ---- helpers ---------------------------------------------------------------------------


def event(n=0, **fields):
    e = {"event_id": secrets.token_hex(16), "time": "2026-11-30T17:41:02.%06dZ" % (n % 1000000),
         "request_id": f"req-{n}", "correlation_id": "corr", "principal": "AKIAEXAMPLE", "user": "alice",
         "source_address": "127.0.0.1", "action": "s3:PutObject", "bucket": "photos", "key": f"k/{n}",
         "version_id": "v1", "outcome": "success", "status": 200, "error_code": "", "bytes_in": n,
         "bytes_out": 0, "duration_us": 1234}
    e.update(fields)
    return e


def post(srv, body, creds=None, anonymous=False, raw=False):
    data = body if raw else json.dumps(body).encode()
    return srv.request("POST", PATH, body=data, creds=creds, anonymous=anonymous,
                       headers={"Content-Type": "application/json"})


def get(srv, creds=None, anonymous=False, **params):
    return srv.request("GET", PATH, query={k: str(v) for k, v in params.items()}, creds=creds, anonymous=anonymous)


def body(r):
    return json.loads(r.body)


def query_all(srv, **params):
    """Every event the filters select, following the cursor."""
    out, cursor, pages = [], None, 0
    while True:
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        r = get(srv, **p)
        assert r.status == 200, r.body
        doc = body(r)
        out += doc["events"]
        pages += 1
        cursor = doc.get("next_cursor")
        if not cursor:
            return out, pages


def audit_user(srv, grant=True):
    name = unique_name("aud")
    args = ["user", "create", name] + (["--audit"] if grant else [])
    cp = srv.admin(*args)
    return name, (cp.fields["access_key_id"], cp.fields["secret_access_key"])


# ---- POST ----------------------------------------------------------------------------------


def test_a_batch_is_stored_and_read_back_field_for_field(store):
    evs = [event(i, correlation_id="rt") for i in range(3)]
    r = post(store, {"events": evs})
    assert r.status == 200, r.body
    assert body(r) == {"accepted": 3, "duplicates": 0}
    got, _ = query_all(store, correlation_id="rt")
    assert got == sorted(evs, key=lambda e: (e["time"], e["event_id"]))
    # A bare array is a batch too.
    r = post(store, [event(9, correlation_id="rt")])
    assert r.status == 200 and body(r)["accepted"] == 1


def test_a_retried_batch_is_never_duplicated(store):
    evs = [event(i, correlation_id="retry") for i in range(5)]
    assert body(post(store, {"events": evs})) == {"accepted": 5, "duplicates": 0}
    assert body(post(store, {"events": evs})) == {"accepted": 0, "duplicates": 5}
    more = evs[3:] + [event(7, correlation_id="retry")]
    assert body(post(store, {"events": more})) == {"accepted": 1, "duplicates": 2}
    got, _ = query_all(store, correlation_id="retry")
    assert len(got) == 6
    assert len({e["event_id"] for e in got}) == 6


def test_the_same_batch_from_eight_clients_at_once_is_stored_once(store):
    from concurrent.futures import ThreadPoolExecutor
    evs = [event(i, correlation_id="race") for i in range(200)]
    batches = [evs[(k * 25) % 200:] + evs[:(k * 25) % 200] for k in range(8)]  # the same events, rotated
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: post(store, {"events": b}), batches))
    assert all(r.status == 200 for r in answers), [r.body for r in answers]
    docs = [body(r) for r in answers]
    assert sum(d["accepted"] for d in docs) == 200, docs
    assert all(d["accepted"] + d["duplicates"] == 200 for d in docs)
    got, _ = query_all(store, correlation_id="race", limit=1000)
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e in evs)


@pytest.mark.parametrize("index,change,field", [
    (3, {"status": 600}, "status"),
    (0, {"event_id": "ABC"}, "event_id"),
    (2, {"time": "yesterday"}, "time"),
    (4, {"outcome": "fine"}, "outcome"),
    (1, {"colour": "red"}, "colour"),
    (3, {"key": "k" * 3073}, "key"),
    (3, {"bytes_in": -5}, "bytes_in"),
    (2, {"principal": ""}, "principal"),
])
def test_a_bad_event_is_named_by_index_and_field_and_nothing_is_stored(store, index, change, field):
    corr = unique_name("bad")
    evs = [event(i, correlation_id=corr) for i in range(5)]
    evs[index].update(change)
    r = post(store, {"events": evs})
    assert r.status == 400, r.body
    doc = body(r)
    assert doc["error"] == "invalid event"
    assert doc["index"] == index and doc["field"] == field, doc
    assert doc["reason"]
    got, _ = query_all(store, correlation_id=corr)
    assert got == [], "nothing of a refused batch is stored"


def test_a_missing_required_field_is_named(store):
    e = event(1)
    del e["correlation_id"]
    r = post(store, {"events": [event(0), e]})
    assert r.status == 400 and body(r)["index"] == 1 and body(r)["field"] == "correlation_id"


@pytest.mark.parametrize("raw", [b"", b"not json", b"{}", b"{\"events\":3}", b"{\"evnts\":[]}", b"[1]"])
def test_a_body_that_is_not_a_batch_is_400(store, raw):
    r = post(store, raw, raw=True)
    assert r.status == 400, r.body
    assert body(r)["error"] in ("invalid batch", "invalid event")


def test_over_the_bounds_is_413_and_nothing_is_stored(make_audit):
    srv = make_audit(env={"CAIRN_AUDIT_MAX_BATCH_BYTES": "4MiB"})
    # More events than a batch may hold (each small, the body under the byte bound).
    evs = [{"event_id": "%032x" % i, "time": "2026-11-30T00:00:00Z", "request_id": "r", "correlation_id": "big",
            "principal": "p", "action": "a", "outcome": "success", "status": 200} for i in range(10001)]
    r = post(srv, {"events": evs})
    assert r.status == 413, r.body[:200]
    assert body(r)["error"] == "batch too large"
    assert query_all(srv, correlation_id="big")[0] == []
    # 10000 is allowed.
    r = post(srv, {"events": evs[:10000]})
    assert r.status == 200 and body(r)["accepted"] == 10000
    # A body over the byte bound: by Content-Length before it is read...
    huge = json.dumps({"events": [event(i, correlation_id="huge", key="x" * 1000) for i in range(4200)]}).encode()
    assert len(huge) > 4 * 1024 * 1024
    r = post(srv, huge, raw=True)
    assert r.status == 413 and body(r)["error"] == "EntityTooLarge"
    # ...and chunked, while it is read.
    host = f"127.0.0.1:{srv.port}"
    headers, _, _ = sigv4.sign_request("POST", PATH, None, {"Host": host}, srv.root[0], srv.root[1],
                                       "UNSIGNED-PAYLOAD")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("POST", PATH, body=iter([huge[i:i + 65536] for i in range(0, len(huge), 65536)]),
                     headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before all was sent: also a refusal
    finally:
        conn.close()
    assert query_all(srv, correlation_id="huge")[0] == []
    assert srv.alive()


def test_a_signed_body_must_match_its_hash(store):
    data = json.dumps([event(1)]).encode()
    r = store.request("POST", PATH, body=data, payload_hash="0" * 64)
    assert r.status == 400 and body(r)["error"] == "XAmzContentSHA256Mismatch"
    r = store.request("POST", PATH, body=data, payload_hash="UNSIGNED-PAYLOAD")
    assert r.status == 200, r.body


# ---- GET -----------------------------------------------------------------------------------


def test_every_filter(store):
    c = unique_name("f")
    evs = [
        event(1, correlation_id=c, principal="AK1", user="alice", bucket="b1", key="photos/a", outcome="success",
              action="s3:PutObject", time="2026-01-01T00:00:01Z"),
        event(2, correlation_id=c, principal="AK2", user="bob", bucket="b1", key="photos/b", outcome="error",
              status=404, error_code="NoSuchKey", action="s3:GetObject", time="2026-01-01T00:00:02Z"),
        event(3, correlation_id=c, principal="anonymous", user="", bucket="b2", key="docs/x", outcome="denied",
              status=403, action="s3:GetObject", time="2026-01-01T00:00:03Z"),
        event(4, correlation_id=c, principal="AK3", user="AK1", bucket="b2", key="photos", outcome="success",
              action="s3:ListBucket", time="2026-01-01T00:00:04Z"),
        event(5, correlation_id=c + "-other", principal="AK1", user="alice", bucket="b1", key="photos/c",
              time="2026-01-01T00:00:05Z"),
    ]
    assert post(store, {"events": evs}).status == 200

    def ids(**params):
        return [int(e["request_id"].split("-")[1]) for e in query_all(store, **params)[0]]

    assert ids(correlation_id=c) == [1, 2, 3, 4]
    assert ids(request_id="req-3") == [3]
    assert ids(correlation_id=c, principal="AK1") == [1, 4], "principal matches the principal or the user"
    assert ids(principal="bob") == [2]
    assert ids(correlation_id=c, action="s3:GetObject") == [2, 3]
    assert ids(correlation_id=c, bucket="b2") == [3, 4]
    assert ids(correlation_id=c, key_prefix="photos/") == [1, 2]
    assert ids(correlation_id=c, key_prefix="photos") == [1, 2, 4]
    assert ids(correlation_id=c, outcome="denied") == [3]
    assert ids(correlation_id=c, outcome="error") == [2]
    assert ids(correlation_id=c, **{"from": "2026-01-01T00:00:02Z", "to": "2026-01-01T00:00:04Z"}) == [2, 3]
    assert ids(correlation_id=c, **{"from": "2026-01-01T01:00:02+01:00"}) == [2, 3, 4], "an offset is UTC"
    assert ids(bucket="b1", principal="AK1", outcome="success") == [1, 5]
    assert ids(correlation_id="nothing-like-it") == []


def test_the_cursor_walks_more_than_a_page_in_order(store):
    c = unique_name("page")
    evs = [event(i, correlation_id=c, time="2026-05-05T05:05:%02d.%06dZ" % (i % 7, i)) for i in range(2500)]
    for i in range(0, 2500, 1000):
        assert body(post(store, {"events": evs[i:i + 1000]}))["accepted"] == len(evs[i:i + 1000])
    got, pages = query_all(store, correlation_id=c, limit=1000)
    assert pages == 3
    want = sorted(evs, key=lambda e: (e["time"], e["event_id"]))
    assert [e["event_id"] for e in got] == [e["event_id"] for e in want]
    # The default page is 100; the last page has no next_cursor.
    r = body(get(store, correlation_id=c))
    assert len(r["events"]) == 100 and "next_cursor" in r
    got, pages = query_all(store, correlation_id=c, limit=999)
    assert len(got) == 2500 and pages == 3
    first = body(get(store, correlation_id=c, limit=1000))
    second = body(get(store, correlation_id=c, limit=1000, cursor=first["next_cursor"]))
    last = body(get(store, correlation_id=c, limit=1000, cursor=second["next_cursor"]))
    assert len(last["events"]) == 500 and "next_cursor" not in last
    assert [e["event_id"] for e in first["events"] + second["events"] + last["events"]] == \
        [e["event_id"] for e in want]


@pytest.mark.parametrize("params,why", [
    ({"limit": "1001"}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "A" * 31 + "+"}, "cursor"),
    ({"from": "yesterday"}, "from"), ({"to": "2026-13-01T00:00:00Z"}, "to"),
    ({"outcome": "fine"}, "outcome"), ({"colour": "red"}, "colour"), ({"bucket": "b" * 257}, "bucket"),
])
def test_bad_query_parameters_are_400(store, params, why):
    r = get(store, **params)
    assert r.status == 400, r.body
    assert why in body(r)["reason"]


def test_other_paths_and_methods(store):
    r = store.request("DELETE", PATH)
    assert r.status == 405
    r = store.request("GET", "/audit/v1/other")
    assert r.status == 404
    r = store.get_url("GET", "/health/ready")
    assert r.status == 200


# ---- who may ------------------------------------------------------------------------------


def test_only_root_and_users_with_the_audit_right(store):
    assert post(store, [event(1)], anonymous=True).status == 403
    assert get(store, anonymous=True).status == 403
    assert body(get(store, anonymous=True))["error"] == "AccessDenied"
    name, plain = audit_user(store, grant=False)
    r = post(store, [event(2)], creds=plain)
    assert r.status == 403 and "audit right" in body(r)["reason"]
    assert get(store, creds=plain).status == 403
    _, auditor = audit_user(store, grant=True)
    assert post(store, [event(3)], creds=auditor).status == 200
    assert get(store, creds=auditor).status == 200
    # Granted and revoked by name, effective at once.
    store.admin("user", "audit", name, "--grant")
    assert get(store, creds=plain).status == 200
    store.admin("user", "audit", name, "--revoke")
    assert get(store, creds=plain).status == 403
    listed = store.admin("user", "list").stdout
    assert any(line.endswith(" audit") for line in listed.splitlines())
    # A wrong secret is refused as S3 refuses it.
    r = get(store, creds=(auditor[0], "x" * 40))
    assert r.status == 403 and body(r)["error"] == "SignatureDoesNotMatch"
    # Presigned GETs work too.
    host = f"127.0.0.1:{store.port}"
    q = sigv4.presign("GET", host, PATH, auditor[0], auditor[1], 300, extra_query={"correlation_id": "corr"})
    r = store.get_url("GET", PATH + "?" + q)
    assert r.status == 200, r.body
    assert store.admin("user", "audit", "nobody", "--grant", check=False).returncode == 1


# ---- embedded in cairn server ----------------------------------------------------------


def test_cairn_server_serves_the_same_api_beside_s3(make_server):
    srv = make_server(env={"CAIRN_AUDIT_RETENTION_DAYS": "0"})
    evs = [event(i, correlation_id="embedded") for i in range(3)]
    r = post(srv, {"events": evs})
    assert r.status == 200 and body(r) == {"accepted": 3, "duplicates": 0}
    assert len(query_all(srv, correlation_id="embedded")[0]) == 3
    assert post(srv, [event(1)], anonymous=True).status == 403
    # S3 is untouched, including a bucket named "audit" outside /audit/v1/.
    s3 = srv.client()
    s3.create_bucket(Bucket="audit")
    s3.put_object(Bucket="audit", Key="v2/x", Body=b"hello")
    assert s3.get_object(Bucket="audit", Key="v2/x")["Body"].read() == b"hello"
    m = srv.metrics()
    assert m.get("cairn_audit_store_events_accepted_total") == 3


# ---- the store's own requests are audit events ------------------------------------------


def own(srv, method, corr, creds=None, anonymous=False, path=PATH, body_=b"", query=None):
    """A request to the store tagged with its own correlation id."""
    return srv.request(method, path, body=body_, creds=creds, anonymous=anonymous, query=query,
                       headers={"X-Correlation-Id": corr, "Content-Type": "application/json"})


def own_events(srv, corr):
    return query_all(srv, correlation_id=corr)[0]


def test_the_audit_servers_own_requests_are_recorded_at_once(store):
    """audit-server has no journal: each request's event goes straight into
    its database before the answer (queryable as soon as it is answered)."""
    tag = unique_name("own")
    doc = json.dumps({"events": [event(1, correlation_id=tag + "-batch")]}).encode()
    r = own(store, "POST", tag + "-post", body_=doc)
    assert r.status == 200, r.body
    [e] = own_events(store, tag + "-post")
    assert e["action"] == "audit:PostEvents" and e["status"] == 200 and e["outcome"] == "success", e
    assert e["principal"] == store.root[0] and e["user"] == store.root[0], e
    assert e["bytes_in"] == len(doc) and e["source_address"] == "127.0.0.1", e
    assert e["request_id"] == r.header("x-amz-request-id") or e["request_id"], e
    assert len(own_events(store, tag + "-batch")) == 1
    # A query, then an auditor (a user with the audit right) querying.
    assert own(store, "GET", tag + "-get", query={"bucket": "none"}).status == 200
    [e] = own_events(store, tag + "-get")
    assert e["action"] == "audit:QueryEvents" and e["status"] == 200 and e["bytes_out"] > 0, e
    name, auditor = audit_user(store)
    assert own(store, "GET", tag + "-auditor", creds=auditor).status == 200
    [e] = own_events(store, tag + "-auditor")
    assert e["principal"] == auditor[0] and e["user"] == name, e


def test_refused_audit_api_requests_are_recorded_as_denied_or_error(store):
    tag = unique_name("own")
    assert own(store, "GET", tag + "-anon", anonymous=True).status == 403
    [e] = own_events(store, tag + "-anon")
    assert (e["action"], e["principal"], e["user"], e["outcome"], e["status"], e["error_code"]) == \
        ("audit:QueryEvents", "anonymous", "", "denied", 403, "AccessDenied"), e
    r = own(store, "POST", tag + "-badsig", creds=(store.root[0], "x" * 40), body_=b"[]")
    assert r.status == 403
    [e] = own_events(store, tag + "-badsig")
    assert (e["action"], e["principal"], e["user"], e["outcome"], e["error_code"]) == \
        ("audit:PostEvents", store.root[0], "", "denied", "SignatureDoesNotMatch"), e
    name, plain = audit_user(store, grant=False)
    assert own(store, "GET", tag + "-noright", creds=plain).status == 403
    [e] = own_events(store, tag + "-noright")
    assert e["principal"] == plain[0] and e["outcome"] == "denied", e
    assert own(store, "POST", tag + "-bad", body_=b'{"events":[{"event_id":"x"}]}').status == 400
    [e] = own_events(store, tag + "-bad")
    assert (e["action"], e["outcome"], e["status"], e["error_code"]) == \
        ("audit:PostEvents", "error", 400, "invalid event"), e
    assert own(store, "DELETE", tag + "-method").status == 405
    assert own(store, "GET", tag + "-path", path="/audit/v1/other").status == 404
    assert own_events(store, tag + "-method")[0]["action"] == "audit:Unknown"
    assert own_events(store, tag + "-path")[0]["status"] == 404


def test_the_audit_servers_operator_endpoints_are_not_recorded(store):
    tag = unique_name("own")
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert store.get_url("GET", path, headers={"X-Correlation-Id": tag}).status == 200
    assert own(store, "GET", tag + "-after").status == 200
    assert own_events(store, tag + "-after")        # recorded synchronously: the check below is not early
    assert own_events(store, tag) == []
    assert store.metrics().get("cairn_audit_events_lost_total", 0) == 0


def test_audit_server_with_audit_off_records_nothing_of_its_own(make_audit):
    srv = make_audit(env={"CAIRN_AUDIT_ENABLED": "false"})
    tag = unique_name("own")
    assert own(srv, "POST", tag, body_=json.dumps([event(1, correlation_id=tag + "-b")]).encode()).status == 200
    assert len(own_events(srv, tag + "-b")) == 1
    assert own_events(srv, tag) == []


@pytest.mark.sqlite_only("holds the SQLite write lock from another process")
def test_a_query_whose_event_cannot_be_recorded_is_503(make_audit):
    """Reads go on under another writer (WAL), the event's insert cannot:
    the answer is 503 SlowDown, not results without their event."""
    import sqlite3
    srv = make_audit()
    tag = unique_name("own")
    db = sqlite3.connect(str(srv.data_dir / "audit.db"), timeout=5, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        r = own(srv, "GET", tag)
        assert r.status == 503, r.body
        assert body(r)["error"] == "SlowDown" and r.header("Retry-After") == "1"
        assert "audit event not recorded: answering 503" in srv.log_text()
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert own(srv, "GET", tag + "-again").status == 200
    assert own_events(srv, tag + "-again")


def test_the_embedded_stores_requests_go_through_the_journal(make_server):
    srv = make_server(env={"CAIRN_AUDIT_RETENTION_DAYS": "0", "CAIRN_AUDIT_FLUSH_INTERVAL": "100"})
    tag = unique_name("own")
    assert own(srv, "POST", tag + "-post", body_=json.dumps([event(1)]).encode()).status == 200
    assert own(srv, "GET", tag + "-get", anonymous=True).status == 403
    got = wait_until(lambda: len(own_events(srv, tag + "-post")) == 1 and own_events(srv, tag + "-get"), 20,
                     what="the store requests' events shipped")
    assert got
    [post_ev] = own_events(srv, tag + "-post")
    assert post_ev["action"] == "audit:PostEvents" and post_ev["principal"] == srv.root[0], post_ev
    [get_ev] = own_events(srv, tag + "-get")
    assert get_ev["outcome"] == "denied" and get_ev["principal"] == "anonymous", get_ev
    cp = srv.admin("audit", "journal-dump", "--all")
    assert tag + "-post" in cp.stdout


# ---- retention ------------------------------------------------------------------------------


def test_retention_deletes_old_events_through_the_job_queue(make_audit):
    srv = make_audit(env={"CAIRN_AUDIT_RETENTION_DAYS": "1", "CAIRN_JOB_PERIOD_S": "1"})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    old = [event(i, correlation_id="ret", time="2020-01-01T00:00:%02dZ" % i) for i in range(5)]
    new = [event(10, correlation_id="ret", time=now)]
    assert post(srv, {"events": old + new}).status == 200

    def only_new():
        return [e["event_id"] for e in query_all(srv, correlation_id="ret")[0]] == [new[0]["event_id"]]

    wait_until(only_new, 30, interval=0.2, what="retention to delete the old events")
    assert "audit events past their retention deleted" in srv.current_log()


def test_retention_zero_keeps_everything(make_audit):
    srv = make_audit(env={"CAIRN_AUDIT_RETENTION_DAYS": "0", "CAIRN_JOB_PERIOD_S": "1"})
    assert post(srv, [event(1, correlation_id="keep", time="2020-01-01T00:00:00Z")]).status == 200

    def completed_runs():
        return [line for line in srv.admin("jobs", "list", "--kind", "audit_retention").stdout.splitlines()
                if " completed " in line]

    # The periodic job runs (and deletes nothing) period after period.
    wait_until(lambda: len(completed_runs()) >= 2, 30, interval=0.2, what="two audit_retention runs")
    assert len(query_all(srv, correlation_id="keep")[0]) == 1


def test_the_audit_server_schedules_only_its_own_jobs_and_prunes_them(make_audit):
    srv = make_audit(env={"CAIRN_JOB_PERIOD_S": "1", "CAIRN_JOB_RETENTION_S": "1"})

    def kinds():
        return {line.split()[1] for line in srv.admin("jobs", "list").stdout.splitlines() if line.strip()}

    def pruned():
        # prune_jobs ran and deleted an audit_retention run finished over a second before
        return "pruned finished jobs" in srv.current_log()

    wait_until(pruned, 30, interval=0.2, what="prune_jobs to delete finished audit_retention runs")
    assert kinds() <= {"audit_retention", "prune_jobs"}, kinds()
    assert "no handler for job kind" not in srv.current_log()


def test_a_job_of_a_kind_it_cannot_run_is_left_for_those_that_can(make_audit):
    """The audit-server sharing its database with gateways (whose jobs it
    has no handler for) must not claim and fail them: claims take only the
    kinds the process runs."""
    srv = make_audit(env={"CAIRN_JOB_PERIOD_S": "1"})
    heal_id = srv.admin("jobs", "enqueue", "heal", '{"version_id":"v"}', "--max-attempts", "1").stdout.split()[0]
    prune_id = srv.admin("jobs", "enqueue", "prune_jobs").stdout.split()[0]
    assert int(prune_id) > int(heal_id)

    def lines():
        return [line.split() for line in srv.admin("jobs", "list").stdout.splitlines() if line.strip()]

    # The prune_jobs enqueued after the heal job has run: the queue has been
    # claiming past the heal job, which must still be waiting, untried.
    wait_until(lambda: [l for l in lines() if l[0] == prune_id and l[2] == "completed"], 30, interval=0.2,
               what="the prune_jobs run enqueued after the heal job")
    heal = [l for l in lines() if l[1] == "heal"]
    assert len(heal) == 1 and heal[0][2] == "available", heal
    assert "no handler for job kind" not in srv.current_log()


# ---- cairn admin audit query -------------------------------------------------------------


def test_admin_audit_query_locally_and_remotely(store):
    c = unique_name("cli")
    evs = [event(i, correlation_id=c, bucket="b%d" % (i % 2), time="2026-03-03T03:03:03.%06dZ" % i)
           for i in range(1200)]
    assert post(store, {"events": evs[:600]}).status == 200
    assert post(store, {"events": evs[600:]}).status == 200
    local = store.admin("audit", "query", "--correlation-id", c).stdout.splitlines()
    assert [json.loads(x)["event_id"] for x in local] == [e["event_id"] for e in evs]
    assert json.loads(local[0]) == evs[0]
    env = server_env({**store.meta_env(), "CAIRN_ROOT_USER": store.root[0], "CAIRN_ROOT_PASSWORD": store.root[1]})
    url = f"http://127.0.0.1:{store.port}"
    cp = subprocess.run([CAIRN_BIN, "admin", "audit", "query", "--correlation-id", c, "--url", url],
                        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines() == local, "the same lines both ways"
    cp = subprocess.run([CAIRN_BIN, "admin", "audit", "query", "--correlation-id", c, "--bucket", "b1",
                         "--limit", "7", "--url", url], capture_output=True, text=True, timeout=60, env=env,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    assert [json.loads(x)["event_id"] for x in cp.stdout.splitlines()] == [e["event_id"] for e in evs[1:15:2]]
    # Remote with credentials that may not.
    _, plain = audit_user(store, grant=False)
    cp = subprocess.run([CAIRN_BIN, "admin", "audit", "query", "--url", url, "--access-key", plain[0],
                         "--secret-key", plain[1]], capture_output=True, text=True, timeout=60,
                        env=server_env(), stdin=subprocess.DEVNULL)
    assert cp.returncode == 1 and "403" in cp.stderr
    # The remote query is recorded by the server it asked (with its signer).
    assert [e for e in query_all(store, principal=plain[0])[0] if e["action"] == "audit:QueryEvents"]
    # URLs the command does not take, and a server that is not there.
    for bad in ("ftp://127.0.0.1:1", "http://", "http://127.0.0.1:1/some/path", "127.0.0.1:1", "http://[::1:5"):
        cp = subprocess.run([CAIRN_BIN, "admin", "audit", "query", "--url", bad], capture_output=True, text=True,
                            timeout=60, env=env, stdin=subprocess.DEVNULL)
        assert cp.returncode == 2 and "--url must be" in cp.stderr, (bad, cp.stderr)
    cp = subprocess.run([CAIRN_BIN, "admin", "audit", "query", "--url", f"http://127.0.0.1:{free_port()}/"],
                        capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert cp.returncode == 1 and "cannot connect" in cp.stderr, cp.stderr
    cp = store.admin("audit", "query", "--outcome", "fine", check=False)
    assert cp.returncode == 2
    cp = store.admin("audit", "query", "--from", "noon", check=False)
    assert cp.returncode == 2


def test_metrics_count_what_the_store_did(store):
    evs = [event(i) for i in range(4)]
    post(store, {"events": evs})
    post(store, {"events": evs})
    post(store, {"events": [event(1, status=42)]})
    get(store)
    m = store.metrics()
    assert m["cairn_audit_store_events_accepted_total"] == 4
    assert m["cairn_audit_store_events_duplicate_total"] == 4
    assert m["cairn_audit_store_batches_rejected_total"] == 1
    assert m["cairn_audit_store_queries_total"] >= 1


def test_virtual_host_requests_keep_every_key(make_server):
    srv = make_server(env={"CAIRN_DOMAIN": "s3.test"})
    bucket = unique_name("vh").lower()
    assert srv.request("PUT", f"/{bucket}").status == 200
    host = f"{bucket}.s3.test:{srv.port}"
    r = srv.request("PUT", PATH, body=b"an object, not a batch", host=host)
    assert r.status == 200, r.body
    r = srv.request("GET", PATH, host=host)
    assert r.status == 200 and r.body == b"an object, not a batch"
    # Path style, the same path is the store's.
    assert body(get(srv))["events"] == []


def test_cairn_gateway_serves_the_api_too(tmp_path):
    from conftest import _started_servers
    from test_cluster import SECRET, Gateway, Node
    nodes = [Node(tmp_path / "node0", 0)]
    _started_servers.extend(nodes)
    gw = None
    try:
        for n in nodes:
            n.start()
        gw = Gateway(tmp_path / "gateway", nodes, {"CAIRN_CLUSTER_SECRET": SECRET, "CAIRN_EC_DATA": "1",
                                                   "CAIRN_EC_PARITY": "0", "CAIRN_EC_BLOCK_SIZE": "4KiB",
                                                   "CAIRN_AUDIT_RETENTION_DAYS": "0"})
        _started_servers.append(gw)
        gw.start()
        evs = [event(i, correlation_id="gw") for i in range(4)]
        assert body(post(gw, {"events": evs})) == {"accepted": 4, "duplicates": 0}
        assert body(post(gw, {"events": evs})) == {"accepted": 0, "duplicates": 4}
        assert [e["event_id"] for e in query_all(gw, correlation_id="gw")[0]] == \
            [e["event_id"] for e in sorted(evs, key=lambda e: (e["time"], e["event_id"]))]
        assert get(gw, anonymous=True).status == 403
        assert gw.stop() == 0
    finally:
        if gw is not None and gw.alive():
            gw.kill()
        for n in nodes:
            n.kill9()


# ---- the database in trouble ------------------------------------------------------------


@pytest.mark.sqlite_only("holds the SQLite write lock from another process")
def test_a_busy_database_is_503_with_retry_after_and_the_retry_lands(make_audit):
    import sqlite3
    srv = make_audit()
    doc = {"events": [event(i, correlation_id="busy") for i in range(3)]}
    db = sqlite3.connect(str(srv.data_dir / "audit.db"), timeout=5, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        r = post(srv, doc)
        assert r.status == 503, r.body
        assert r.header("Retry-After") == "1"
        assert body(r)["error"] == "SlowDown"
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert query_all(srv, correlation_id="busy")[0] == []
    assert body(post(srv, doc)) == {"accepted": 3, "duplicates": 0}


@pytest.mark.sqlite_only("drops a table in the SQLite file under the server")
def test_a_database_that_refuses_is_500_not_a_crash(make_audit):
    import sqlite3
    srv = make_audit()
    db = sqlite3.connect(str(srv.data_dir / "audit.db"), timeout=5, isolation_level=None)
    db.execute("DROP TABLE audit_events")
    db.close()
    r = post(srv, [event(1)])
    assert r.status == 500 and body(r)["error"] == "InternalError", r.body
    r = get(srv)
    assert r.status == 500 and body(r)["error"] == "InternalError", r.body
    assert srv.alive()


def test_s3_requests_beside_the_store_still_leave_their_journal_events(make_server):
    """The embedded store sits in front of the S3 pipeline: the pipeline's
    reply callback (which journals every S3 request's event) must still
    run for S3 requests, and never for the store's own."""
    srv = make_server(env={"CAIRN_AUDIT_RETENTION_DAYS": "0"})
    bucket = unique_name("jr").lower()
    r = srv.request("PUT", f"/{bucket}", headers={"X-Request-Id": "s3-put-" + bucket})
    assert r.status == 200
    assert post(srv, [event(1)]).status == 200

    def dumped():
        cp = srv.admin("audit", "journal-dump", "--all")
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    evs = wait_until(lambda: [e for e in dumped() if e["bucket"] == bucket] or None, 10,
                     what="the CreateBucket event in the journal")
    assert evs[0]["action"] == "s3:CreateBucket" and evs[0]["status"] == 200
    assert not [e for e in dumped() if e["action"].startswith("s3:Unknown") and "audit" in e.get("key", "")]


def test_admin_commands_leave_their_own_events(make_server):
    """Every `cairn admin` command that opens the database records one event
    (action admin:WordWord, principal admin, source local) before it exits,
    failures included."""
    srv = make_server()
    name = unique_name("adm")
    srv.admin("user", "create", name, check=True)
    cp = srv.admin("key", "revoke", "AKNOSUCHKEY000000000", check=False)
    assert cp.returncode == 1
    srv.admin("bucket", "list", check=True)
    lines = srv.admin("audit", "query", "--principal", "admin").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    by_action = {}
    for e in events:
        by_action.setdefault(e["action"], []).append(e)
    assert set(by_action) >= {"admin:UserCreate", "admin:KeyRevoke", "admin:BucketList"}, by_action.keys()
    made = by_action["admin:UserCreate"][0]
    assert made["outcome"] == "success" and made["status"] == 200 and made["source_address"] == "local"
    assert made["request_id"] == made["correlation_id"] and len(made["event_id"]) == 32
    failed = by_action["admin:KeyRevoke"][0]
    assert failed["outcome"] == "error" and failed["status"] == 500


# ---- where the events are kept (audit_metadata_url) ---------------------------------------------


def sqlite_count(path, where="1"):
    import sqlite3
    db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
    try:
        return db.execute(f"SELECT count(*) FROM audit_events WHERE {where}").fetchone()[0]
    finally:
        db.close()


@pytest.mark.sqlite_only("looks into the data directory's SQLite files")
def test_events_live_in_audit_db_never_in_the_metadata_database(make_server):
    srv = make_server(env={"CAIRN_AUDIT_RETENTION_DAYS": "0"})
    s3 = srv.client()
    b = unique_name("sep")
    s3.create_bucket(Bucket=b)
    for i in range(5):
        s3.put_object(Bucket=b, Key=f"k{i}", Body=b"x")
    # The shipper's events (S3 requests) and an admin command's event.
    wait_until(lambda: len(query_all(srv, bucket=b)[0]) >= 6, 30, what="the bucket's events in the store")
    srv.admin("user", "list")
    audit_db = srv.data_dir / "audit.db"
    assert sqlite_count(audit_db, f"bucket = '{b}'") >= 6
    assert sqlite_count(audit_db, "action = 'admin:UserList'") >= 1
    assert sqlite_count(srv.data_dir / "meta.db") == 0, "an event went into the metadata database"
    # The local query reads the same database.
    lines = srv.admin("audit", "query", "--bucket", b).stdout.splitlines()
    assert len(lines) >= 6 and all(json.loads(x)["bucket"] == b for x in lines)


def test_audit_metadata_url_names_another_database(make_server, tmp_path):
    """Any metadata URL: on SQLite a file of its own, on PostgreSQL (the
    --metadata=postgres pass) a SQLite file too, which works beside it."""
    where = tmp_path / "elsewhere" / "events.db"
    where.parent.mkdir()
    srv = make_server(env={"CAIRN_AUDIT_RETENTION_DAYS": "0", "CAIRN_AUDIT_METADATA_URL": f"sqlite://{where}"})
    evs = [event(i, correlation_id="moved") for i in range(4)]
    assert body(post(srv, {"events": evs})) == {"accepted": 4, "duplicates": 0}
    assert [e["event_id"] for e in query_all(srv, correlation_id="moved")[0]] == [e["event_id"] for e in evs]
    assert sqlite_count(where, "correlation_id = 'moved'") == 4
    assert not (srv.data_dir / "audit.db").exists()
    srv.admin("bucket", "list")
    assert sqlite_count(where, "action = 'admin:BucketList'") == 1
    out = srv.admin("audit", "query", "--correlation-id", "moved").stdout.splitlines()
    assert [json.loads(x)["event_id"] for x in out] == [e["event_id"] for e in evs]


def test_an_audit_database_that_cannot_be_opened_stops_the_start(make_server, tmp_path):
    bad = tmp_path / "a-directory.db"
    bad.mkdir()
    srv = make_server(env={"CAIRN_AUDIT_METADATA_URL": f"sqlite://{bad}"}, start=False)
    proc = srv.spawn()
    assert proc.wait(timeout=30) != 0
    assert f"cairn: cannot open the audit database: {bad}" in srv.log_tail(), srv.log_tail()
    # An admin command that cannot record its event fails, and says why.
    cp = srv.admin("user", "list", check=False)
    assert cp.returncode == 1 and "cannot open the audit database" in cp.stderr, cp.stderr
