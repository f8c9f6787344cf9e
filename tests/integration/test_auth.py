"""Authentication and authorisation: SigV4 header auth, bad secrets and
unknown keys, presigned URLs (valid, expired, tampered), clock skew,
anonymous access and public buckets, aws-chunked streaming uploads (signed
chunks and the unsigned-trailer form modern SDKs use), user isolation, key
management through the admin CLI.
"""

import base64
import hashlib
import http.client
import os
import urllib.parse
import zlib

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import md5_hex, unique_bucket, unique_name, wait_until, xml_findall, xml_text


def code_status(excinfo):
    r = excinfo.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


# ---- header auth --------------------------------------------------------------------------


def test_wrong_secret_is_signature_does_not_match(server, root_creds, bucket):
    bad = server.client(root_creds[0], root_creds[1][:-1] + ("A" if root_creds[1][-1] != "A" else "B"))
    with pytest.raises(ClientError) as ei:
        bad.list_objects_v2(Bucket=bucket)
    assert code_status(ei) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as ei:
        bad.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert code_status(ei) == ("SignatureDoesNotMatch", 403)
    assert server.client().list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_unknown_access_key(server, bucket):
    c = server.client("AKIDOESNOTEXIST00000", "x" * 40)
    with pytest.raises(ClientError) as ei:
        c.list_buckets()
    assert code_status(ei) == ("InvalidAccessKeyId", 403)


def test_raw_signed_request_matches_server(server, bucket):
    # our own signer (used by the other raw tests) agrees with the server
    r = server.request("PUT", sigv4.object_path(bucket, "raw key/ü"), body=b"raw",
                       headers={"Content-Type": "text/plain", "x-amz-meta-a": "b   c"})
    assert r.status == 200, r
    r = server.request("GET", sigv4.object_path(bucket, "raw key/ü"))
    assert (r.status, r.body) == (200, b"raw")


def test_header_value_whitespace_is_trimmed(server, bucket):
    # HTTP field values exclude leading and trailing whitespace (RFC 7230 3.2.4);
    # SigV4 canonicalisation trims them too, so the stored value must not keep them.
    r = server.request("PUT", sigv4.object_path(bucket, "ws"), body=b"x",
                       headers={"x-amz-meta-a": "  b   c  "})
    assert r.status == 200, r
    r = server.request("HEAD", sigv4.object_path(bucket, "ws"))
    assert r.header("x-amz-meta-a") in ("b   c", "b c"), repr(r.header("x-amz-meta-a"))


def test_tampered_header_after_signing(server, bucket):
    path = sigv4.object_path(bucket, "t")
    headers, _sig, _ = sigv4.sign_request("PUT", path, None, {"Host": server.host,
                                          "x-amz-meta-signed": "yes"}, *server.root,
                                          hashlib.sha256(b"x").hexdigest())
    headers["x-amz-meta-signed"] = "no"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("PUT", path, body=b"x", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 403
    assert b"SignatureDoesNotMatch" in body
    assert server.request("HEAD", path).status == 404


@pytest.mark.parametrize("offset", [-20 * 60, 20 * 60])
def test_request_time_too_skewed(server, bucket, offset):
    r = server.request("GET", "/" + bucket, query={"list-type": "2"},
                       date=sigv4.amz_date(offset))
    assert r.status == 403, r
    assert r.error_code == "RequestTimeTooSkewed", r


def test_small_skew_is_accepted(server, bucket):
    r = server.request("GET", "/" + bucket, query={"list-type": "2"}, date=sigv4.amz_date(-60))
    assert r.status == 200, r


def test_malformed_authorization_header(server, bucket):
    r = server.request("GET", "/" + bucket, anonymous=True,
                       headers={"Authorization": "AWS4-HMAC-SHA256 Credential=garbage"})
    assert r.status == 400, r
    assert r.error_code == "AuthorizationHeaderMalformed", r


def test_wrong_region_in_credential_scope(server, bucket):
    path = "/" + bucket
    headers, _, _ = sigv4.sign_request("GET", path, None, {"Host": server.host}, *server.root,
                                       sigv4.EMPTY_SHA256, region="eu-west-1")
    r = server.get_url("GET", path, headers=headers)
    assert r.status == 400, r
    assert r.error_code == "AuthorizationHeaderMalformed", r



# ---- presigned URLs -------------------------------------------------------------------------


def split_url(url):
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


def test_presigned_get_and_put_boto3(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="pre/get me", Body=b"presigned content")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre/get me"},
                                    ExpiresIn=300)
    r = server.get_url("GET", split_url(url))
    assert (r.status, r.body) == (200, b"presigned content")

    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "pre/put"},
                                    ExpiresIn=300)
    r = server.get_url("PUT", split_url(url), body=b"uploaded via url")
    assert r.status == 200, r
    assert s3.get_object(Bucket=bucket, Key="pre/put")["Body"].read() == b"uploaded via url"


