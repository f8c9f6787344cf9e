"""The audit shipper (docs/audit.md, "The shipper"): a real `cairn server`
whose journal is drained into the audit store, embedded (its own database,
SQLite or PostgreSQL with --metadata) or remote (a real `cairn audit-server`
over HTTP, SigV4), with a real Redis for the dead-letter queue.

What must hold: an event is queryable within the flush interval; events
spaced over several intervals all land; with the store down for the whole
test every event is in the DLQ (a Redis stream, or the spool; Redis down
too: the spool), and once the store is back every one is replayed, none
twice; close ships what is buffered; kill -9 during load loses no event of
an acknowledged request; a bad event is split out into the DLQ as rejected
while the good ones land; every S3 API the gateway serves ends up as an
event in the store.  The store's test mode (503, 400, a hung POST) is in
tests/fault/test_audit_ship_faults.py."""

import json
import socket
import struct
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import unique_bucket, wait_until

PATH = "/audit/v1/events"
SHORT = {"CAIRN_AUDIT_FLUSH_INTERVAL": "300"}


@pytest.fixture
def make_store(make_audit_server):
    return lambda start=True, port=None: make_audit_server(start=start, port=port)


def remote_env(store, **extra):
    env = {"CAIRN_AUDIT_URL": f"http://127.0.0.1:{store.port}", "CAIRN_AUDIT_ACCESS_KEY": store.root[0],
           "CAIRN_AUDIT_SECRET_KEY": store.root[1], **SHORT}
    env.update(extra)
    return env


def stored(srv, **params):
    """Every event the filters select, following the cursor."""
    out, cursor = [], None
    while True:
        q = {k: str(v) for k, v in params.items()}
        q["limit"] = "1000"
        if cursor:
            q["cursor"] = cursor
        r = srv.request("GET", PATH, query=q)
        assert r.status == 200, r.body
        doc = json.loads(r.body)
        out += doc["events"]
        cursor = doc.get("next_cursor")
        if not cursor:
            return out


def wait_stored(srv, n, deadline=20, **params):
    wait_until(lambda: len(stored(srv, **params)) >= n, deadline, interval=0.1,
               what=f"{n} events {params} in the store")
    events = stored(srv, **params)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert len(events) == n, f"{len(events)} events, want {n}"
    return events


def hit(srv, corr, n=1, path=None):
    """n anonymous GETs of a missing bucket (each an event), with X-Correlation-Id."""
    for _ in range(n):
        r = srv.request("GET", path or f"/{unique_bucket('nb')}", anonymous=True, headers={"X-Correlation-Id": corr})
        assert r.status == 404


def redis_cmd(redis, *args):
    """One RESP command; returns the reply's first line."""
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as s:
        s.sendall(b"".join(parts))
        return s.recv(65536).split(b"\r\n")[0].decode()


def xlen(redis, key="cairn:audit:dlq"):
    return int(redis_cmd(redis, "XLEN", key)[1:])


def dlq(srv, *args, env=None):
    cp = srv.admin("audit", "dlq", *args)
    return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]


# ---- flushing ------------------------------------------------------------------------------


def test_one_event_is_queryable_within_the_flush_interval(make_server):
    srv = make_server(env={"CAIRN_AUDIT_FLUSH_INTERVAL": "500"})
    corr = uuid.uuid4().hex
    t0 = time.monotonic()
    hit(srv, corr)
    wait_stored(srv, 1, deadline=10, correlation_id=corr)
    took = time.monotonic() - t0
    # interval 0.5 s + audit_sync_ms + one insert; a batch of one never
    # fills the default batch size, so only the timer ships it.
    assert took < 3.0, f"took {took:.2f}s"
    m = srv.metrics()
    assert m["cairn_audit_batches_sent_total"] >= 1
    assert m["cairn_audit_events_lost_total"] == 0


