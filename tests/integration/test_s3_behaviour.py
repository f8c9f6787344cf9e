"""S3 behaviour checked against the S3 API reference where cairn differed:
max-keys=0, an empty continuation-token, empty user metadata, aws-chunked in
Content-Encoding, partNumber on objects uploaded whole, version ids (until
versioning exists every object's version is "null"), malformed URIs (400,
never a 5xx an SDK would retry forever) and keys that are not UTF-8."""
import http.client
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import xml_findall, xml_text


def listing(server, bucket, **query):
    r = server.request("GET", f"/{bucket}", query=query)
    assert r.status == 200, r
    return r.xml()


@pytest.mark.parametrize("v2", [False, True])
def test_max_keys_zero_lists_nothing_and_is_not_truncated(server, s3, bucket, v2):
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    q = {"max-keys": "0"}
    if v2:
        q["list-type"] = "2"
    doc = listing(server, bucket, **q)
    assert xml_findall(doc, "Contents") == []
    assert xml_text(doc, "IsTruncated") == "false"
    assert xml_text(doc, "MaxKeys") == "0"
    if v2:
        assert xml_text(doc, "KeyCount") == "0"


def test_empty_continuation_token_is_no_token(server, s3, bucket):
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    doc = listing(server, bucket, **{"list-type": "2", "continuation-token": ""})
    assert [xml_text(c, "Key") for c in xml_findall(doc, "Contents")] == ["a", "b", "c"]


def test_bogus_continuation_token_is_invalid_argument(server, bucket):
    for tok in ("not-base64!", "QUFB", "S2FhAA==", "A" * 5000):
        r = server.request("GET", f"/{bucket}", query={"list-type": "2", "continuation-token": tok})
        assert (r.status, r.error_code) == (400, "InvalidArgument"), (tok, r)


@pytest.mark.parametrize("bad", ["-1", "abc", "1e3", " 5", "+5", ""])
def test_bad_max_keys(server, bucket, bad):
    r = server.request("GET", f"/{bucket}", query={"max-keys": bad})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r


def test_huge_max_keys_is_capped(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    doc = listing(server, bucket, **{"max-keys": "99999999999999999999999"})
    assert xml_text(doc, "MaxKeys") == "1000"


def test_user_metadata_with_an_empty_value_is_kept(server, bucket):
    r = server.request("PUT", f"/{bucket}/k", body=b"x", headers={"x-amz-meta-empty": "", "x-amz-meta-full": "v"})
    assert r.status == 200, r
    h = server.request("HEAD", f"/{bucket}/k")
    assert h.header("x-amz-meta-full") == "v"
    assert h.header("x-amz-meta-empty") == "", dict(h.headers)


def test_content_encoding_keeps_everything_but_aws_chunked(server, bucket):
    from test_auth import streaming_put
    for sent, stored in (("gzip, aws-chunked", "gzip"), ("aws-chunked,gzip", "gzip"),
                         ("aws-chunked", None), ("gzip,br, aws-chunked", "gzip,br")):
        r = streaming_put(server, bucket, "enc", b"payload")
        assert r.status == 200
        path = sigv4.object_path(bucket, "enc")
        headers = {"Host": server.host, "Content-Encoding": sent, "x-amz-decoded-content-length": "7",
                   "Content-Length": str(sigv4.encoded_length(7, 64 * 1024))}
        headers, seed, date = sigv4.sign_request("PUT", path, None, headers, *server.root, sigv4.STREAMING_PAYLOAD)
        body = sigv4.encode_signed_chunks(sigv4.split_chunks(b"payload", 64 * 1024), server.root[1], date, seed)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("PUT", path, body=body, headers=headers)
        assert conn.getresponse().status == 200
        conn.close()
        h = server.request("HEAD", path)
        assert h.header("Content-Encoding") == stored, (sent, dict(h.headers))


def test_part_number_on_an_object_uploaded_whole(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="whole", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="whole", PartNumber=1)
    assert got["Body"].read() == b"0123456789"
    for method in ("GET", "HEAD"):
        r = server.request(method, f"/{bucket}/whole", query={"partNumber": "2"})
        assert r.status == 400, r
        if method == "GET":
            assert r.error_code == "InvalidPartNumber"


def test_part_numbers_are_those_uploaded_not_positions(server, s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="gappy")["UploadId"]
    p1 = b"a" * (5 * 1024 * 1024)
    p3 = b"tail"
    e1 = s3.upload_part(Bucket=bucket, Key="gappy", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e3 = s3.upload_part(Bucket=bucket, Key="gappy", UploadId=uid, PartNumber=3, Body=p3)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="gappy", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e3}]})
    assert s3.get_object(Bucket=bucket, Key="gappy", PartNumber=3)["Body"].read() == p3
    r = server.request("GET", f"/{bucket}/gappy", query={"partNumber": "2"})
    assert (r.status, r.error_code) == (400, "InvalidPartNumber"), r