def test_presigned_awkward_keys(server, s3, bucket):
    for key in ("pre/ü + space", "pre/a%2Fb", "pre/~tilde=eq&amp", "pre/日本/😀"):
        put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key})
        r = server.get_url("PUT", split_url(put), body=key.encode())
        assert r.status == 200, (key, r)
        get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
        r = server.get_url("GET", split_url(get))
        assert (r.status, r.body) == (200, key.encode()), (key, r)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()


def test_presigned_url_with_own_signer(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"data")
    path = sigv4.object_path(bucket, "p")
    q = sigv4.presign("GET", server.host, path, *server.root, expires=60)
    r = server.get_url("GET", path + "?" + q)
    assert (r.status, r.body) == (200, b"data")


def test_presigned_expired(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"data")
    path = sigv4.object_path(bucket, "p")
    # signed two hours ago, valid for 60 seconds
    q = sigv4.presign("GET", server.host, path, *server.root, expires=60,
                      date=sigv4.amz_date(-7200))
    r = server.get_url("GET", path + "?" + q)
    assert r.status == 403, r
    assert r.error_code == "AccessDenied", r


def test_presigned_boto3_url_expires(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="short", Body=b"short-lived")
    url = split_url(s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "short"}, ExpiresIn=1))
    # valid at first (or already expired on a slow machine), then refused for good
    wait_until(lambda: server.get_url("GET", url).status == 403, 15,
               interval=0.25, what="the 1-second presigned URL to expire")
    r = server.get_url("GET", url)
    assert (r.status, r.error_code) == (403, "AccessDenied"), r


def test_presigned_tampered(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"data")
    s3.put_object(Bucket=bucket, Key="q", Body=b"other")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"},
                                    ExpiresIn=300)
    pq = split_url(url)
    # another key with the same signature
    r = server.get_url("GET", pq.replace(f"/{bucket}/p?", f"/{bucket}/q?"))
    assert r.status == 403, r
    assert r.error_code == "SignatureDoesNotMatch", r
    # a longer lifetime than the one signed
    r = server.get_url("GET", pq.replace("X-Amz-Expires=300", "X-Amz-Expires=600"))
    assert r.status == 403, r
    assert r.error_code == "SignatureDoesNotMatch", r
    # the GET URL used for a PUT
    r = server.get_url("PUT", pq, body=b"overwrite attempt")
    assert r.status == 403, r
    assert r.error_code == "SignatureDoesNotMatch", r
    assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == b"data"
    # a flipped signature digit
    sig_at = pq.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "0" if pq[sig_at] != "0" else "1"
    r = server.get_url("GET", pq[:sig_at] + flipped + pq[sig_at + 1:])
    assert r.status == 403, r
    assert r.error_code == "SignatureDoesNotMatch", r


@pytest.mark.parametrize("expires", [604801, 0, -1, 10**12])
def test_presigned_expires_out_of_range_is_access_denied(server, s3, bucket, expires):
    # As AWS answers: zero, negative or over a week is 403 AccessDenied.
    path = sigv4.object_path(bucket, "p")
    q = sigv4.presign("GET", server.host, path, *server.root, expires=expires)
    r = server.get_url("GET", path + "?" + q)
    assert (r.status, r.error_code) == (403, "AccessDenied"), r