def test_fifty_events_spaced_over_several_intervals_all_land(make_server):
    srv = make_server(env={"CAIRN_AUDIT_FLUSH_INTERVAL": "200"})
    corr = uuid.uuid4().hex
    for _ in range(50):
        hit(srv, corr)
        time.sleep(0.02)   # pacing the load, not waiting for a result
    wait_stored(srv, 50, correlation_id=corr)
    assert srv.metrics()["cairn_audit_batches_sent_total"] >= 3


def test_remote_mode_ships_signed_batches_to_an_audit_server(make_server, make_store):
    store = make_store()
    srv = make_server(env=remote_env(store))
    corr = uuid.uuid4().hex
    hit(srv, corr, n=5)
    events = wait_stored(store, 5, correlation_id=corr)
    assert all(e["principal"] == "anonymous" and e["status"] == 404 for e in events)
    assert stored(srv, correlation_id=corr) == [], "remote mode writes nothing locally"
    # The store saw SigV4 POSTs by the configured key.
    assert f'"principal":"{store.root[0]}"' in store.log_text()


def test_close_ships_what_is_buffered(make_server, make_store):
    store = make_store()
    srv = make_server(env=remote_env(store, CAIRN_AUDIT_FLUSH_INTERVAL="3600000"))
    corr = uuid.uuid4().hex
    hit(srv, corr, n=30)
    assert srv.stop() == 0
    events = stored(store, correlation_id=corr)
    assert len(events) == 30
    assert '"msg":"audit shipper closed","pending_events":"0"' in srv.log_text()


def test_default_configuration_ships_so_the_journal_does_not_fill(make_server):
    """Nothing shipped the journal before: the age bound then refused every
    request.  With the default configuration the journal drains."""
    srv = make_server(env={"CAIRN_AUDIT_JOURNAL_MAX_AGE": "3"})
    corr = uuid.uuid4().hex
    hit(srv, corr, n=3)
    wait_stored(srv, 3, correlation_id=corr)
    wait_until(lambda: srv.metrics()["cairn_audit_journal_depth"] == 0, 10, what="an empty journal")
    t_end = time.monotonic() + 4   # past the age bound
    while time.monotonic() < t_end:
        hit(srv, corr)
        time.sleep(0.2)
    r = srv.request("GET", f"/{unique_bucket('nb')}", anonymous=True)
    assert r.status == 404, "a request past the age bound is served, not refused 503"


# ---- the dead-letter queue ------------------------------------------------------------------


def down_store_env(store, **extra):
    return remote_env(store, CAIRN_AUDIT_MAX_RETRIES="1", CAIRN_AUDIT_TIMEOUT_MS="500", **extra)


def test_store_down_everything_goes_to_the_redis_stream_then_is_replayed_once(make_server, make_store,
                                                                              redis_server):
    store = make_store(start=False)
    srv = make_server(env=down_store_env(store, CAIRN_REDIS_URL=redis_server.url))
    corr = uuid.uuid4().hex
    hit(srv, corr, n=20)
    wait_until(lambda: xlen(redis_server) == 20, 20, what="20 entries in the Redis stream")
    m = srv.metrics()
    assert m['cairn_audit_dlq_writes_total{to="redis"}'] == 20
    assert m['cairn_audit_dlq_writes_total{to="spool"}'] == 0
    assert m['cairn_audit_retries_total{cause="connect"}'] >= 1
    assert m["cairn_audit_journal_depth"] == 0, "the cursor is committed once the DLQ has them"
    held = srv.admin("audit", "dlq").stdout.splitlines()
    assert len(held) == 20 and all(corr in line for line in held)
    store.start(store.port)
    wait_stored(store, 20, correlation_id=corr)
    wait_until(lambda: xlen(redis_server) == 0, 20, what="the stream drained")
    # Nothing duplicated: the store holds each event once.
    assert len(stored(store, correlation_id=corr)) == 20
    assert srv.metrics()["cairn_audit_dlq_replayed_total"] == 20