# ---- versions --------------------------------------------------------------------------------


def test_version_id_null_is_the_object(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="v", Body=b"current")
    got = s3.get_object(Bucket=bucket, Key="v", VersionId="null")
    assert got["Body"].read() == b"current"
    assert got["VersionId"] == "null"
    assert s3.head_object(Bucket=bucket, Key="v", VersionId="null")["ContentLength"] == 7
    for method in ("GET", "HEAD"):
        r = server.request(method, f"/{bucket}/v", query={"versionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"})
        assert r.status == 404, r
        if method == "GET":
            assert r.error_code == "NoSuchVersion"
    r = server.request("GET", f"/{bucket}/v", query={"versionId": ""})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r


def test_copy_source_version_id(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source bytes")
    s3.copy_object(Bucket=bucket, Key="by-null", CopySource={"Bucket": bucket, "Key": "src", "VersionId": "null"})
    assert s3.get_object(Bucket=bucket, Key="by-null")["Body"].read() == b"source bytes"
    with pytest.raises(ClientError) as ei:
        s3.copy_object(Bucket=bucket, Key="bogus", CopySource={"Bucket": bucket, "Key": "src",
                                                               "VersionId": "notaversion"})
    assert ei.value.response["Error"]["Code"] == "NoSuchVersion"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bogus")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as ei:
        s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src", "VersionId": "notaversion"})
    assert ei.value.response["Error"]["Code"] == "NoSuchVersion"


def test_delete_version_null_deletes_the_object(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    assert server.request("DELETE", f"/{bucket}/d", query={"versionId": "null"}).status == 204
    assert server.request("HEAD", f"/{bucket}/d").status == 404


# ---- malformed URIs and keys ------------------------------------------------------------------


def raw_signed(server, method, raw_path, raw_query=""):
    """Sends a request whose path is exactly raw_path (already encoded as it
    should go on the wire), signed over the same bytes."""
    headers = {"Host": server.host}
    headers, _s, _d = sigv4.sign_request(method, raw_path, None, headers, *server.root,
                                         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, raw_path + ("?" + raw_query if raw_query else ""), headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/{b}/bad%zz", "/{b}/trailing%", "/{b}/nul%00byte", "/{b}/%G1",
                                  "/{b}%00/k", "/{b}/half%c"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_malformed_uri_is_400_invalid_uri(server, bucket, path, method):
    status, body = raw_signed(server, method, path.format(b=bucket))
    assert status == 400, (path, body)
    assert b"<Code>InvalidURI</Code>" in body


@pytest.mark.parametrize("query", ["prefix=%zz", "prefix=%", "prefix=a%00b", "prefix=%ff", "max-keys=1&x=%c3"])
def test_malformed_query_is_400(server, bucket, query):
    status, body = raw_signed(server, "GET", f"/{bucket}", query)
    assert status == 400, (query, body)
    assert b"<Code>InvalidURI</Code>" in body


@pytest.mark.parametrize("key", ["%FF", "a%C3%28b", "%ED%A0%80", "%C0%AF", "%F4%90%80%80", "a%80"])
def test_keys_that_are_not_utf8_are_refused(server, s3, bucket, key):
    status, body = raw_signed(server, "PUT", f"/{bucket}/{key}")
    assert status == 400 and b"<Code>InvalidURI</Code>" in body, body
    # Nothing was stored, and a listing still parses.
    doc = ET.fromstring(server.request("GET", f"/{bucket}").body)
    assert xml_findall(doc, "Contents") == []


def test_utf8_keys_still_work(server, s3, bucket):
    for key in ("caf\u00e9", "\U0001f600/x", "\u4e2d\u6587", "a\u0301"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert len(keys) == 4
