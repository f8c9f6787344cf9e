"""Every I/O call of PUT, overwrite, DELETE, CompleteMultipartUpload,
DeleteObjects, heal and rebalance, failed with EIO or ENOSPC in turn, or with the server crashing
right before it (see faultlib.py for the loop and the checks after each run).
"""
import hashlib
import os

import pytest

import sigv4
from cairn_harness import unique_bucket, wait_until
from faultlib import FaultStore, Ledger, loop_over_calls, response_is_clean

ALL = "data.*,meta.*"
SIZE = 300_000           # 64 KiB blocks, 4+2: two stripes per shard


def body_for(tag):
    return hashlib.sha256(tag.encode()).digest() * (SIZE // 32)


def request(store, method, path, **kw):
    """A request that may die with the server: None then."""
    try:
        return store.srv.request(method, path, timeout=30, **kw)
    except (ConnectionError, OSError):
        return None


def getter(store, bucket):
    def get(key):
        r = store.srv.request("GET", f"/{bucket}/{key}")
        assert r.status in (200, 404), r
        return r.body if r.status == 200 else None
    return get


@pytest.fixture
def store(tmp_path):
    s = FaultStore(tmp_path).start()
    yield s
    if s.srv.proc and s.srv.proc.poll() is None:
        s.srv.kill()


def setup_bucket(store):
    b = unique_bucket()
    assert store.srv.request("PUT", f"/{b}").status == 200
    return b


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_put(store, action):
    b = setup_bucket(store)
    ledger = Ledger()

    def op(n, _ctx):
        key, body = f"k{n}", body_for(f"put{n}")
        r = request(store, "PUT", f"/{b}/{key}", body=body)
        assert response_is_clean(r), r
        if r is not None and r.status == 200:
            ledger.acknowledged(key, body)
        else:
            ledger.uncertain(key, body)

    runs = loop_over_calls(store, ALL, action, op, lambda: ledger.check(getter(store, b)))
    assert runs >= 30, f"a 4+2 PUT makes dozens of I/O calls; only {runs} reached"


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_overwrite(store, action):
    b = setup_bucket(store)
    ledger = Ledger()
    old = body_for("v0")
    assert store.srv.request("PUT", f"/{b}/k", body=old).status == 200
    ledger.acknowledged("k", old)

    def op(n, _ctx):
        body = body_for(f"v{n}")
        r = request(store, "PUT", f"/{b}/k", body=body)
        assert response_is_clean(r), r
        if r is not None and r.status == 200:
            ledger.acknowledged("k", body)
        else:
            ledger.uncertain("k", body)

    runs = loop_over_calls(store, ALL, action, op, lambda: ledger.check(getter(store, b)))
    assert runs >= 30


def delete_case(store, b, ledger, check):
    """setup(n) and op(n, key) of a DELETE loop (test_pg_faults.py has one
    too): check(r) judges the answer first."""
    def setup(n):
        key, body = f"k{n}", body_for(f"del{n}")
        assert store.srv.request("PUT", f"/{b}/{key}", body=body).status == 200
        ledger.acknowledged(key, body)
        return key

    def op(n, key):
        r = request(store, "DELETE", f"/{b}/{key}")
        check(r)
        ledger.record(key, None, r, 204)
    return setup, op


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_delete(store, action):
    b = setup_bucket(store)
    ledger = Ledger()

    def check(r):
        assert response_is_clean(r), r
    setup, op = delete_case(store, b, ledger, check)
    runs = loop_over_calls(store, ALL, action, op, lambda: ledger.check(getter(store, b)), setup=setup)
    assert runs >= 7, runs


def complete_body(parts):
    return ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>\"{hashlib.md5(p).hexdigest()}\"</ETag></Part>"
        for n, p in parts) + "</CompleteMultipartUpload>").encode()


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_complete_multipart(store, action):
    """Completing uploads parts 1 and 3 and leaves part 2 out (its bytes go)."""
    b = setup_bucket(store)
    ledger = Ledger()

    def setup(n):
        key = f"mp{n}"
        p1, unused, p3 = os.urandom(5 * 1024 * 1024), os.urandom(1000), os.urandom(70_000)
        c = store.srv.client()
        uid = c.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        for num, part in ((1, p1), (2, unused), (3, p3)):
            c.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=num, Body=part)
        return key, uid, p1, p3

    def op(n, ctx):
        key, uid, p1, p3 = ctx
        r = request(store, "POST", f"/{b}/{key}", query={"uploadId": uid}, body=complete_body([(1, p1), (3, p3)]))
        assert response_is_clean(r), r
        if r is not None and r.status == 200:
            ledger.acknowledged(key, p1 + p3)
        else:
            ledger.uncertain(key, p1 + p3)

    runs = loop_over_calls(store, ALL, action, op, lambda: ledger.check(getter(store, b)), setup=setup)
    assert runs >= 3, runs