# ---- anonymous and public buckets -------------------------------------------------------------


def test_anonymous_denied(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s")
    for method, path, query, body in [
        ("GET", "/", None, b""),
        ("GET", "/" + bucket, {"list-type": "2"}, b""),
        ("GET", sigv4.object_path(bucket, "secret"), None, b""),
        ("PUT", sigv4.object_path(bucket, "anon"), None, b"x"),
        ("DELETE", sigv4.object_path(bucket, "secret"), None, b""),
        ("PUT", "/" + unique_bucket("anon"), None, b""),
    ]:
        r = server.request(method, path, query=query, body=body, anonymous=True)
        assert r.status == 403, (method, path, r)
        assert r.error_code == "AccessDenied", (method, path, r)
    r = server.request("HEAD", sigv4.object_path(bucket, "secret"), anonymous=True)
    assert r.status == 403
    assert s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"s"


# Anonymous requests in the public-bucket test carry x-amz-content-sha256 as
# SDKs send it; test_public_object_plain_http_get covers a bare browser-like GET.
UNSIGNED_HDR = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}


def test_public_bucket_via_admin_cli(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="pub/file.txt", Body=b"public data", ContentType="text/plain")
    path = sigv4.object_path(bucket, "pub/file.txt")
    assert server.request("GET", path, anonymous=True, headers=UNSIGNED_HDR).status == 403

    server.admin("bucket", "set-public", bucket)
    r = server.request("GET", path, anonymous=True, headers=UNSIGNED_HDR)
    assert (r.status, r.body) == (200, b"public data")
    r = server.request("HEAD", path, anonymous=True, headers=UNSIGNED_HDR)
    assert r.status == 200 and r.header("Content-Length") == "11"
    r = server.request("GET", "/" + bucket, query={"list-type": "2"}, anonymous=True, headers=UNSIGNED_HDR)
    assert r.status == 200, r
    assert [xml_text(c, "Key") for c in xml_findall(r.xml(), "Contents")] == ["pub/file.txt"]
    r = server.request("GET", "/" + bucket, anonymous=True, headers=UNSIGNED_HDR)
    assert r.status == 200, r
    # writes stay private
    r = server.request("PUT", sigv4.object_path(bucket, "pub/new"), body=b"x", anonymous=True, headers=UNSIGNED_HDR)
    assert (r.status, r.error_code) == (403, "AccessDenied")
    r = server.request("DELETE", path, anonymous=True, headers=UNSIGNED_HDR)
    assert (r.status, r.error_code) == (403, "AccessDenied")
    r = server.request("POST", "/" + bucket, query={"delete": None}, anonymous=True,
                       body=b"<Delete><Object><Key>pub/file.txt</Key></Object></Delete>",
                       headers=dict(UNSIGNED_HDR, **{"Content-MD5": base64.b64encode(hashlib.md5(
                           b"<Delete><Object><Key>pub/file.txt</Key></Object></Delete>").digest()).decode()}))
    # The bucket has a policy now, which could grant deletes of some keys:
    # each key is judged, as S3 does, and refused on its own.
    assert r.status == 200 and b"<Code>AccessDenied</Code>" in r.body and b"<Deleted>" not in r.body, r
    r = server.request("DELETE", "/" + bucket, anonymous=True, headers=UNSIGNED_HDR)
    assert r.status == 403
    assert s3.get_object(Bucket=bucket, Key="pub/file.txt")["Body"].read() == b"public data"
    # other buckets stay private
    other = unique_bucket("priv")
    s3.create_bucket(Bucket=other)
    assert server.request("GET", "/" + other, query={"list-type": "2"}, anonymous=True, headers=UNSIGNED_HDR).status == 403

    server.admin("bucket", "set-public", bucket, "--off")
    r = server.request("GET", path, anonymous=True, headers=UNSIGNED_HDR)
    assert (r.status, r.error_code) == (403, "AccessDenied")