def test_store_down_without_redis_everything_goes_to_the_spool_then_is_replayed(make_server, make_store):
    store = make_store(start=False)
    srv = make_server(env=down_store_env(store))
    corr = uuid.uuid4().hex
    hit(srv, corr, n=20)
    wait_until(lambda: srv.metrics()['cairn_audit_dlq_writes_total{to="spool"}'] == 20, 20,
               what="20 events in the spool")
    assert (srv.data_dir / "audit" / "dlq-held.log").stat().st_size > 0
    assert len(dlq(srv)) == 20
    store.start(store.port)
    wait_stored(store, 20, correlation_id=corr)
    wait_until(lambda: srv.metrics()['cairn_audit_dlq_depth{kind="held"}'] == 0, 20, what="the spool drained")
    assert len(stored(store, correlation_id=corr)) == 20
    assert dlq(srv) == []


def test_store_and_redis_down_everything_goes_to_the_spool_nothing_lost(make_server, make_store, redis_server):
    store = make_store(start=False)
    srv = make_server(env=down_store_env(store, CAIRN_REDIS_URL=redis_server.url))
    redis_server.stop()
    corr = uuid.uuid4().hex
    hit(srv, corr, n=20)
    wait_until(lambda: srv.metrics()['cairn_audit_dlq_writes_total{to="spool"}'] == 20, 30,
               what="20 events in the spool")
    m = srv.metrics()
    assert m["cairn_audit_dlq_redis_fallbacks_total"] >= 1
    assert m["cairn_audit_events_lost_total"] == 0
    store.start(store.port)
    wait_stored(store, 20, correlation_id=corr)


def test_dlq_survives_a_restart_and_is_replayed_after_it(make_server, make_store):
    store = make_store(start=False)
    srv = make_server(env=down_store_env(store))
    corr = uuid.uuid4().hex
    hit(srv, corr, n=10)
    wait_until(lambda: srv.metrics()['cairn_audit_dlq_writes_total{to="spool"}'] == 10, 20, what="the spool")
    assert srv.stop() == 0
    store.start(store.port)
    srv.start()
    wait_stored(store, 10, correlation_id=corr)


# ---- rejected events ---------------------------------------------------------------------------


def crc32c(data, crc=0):
    poly = 0x82F63B78
    table = crc32c.table if hasattr(crc32c, "table") else None
    if table is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ poly if c & 1 else c >> 1
            table.append(c)
        crc32c.table = table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def journal_record(seq, payload):
    head = struct.pack("<IIQq", 0x314A4143, len(payload), seq, int(time.time() * 1000))
    return head + struct.pack("<I", crc32c(head + payload)) + payload


def event_json(corr, i, **over):
    e = {"event_id": uuid.uuid4().hex, "time": "2026-11-30T17:41:02.%06dZ" % i, "request_id": f"r{i}",
         "correlation_id": corr, "principal": "anonymous", "user": "", "source_address": "127.0.0.1",
         "action": "s3:GetObject", "bucket": "b", "key": f"k{i}", "version_id": "", "outcome": "success",
         "status": 200, "error_code": "", "bytes_in": 0, "bytes_out": 0, "duration_us": 1}
    e.update(over)
    return json.dumps(e).encode()


