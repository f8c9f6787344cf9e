"""The audit journal seen from outside: every S3 request a real server
answers leaves exactly one event in its journal, read back with
`cairn admin audit journal-dump` (docs/audit.md).

- every S3 API the gateway serves, with its IAM action, status, outcome and
  S3 error code, including anonymous denials, bad signatures, NoSuchBucket,
  NoSuchKey, routes we do not serve and requests the HTTP server refuses
  before routing; X-Correlation-Id is carried (and a hostile one ignored);
- kill -9 during a PUT load: every acknowledged PUT's event is in the
  journal; the journal survives the restart and appends go on;
- a full journal (the age bound reached) refuses requests 503 SlowDown with
  Retry-After under the reject policy, and spools under the spool policy;
  the lost counter stays 0.

Requests carry their own X-Request-Id (the server honours it), so each
test finds its events by request id in a journal other tests share.
"""

import json
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import CAIRN_BIN, unique_bucket, wait_until


# The shipper sends nothing for an hour (unless 10,000 events are ready):
# the journal keeps what these tests fill it with.
HOLD = {"CAIRN_AUDIT_FLUSH_INTERVAL": "3600000", "CAIRN_AUDIT_BATCH_SIZE": "10000"}


def journal(srv, all_=True):
    args = ["audit", "journal-dump"] + (["--all"] if all_ else [])
    cp = srv.admin(*args)
    return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]


def rid():
    return "t" + uuid.uuid4().hex[:24]


def events_for(srv, request_id, deadline=10):
    """The events with this request id, once there is at least one (a
    read's event is durable within audit_sync_ms: poll)."""
    found = []

    def have():
        found[:] = [e for e in journal(srv) if e["request_id"] == request_id]
        return found

    wait_until(have, deadline, what=f"audit event of {request_id}")
    return found


FIELDS = {"event_id", "time", "request_id", "correlation_id", "principal", "user", "source_address", "action",
          "bucket", "key", "version_id", "outcome", "status", "error_code", "bytes_in", "bytes_out", "duration_us"}


def check_one(srv, resp, request_id, action, status, outcome, error_code="", **more):
    assert resp.status == status, (action, resp.status, resp.body[:300])
    evs = events_for(srv, request_id)
    assert len(evs) == 1, evs
    e = evs[0]
    assert set(e) == FIELDS, e
    assert e["action"] == action, e
    assert e["status"] == status, e
    assert e["outcome"] == outcome, e
    assert e["error_code"] == error_code, e
    assert len(e["event_id"]) == 32 and int(e["event_id"], 16) >= 0
    assert e["source_address"] == "127.0.0.1"
    assert e["time"].endswith("Z") and len(e["time"]) == 27, e["time"]
    for k, v in more.items():
        assert e[k] == v, (k, e)
    return e


def req(srv, method, path, query=None, headers=None, body=b"", **kw):
    r_id = rid()
    h = dict(headers or {})
    h["X-Request-Id"] = r_id
    return srv.request(method, path, query=query, headers=h, body=body, **kw), r_id