def heal_case(store, b, ledger):
    """setup(n) and op(n, key) of a heal loop (test_pg_faults.py has one
    too): setup writes an object and removes one of its shards; op reads it
    degraded (served from parity), which queues a heal job, and waits for
    the job to settle or the server to die."""
    import glob
    drives = [store.tmp / f"d{i}" for i in range(6)]

    def setup(n):
        key, body = f"h{n}", body_for(f"heal{n}")
        assert store.srv.request("PUT", f"/{b}/{key}", body=body).status == 200
        ledger.acknowledged(key, body)
        shard = sorted(glob.glob(str(drives[n % 6] / "objects" / "*" / "*")), key=os.path.getmtime)[-1]
        os.remove(shard)
        return key

    def op(n, key):
        r = request(store, "GET", f"/{b}/{key}")
        # The read itself is served from parity (or dies with the server).
        assert r is None or (r.status == 200 and r.body == ledger.may[key].copy().pop()), r

        def settled():
            if store.srv.proc.poll() is not None:
                return True
            return not [j for j in store.jobs() if j[2] in ("available", "running", "retryable")]
        wait_until(settled, 30, interval=0.1, what="the heal to finish or the server to crash")
    return setup, op


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_heal(store, action):
    """A degraded read queues a heal (a durable job) that rewrites the lost
    shard; every call of that, failed or crashed, ends healed after the
    restart (the job is retried) and fsck finds the shard back."""
    b = setup_bucket(store)
    ledger = Ledger()
    setup, op = heal_case(store, b, ledger)
    runs = loop_over_calls(store, ALL, action, op, lambda: ledger.check(getter(store, b)), setup=setup)
    assert runs >= 8, runs


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_delete_multipart_object(store, action):
    """Deleting (or overwriting) a multipart object drops its parts: the rows
    and the bytes of every part, whatever call fails."""
    b = setup_bucket(store)
    ledger = Ledger()

    def setup(n):
        key = f"mpd{n}"
        p1, p2 = os.urandom(5 * 1024 * 1024), os.urandom(50_000)
        c = store.srv.client()
        uid = c.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        parts = []
        for num, part in ((1, p1), (2, p2)):
            e = c.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=num, Body=part)["ETag"]
            parts.append({"PartNumber": num, "ETag": e})
        c.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
        ledger.acknowledged(key, p1 + p2)
        return key

    def op(n, key):
        r = request(store, "DELETE", f"/{b}/{key}")
        assert response_is_clean(r), r
        if r is not None and r.status == 204:
            ledger.acknowledged(key, None)
        else:
            ledger.uncertain(key, None)

    runs = loop_over_calls(store, ALL, action, op, lambda: ledger.check(getter(store, b)), setup=setup)
    assert runs >= 10, runs


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_delete_objects(store, action):
    """DeleteObjects of three keys, inline and shard-backed, with every I/O
    call failing or crashing in turn (the case is test_pg_faults.py's)."""
    from test_pg_faults import delete_objects_case
    b = setup_bucket(store)
    ledger = Ledger()

    def check(r):
        assert response_is_clean(r), r
    setup, op = delete_objects_case(store, b, ledger, check)
    runs = loop_over_calls(store, ALL, action, op, lambda: ledger.check(getter(store, b)), setup=setup)
    assert runs >= 3, runs