@pytest.mark.parametrize("mode", ["embedded", "remote"])
def test_a_bad_event_is_split_out_into_the_dlq_and_the_good_ones_land(make_server, make_store, tmp_path, mode):
    """A journal with a bad event among good ones (an older version's, or a
    bug's): the store refuses the batch with 400, the shipper splits it, the
    nine good events land and the bad one is a rejected DLQ entry with the
    store's reason."""
    corr = uuid.uuid4().hex
    recs = [event_json(corr, i, **({"status": 999} if i == 4 else {})) for i in range(10)]
    store = make_store() if mode == "remote" else None
    srv = make_server(env=remote_env(store) if store else SHORT, start=False)
    (srv.data_dir / "audit").mkdir(parents=True)
    (srv.data_dir / "audit" / "journal-00000000000000000001.log").write_bytes(
        b"".join(journal_record(i + 1, p) for i, p in enumerate(recs)))
    srv.start()
    target = store or srv
    wait_stored(target, 9, correlation_id=corr)
    wait_until(lambda: len(dlq(srv, "--rejected")) == 1, 10, what="one rejected entry")
    [entry] = dlq(srv, "--rejected")
    assert entry["event"]["status"] == 999
    assert "status" in entry["reason"], entry["reason"]
    assert dlq(srv) == []
    m = srv.metrics()
    assert m["cairn_audit_batch_splits_total"] >= 1
    assert m['cairn_audit_dlq_events_total{kind="rejected"}'] == 1
    assert sum(v for k, v in m.items() if k.startswith("cairn_audit_retries_total")) == 0, "a 400 is never retried"


# ---- kill -9 ---------------------------------------------------------------------------------


@pytest.mark.deadline(120)
def test_kill_9_during_load_loses_no_event_of_an_acknowledged_request(make_server):
    srv = make_server(env={"CAIRN_AUDIT_FLUSH_INTERVAL": "2000"})
    bucket = unique_bucket()
    assert srv.request("PUT", f"/{bucket}").status == 200
    corr = uuid.uuid4().hex
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def writer(t):
        i = 0
        while not stop.is_set():
            key = f"w{t}-{i}"
            i += 1
            try:
                r = srv.request("PUT", f"/{bucket}/{key}", body=b"x" * 100, headers={"X-Correlation-Id": corr},
                                timeout=10)
            except OSError:
                return
            if r.status == 200:
                with lock:
                    acked.append(key)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acked) >= 100, 30, what="100 acknowledged PUTs")
    srv.kill()   # SIGKILL, mid-load
    stop.set()
    for t in threads:
        t.join()
    srv.start()
    keys = set(acked)

    def all_there():
        got = {e["key"] for e in stored(srv, correlation_id=corr) if e["action"] == "s3:PutObject"
               and e["status"] == 200}
        return keys <= got

    wait_until(all_there, 30, interval=0.2, what=f"the events of {len(keys)} acknowledged PUTs")
    srv.stop_and_fsck()


# ---- coverage of requests ------------------------------------------------------------------