def test_every_s3_api_leaves_one_event(server):
    s = server
    b = unique_bucket("audit")
    root = s.root[0]
    ok = dict(outcome="success", principal=root, user=root)

    r, i = req(s, "PUT", f"/{b}")
    check_one(s, r, i, "s3:CreateBucket", 200, bucket=b, **ok)
    r, i = req(s, "HEAD", f"/{b}")
    check_one(s, r, i, "s3:ListBucket", 200, bucket=b, bytes_out=0, **ok)
    r, i = req(s, "GET", "/")
    e = check_one(s, r, i, "s3:ListAllMyBuckets", 200, **ok)
    assert e["bytes_out"] == len(r.body)
    r, i = req(s, "PUT", f"/{b}/dir/k1", body=b"x" * 1000)
    check_one(s, r, i, "s3:PutObject", 200, bucket=b, key="dir/k1", bytes_in=1000, **ok)
    r, i = req(s, "GET", f"/{b}/dir/k1")
    check_one(s, r, i, "s3:GetObject", 200, bucket=b, key="dir/k1", bytes_out=1000, **ok)
    r, i = req(s, "GET", f"/{b}/dir/k1", headers={"Range": "bytes=0-9"})
    check_one(s, r, i, "s3:GetObject", 206, bucket=b, bytes_out=10, **ok)
    r, i = req(s, "HEAD", f"/{b}/dir/k1")
    check_one(s, r, i, "s3:GetObject", 200, bucket=b, bytes_out=0, **ok)
    r, i = req(s, "GET", f"/{b}", query={"list-type": "2"})
    check_one(s, r, i, "s3:ListBucket", 200, bucket=b, **ok)
    r, i = req(s, "GET", f"/{b}")
    check_one(s, r, i, "s3:ListBucket", 200, bucket=b, **ok)
    r, i = req(s, "GET", f"/{b}", query={"location": ""})
    check_one(s, r, i, "s3:GetBucketLocation", 200, **ok)
    r, i = req(s, "GET", f"/{b}", query={"versioning": ""})
    check_one(s, r, i, "s3:GetBucketVersioning", 200, **ok)
    r, i = req(s, "GET", f"/{b}", query={"acl": ""})
    check_one(s, r, i, "s3:GetBucketAcl", 200, **ok)
    r, i = req(s, "GET", f"/{b}", query={"policy": ""})
    check_one(s, r, i, "s3:GetBucketPolicy", 404, "error", "NoSuchBucketPolicy", principal=root)
    r, i = req(s, "GET", f"/{b}/dir/k1", query={"acl": ""})
    check_one(s, r, i, "s3:GetObjectAcl", 200, **ok)
    r, i = req(s, "GET", f"/{b}/dir/k1", query={"tagging": ""})
    check_one(s, r, i, "s3:GetObjectTagging", 200, **ok)
    tags = b"<Tagging><TagSet><Tag><Key>t</Key><Value>1</Value></Tag></TagSet></Tagging>"
    r, i = req(s, "PUT", f"/{b}/dir/k1", query={"tagging": ""}, body=tags)
    check_one(s, r, i, "s3:PutObjectTagging", 200, **ok)
    r, i = req(s, "DELETE", f"/{b}/dir/k1", query={"tagging": ""})
    check_one(s, r, i, "s3:DeleteObjectTagging", 204, **ok)
    r, i = req(s, "GET", f"/{b}", query={"tagging": ""})
    check_one(s, r, i, "s3:GetBucketTagging", 404, "error", "NoSuchTagSet", principal=root)
    r, i = req(s, "PUT", f"/{b}/copy", headers={"x-amz-copy-source": f"/{b}/dir/k1"})
    check_one(s, r, i, "s3:PutObject", 200, key="copy", **ok)

    # multipart
    r, i = req(s, "POST", f"/{b}/mp", query={"uploads": ""})
    check_one(s, r, i, "s3:PutObject", 200, key="mp", **ok)
    upload = r.xml().find("{*}UploadId").text
    r, i = req(s, "PUT", f"/{b}/mp", query={"uploadId": upload, "partNumber": "1"}, body=b"p" * 100)
    check_one(s, r, i, "s3:PutObject", 200, bytes_in=100, **ok)
    etag = r.header("ETag")
    r, i = req(s, "GET", f"/{b}/mp", query={"uploadId": upload})
    check_one(s, r, i, "s3:ListMultipartUploadParts", 200, **ok)
    r, i = req(s, "GET", f"/{b}", query={"uploads": ""})
    check_one(s, r, i, "s3:ListBucketMultipartUploads", 200, **ok)
    done = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>"
            "</CompleteMultipartUpload>").encode()
    r, i = req(s, "POST", f"/{b}/mp", query={"uploadId": upload}, body=done)
    check_one(s, r, i, "s3:PutObject", 200, **ok)
    r, i = req(s, "POST", f"/{b}/mp2", query={"uploads": ""})
    upload2 = r.xml().find("{*}UploadId").text
    r, i = req(s, "DELETE", f"/{b}/mp2", query={"uploadId": upload2})
    check_one(s, r, i, "s3:AbortMultipartUpload", 204, **ok)

    # errors
    r, i = req(s, "GET", f"/{b}/missing")
    check_one(s, r, i, "s3:GetObject", 404, "error", "NoSuchKey", key="missing", principal=root)
    r, i = req(s, "GET", f"/{unique_bucket('nosuch')}/k")
    check_one(s, r, i, "s3:GetObject", 404, "error", "NoSuchBucket", principal=root)
    r, i = req(s, "GET", f"/{b}/dir/k1", anonymous=True)
    check_one(s, r, i, "s3:GetObject", 403, "denied", "AccessDenied", principal="anonymous", user="")
    r, i = req(s, "PUT", f"/{b}/anon", anonymous=True, body=b"zz")
    check_one(s, r, i, "s3:PutObject", 403, "denied", "AccessDenied", principal="anonymous")
    r, i = req(s, "GET", f"/{b}/dir/k1", creds=(root, "not-the-secret-at-all"))
    check_one(s, r, i, "s3:GetObject", 403, "denied", "SignatureDoesNotMatch", principal=root, user="")
    r, i = req(s, "GET", f"/{b}/dir/k1", creds=("AKIANOSUCHKEY0000000", "whatever-secret"))
    check_one(s, r, i, "s3:GetObject", 403, "denied", "InvalidAccessKeyId")
    r, i = req(s, "PUT", f"/{b}", query={"policy": ""}, body=b"{}")
    check_one(s, r, i, "s3:PutBucketPolicy", 400, "error", "MalformedPolicy")
    r, i = req(s, "PUT", f"/{b}", query={"website": ""}, body=b"{}")
    check_one(s, r, i, "s3:Unknown", 501, "error", "NotImplemented")

    # deletes
    body = (b"<Delete><Object><Key>copy</Key></Object><Object><Key>mp</Key></Object></Delete>")
    import base64
    import hashlib
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r, i = req(s, "POST", f"/{b}", query={"delete": ""}, body=body, headers={"Content-MD5": md5})
    check_one(s, r, i, "s3:DeleteObject", 200, **ok)
    r, i = req(s, "DELETE", f"/{b}/dir/k1")
    check_one(s, r, i, "s3:DeleteObject", 204, key="dir/k1", **ok)
    r, i = req(s, "DELETE", f"/{b}")
    check_one(s, r, i, "s3:DeleteBucket", 204, **ok)


