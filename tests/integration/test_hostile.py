"""What hostile or careless clients send, and what they must get back: the
right S3 error and status, nothing stored, nothing crashed.

Covers malformed Content-MD5 (the decoder once overflowed a stack buffer on a
28-character value), concurrent x-amz-checksum-crc32c uploads (the CRC table
was built lazily by racing threads), malformed URIs, keys that are not UTF-8,
unsigned x-amz-* headers, and copy-source / GET version ids.
"""

import base64
import hashlib
import threading

import pytest

from conftest import unique_bucket
from test_erasure import crc32c


def test_content_md5_longer_than_a_digest_is_invalid_digest(server, bucket):
    for value in ("A" * 28, "A" * 32, "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQQ==", "A" * 400):
        r = server.request("PUT", f"/{bucket}/k", body=b"hello", headers={"Content-MD5": value})
        assert r.status == 400 and r.error_code == "InvalidDigest", (value, r)
    r = server.request("GET", f"/{bucket}/k")
    assert r.status == 404 and r.error_code == "NoSuchKey"
    assert server.alive()


def test_delete_objects_content_md5_longer_than_a_digest(server, bucket):
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    r = server.request("POST", f"/{bucket}", query={"delete": ""}, body=body,
                       headers={"Content-MD5": "B" * 28})
    assert r.status == 400 and r.error_code == "InvalidDigest", r


@pytest.mark.deadline(120)
def test_concurrent_crc32c_uploads_all_verify(make_server):
    """Many first-ever CRC32C computations at once (a fresh server): each one
    verifies, and a wrong one is BadDigest.  Under make test-tsan this also
    proves the CRC code shares no lazily built state."""
    srv = make_server()
    b = unique_bucket()
    assert srv.request("PUT", f"/{b}").status == 200
    results = []

    def put(i):
        body = (f"object {i} ".encode()) * (1000 + i * 37)
        crc = crc32c(body).to_bytes(4, "big")
        r = srv.request("PUT", f"/{b}/k{i}", body=body,
                        headers={"x-amz-checksum-crc32c": base64.b64encode(crc).decode()})
        results.append((i, r.status, r.header("x-amz-checksum-crc32c"), base64.b64encode(crc).decode()))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12
    for i, status, echoed, sent in results:
        assert status == 200, (i, status)
        assert echoed == sent
    bad = base64.b64encode((crc32c(b"x") ^ 1).to_bytes(4, "big")).decode()
    r = srv.request("PUT", f"/{b}/bad", body=b"x", headers={"x-amz-checksum-crc32c": bad})
    assert r.status == 400 and r.error_code == "BadDigest"


@pytest.mark.parametrize("length", [127, 128, 200, 255])
def test_aws_chunked_upload_with_a_long_root_password(make_server, length):
    """The verified secret seeds the aws-chunked chunk signatures; a root
    password longer than the buffer that held it was cut and every chunk
    failed SignatureDoesNotMatch."""
    from conftest import random_access_key
    from test_auth import streaming_put
    secret = ("p" * length)[:length]
    srv = make_server(root=(random_access_key(), secret))
    b = unique_bucket()
    assert srv.request("PUT", f"/{b}").status == 200
    payload = bytes(range(256)) * 900
    r = streaming_put(srv, b, "chunked", payload)
    assert r.status == 200, r
    got = srv.request("GET", f"/{b}/chunked")
    assert got.status == 200 and got.body == payload


@pytest.mark.deadline(120)
@pytest.mark.sqlite_only("hangs the database by holding the SQLite write lock from another process")
def test_degraded_reads_do_not_wait_on_the_database(make_server, tmp_path):
    """Every degraded read queues a heal.  That used to happen on the
    request's thread, after the response, under one mutex held across a
    database write: with the database slow (here: its write lock held by
    another process for the busy timeout, 5 s) each connection that had
    served a degraded GET hung in turn, so the next request on it waited
    behind every other one's heal."""
    import glob
    import http.client
    import os
    import sqlite3
    import sigv4
    from concurrent.futures import ThreadPoolExecutor
    from conftest import wait_until
    drives = [str(tmp_path / f"d{i}") for i in range(6)]
    srv = make_server(env={"CAIRN_DRIVES": ",".join(drives), "CAIRN_EC_BLOCK_SIZE": "4KiB",
                           "CAIRN_SCRUB_INTERVAL": "0"})
    b = unique_bucket()
    assert srv.request("PUT", f"/{b}").status == 200
    bodies = {f"k{i}": os.urandom(40_000 + i) for i in range(6)}
    for k, v in bodies.items():
        assert srv.request("PUT", f"/{b}/{k}", body=v).status == 200
    for f in glob.glob(os.path.join(drives[0], "objects", "*", "*")):
        os.remove(f)  # every object that had a shard there is now read degraded

    def keep_alive_gets(k):
        """Three GETs of one degraded object on one keep-alive connection."""
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        try:
            for _ in range(3):
                headers, _s, _d = sigv4.sign_request("GET", f"/{b}/{k}", None, {"Host": srv.host}, *srv.root,
                                                     hashlib.sha256(b"").hexdigest())
                conn.request("GET", f"/{b}/{k}", headers=headers)
                r = conn.getresponse()
                assert r.status == 200 and r.read() == bodies[k], k
        finally:
            conn.close()

    db = sqlite3.connect(str(srv.data_dir / "meta.db"), timeout=5, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(keep_alive_gets, k) for k in bodies]
            # Served from memory and disk alone: seconds at most, while one
            # heal waiting on the locked database costs 5 s (18 in a row, 90 s).
            for fut in futures:
                fut.result(timeout=15)
    finally:
        db.execute("ROLLBACK")
        db.close()
    # The heals still happen once the database answers.
    wait_until(lambda: len(glob.glob(os.path.join(drives[0], "objects", "*", "*"))) > 0, 30,
               what="the queued heals to rewrite the missing shards")


