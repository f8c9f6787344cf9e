"""Object operations: PutObject, GetObject, HeadObject, DeleteObject,
DeleteObjects, CopyObject; metadata and standard headers round-trip; ETag and
integrity checks (Content-MD5, x-amz-content-sha256); awkward keys and key
length; sizes around the inline threshold; S3 error bodies; size limits.
"""

import base64
import datetime
import hashlib
import os
import socket

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import md5_hex, open_put, read_socket_response, unique_bucket, xml_findall, xml_text

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def code_status(excinfo):
    r = excinfo.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


# ---- basic CRUD --------------------------------------------------------------


def test_put_get_head_delete(s3, bucket):
    body = os.urandom(1000)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=body)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == body
    assert got["ContentLength"] == 1000
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == 1000
    assert head["ETag"] == put["ETag"]
    assert head["LastModified"].tzinfo is not None
    assert head["ResponseMetadata"]["HTTPHeaders"].get("accept-ranges") == "bytes"
    delete = s3.delete_object(Bucket=bucket, Key="obj")
    assert delete["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="obj")
    assert code_status(ei) == ("NoSuchKey", 404)


def test_overwrite_returns_latest(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first version")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second"
    assert got["ETag"] == f'"{md5_hex(b"second")}"'
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_delete_missing_key_is_204(s3, bucket):
    r = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_head_missing_is_404_without_body(server, bucket):
    r = server.request("HEAD", sigv4.object_path(bucket, "nope"))
    assert r.status == 404
    assert r.body == b""
    assert r.header("x-amz-request-id")


def test_get_missing_key_error_xml(server, bucket):
    r = server.request("GET", sigv4.object_path(bucket, "dir/missing key"))
    assert r.status == 404
    assert r.header("Content-Type", "").startswith(("application/xml", "text/xml"))
    root = r.xml()
    assert root.tag == "Error"
    assert xml_text(root, "Code") == "NoSuchKey"
    assert xml_text(root, "Message")
    resource = xml_text(root, "Resource") or ""
    assert "missing" in resource and bucket in resource, r.body
    assert xml_text(root, "RequestId") == r.header("x-amz-request-id")


def test_get_object_missing_bucket_error_xml(server):
    name = unique_bucket("nob")
    r = server.request("GET", sigv4.object_path(name, "k"))
    assert r.status == 404
    root = r.xml()
    assert xml_text(root, "Code") == "NoSuchBucket"
    assert xml_text(root, "Message")
    assert name in (xml_text(root, "Resource") or "") or xml_text(root, "BucketName") == name
    assert xml_text(root, "RequestId") == r.header("x-amz-request-id")


def test_put_into_missing_bucket(s3):
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=unique_bucket("nob"), Key="k", Body=b"x")
    assert code_status(ei) == ("NoSuchBucket", 404)


def test_zero_byte_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == f'"{EMPTY_MD5}"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    head = s3.head_object(Bucket=bucket, Key="empty")
    assert head["ContentLength"] == 0
    assert head["ETag"] == f'"{EMPTY_MD5}"'
    listing = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listing] == [("empty", 0)]


@pytest.mark.parametrize("size", [1, 16383, 16384, 16385, 65536 + 7, 1024 * 1024 + 3])
def test_sizes_around_inline_threshold(s3, bucket, size):
    body = os.urandom(size)
    key = f"size-{size}"
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=bucket, Key=key)
    data = got["Body"].read()
    assert len(data) == size and data == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
    tail = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={size - 1}-")["Body"].read()
    assert tail == body[-1:]
    (obj,) = s3.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]
    assert obj["Size"] == size and obj["ETag"] == put["ETag"]


def test_20mib_object_md5(s3, bucket):
    body = os.urandom(20 * 1024 * 1024)
    put = s3.put_object(Bucket=bucket, Key="big", Body=body)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    got = s3.get_object(Bucket=bucket, Key="big")
    h = hashlib.md5()
    n = 0
    for chunk in got["Body"].iter_chunks(1 << 20):
        h.update(chunk)
        n += len(chunk)
    assert n == len(body)
    assert h.hexdigest() == md5_hex(body)


# ---- metadata and standard headers ------------------------------------------------


