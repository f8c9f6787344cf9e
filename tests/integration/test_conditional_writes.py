"""Conditional writes: If-None-Match: * and If-Match: <ETag> on PutObject and
CompleteMultipartUpload, as S3 has them.

  - If-None-Match: * writes only where the key has no object (else 412
    PreconditionFailed); any other value, or both headers, is 501
    NotImplemented.
  - If-Match writes only over the object with that ETag (else 412); on a key
    with no object it is 404 NoSuchKey.
  - The condition is checked when the request begins (a doomed upload sends
    no bytes to the drives) and again, atomically, inside the commit: a key
    that changes while the body is on its way decides the outcome then, 412,
    or 409 ConditionalRequestConflict for an If-Match whose object was
    deleted meanwhile.  Nothing of a refused write stays behind (fsck).
  - A refused CompleteMultipartUpload leaves the upload, which completes
    later without the condition.

Concurrency across two gateways is in test_gateways.py (32 writers, one
winner).
"""

import concurrent.futures
import contextlib
import os
import threading

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import leftover_tmp_files, md5_hex, open_put, read_socket_response, unique_bucket, wait_until

KiB = 1024


def put(srv, bucket, key, data, headers):
    return srv.request("PUT", sigv4.object_path(bucket, key), body=data, headers=headers)


def assert_logged(srv, r, code):
    """The request's log line carries its request id and the S3 error code."""
    rid = r.header("x-amz-request-id")
    assert rid

    def logged():
        return [e for e in srv.log_records() if e.get("request_id") == rid and e.get("msg") == "request"
                and e.get("error") == code]
    wait_until(logged, 10, what=f"the log line of request {rid} with error {code}")


@contextlib.contextmanager
def conditional(s3, **headers):
    """boto3 calls with If-Match / If-None-Match added (Debian's botocore
    predates their parameters; the headers are what goes on the wire)."""
    names = {"if_match": "If-Match", "if_none_match": "If-None-Match"}

    def add(request, **_kw):
        for k, v in headers.items():
            request.headers[names[k]] = v
    s3.meta.events.register_first("before-sign.s3.*", add)
    try:
        yield
    finally:
        s3.meta.events.unregister("before-sign.s3.*", add)


def log_count(srv, msg):
    return len([e for e in srv.log_records() if e.get("msg") == msg])


def body_of(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.parametrize("size", [100, 200 * KiB], ids=["inline", "erasure-coded"])
def test_if_none_match_star_creates_once(server, s3, bucket, size):
    first, second = os.urandom(size), os.urandom(size)
    r = put(server, bucket, "k", first, {"If-None-Match": "*"})
    assert r.status == 200, r
    assert r.header("ETag") == f'"{md5_hex(first)}"'
    r = put(server, bucket, "k", second, {"If-None-Match": "*"})
    assert (r.status, r.error_code) == (412, "PreconditionFailed"), r
    assert_logged(server, r, "PreconditionFailed")
    assert body_of(s3, bucket, "k") == first, "the refused write changed nothing"
    # boto3's own parameter, as applications use it
    with pytest.raises(ClientError) as e, conditional(s3, if_none_match="*"):
        s3.put_object(Bucket=bucket, Key="k", Body=second)
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with conditional(s3, if_none_match="*"):
        s3.put_object(Bucket=bucket, Key="other", Body=second)
    assert body_of(s3, bucket, "other") == second


def test_if_match_replaces_only_the_version_it_names(server, s3, bucket):
    v1 = os.urandom(300)
    etag1 = s3.put_object(Bucket=bucket, Key="k", Body=v1)["ETag"]
    v2 = os.urandom(300)
    r = put(server, bucket, "k", v2, {"If-Match": '"0123456789abcdef0123456789abcdef"'})
    assert (r.status, r.error_code) == (412, "PreconditionFailed"), r
    assert body_of(s3, bucket, "k") == v1
    # quoted, as GET returns it, and bare
    with conditional(s3, if_match=etag1):
        etag2 = s3.put_object(Bucket=bucket, Key="k", Body=v2)["ETag"]
    assert body_of(s3, bucket, "k") == v2
    v3 = os.urandom(300)
    r = put(server, bucket, "k", v3, {"If-Match": etag2.strip('"')})
    assert r.status == 200, r
    # the old ETag no longer matches: a lost update is refused
    with pytest.raises(ClientError) as e, conditional(s3, if_match=etag1):
        s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(10))
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert body_of(s3, bucket, "k") == v3


def test_if_match_on_a_missing_key_is_no_such_key(server, s3, bucket):
    r = put(server, bucket, "absent", b"x", {"If-Match": '"0123456789abcdef0123456789abcdef"'})
    assert (r.status, r.error_code) == (404, "NoSuchKey"), r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="absent")


@pytest.mark.parametrize("headers", [
    {"If-None-Match": '"0123456789abcdef0123456789abcdef"'},
    {"If-None-Match": "*", "If-Match": '"0123456789abcdef0123456789abcdef"'},
], ids=["etag-in-if-none-match", "both-headers"])
def test_unsupported_condition_forms_are_not_implemented(server, s3, bucket, headers):
    r = put(server, bucket, "k", b"body", headers)
    assert (r.status, r.error_code) == (501, "NotImplemented"), r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    assert_logged(server, r, "NotImplemented")


def test_an_overlong_if_match_matches_nothing(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1")
    r = put(server, bucket, "k", b"v2", {"If-Match": '"' + "a" * 200 + '"'})
    assert (r.status, r.error_code) == (412, "PreconditionFailed"), r
    assert body_of(s3, bucket, "k") == b"v1"


def start_multipart(s3, bucket, key, size=5 * KiB):
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    data = os.urandom(size)
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=data)["ETag"]
    return uid, data, {"Parts": [{"PartNumber": 1, "ETag": etag}]}