# ---- unsigned x-amz-* headers ----------------------------------------------------------------


def send_raw(srv, method, path, headers, body=b"", query=None):
    import http.client
    import sigv4
    from conftest import read_response
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        q = sigv4.wire_query(query) if query else ""
        conn.request(method, path + ("?" + q if q else ""), body=body, headers=headers)
        return read_response(conn.getresponse(), method)
    finally:
        conn.close()


def test_presigned_put_with_an_unsigned_copy_source_is_refused(server, bucket):
    """A presigned PUT URL handed to an uploader must not become a CopyObject
    of whatever the signer can read."""
    import sigv4
    assert server.request("PUT", f"/{bucket}/private/secret", body=b"the signer's secret").status == 200
    query = sigv4.presign("PUT", server.host, f"/{bucket}/uploads/slot", *server.root)
    for extra in ({"x-amz-copy-source": f"/{bucket}/private/secret"},
                  {"x-amz-meta-owner": "mallory"},
                  {"x-amz-website-redirect-location": "https://evil.example/"}):
        r = server.get_url("PUT", f"/{bucket}/uploads/slot?{query}", headers={**extra, "Content-Length": "4"},
                           body=b"mine")
        assert (r.status, r.error_code) == (403, "AccessDenied"), (extra, r)
        assert b"not signed" in r.body
    assert server.request("GET", f"/{bucket}/uploads/slot").status == 404
    # The URL itself still works as signed.
    r = server.get_url("PUT", f"/{bucket}/uploads/slot?{query}", headers={"Content-Length": "4"}, body=b"mine")
    assert r.status == 200, r
    assert server.request("GET", f"/{bucket}/uploads/slot").body == b"mine"


@pytest.mark.parametrize("extra", [{"x-amz-meta-a": "unsigned"},
                                   {"x-amz-website-redirect-location": "/elsewhere"},
                                   {"X-Amz-Meta-Mixed-Case": "unsigned"},
                                   {"x-amz-storage-class": "STANDARD"}])
def test_header_signed_request_with_an_unsigned_amz_header_is_refused(server, bucket, extra):
    import sigv4
    body = b"payload"
    headers, _sig, _date = sigv4.sign_request("PUT", f"/{bucket}/k", None, {"Host": server.host}, *server.root,
                                              hashlib.sha256(body).hexdigest())
    r = send_raw(server, "PUT", f"/{bucket}/k", {**headers, **extra}, body)
    assert (r.status, r.error_code) == (403, "AccessDenied"), r
    assert server.request("GET", f"/{bucket}/k").status == 404
    # Signed, the same header is fine.
    r = server.request("PUT", f"/{bucket}/k", body=body, headers=extra)
    assert r.status == 200, r


def test_captured_request_replayed_with_a_copy_source_is_refused(server, bucket):
    import sigv4
    assert server.request("PUT", f"/{bucket}/private", body=b"secret bytes").status == 200
    body = b"public bytes"
    headers, _sig, _date = sigv4.sign_request("PUT", f"/{bucket}/public", None, {"Host": server.host},
                                              *server.root, hashlib.sha256(body).hexdigest())
    assert send_raw(server, "PUT", f"/{bucket}/public", headers, body).status == 200
    replay = {**headers, "x-amz-copy-source": f"/{bucket}/private"}
    r = send_raw(server, "PUT", f"/{bucket}/public", replay, body)
    assert (r.status, r.error_code) == (403, "AccessDenied"), r
    assert server.request("GET", f"/{bucket}/public").body == body