def test_user_metadata_and_standard_headers_round_trip(s3, bucket):
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    s3.put_object(Bucket=bucket, Key="meta", Body=b"payload",
                  Metadata={"color": "blue", "Mixed-Case": "Value With Spaces", "n": "1"},
                  ContentType="text/x-cairn; charset=utf-8",
                  ContentEncoding="gzip",
                  ContentDisposition='attachment; filename="a b.txt"',
                  CacheControl="max-age=60, public",
                  ContentLanguage="de-CH",
                  Expires=expires)
    for resp in (s3.head_object(Bucket=bucket, Key="meta"),
                 s3.get_object(Bucket=bucket, Key="meta")):
        assert resp["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces", "n": "1"}
        assert resp["ContentType"] == "text/x-cairn; charset=utf-8"
        assert resp["ContentEncoding"] == "gzip"
        assert resp["ContentDisposition"] == 'attachment; filename="a b.txt"'
        assert resp["CacheControl"] == "max-age=60, public"
        assert resp["ContentLanguage"] == "de-CH"
        assert resp["Expires"] == expires


def test_default_content_type(server, s3, bucket):
    # boto3 sends no Content-Type for bytes; S3 then stores binary/octet-stream
    # (some servers say application/octet-stream: both are accepted here).
    r = server.request("PUT", sigv4.object_path(bucket, "noct"), body=b"x")
    assert r.status == 200, r
    ct = s3.head_object(Bucket=bucket, Key="noct")["ContentType"]
    assert ct in ("binary/octet-stream", "application/octet-stream")


def test_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                        ResponseContentDisposition="inline",
                        ResponseCacheControl="no-cache")
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    # values arrive percent-encoded in the query: '+' stays '+', spaces and quotes survive
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/ld+json",
                        ResponseContentDisposition='attachment; filename="x y.txt"')
    assert got["ContentType"] == "application/ld+json"
    assert got["ContentDisposition"] == 'attachment; filename="x y.txt"'
    # the stored value is unchanged
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "text/plain"


def test_metadata_too_large(s3, bucket):
    # S3 limits user-defined metadata to 2 KB (names and values, UTF-8 bytes)
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key="fat", Body=b"x", Metadata={"big": "v" * 3000})
    assert code_status(ei) == ("MetadataTooLarge", 400)
    s3.put_object(Bucket=bucket, Key="fit", Body=b"x", Metadata={"ok": "v" * 1500})
    assert s3.head_object(Bucket=bucket, Key="fit")["Metadata"] == {"ok": "v" * 1500}


# ---- integrity ----------------------------------------------------------------------


def test_content_md5_correct_is_accepted(s3, bucket):
    body = b"checked body"
    md5_b64 = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5ok", Body=body, ContentMD5=md5_b64)
    assert s3.get_object(Bucket=bucket, Key="md5ok")["Body"].read() == body


def test_content_md5_mismatch_is_bad_digest(s3, bucket):
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key="md5bad", Body=b"real body", ContentMD5=wrong)
    assert code_status(ei) == ("BadDigest", 400)
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="md5bad")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_content_md5_malformed_is_invalid_digest(server, bucket):
    r = server.request("PUT", sigv4.object_path(bucket, "md5junk"), body=b"abc",
                       headers={"Content-MD5": "not-base64-md5"})
    assert r.status == 400
    assert r.error_code == "InvalidDigest", r


def test_wrong_content_sha256_is_rejected(server, bucket):
    body = b"the body that is sent"
    claimed = hashlib.sha256(b"a different body").hexdigest()
    r = server.request("PUT", sigv4.object_path(bucket, "shabad"), body=body,
                       payload_hash=claimed)
    assert r.status == 400, r
    assert r.error_code == "XAmzContentSHA256Mismatch", r
    r = server.request("HEAD", sigv4.object_path(bucket, "shabad"))
    assert r.status == 404


def test_unsigned_payload_is_accepted(server, bucket):
    r = server.request("PUT", sigv4.object_path(bucket, "unsigned"), body=b"data",
                       payload_hash=sigv4.UNSIGNED_PAYLOAD)
    assert r.status == 200, r
    assert r.header("ETag") == f'"{md5_hex(b"data")}"'