def test_a_users_events_name_the_user(server):
    u = server.create_user()
    b = unique_bucket("audituser")
    r, i = req(server, "PUT", f"/{b}", creds=(u.access_key, u.secret))
    check_one(server, r, i, "s3:CreateBucket", 200, "success", principal=u.access_key, user=u.name)
    # Another user's bucket: denied, still named.
    v = server.create_user()
    r, i = req(server, "GET", f"/{b}", creds=(v.access_key, v.secret))
    check_one(server, r, i, "s3:ListBucket", 403, "denied", "AccessDenied", principal=v.access_key, user=v.name)


def test_correlation_id_is_carried_and_a_hostile_one_ignored(server):
    r, i = req(server, "GET", "/", headers={"X-Correlation-Id": "order-42/step-1"})
    check_one(server, r, i, "s3:ListAllMyBuckets", 200, "success", correlation_id="order-42/step-1")
    r, i = req(server, "GET", "/", headers={"X-Correlation-Id": "x" * 200})
    check_one(server, r, i, "s3:ListAllMyBuckets", 200, "success", correlation_id=i)
    r, i = req(server, "GET", "/")
    check_one(server, r, i, "s3:ListAllMyBuckets", 200, "success", correlation_id=i)


def test_requests_refused_before_routing_are_audited(server):
    """The HTTP server refuses conflicting framing itself: the gateway's
    stages never see it, its event is still there."""
    r_id = rid()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
        c.sendall((f"PUT /b/k HTTP/1.1\r\nHost: x\r\nX-Request-Id: {r_id}\r\nContent-Length: 1\r\n"
                   "Content-Length: 2\r\n\r\nab").encode())
        data = c.recv(65536)
    assert b" 400 " in data.split(b"\r\n")[0], data
    evs = events_for(server, r_id)
    assert len(evs) == 1, evs
    assert evs[0]["action"] == "s3:Unknown" and evs[0]["status"] == 400
    assert evs[0]["error_code"] == "InvalidRequest" and evs[0]["outcome"] == "error"
    assert evs[0]["principal"] == "anonymous"


