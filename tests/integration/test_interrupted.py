"""Interrupted and malformed uploads, for PutObject and UploadPart alike: a
client that disconnects, stalls, or sends more bytes than it declared, and a
gateway killed -9 mid-part.  Nothing partial may become visible, temporary
data must go, and the connection must not take the server down with it.

Uploads are sent by hand over a raw socket (conftest.open_put).  Each test
on a server of its own ends with what was acknowledged read back exactly
and, after the start's orphan collection, `cairn admin fsck` clean with the
server stopped (CairnServer.stop_and_fsck)."""
import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from conftest import (leftover_tmp_files, md5_hex, open_put, read_socket_response, unique_bucket,
                      wait_closed, wait_tmp_clean, wait_until)

MiB = 1024 * 1024


def fresh(make_server, prefix, env=None):
    """A new server, its boto3 client and a new bucket on it."""
    srv = make_server(env=env)
    s3 = srv.client()
    bucket = unique_bucket(prefix)
    s3.create_bucket(Bucket=bucket)
    return srv, s3, bucket


def new_upload(s3, bucket, key):
    return s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]


def part_query(uid, number=1):
    return {"partNumber": str(number), "uploadId": uid}


def parts_of(s3, bucket, key, uid):
    return [(p["PartNumber"], p["Size"]) for p in s3.list_parts(Bucket=bucket, Key=key, UploadId=uid).get("Parts", [])]


def head_status(s3, bucket, key):
    try:
        return s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPStatusCode"]
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]


def finish_upload(s3, bucket, key, uid, body):
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=body)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body


# ---- disconnects -----------------------------------------------------------------------------------


@pytest.mark.deadline(120)
def test_client_disconnect_mid_upload_part(make_server):
    srv, s3, bucket = fresh(make_server, "mpdisc")
    uid = new_upload(s3, bucket, "cut")
    sock = open_put(srv, bucket, "cut", 8 * MiB, query=part_query(uid))
    sock.sendall(os.urandom(3 * MiB))
    wait_until(lambda: leftover_tmp_files(srv.data_dir), 10, what="the part's temporary file")
    sock.close()
    wait_tmp_clean(srv)
    assert parts_of(s3, bucket, "cut", uid) == []
    assert head_status(s3, bucket, "cut") == 404
    # Many more, to see that the connections' resources are freed: the
    # server's sockets and open temp files settle back where they were (other
    # descriptors, like lazily opened metadata readers, may legitimately come).
    def held():
        socks = tmps = 0
        database = srv.database_sockets()  # PostgreSQL's pool opens connections as it likes
        for fd in os.listdir(f"/proc/{srv.proc.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{srv.proc.pid}/fd/{fd}")
            except OSError:
                continue
            socks += target.startswith("socket:") and target[8:-1] not in database
            data = str(srv.data_dir)
            tmps += target.startswith(data) and "/tmp/" in target[len(data):]
        return socks, tmps

    socks_before, _ = held()
    assert socks_before >= 1, "the listening socket at least"
    for _ in range(20):
        s = open_put(srv, bucket, "cut", 2 * MiB, query=part_query(uid))
        s.sendall(os.urandom(256 * 1024))
        s.close()
    wait_tmp_clean(srv)
    wait_until(lambda: held()[0] <= socks_before and held()[1] == 0, 30,
               what=f"the cut connections' sockets and temp files to be released (now {held()}, "
                    f"{socks_before} sockets before)")
    assert parts_of(s3, bucket, "cut", uid) == []
    # The upload itself is unharmed.
    finish_upload(s3, bucket, "cut", uid, os.urandom(MiB))
    srv.stop_and_fsck()


@pytest.mark.deadline(90)
def test_stalled_upload_part_is_cut(make_server):
    srv, s3, bucket = fresh(make_server, "mpstall", env={"CAIRN_CONNECTION_TIMEOUT": "2"})
    uid = new_upload(s3, bucket, "stalled")
    sock = open_put(srv, bucket, "stalled", MiB, query=part_query(uid))
    sock.sendall(b"x" * 1000)
    waited, received = wait_closed(sock, 20)
    sock.close()
    assert waited >= 1.0, f"cut after {waited:.2f}s: sooner than the idle timeout"
    if received:
        assert received.startswith(b"HTTP/1.1 4"), received[:200]
    wait_tmp_clean(srv)
    assert parts_of(s3, bucket, "stalled", uid) == []
    finish_upload(s3, bucket, "stalled", uid, b"after the stall")
    srv.stop_and_fsck()