# ---- keys ----------------------------------------------------------------------------


AWKWARD_KEYS = [
    "../escape",
    "a/../../b",
    "dir//double",
    "/leading-slash",
    "trailing/",
    "./dot",
    "ключ/日本語/😀",
    "with space",
    "per%cent%2F",
    "plus+sign",
    "query?a=b&c#frag",
    "tilde~and'quote\"",
    "semi;colon,comma=eq",
    "back\\slash",
    "tab\tkey",
    "<xml>&amp;",
]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_round_trip(s3, bucket, key):
    body = key.encode("utf-8") * 3
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_dot_dot_key_does_not_touch_other_keys(s3, bucket):
    s3.put_object(Bucket=bucket, Key="b", Body=b"plain b")
    s3.put_object(Bucket=bucket, Key="a/../b", Body=b"dotted")
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"plain b"
    assert s3.get_object(Bucket=bucket, Key="a/../b")["Body"].read() == b"dotted"


def test_key_of_1024_bytes_ok_1025_too_long(s3, bucket):
    k1024 = "k" * 1024
    s3.put_object(Bucket=bucket, Key=k1024, Body=b"x")
    assert s3.get_object(Bucket=bucket, Key=k1024)["Body"].read() == b"x"
    # the limit is in UTF-8 bytes, not characters
    kmulti = "é" * 512
    assert len(kmulti.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=kmulti, Body=b"y")
    assert s3.head_object(Bucket=bucket, Key=kmulti)["ContentLength"] == 1
    for too_long in ("k" * 1025, "é" * 512 + "x"):
        with pytest.raises(ClientError) as ei:
            s3.put_object(Bucket=bucket, Key=too_long, Body=b"z")
        assert code_status(ei) == ("KeyTooLongError", 400)


# ---- DeleteObjects ------------------------------------------------------------------


def test_delete_objects_reports_missing_as_deleted(s3, bucket):
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a"}, {"Key": "b"}, {"Key": "missing"}]})
    deleted = sorted(d["Key"] for d in resp.get("Deleted", []))
    assert deleted == ["a", "b", "missing"]
    assert not resp.get("Errors")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["c"]


def test_delete_objects_quiet(s3, bucket):
    for k in ("q1", "q2"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
        {"Key": "q1"}, {"Key": "q2"}, {"Key": "q3"}]})
    assert not resp.get("Deleted"), "Quiet mode reports only errors"
    assert not resp.get("Errors")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_awkward_keys(s3, bucket):
    keys = ["sp ace", "ü/ñ", "amp&lt;", "plus+"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == sorted(keys)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def _post_delete(server, bucket, body):
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return server.request("POST", "/" + bucket, query={"delete": None}, body=body,
                          headers={"Content-MD5": md5, "Content-Type": "application/xml"})


def test_delete_objects_malformed_xml(server, bucket):
    r = _post_delete(server, bucket, b"<Delete><Object><Key>a</Key></Object>")
    assert r.status == 400
    assert r.error_code == "MalformedXML", r
    r = _post_delete(server, bucket, b"this is not xml at all")
    assert r.status == 400
    assert r.error_code == "MalformedXML", r


def test_delete_objects_more_than_1000_keys(server, bucket):
    objs = "".join(f"<Object><Key>k{i}</Key></Object>" for i in range(1001))
    r = _post_delete(server, bucket, f"<Delete>{objs}</Delete>".encode())
    assert r.status == 400
    assert r.error_code == "MalformedXML", r


def test_delete_objects_raw_response_shape(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="r1", Body=b"x")
    body = (b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Object><Key>r1</Key></Object><Object><Key>r2</Key></Object></Delete>")
    r = _post_delete(server, bucket, body)
    assert r.status == 200, r
    root = r.xml()
    assert root.tag.endswith("DeleteResult")
    assert sorted(xml_text(d, "Key") for d in xml_findall(root, "Deleted")) == ["r1", "r2"]


def test_delete_objects_content_md5_mismatch(server, bucket):
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    r = server.request("POST", "/" + bucket, query={"delete": None}, body=body,
                       headers={"Content-MD5": wrong})
    assert r.status == 400
    assert r.error_code == "BadDigest", r


# ---- CopyObject -----------------------------------------------------------------------


def test_copy_object_copy_directive_keeps_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me", ContentType="text/plain",
                  Metadata={"m": "1"})
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                          Metadata={"ignored": "yes"})
    assert resp["CopyObjectResult"]["ETag"] == f'"{md5_hex(b"copy me")}"'
    assert resp["CopyObjectResult"]["LastModified"] is not None
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"m": "1"}