def test_public_object_plain_http_get(server, s3, bucket):
    """A browser or curl fetching a public object sends no S3 headers at all."""
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"<p>hi</p>", ContentType="text/html")
    server.admin("bucket", "set-public", bucket)
    import urllib.request
    with urllib.request.urlopen(f"{server.endpoint}/{bucket}/page.html", timeout=30) as resp:
        assert resp.status == 200
        assert resp.read() == b"<p>hi</p>"
        assert resp.headers["Content-Type"] == "text/html"
    with urllib.request.urlopen(f"{server.endpoint}/{bucket}?list-type=2", timeout=30) as resp:
        assert b"page.html" in resp.read()
    # boto3 with signing disabled (how SDK users read public buckets)
    anon = server.anonymous_client()
    assert anon.get_object(Bucket=bucket, Key="page.html")["Body"].read() == b"<p>hi</p>"


def test_set_public_unknown_bucket_fails(server):
    cp = server.admin("bucket", "set-public", unique_bucket("nobkt"), check=False)
    assert cp.returncode != 0
    assert cp.stderr.strip()


# ---- streaming uploads -------------------------------------------------------------------------


def streaming_put(server, bucket, key, payload, chunk_size=64 * 1024, tamper_index=None,
                  creds=None):
    """Sends a STREAMING-AWS4-HMAC-SHA256-PAYLOAD PUT; returns the Response."""
    ak, sk = creds or server.root
    path = sigv4.object_path(bucket, key)
    chunks = sigv4.split_chunks(payload, chunk_size)
    headers = {
        "Host": server.host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(payload)),
        "Content-Length": str(sigv4.encoded_length(len(payload), chunk_size)),
        "Content-Type": "application/octet-stream",
    }
    headers, seed, date = sigv4.sign_request("PUT", path, None, headers, ak, sk,
                                             sigv4.STREAMING_PAYLOAD)
    body = sigv4.encode_signed_chunks(chunks, sk, date, seed, tamper_index=tamper_index)
    assert len(body) == int(headers["Content-Length"])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            for i in range(0, len(body), 16384):
                conn.send(body[i:i + 16384])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before reading everything
        resp = conn.getresponse()
        return http_response(resp)
    finally:
        conn.close()


def http_response(resp):
    from conftest import Response
    return Response(resp.status, resp.reason, resp.headers, resp.read())


def test_streaming_signed_upload(server, s3, bucket):
    payload = os.urandom(200 * 1024 + 17)
    r = streaming_put(server, bucket, "streamed", payload)
    assert r.status == 200, r
    assert r.header("ETag") == f'"{md5_hex(payload)}"'
    got = s3.get_object(Bucket=bucket, Key="streamed")
    assert got["Body"].read() == payload
    assert got["ContentLength"] == len(payload)
    # aws-chunked is a transfer detail: it is not stored as the Content-Encoding
    assert got.get("ContentEncoding") in (None, "")


def test_streaming_signed_small_single_chunk(server, s3, bucket):
    r = streaming_put(server, bucket, "tiny", b"hello")
    assert r.status == 200, r
    assert s3.get_object(Bucket=bucket, Key="tiny")["Body"].read() == b"hello"


def test_streaming_signed_tampered_chunk(server, s3, bucket):
    payload = os.urandom(200 * 1024)
    r = streaming_put(server, bucket, "tampered", payload, tamper_index=1)
    assert r.status == 403, r
    assert r.error_code == "SignatureDoesNotMatch", r
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="tampered")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_streaming_signed_tampered_last_chunk_keeps_old_version(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"old version")
    payload = os.urandom(100 * 1024)
    chunks = len(sigv4.split_chunks(payload, 64 * 1024))
    r = streaming_put(server, bucket, "keep", payload, tamper_index=chunks - 2)
    assert r.status == 403, r
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"old version"