def test_operator_endpoints_are_not_audited_and_metrics_exist(server):
    r_id = rid()
    r = server.get_url("GET", "/health/live", headers={"X-Request-Id": r_id})
    assert r.status == 200
    # A later audited request's event is durable: by then the probe's would be too.
    r2, i2 = req(server, "GET", "/")
    events_for(server, i2)
    assert not [e for e in journal(server) if e["request_id"] == r_id]
    m = server.metrics()
    assert m["cairn_audit_events_lost_total"] == 0
    assert m["cairn_audit_events_emitted_total"] >= 1
    # The shipper may have drained the journal by now: the gauges exist.
    assert m["cairn_audit_journal_depth"] >= 0
    assert m["cairn_audit_journal_bytes"] >= 0
    assert m["cairn_audit_journal_sync_seconds_count"] >= 1


def test_kill_9_during_put_load_loses_no_acknowledged_event(make_server):
    srv = make_server()
    b = unique_bucket("auditkill")
    assert srv.request("PUT", f"/{b}").status == 200
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def loader(n):
        k = 0
        while not stop.is_set():
            r_id = f"kill{n}x{k}x{uuid.uuid4().hex[:8]}"
            k += 1
            try:
                r = srv.request("PUT", f"/{b}/o{n}-{k}", headers={"X-Request-Id": r_id}, body=b"d" * 4096,
                                timeout=10)
            except OSError:
                return
            if r.status == 200:
                with lock:
                    acked.append(r_id)

    threads = [threading.Thread(target=loader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) >= 300, 60, what="300 acknowledged PUTs")
        srv.proc.kill()          # SIGKILL, mid-load
        srv.proc.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    with lock:
        acked_now = list(acked)
    ids = {e["request_id"] for e in journal(srv)}
    missing = [a for a in acked_now if a not in ids]
    assert not missing, f"{len(missing)} of {len(acked_now)} acknowledged PUTs have no event: {missing[:5]}"
    # The journal survives the restart, and appends go on after its tail.
    srv.start()
    r, i = req(srv, "PUT", f"/{b}/after", body=b"after")
    assert r.status == 200
    evs = journal(srv)
    assert [e for e in evs if e["request_id"] == i]
    assert {a for a in acked_now} <= {e["request_id"] for e in evs}
    assert "audit journal open" in srv.current_log()
    # The segment was zeroed ahead of its records when the kill came: those
    # zeros are cut at open, never counted as corruption.
    assert srv.metrics()["cairn_audit_journal_corrupt_records_total"] == 0
    assert "corrupt records skipped" not in srv.current_log()
    srv.stop_and_fsck()


def test_events_are_kept_across_a_clean_restart(make_server):
    srv = make_server()
    r, i = req(srv, "GET", "/")
    assert r.status == 200
    srv.stop()
    assert "audit journal closed" in srv.log_text()
    assert [e for e in journal(srv) if e["request_id"] == i], "a read's event is synced at shutdown"
    srv.start()
    r2, i2 = req(srv, "PUT", f"/{unique_bucket('restart')}")
    assert r2.status == 200
    ids = [e["request_id"] for e in journal(srv)]
    assert i in ids and i2 in ids and ids.index(i) < ids.index(i2)