def test_every_s3_api_the_gateway_serves_ends_up_in_the_store(make_server):
    srv = make_server(env=SHORT)
    s3 = srv.client()
    b = unique_bucket()
    seen = []   # (request id, action)

    def call(action, fn, **kw):
        try:
            r = fn(**kw)
            rid = r["ResponseMetadata"]["RequestId"]
        except ClientError as e:
            rid = e.response["ResponseMetadata"]["RequestId"]
        assert rid, action
        seen.append((rid, action))

    call("s3:CreateBucket", s3.create_bucket, Bucket=b)
    call("s3:ListAllMyBuckets", s3.list_buckets)
    call("s3:ListBucket", s3.head_bucket, Bucket=b)
    call("s3:ListBucket", s3.list_objects, Bucket=b)
    call("s3:ListBucket", s3.list_objects_v2, Bucket=b)
    call("s3:GetBucketLocation", s3.get_bucket_location, Bucket=b)
    call("s3:GetBucketVersioning", s3.get_bucket_versioning, Bucket=b)
    call("s3:GetBucketAcl", s3.get_bucket_acl, Bucket=b)
    call("s3:GetBucketPolicy", s3.get_bucket_policy, Bucket=b)
    call("s3:PutObject", s3.put_object, Bucket=b, Key="a", Body=b"hello")
    call("s3:GetObject", s3.get_object, Bucket=b, Key="a")
    call("s3:GetObject", s3.head_object, Bucket=b, Key="a")
    call("s3:GetObject", s3.get_object, Bucket=b, Key="missing")
    call("s3:PutObject", s3.copy_object, Bucket=b, Key="c", CopySource={"Bucket": b, "Key": "a"})
    call("s3:GetObjectAcl", s3.get_object_acl, Bucket=b, Key="a")
    call("s3:GetObjectTagging", s3.get_object_tagging, Bucket=b, Key="a")
    call("s3:PutObjectTagging", s3.put_object_tagging, Bucket=b, Key="a", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    call("s3:DeleteObjectTagging", s3.delete_object_tagging, Bucket=b, Key="a")
    call("s3:PutBucketTagging", s3.put_bucket_tagging, Bucket=b, Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    call("s3:GetBucketTagging", s3.get_bucket_tagging, Bucket=b)
    call("s3:PutBucketTagging", s3.delete_bucket_tagging, Bucket=b)
    up = s3.create_multipart_upload(Bucket=b, Key="m")
    seen.append((up["ResponseMetadata"]["RequestId"], "s3:PutObject"))
    call("s3:PutObject", s3.upload_part, Bucket=b, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=b"p" * 100)
    call("s3:ListMultipartUploadParts", s3.list_parts, Bucket=b, Key="m", UploadId=up["UploadId"])
    call("s3:ListBucketMultipartUploads", s3.list_multipart_uploads, Bucket=b)
    call("s3:AbortMultipartUpload", s3.abort_multipart_upload, Bucket=b, Key="m", UploadId=up["UploadId"])
    call("s3:DeleteObject", s3.delete_objects, Bucket=b, Delete={"Objects": [{"Key": "c"}]})
    call("s3:DeleteBucket", s3.delete_bucket, Bucket=b)          # BucketNotEmpty
    call("s3:DeleteObject", s3.delete_object, Bucket=b, Key="a")
    call("s3:DeleteBucket", s3.delete_bucket, Bucket=b)
    r = srv.request("GET", f"/{b}/a", anonymous=True)              # an anonymous request
    seen.append((r.header("x-amz-request-id"), None))
    r = srv.request("GET", "/", creds=("AKIANOSUCHKEY0000000", "x" * 40))  # a refused signature
    assert r.status == 403
    seen.append((r.header("x-amz-request-id"), None))

    def landed():
        return all(stored(srv, request_id=rid) for rid, _ in seen)

    wait_until(landed, 20, interval=0.2, what=f"the events of {len(seen)} requests")
    for rid, action in seen:
        [e] = stored(srv, request_id=rid)
        if action:
            assert e["action"] == action, (rid, e)


# ---- embedded: the database down ------------------------------------------------------------


@pytest.mark.postgres_only("stops and starts a real PostgreSQL server")
@pytest.mark.deadline(120)
def test_embedded_database_down_is_retried_then_held_then_replayed(make_server):
    from test_db_pool import OwnPostgres
    pg = OwnPostgres()
    try:
        srv = make_server(env={"CAIRN_METADATA_URL": pg.url, "CAIRN_AUDIT_FLUSH_INTERVAL": "200",
                               "CAIRN_AUDIT_MAX_RETRIES": "1", "CAIRN_DB_ACQUIRE_TIMEOUT_MS": "1000"})
        pg.halt()
        corr = uuid.uuid4().hex
        for _ in range(5):   # answered 503 or 404: each is an event all the same
            srv.request("GET", f"/{unique_bucket('nb')}", anonymous=True, headers={"X-Correlation-Id": corr})
        wait_until(lambda: srv.metrics()['cairn_audit_dlq_events_total{kind="held"}'] >= 5, 60,
                   what="the events held in the DLQ")
        assert srv.metrics()['cairn_audit_retries_total{cause="db"}'] >= 1
        pg.resume()
        wait_stored(srv, 5, deadline=60, correlation_id=corr)
        srv.stop()
    finally:
        pg.remove()