def test_streaming_decoded_length_mismatch(server, s3, bucket):
    """x-amz-decoded-content-length larger than the chunks carry: IncompleteBody."""
    ak, sk = server.root
    payload = os.urandom(20000)
    path = sigv4.object_path(bucket, "short-stream")
    headers = {
        "Host": server.host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(payload) + 100),
        "Content-Length": str(sigv4.encoded_length(len(payload), 64 * 1024)),
    }
    headers, seed, date = sigv4.sign_request("PUT", path, None, headers, ak, sk,
                                             sigv4.STREAMING_PAYLOAD)
    body = sigv4.encode_signed_chunks(sigv4.split_chunks(payload, 64 * 1024), sk, date, seed)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        r = http_response(conn.getresponse())
    finally:
        conn.close()
    assert r.status == 400, r
    assert r.error_code == "IncompleteBody", r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="short-stream")


def unsigned_trailer_put(server, bucket, key, payload, checksum_b64, chunk_size=64 * 1024):
    path = sigv4.object_path(bucket, key)
    body = sigv4.encode_unsigned_trailer_chunks(sigv4.split_chunks(payload, chunk_size),
                                                "x-amz-checksum-crc32", checksum_b64)
    headers = {
        "Host": server.host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(payload)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "Content-Length": str(len(body)),
    }
    return server.request("PUT", path, headers=headers, body=body,
                          payload_hash=sigv4.STREAMING_UNSIGNED_TRAILER)


def crc32_b64(data):
    return base64.b64encode((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")).decode()


def test_streaming_unsigned_trailer_upload(server, s3, bucket):
    payload = os.urandom(150 * 1024 + 5)
    r = unsigned_trailer_put(server, bucket, "trailer", payload, crc32_b64(payload))
    assert r.status == 200, r
    assert r.header("ETag") == f'"{md5_hex(payload)}"'
    assert s3.get_object(Bucket=bucket, Key="trailer")["Body"].read() == payload


def test_streaming_unsigned_trailer_bad_checksum(server, s3, bucket):
    payload = os.urandom(70 * 1024)
    r = unsigned_trailer_put(server, bucket, "badcrc", payload, crc32_b64(b"not the payload"))
    assert r.status == 400, r
    assert r.error_code in ("BadDigest", "InvalidRequest"), r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="badcrc")


def test_checksum_header_mismatch(server, s3, bucket):
    # x-amz-checksum-crc32 in a header (what modern SDKs send over http)
    r = server.request("PUT", sigv4.object_path(bucket, "crchdr"), body=b"abc",
                       headers={"x-amz-checksum-crc32": crc32_b64(b"xyz")})
    assert r.status == 400, r
    assert r.error_code in ("BadDigest", "InvalidRequest"), r
    r = server.request("PUT", sigv4.object_path(bucket, "crchdr"), body=b"abc",
                       headers={"x-amz-checksum-crc32": crc32_b64(b"abc")})
    assert r.status == 200, r


# ---- users and keys -----------------------------------------------------------------------------


def test_user_isolation(server, s3, user):
    other = server.create_user()
    ua = server.client(user.access_key, user.secret)
    ub = server.client(other.access_key, other.secret)
    name = unique_bucket("iso")
    ua.create_bucket(Bucket=name)
    ua.put_object(Bucket=name, Key="private", Body=b"a's data")

    assert name not in [b["Name"] for b in ub.list_buckets()["Buckets"]]
    attempts = [
        lambda: ub.get_object(Bucket=name, Key="private"),
        lambda: ub.put_object(Bucket=name, Key="intruder", Body=b"x"),
        lambda: ub.delete_object(Bucket=name, Key="private"),
        lambda: ub.list_objects_v2(Bucket=name),
        lambda: ub.list_objects(Bucket=name),
        lambda: ub.delete_bucket(Bucket=name),
        lambda: ub.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "private"}),
        lambda: ub.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "private"}]}),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as ei:
            resp = attempt()
            # DeleteObjects may report per-key errors instead of failing whole
            if resp.get("Errors"):
                raise ClientError({"Error": {"Code": resp["Errors"][0]["Code"]},
                                   "ResponseMetadata": {"HTTPStatusCode": 403}}, "DeleteObjects")
        assert code_status(ei) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as ei:
        ub.head_object(Bucket=name, Key="private")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as ei:
        ub.head_bucket(Bucket=name)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # b cannot copy a's object into its own bucket either
    mine = unique_bucket("isob")
    ub.create_bucket(Bucket=mine)
    with pytest.raises(ClientError) as ei:
        ub.copy_object(Bucket=mine, Key="stolen", CopySource={"Bucket": name, "Key": "private"})
    assert code_status(ei) == ("AccessDenied", 403)

    # a's data is intact, root sees it
    assert ua.get_object(Bucket=name, Key="private")["Body"].read() == b"a's data"
    assert s3.get_object(Bucket=name, Key="private")["Body"].read() == b"a's data"
    assert [o["Key"] for o in ua.list_objects_v2(Bucket=name)["Contents"]] == ["private"]
    # presigned URLs carry the signer's rights, no more
    url = ub.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "private"})
    r = server.get_url("GET", split_url(url))
    assert (r.status, r.error_code) == (403, "AccessDenied")