def test_copy_object_replace_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", ContentType="text/plain",
                  Metadata={"m": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"n": "2"}, ContentType="image/png")
    got = s3.head_object(Bucket=bucket, Key="dst")
    assert got["Metadata"] == {"n": "2"}
    assert got["ContentType"] == "image/png"
    # the source is untouched
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"m": "1"}


def test_copy_object_across_buckets_and_awkward_key(s3, bucket):
    other = unique_bucket("copyto")
    s3.create_bucket(Bucket=other)
    src_key = "dir/ü with space+plus%"
    body = os.urandom(40000)
    s3.put_object(Bucket=bucket, Key=src_key, Body=body)
    s3.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": bucket, "Key": src_key})
    assert s3.get_object(Bucket=other, Key="copied")["Body"].read() == body
    # later changes to the source do not affect the copy
    s3.put_object(Bucket=bucket, Key=src_key, Body=b"changed")
    assert s3.get_object(Bucket=other, Key="copied")["Body"].read() == body


def test_copy_object_onto_itself_without_replace(s3, bucket):
    s3.put_object(Bucket=bucket, Key="self", Body=b"x")
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    assert code_status(ei) == ("InvalidRequest", 400)


def test_copy_object_onto_itself_with_replace(s3, bucket):
    s3.put_object(Bucket=bucket, Key="self", Body=b"same bytes", Metadata={"v": "1"})
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"},
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"same bytes"
    assert got["Metadata"] == {"v": "2"}


def test_copy_object_missing_source(s3, bucket):
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    assert code_status(ei) == ("NoSuchKey", 404)


def test_copy_object_large_source(s3, bucket):
    body = os.urandom(6 * 1024 * 1024 + 11)
    s3.put_object(Bucket=bucket, Key="bigsrc", Body=body)
    s3.copy_object(Bucket=bucket, Key="bigdst", CopySource={"Bucket": bucket, "Key": "bigsrc"})
    got = s3.get_object(Bucket=bucket, Key="bigdst")
    assert got["ETag"] == f'"{md5_hex(body)}"'
    assert md5_hex(got["Body"].read()) == md5_hex(body)


# ---- size limits ----------------------------------------------------------------------


def _declared_put(srv, bucket, key, declared, send=b""):
    """Sends a PUT head that declares `declared` bytes, then `send` bytes only,
    and reads the response the server gives without the rest of the body."""
    sock = open_put(srv, bucket, key, declared)
    try:
        if send:
            sock.sendall(send)
        sock.settimeout(15)
        return read_socket_response(sock)
    finally:
        sock.close()


def test_entity_too_large_answered_before_body(make_server):
    limit = 1024 * 1024
    srv = make_server(env={"CAIRN_MAX_OBJECT_SIZE": str(limit)})
    name = unique_bucket("limit")
    s3 = srv.client()
    s3.create_bucket(Bucket=name)
    r = _declared_put(srv, name, "huge", 1024 * 1024 * 1024, send=b"x" * 1000)
    assert r.status == 400, r
    assert r.error_code == "EntityTooLarge", r
    s3.put_object(Bucket=name, Key="at-limit", Body=b"a" * limit)
    assert s3.head_object(Bucket=name, Key="at-limit")["ContentLength"] == limit
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=name, Key="over", Body=b"a" * (limit + 1))
    assert code_status(ei) == ("EntityTooLarge", 400)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["at-limit"]


def test_default_limit_rejects_over_5gib(server, bucket):
    r = _declared_put(server, bucket, "over5g", 5 * 1024 ** 3 + 1)
    assert r.status == 400, r
    assert r.error_code == "EntityTooLarge", r


# ---- connection reuse --------------------------------------------------------------------