def test_conditional_complete_multipart(s3, bucket):
    # If-None-Match: * on a key that exists: refused, the upload kept
    s3.put_object(Bucket=bucket, Key="mp", Body=b"already here")
    uid, data, parts = start_multipart(s3, bucket, "mp")
    with pytest.raises(ClientError) as e, conditional(s3, if_none_match="*"):
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload=parts)
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert body_of(s3, bucket, "mp") == b"already here"
    listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in listed] == [uid], "the refused complete kept its upload"
    # If-Match with the current ETag: completes over it
    etag = s3.head_object(Bucket=bucket, Key="mp")["ETag"]
    with conditional(s3, if_match=etag):
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload=parts)
    assert body_of(s3, bucket, "mp") == data
    # If-None-Match: * on an absent key completes
    uid2, data2, parts2 = start_multipart(s3, bucket, "fresh")
    with conditional(s3, if_none_match="*"):
        s3.complete_multipart_upload(Bucket=bucket, Key="fresh", UploadId=uid2, MultipartUpload=parts2)
    assert body_of(s3, bucket, "fresh") == data2
    # If-Match on an absent key: NoSuchKey, and the upload stays
    uid3, _, parts3 = start_multipart(s3, bucket, "nothing-here")
    with pytest.raises(ClientError) as e, conditional(s3, if_match='"0123456789abcdef0123456789abcdef"'):
        s3.complete_multipart_upload(Bucket=bucket, Key="nothing-here", UploadId=uid3, MultipartUpload=parts3)
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    s3.abort_multipart_upload(Bucket=bucket, Key="nothing-here", UploadId=uid3)


def test_a_retried_conditional_complete_gets_its_first_answer(s3, bucket):
    """A client whose complete succeeded but whose answer was lost retries
    with the same If-None-Match: * and must hear 200 again, not 412 from the
    object its own first try made."""
    uid, data, parts = start_multipart(s3, bucket, "retry")
    with conditional(s3, if_none_match="*"):
        first = s3.complete_multipart_upload(Bucket=bucket, Key="retry", UploadId=uid, MultipartUpload=parts)
        again = s3.complete_multipart_upload(Bucket=bucket, Key="retry", UploadId=uid, MultipartUpload=parts)
    assert again["ETag"] == first["ETag"]
    assert body_of(s3, bucket, "retry") == data


@pytest.mark.deadline(120)
def test_a_key_that_changes_during_the_upload_decides_at_commit(make_server):
    """The check at the start passes, then another writer changes the key
    while the body is still arriving: the commit's own check refuses, the
    refused body's shards are removed, and fsck is clean."""
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket("cond")
    s3.create_bucket(Bucket=bucket)
    size = 256 * KiB                                   # erasure-coded: shards exist before the commit

    def begun():
        # The body is being stored: the start's check is behind it.
        wait_until(lambda: leftover_tmp_files(srv.data_dir), 10, what="the upload's temporary shard files")

    # If-None-Match: * -- another PUT creates the key meanwhile: 412
    sock = open_put(srv, bucket, "created", size, extra_headers={"If-None-Match": "*"})
    sock.sendall(os.urandom(size // 2))
    begun()
    s3.put_object(Bucket=bucket, Key="created", Body=b"the other writer")
    sock.sendall(os.urandom(size - size // 2))
    r = read_socket_response(sock)
    sock.close()
    assert (r.status, r.error_code) == (412, "PreconditionFailed"), r
    assert body_of(s3, bucket, "created") == b"the other writer"

    # If-Match -- the object is overwritten meanwhile: 412
    etag = s3.put_object(Bucket=bucket, Key="matched", Body=b"v1")["ETag"]
    sock = open_put(srv, bucket, "matched", size, extra_headers={"If-Match": etag})
    sock.sendall(os.urandom(size // 2))
    begun()
    s3.put_object(Bucket=bucket, Key="matched", Body=b"v2")
    sock.sendall(os.urandom(size - size // 2))
    r = read_socket_response(sock)
    sock.close()
    assert (r.status, r.error_code) == (412, "PreconditionFailed"), r
    assert body_of(s3, bucket, "matched") == b"v2"

    # If-Match -- the object is deleted meanwhile: 409, retry after a fresh read
    sock = open_put(srv, bucket, "matched", size, extra_headers={"If-Match": s3.head_object(
        Bucket=bucket, Key="matched")["ETag"]})
    sock.sendall(os.urandom(size // 2))
    begun()
    s3.delete_object(Bucket=bucket, Key="matched")
    sock.sendall(os.urandom(size - size // 2))
    r = read_socket_response(sock)
    sock.close()
    assert (r.status, r.error_code) == (409, "ConditionalRequestConflict"), r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="matched")
    assert log_count(srv, "conditional write refused at commit: the key changed meanwhile") == 3

    # Nothing of the three refused bodies remains: fsck finds no orphan shard.
    doc = srv.stop_and_fsck()
    assert doc["check"]["orphans"] == 0, doc["check"]


def test_concurrent_if_none_match_writers_on_one_gateway_have_one_winner(server, s3, bucket):
    writers = 16
    start = threading.Barrier(writers)

    def writer(t):
        data = os.urandom(64 * KiB)
        start.wait()
        r = put(server, bucket, "race", data, {"If-None-Match": "*"})
        return r.status, r.error_code, md5_hex(data)

    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(writer, range(writers)))
    won = [md5 for status, _, md5 in results if status == 200]
    assert len(won) == 1, results
    assert sorted((s, c) for s, c, _ in results if s != 200) == [(412, "PreconditionFailed")] * (writers - 1)
    assert md5_hex(body_of(s3, bucket, "race")) == won[0]