def test_admin_user_create_duplicate_fails(server, user):
    cp = server.admin("user", "create", user.name, check=False)
    assert cp.returncode == 1, cp
    assert cp.stderr.strip(), "an error message on stderr"
    assert user.secret not in cp.stdout + cp.stderr


def test_admin_user_create_output(server):
    name = unique_name("fmt")
    cp = server.admin("user", "create", name)
    assert cp.returncode == 0
    assert cp.fields["user"] == name
    assert len(cp.fields["access_key_id"]) >= 16
    assert len(cp.fields["secret_access_key"]) >= 30
    c = server.client(cp.fields["access_key_id"], cp.fields["secret_access_key"])
    assert c.list_buckets()["Buckets"] == []


def test_key_create_list_revoke(server, user):
    cp = server.admin("key", "create", user.name)
    ak2, sk2 = cp.fields["access_key_id"], cp.fields["secret_access_key"]
    assert ak2 != user.access_key
    c1 = server.client(user.access_key, user.secret)
    c2 = server.client(ak2, sk2)
    name = unique_bucket("keys")
    c1.create_bucket(Bucket=name)
    c2.put_object(Bucket=name, Key="by-key-2", Body=b"x")  # same user, same buckets

    listing = server.admin("key", "list", user.name).stdout.split("\n")
    rows = {ln.split()[0]: ln.split()[1:] for ln in listing if ln.strip()}
    assert rows[user.access_key] == [user.name, "active"]
    assert rows[ak2] == [user.name, "active"]
    assert len(rows) == 2

    server.admin("key", "revoke", ak2)
    with pytest.raises(ClientError) as ei:
        c2.list_objects_v2(Bucket=name)
    assert code_status(ei) == ("InvalidAccessKeyId", 403)
    # the other key still works
    assert c1.list_objects_v2(Bucket=name)["KeyCount"] == 1
    listing = server.admin("key", "list", user.name).stdout.split("\n")
    rows = {ln.split()[0]: ln.split()[1:] for ln in listing if ln.strip()}
    assert rows[ak2] == [user.name, "revoked"]
    assert rows[user.access_key] == [user.name, "active"]
    # presigned URLs made with the revoked key stop working too
    url = c2.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "by-key-2"})
    r = server.get_url("GET", split_url(url))
    assert r.status == 403

    # `key list` without a name lists keys of every user
    all_rows = server.admin("key", "list").stdout
    assert user.access_key in all_rows and ak2 in all_rows


def test_key_create_for_unknown_user_fails(server):
    cp = server.admin("key", "create", unique_name("ghost"), check=False)
    assert cp.returncode != 0
    assert cp.stderr.strip()
