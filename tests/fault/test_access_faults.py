"""The authorization stage when the metadata fails under it: every metadata
read a request makes (the access key, the bucket, its policy, public access
block, ownership and ACL, the object) fails in turn, the nth bind failing as
SQLite fails it (`meta.bind`; see faultlib.py for the loop and the checks
after each run, fsck included).

Access control fails closed and says so: a request whose access could not
be judged is a 5xx S3 error with a log line carrying its request id, never
a grant (200 where the policy denies) and never a false refusal (403 where
the policy allows)."""
import base64
import hashlib
import json

import pytest

import sigv4
from cairn_harness import unique_bucket, wait_until
from faultlib import FaultStore, Ledger, loop_over_calls

ARN = "arn:aws:iam::123456789012:user/{}"


@pytest.fixture
def store(tmp_path):
    s = FaultStore(tmp_path, drives=0).start()
    yield s
    if s.srv.proc and s.srv.proc.poll() is None:
        s.srv.kill()


def answer(store, method, path, creds=None, anonymous=False):
    """A request, its answer checked: success or an S3 error, and a 5xx
    logged under its request id."""
    r = store.srv.request(method, path, creds=creds, anonymous=anonymous, timeout=30,
                          headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"} if anonymous else None)
    if r.status >= 500:
        assert r.error_code in ("InternalError", "ServiceUnavailable", "SlowDown"), r
        rid = r.headers.get("x-amz-request-id")
        assert rid
        # the request's line is written as it ends, just after its answer
        wait_until(lambda: rid in store.srv.log_text(), 10, what=f"a log line for request {rid}")
    elif r.status >= 300:
        assert r.error_code, r
    return r


@pytest.mark.deadline(900)
def test_access_is_never_granted_or_refused_by_a_failed_read(store):
    srv = store.srv
    alice, bob = srv.create_user(), srv.create_user()
    bk = unique_bucket("acf")
    assert srv.request("PUT", f"/{bk}", creds=alice.creds,
                       headers={"x-amz-object-ownership": "ObjectWriter"}).status == 200
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ARN.format(bob.name)}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bk}/pub/*"},
        {"Effect": "Deny", "Principal": {"AWS": ARN.format(bob.name)}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bk}/pub/secret*"}]}
    assert srv.request("PUT", f"/{bk}", query={"policy": ""}, creds=alice.creds,
                       body=json.dumps(doc)).status == 204
    pab = (b"<PublicAccessBlockConfiguration><BlockPublicAcls>false</BlockPublicAcls>"
           b"</PublicAccessBlockConfiguration>")
    md5 = base64.b64encode(hashlib.md5(pab).digest()).decode()
    assert srv.request("PUT", f"/{bk}", query={"publicAccessBlock": ""}, creds=alice.creds, body=pab,
                       headers={"Content-MD5": md5}).status == 200
    ledger = Ledger()
    for key in ("pub/a", "pub/secret", "priv/x"):
        body = key.encode() * 100
        assert srv.request("PUT", sigv4.object_path(bk, key), creds=alice.creds, body=body).status == 200
        ledger.acknowledged(key, body)

    def op(_n, _ctx):
        r = answer(store, "GET", sigv4.object_path(bk, "pub/a"), creds=bob.creds)
        assert r.status == 200 and r.body == b"pub/a" * 100 or r.status >= 500, \
            f"the policy allows bob pub/a: {r.status} {r.error_code}"
        r = answer(store, "GET", sigv4.object_path(bk, "pub/secret"), creds=bob.creds)
        assert r.status == 403 or r.status >= 500, f"the policy denies bob pub/secret: {r.status}"
        r = answer(store, "GET", sigv4.object_path(bk, "priv/x"), creds=bob.creds)
        assert r.status == 403 or r.status >= 500, f"nothing grants bob priv/x: {r.status}"
        r = answer(store, "GET", sigv4.object_path(bk, "pub/a"), anonymous=True)
        assert r.status == 403 or r.status >= 500, f"nothing grants anonymous pub/a: {r.status}"
        r = answer(store, "GET", sigv4.object_path(bk, "priv/x"), creds=alice.creds)
        assert r.status == 200 and r.body == b"priv/x" * 100 or r.status >= 500, \
            f"the owner reads her own: {r.status}"

    def verify():
        ledger.check(lambda key: srv.request("GET", sigv4.object_path(bk, key)).body)

    reached = loop_over_calls(store, "meta.bind", "fail", op, verify)
    assert reached >= 5, f"only {reached} metadata reads were failed: the loop did not reach the access reads"