def test_full_journal_rejects_with_slowdown(make_server):
    """The age bound reached (the shipper holds its batch: a flush interval
    of an hour and a batch of 10,000): new requests get 503 SlowDown with
    Retry-After; their own events still land; operator endpoints stay up;
    nothing is lost."""
    srv = make_server(env={"CAIRN_AUDIT_JOURNAL_MAX_AGE": "1", **HOLD})
    assert srv.request("GET", "/").status == 200
    got = {}

    def refused():
        r, i = req(srv, "GET", "/")
        got["r"], got["i"] = r, i
        return r.status == 503

    wait_until(refused, 30, interval=0.2, what="a 503 once the oldest event is over a second old")
    r, i = got["r"], got["i"]
    assert r.error_code == "SlowDown" and r.header("Retry-After") == "1"
    check_one(srv, r, i, "s3:ListAllMyBuckets", 503, "error", "SlowDown")
    r, i = req(srv, "PUT", f"/{unique_bucket('refused')}")
    check_one(srv, r, i, "s3:CreateBucket", 503, "error", "SlowDown")
    assert srv.get_url("GET", "/health/live").status == 200
    m = srv.metrics()
    assert m["cairn_audit_overflow_refusals_total"] >= 2
    assert m["cairn_audit_events_lost_total"] == 0
    srv.stop_and_fsck()


def test_full_journal_spools_when_configured(make_server):
    srv = make_server(env={"CAIRN_AUDIT_JOURNAL_MAX_AGE": "1", "CAIRN_AUDIT_OVERFLOW": "spool", **HOLD})
    assert srv.request("GET", "/").status == 200

    def spooled():
        r, _ = req(srv, "GET", "/")
        assert r.status == 200, r.body
        return srv.metrics()["cairn_audit_spooled_total"] >= 1

    wait_until(spooled, 30, interval=0.2, what="an event in the spool")
    r, i = req(srv, "PUT", f"/{unique_bucket('spool')}")
    assert r.status == 200
    assert list((srv.data_dir / "audit").glob("spool-*.log"))
    assert not [e for e in journal(srv) if e["request_id"] == i], "it went to the spool, not the journal"
    cp = srv.admin("audit", "journal-dump", "--spool")
    spooled_events = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
    assert [e for e in spooled_events if e["request_id"] == i and e["action"] == "s3:CreateBucket"], spooled_events
    assert srv.metrics()["cairn_audit_events_lost_total"] == 0
    srv.stop_and_fsck()


def test_audit_off(make_server):
    srv = make_server(env={"CAIRN_AUDIT_ENABLED": "false"})
    assert srv.request("GET", "/").status == 200
    assert not (srv.data_dir / "audit").exists()
    m = srv.metrics()
    assert m["cairn_audit_events_lost_total"] == 0
    assert m["cairn_audit_events_emitted_total"] == 0
    srv.stop_and_fsck()


def test_journal_dump_usage(server):
    cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(server.data_dir), "audit", "journal-dump", "--bogus"],
                        capture_output=True, text=True, timeout=30, env=server.cli_env(), stdin=subprocess.DEVNULL)
    assert cp.returncode == 2 and "journal-dump" in cp.stderr
    cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(server.data_dir), "audit", "journal-dump", "--all",
                         "--spool"], capture_output=True, text=True, timeout=30, env=server.cli_env(),
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 2 and "--spool" in cp.stderr
    # No spool at all: nothing, and no error.
    cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(server.data_dir), "audit", "journal-dump", "--spool"],
                        capture_output=True, text=True, timeout=30, env=server.cli_env(), stdin=subprocess.DEVNULL)
    assert cp.returncode == 0 and cp.stdout == "", cp.stderr


def test_a_journal_that_cannot_be_opened_stops_the_start(make_server):
    """Fail closed at start too: no serving without the audit trail."""
    srv = make_server(start=False)
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    (srv.data_dir / "audit").write_text("not a directory")
    srv.spawn()
    assert srv.proc.wait(60) == 1
    assert "cannot open the audit journal" in srv.current_log()