@pytest.mark.deadline(120)
def test_kill9_mid_upload_part_leaves_nothing_partial(make_server):
    srv, s3, bucket = fresh(make_server, "mpkill")
    uid = new_upload(s3, bucket, "k")
    first = os.urandom(5 * MiB)
    e1 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=first)["ETag"]
    sock = open_put(srv, bucket, "k", 16 * MiB, query=part_query(uid, 2))
    sock.sendall(os.urandom(6 * MiB))
    wait_until(lambda: leftover_tmp_files(srv.data_dir), 10, what="the part's temporary file")
    srv.kill()
    sock.close()
    assert leftover_tmp_files(srv.data_dir), "the kill should have left the temp data behind"
    srv.start()
    s3 = srv.client()
    assert leftover_tmp_files(srv.data_dir) == []       # collected at start
    assert parts_of(s3, bucket, "k", uid) == [(1, 5 * MiB)]
    last = b"tail"
    e2 = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=2, Body=last)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == first + last
    srv.stop_and_fsck()


# ---- more bytes than Content-Length -----------------------------------------------------------------


@pytest.mark.parametrize("multipart", [False, True], ids=["PutObject", "UploadPart"])
def test_overlong_signed_body_is_refused(make_server, multipart):
    """The signature covers the whole body the client meant to send; the
    declared length cuts it short, so the hash of what arrived differs."""
    srv, s3, bucket = fresh(make_server, "long")
    s3.put_object(Bucket=bucket, Key="k", Body=b"the old version")
    uid = new_upload(s3, bucket, "k") if multipart else None
    body = os.urandom(300_000)
    sock = open_put(srv, bucket, "k", 200_000, query=part_query(uid) if multipart else None,
                    payload_hash=hashlib.sha256(body).hexdigest())
    try:
        sock.sendall(body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(20)
    r = read_socket_response(sock)
    sock.close()
    assert r.status == 400, r
    assert r.error_code == "XAmzContentSHA256Mismatch", r
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"the old version"
    if multipart:
        assert parts_of(s3, bucket, "k", uid) == []
    wait_tmp_clean(srv)
    assert srv.alive()
    srv.stop_and_fsck()


@pytest.mark.parametrize("multipart", [False, True], ids=["PutObject", "UploadPart"])
def test_overlong_unsigned_body_stores_exactly_the_declared_bytes(make_server, multipart):
    """With UNSIGNED-PAYLOAD the declared length is all HTTP has: the first
    Content-Length bytes are the body (stored exactly, nothing more), and
    what follows is parsed as the next request and answered 400 with the
    connection closed: the surplus never lands in any object."""
    srv, s3, bucket = fresh(make_server, "long")
    uid = new_upload(s3, bucket, "k") if multipart else None
    declared = os.urandom(100_000)
    surplus = os.urandom(50_000)
    sock = open_put(srv, bucket, "k", len(declared), query=part_query(uid) if multipart else None)
    try:
        sock.sendall(declared + surplus)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(20)
    r = read_socket_response(sock)
    assert r.status == 200, r
    assert r.header("ETag") == f'"{md5_hex(declared)}"'
    _, rest = wait_closed(sock, 20)
    sock.close()
    assert rest == b"" or rest.startswith(b"HTTP/1.1 400"), rest[:200]
    if multipart:
        assert parts_of(s3, bucket, "k", uid) == [(1, len(declared))]
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": r.header("ETag")}]})
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["ContentLength"] == len(declared)
    assert got["Body"].read() == declared
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["k"]
    assert srv.alive()
    srv.stop_and_fsck()


@pytest.mark.parametrize("multipart", [False, True], ids=["PutObject", "UploadPart"])
def test_aws_chunked_body_longer_than_decoded_length_is_refused(server, s3, multipart):
    """aws-chunked: chunks carrying more than x-amz-decoded-content-length."""
    import http.client
    import sigv4
    from conftest import Response
    bucket = unique_bucket("long")
    s3.create_bucket(Bucket=bucket)
    uid = new_upload(s3, bucket, "k") if multipart else None
    ak, sk = server.root
    payload = os.urandom(150_000)
    path = sigv4.object_path(bucket, "k")
    query = part_query(uid) if multipart else None
    headers = {
        "Host": server.host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(payload) - 1000),
        "Content-Length": str(sigv4.encoded_length(len(payload), 64 * 1024)),
    }
    headers, seed, date = sigv4.sign_request("PUT", path, query, headers, ak, sk, sigv4.STREAMING_PAYLOAD)
    body = sigv4.encode_signed_chunks(sigv4.split_chunks(payload, 64 * 1024), sk, date, seed)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("PUT", path + ("?" + sigv4.wire_query(query) if query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        r = Response(resp.status, resp.reason, resp.headers, resp.read())
    finally:
        conn.close()
    assert r.status == 400, r
    assert r.error_code == "IncompleteBody", r
    assert b"more bytes than x-amz-decoded-content-length" in r.body, r
    assert head_status(s3, bucket, "k") == 404
    if multipart:
        assert parts_of(s3, bucket, "k", uid) == []