def _read_one_response(sock, buf):
    """Reads one HTTP response (with Content-Length) from sock; buf holds bytes
    already received.  Returns (status, headers dict lowercased, body, leftover)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"connection closed before a full response head: {buf[:200]!r}"
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        data = sock.recv(65536)
        assert data, "connection closed inside a response body"
        rest += data
    return status, headers, rest[:n], rest[n:]


def test_keep_alive_after_early_error_response(server, s3, bucket):
    """An error answered before the body was read (PUT into a missing bucket)
    must not leave body bytes to be parsed as the next request on the same
    connection: the server drains them or closes the connection."""
    s3.put_object(Bucket=bucket, Key="after", Body=b"the right answer")
    body = b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n" * 20000   # ~ 700 KB of fake requests
    path = sigv4.object_path(unique_bucket("missing"), "k")
    headers, _, _ = sigv4.sign_request("PUT", path, None, {"Host": server.host,
                                       "Content-Length": str(len(body))},
                                       *server.root, sigv4.UNSIGNED_PAYLOAD)
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        try:
            sock.sendall(head.encode() + b"\r\n" + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed early: the response must still be readable
        status, hdrs, _b, left = _read_one_response(sock, b"")
        assert status == 404
        if hdrs.get("connection", "").lower() == "close":
            rest = left
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    rest += data
            except ConnectionResetError:
                pass
            assert b"HTTP/1." not in rest, "the body was parsed as further requests"
            return
        path = sigv4.object_path(bucket, "after")
        headers, _, _ = sigv4.sign_request("GET", path, None, {"Host": server.host},
                                           *server.root, sigv4.EMPTY_SHA256)
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(req.encode() + b"\r\n")
        status, _h, got, _left = _read_one_response(sock, left)
        assert (status, got) == (200, b"the right answer")


# ---- large bodies: hashed on a background thread (>= 4 MiB) -----------------------------------

LARGE = 6 * 1024 * 1024 + 12345


def _large_body(seed):
    return hashlib.sha256(seed).digest() * (LARGE // 32) + b"x" * (LARGE % 32)


def test_large_signed_payload_round_trip(server, bucket):
    body = _large_body(b"ok")
    r = server.request("PUT", sigv4.object_path(bucket, "large-ok"), body=body,
                       payload_hash=hashlib.sha256(body).hexdigest(),
                       headers={"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                                "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()})
    assert r.status == 200, r
    assert r.header("ETag") == '"%s"' % hashlib.md5(body).hexdigest()
    r = server.request("GET", sigv4.object_path(bucket, "large-ok"))
    assert r.status == 200 and hashlib.md5(r.body).digest() == hashlib.md5(body).digest()


def test_large_wrong_content_md5_is_bad_digest(server, bucket):
    body = _large_body(b"md5")
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    r = server.request("PUT", sigv4.object_path(bucket, "large-md5"), body=body,
                       headers={"Content-MD5": wrong})
    assert (r.status, r.error_code) == (400, "BadDigest"), r
    assert server.request("HEAD", sigv4.object_path(bucket, "large-md5")).status == 404


def test_large_wrong_content_sha256_is_rejected(server, bucket):
    body = _large_body(b"sha")
    r = server.request("PUT", sigv4.object_path(bucket, "large-sha"), body=body,
                       payload_hash=hashlib.sha256(body[:-1] + b"!").hexdigest())
    assert (r.status, r.error_code) == (400, "XAmzContentSHA256Mismatch"), r
    assert server.request("HEAD", sigv4.object_path(bucket, "large-sha")).status == 404


def test_large_wrong_checksum_crc32_is_bad_digest(server, bucket):
    body = _large_body(b"crc")
    import zlib
    crc = zlib.crc32(body[1:]).to_bytes(4, "big")
    r = server.request("PUT", sigv4.object_path(bucket, "large-crc"), body=body,
                       headers={"x-amz-checksum-crc32": base64.b64encode(crc).decode()})
    assert (r.status, r.error_code) == (400, "BadDigest"), r
    good = zlib.crc32(body).to_bytes(4, "big")
    r = server.request("PUT", sigv4.object_path(bucket, "large-crc"), body=body,
                       headers={"x-amz-checksum-crc32": base64.b64encode(good).decode()})
    assert r.status == 200, r
