"""S3 multipart upload against a real cairn server.

Covers CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
AbortMultipartUpload, ListParts and ListMultipartUploads as boto3, raw signed
requests and the AWS CLI see them, and the objects they produce: GET/HEAD of
the whole object, Range reads inside and across parts, ?partNumber=N,
ListObjectsV2, CopyObject from a multipart source.

S3's rules checked: parts of at least 5 MiB except the last (EntityTooSmall),
part numbers 1..10000 (InvalidArgument), an ascending completion list
(InvalidPartOrder), known parts with matching ETags (InvalidPart), well-formed
XML (MalformedXML), upload ids that exist and belong to the key
(NoSuchUpload), bucket ownership (AccessDenied), and the multipart ETag:
md5 of the concatenated binary part md5s, then "-<number of parts>".

Storage is checked from outside: without --drives a server keeps one drive,
<data>/drives/d0, whose objects/ directory holds one file per stored shard.
Tests that count those files use a fresh server of their own (`make_server`)
so nothing else writes there meanwhile.  Parts are always stored as shards
(never inline), so every uploaded part adds files; small plain PUTs are
inline and add none.

UploadPartCopy is not implemented yet; its test asserts 501 NotImplemented so
that it fails (and gets rewritten) when the operation lands.
"""

import base64
import hashlib
import os
import random
import subprocess
from pathlib import Path

import boto3.s3.transfer
import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import aws_cli_env, unique_bucket, xml_text

KiB = 1024
MiB = 1024 * KiB
PART = 5 * MiB   # S3's minimum size of every part but the last


# ---- helpers ---------------------------------------------------------------------------


def rbytes(n, seed):
    """n reproducible pseudo-random bytes (cheaper than os.urandom for MiBs)."""
    return random.Random(seed).randbytes(n)


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def mp_etag(parts):
    """The quoted multipart ETag S3 gives an object made of these part bodies."""
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def err(exc):
    """(HTTP status, S3 error code) of a botocore ClientError."""
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def expect_error(status, code, fn, *args, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(*args, **kwargs)
    assert err(ei.value) == (status, code), ei.value.response
    return ei.value


def create(s3, bucket, key, **kw):
    return s3.create_multipart_upload(Bucket=bucket, Key=key, **kw)["UploadId"]


def upload(s3, bucket, key, uid, number, body):
    """Uploads one part; checks and returns its quoted ETag."""
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=number,
                          Body=body)["ETag"]
    assert etag == f'"{md5_hex(body)}"'
    return etag


def complete(s3, bucket, key, uid, parts):
    """parts: [(number, etag)]."""
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})


def build(s3, bucket, key, bodies):
    """A complete multipart object from the given part bodies; returns the
    Complete response."""
    uid = create(s3, bucket, key)
    etags = [upload(s3, bucket, key, uid, i + 1, b) for i, b in enumerate(bodies)]
    return complete(s3, bucket, key, uid, list(zip(range(1, len(bodies) + 1), etags)))


def shard_files(srv):
    """Every shard file on the server's (single) drive."""
    root = Path(srv.data_dir) / "drives" / "d0" / "objects"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def upload_ids(s3, bucket, **kw):
    resp = s3.list_multipart_uploads(Bucket=bucket, **kw)
    return [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", [])]


def complete_xml(parts):
    return ("<CompleteMultipartUpload>" +
            "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts) +
            "</CompleteMultipartUpload>")


# ---- a shared three-part object for the read tests ------------------------------------------


@pytest.fixture(scope="module")
def mp_obj(server):
    """(bucket, key, part bodies, whole bytes) of a multipart object of
    5 MiB + 5 MiB + 777 bytes, created once for the read-only tests."""
    s3 = server.client()
    bucket = unique_bucket("mp")
    s3.create_bucket(Bucket=bucket)
    bodies = [rbytes(PART, 1), rbytes(PART, 2), rbytes(777, 3)]
    key = "dir/three parts.bin"
    resp = build(s3, bucket, key, bodies)
    assert resp["ETag"] == mp_etag(bodies)
    return bucket, key, bodies, b"".join(bodies)


# ---- the happy path --------------------------------------------------------------------------


def test_upload_list_complete_roundtrip(server, s3, bucket):
    key = "photos/big.bin"
    uid = create(s3, bucket, key, ContentType="application/x-test", Metadata={"colour": "blue"})
    assert upload_ids(s3, bucket) == [(key, uid)]
    bodies = [rbytes(PART, 10), rbytes(PART + 1, 11), rbytes(12345, 12)]
    etags = [upload(s3, bucket, key, uid, i + 1, b) for i, b in enumerate(bodies)]

    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)
    assert parts["UploadId"] == uid and parts["IsTruncated"] is False
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts["Parts"]] == \
        [(i + 1, etags[i], len(b)) for i, b in enumerate(bodies)]

    # Nothing is visible under the key before completion.
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0

    resp = complete(s3, bucket, key, uid, list(zip([1, 2, 3], etags)))
    want_etag = mp_etag(bodies)
    assert resp["ETag"] == want_etag
    assert resp["Bucket"] == bucket and resp["Key"] == key

    data = b"".join(bodies)
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["ETag"] == want_etag
    assert got["ContentLength"] == len(data)
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"colour": "blue"}
    assert got["Body"].read() == data

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(data) and head["ETag"] == want_etag

    (obj,) = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert (obj["Key"], obj["Size"], obj["ETag"]) == (key, len(data), want_etag)

    # The upload is gone.
    assert upload_ids(s3, bucket) == []
    expect_error(404, "NoSuchUpload", s3.list_parts, Bucket=bucket, Key=key, UploadId=uid)
    expect_error(404, "NoSuchUpload", s3.upload_part, Bucket=bucket, Key=key, UploadId=uid,
                 PartNumber=4, Body=b"late")
    # A retried complete (its first answer lost to a timeout) gets the same
    # answer, as in S3; under another key the upload id means nothing.
    again = complete(s3, bucket, key, uid, list(zip([1, 2, 3], etags)))
    assert again["ETag"] == want_etag
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    expect_error(404, "NoSuchUpload", complete, s3, bucket, key + "x", uid, list(zip([1, 2, 3], etags)))


def test_single_small_part_is_allowed(s3, bucket):
    """The last part may be small, so a one-part upload of a few bytes works."""
    resp = build(s3, bucket, "tiny", [b"hello"])
    assert resp["ETag"] == mp_etag([b"hello"])
    assert s3.get_object(Bucket=bucket, Key="tiny")["Body"].read() == b"hello"


def test_empty_part_as_last(s3, bucket):
    bodies = [rbytes(PART, 20), b""]
    resp = build(s3, bucket, "with-empty-tail", bodies)
    assert resp["ETag"] == mp_etag(bodies)
    got = s3.get_object(Bucket=bucket, Key="with-empty-tail")
    assert got["ContentLength"] == PART and got["Body"].read() == bodies[0]


def test_reupload_replaces_and_unlisted_parts_are_discarded(make_server):
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    baseline = shard_files(srv)
    key = "k"
    uid = create(s3, bucket, key)
    first = rbytes(PART, 30)
    upload(s3, bucket, key, uid, 1, first)
    after_one = shard_files(srv)
    assert len(after_one) > len(baseline), "a part must be stored as shard files"
    per_part = len(after_one) - len(baseline)

    second = rbytes(PART, 31)
    e1 = upload(s3, bucket, key, uid, 1, second)
    # The replaced part's bytes are gone: still one part's worth of files.
    assert len(shard_files(srv)) == len(after_one)
    (p,) = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert (p["PartNumber"], p["ETag"]) == (1, e1)

    upload(s3, bucket, key, uid, 2, rbytes(PART, 32))         # left out below
    e3 = upload(s3, bucket, key, uid, 3, rbytes(1000, 33))
    assert len(shard_files(srv)) == len(baseline) + 3 * per_part

    resp = complete(s3, bucket, key, uid, [(1, e1), (3, e3)])
    assert resp["ETag"] == mp_etag([second, rbytes(1000, 33)])
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == second + rbytes(1000, 33)
    # Part 2, not named in the completion, was removed.
    assert len(shard_files(srv)) == len(baseline) + 2 * per_part


# ---- reads of a multipart object ---------------------------------------------------------------


def ranged(s3, mp_obj, rng):
    bucket, key, _bodies, _data = mp_obj
    return s3.get_object(Bucket=bucket, Key=key, Range=rng)


@pytest.mark.parametrize("rng, start, end", [
    ("bytes=0-99", 0, 99),                                  # start of part 1
    ("bytes=100-5000", 100, 5000),                          # inside part 1
    (f"bytes={PART + 10}-{PART + 20}", PART + 10, PART + 20),  # inside part 2
    (f"bytes={PART - 5}-{PART + 4}", PART - 5, PART + 4),   # across 1|2
    (f"bytes={PART - 1}-{PART}", PART - 1, PART),           # the two bytes around 1|2
    (f"bytes={2 * PART - 3}-{2 * PART + 3}", 2 * PART - 3, 2 * PART + 3),  # across 2|3
    (f"bytes=1-{2 * PART + 100}", 1, 2 * PART + 100),       # across all three
    (f"bytes={2 * PART}-", 2 * PART, 2 * PART + 776),       # exactly part 3, open-ended
    ("bytes=-777", 2 * PART, 2 * PART + 776),               # suffix = part 3
    ("bytes=-1000", 2 * PART + 777 - 1000, 2 * PART + 776),  # suffix across 2|3
    ("bytes=-99999999", 0, 2 * PART + 776),                 # suffix longer than the object
])
def test_range_reads(s3, mp_obj, rng, start, end):
    data = mp_obj[3]
    got = ranged(s3, mp_obj, rng)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {start}-{end}/{len(data)}"
    assert got["ContentLength"] == end - start + 1
    assert got["Body"].read() == data[start:end + 1]


def test_range_beyond_end_is_416(s3, mp_obj):
    data = mp_obj[3]
    expect_error(416, "InvalidRange", ranged, s3, mp_obj, f"bytes={len(data)}-")


def test_whole_get_and_head(s3, mp_obj):
    bucket, key, bodies, data = mp_obj
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["ETag"] == mp_etag(bodies)
    assert hashlib.md5(got["Body"].read()).hexdigest() == md5_hex(data)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(data)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_get_by_part_number(server, mp_obj, n):
    bucket, key, bodies, data = mp_obj
    start = sum(len(b) for b in bodies[:n - 1])
    end = start + len(bodies[n - 1]) - 1
    r = server.request("GET", sigv4.object_path(bucket, key), query={"partNumber": str(n)})
    assert r.status == 206, r
    assert r.header("Content-Range") == f"bytes {start}-{end}/{len(data)}"
    assert r.header("x-amz-mp-parts-count") == "3"
    assert r.header("ETag") == mp_etag(bodies)
    assert int(r.header("Content-Length")) == len(bodies[n - 1])
    assert r.body == bodies[n - 1]

    h = server.request("HEAD", sigv4.object_path(bucket, key), query={"partNumber": str(n)})
    assert h.status == 206, h
    assert int(h.header("Content-Length")) == len(bodies[n - 1])
    assert h.header("Content-Range") == f"bytes {start}-{end}/{len(data)}"
    assert h.header("x-amz-mp-parts-count") == "3"


def test_get_by_part_number_boto3(s3, mp_obj):
    bucket, key, bodies, _data = mp_obj
    got = s3.get_object(Bucket=bucket, Key=key, PartNumber=2)
    assert got["PartsCount"] == 3
    assert got["Body"].read() == bodies[1]
    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=3)
    assert head["ContentLength"] == 777 and head["PartsCount"] == 3


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_part_number_beyond_count_is_400(server, mp_obj, method):
    # As S3 answers (the reference's error table says 416; S3 itself sends 400).
    bucket, key, _bodies, _data = mp_obj
    r = server.request(method, sigv4.object_path(bucket, key), query={"partNumber": "4"})
    assert r.status == 400, r
    if method == "GET":
        assert r.error_code == "InvalidPartNumber"


@pytest.mark.parametrize("bad", ["0", "10001", "-1", "x"])
def test_get_part_number_out_of_range_is_400(server, mp_obj, bad):
    bucket, key, _bodies, _data = mp_obj
    r = server.request("GET", sigv4.object_path(bucket, key), query={"partNumber": bad})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r


def test_copy_from_multipart_source(s3, mp_obj):
    bucket, key, bodies, data = mp_obj
    dst = unique_bucket("cp")
    s3.create_bucket(Bucket=dst)
    resp = s3.copy_object(Bucket=dst, Key="copy", CopySource={"Bucket": bucket, "Key": key})
    assert resp["CopyObjectResult"]["ETag"] == f'"{md5_hex(data)}"'
    got = s3.get_object(Bucket=dst, Key="copy")
    assert got["ETag"] == f'"{md5_hex(data)}"'
    assert got["Body"].read() == data
    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == mp_etag(bodies)


# ---- S3's rules -------------------------------------------------------------------------------------


def test_small_non_last_part_is_entity_too_small(s3, bucket):
    key = "small"
    uid = create(s3, bucket, key)
    e1 = upload(s3, bucket, key, uid, 1, rbytes(PART - 1, 40))
    e2 = upload(s3, bucket, key, uid, 2, b"tail")
    expect_error(400, "EntityTooSmall", complete, s3, bucket, key, uid, [(1, e1), (2, e2)])
    # A failed completion leaves the upload as it was: fix part 1 and finish.
    assert upload_ids(s3, bucket) == [(key, uid)]
    e1 = upload(s3, bucket, key, uid, 1, rbytes(PART, 41))
    resp = complete(s3, bucket, key, uid, [(1, e1), (2, e2)])
    assert resp["ETag"] == mp_etag([rbytes(PART, 41), b"tail"])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == rbytes(PART, 41) + b"tail"


@pytest.mark.parametrize("number", ["0", "10001", "-1", "abc", ""])
def test_part_number_out_of_range(server, s3, bucket, number):
    uid = create(s3, bucket, "k")
    r = server.request("PUT", sigv4.object_path(bucket, "k"),
                       query={"partNumber": number, "uploadId": uid}, body=b"data")
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r
    assert s3.list_parts(Bucket=bucket, Key="k", UploadId=uid).get("Parts", []) == []


def test_part_number_limits_accepted(s3, bucket):
    uid = create(s3, bucket, "k")
    upload(s3, bucket, "k", uid, 1, b"first")
    upload(s3, bucket, "k", uid, 10000, b"last")
    parts = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 10000]


def test_complete_errors(server, s3, bucket):
    key = "errs"
    uid = create(s3, bucket, key)
    # Both parts are big enough to be non-last, so only the rule under test can fail.
    b1, b2 = rbytes(PART, 50), rbytes(PART, 51)
    e1, e2 = upload(s3, bucket, key, uid, 1, b1), upload(s3, bucket, key, uid, 2, b2)
    path = sigv4.object_path(bucket, key)

    def post(body):
        return server.request("POST", path, query={"uploadId": uid}, body=body)

    cases = [
        ([(2, e2), (1, e1)], 400, "InvalidPartOrder"),
        ([(1, e1), (1, e1)], 400, "InvalidPartOrder"),
        ([(1, e1), (3, e2)], 400, "InvalidPart"),                         # never uploaded
        ([(1, e1), (2, '"' + "0" * 32 + '"')], 400, "InvalidPart"),       # wrong ETag
        ([(1, e2), (2, e2)], 400, "InvalidPart"),                         # another part's ETag
    ]
    for parts, status, code in cases:
        r = post(complete_xml(parts))
        assert (r.status, r.error_code) == (status, code), (parts, r)
    for body in [b"", b"<CompleteMultipartUpload>", b"not xml at all",
                 b"<CompleteMultipartUpload></CompleteMultipartUpload>",
                 b"<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>",
                 b"<CompleteMultipartUpload><Part><ETag>" + e1.encode() +
                 b"</ETag></Part></CompleteMultipartUpload>"]:
        r = post(body)
        assert (r.status, r.error_code) == (400, "MalformedXML"), (body, r)

    # None of that disturbed the upload; ETags are accepted unquoted too.
    r = post(complete_xml([(1, e1.strip('"')), (2, e2)]))
    assert r.status == 200, r
    assert xml_text(r.xml(), "ETag") == mp_etag([b1, b2])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b1 + b2


def test_no_such_upload(server, s3, bucket):
    key, other = "mine", "other"
    uid = create(s3, bucket, key)
    e1 = upload(s3, bucket, key, uid, 1, b"abc")
    other_uid = create(s3, bucket, other)
    bogus = "0" * 64
    for k, u in [(key, bogus), (key, "nonsense"), (key, other_uid), (other, uid)]:
        expect_error(404, "NoSuchUpload", s3.upload_part, Bucket=bucket, Key=k, UploadId=u,
                     PartNumber=1, Body=b"x")
        expect_error(404, "NoSuchUpload", complete, s3, bucket, k, u, [(1, e1)])
        expect_error(404, "NoSuchUpload", s3.list_parts, Bucket=bucket, Key=k, UploadId=u)
        expect_error(404, "NoSuchUpload", s3.abort_multipart_upload, Bucket=bucket, Key=k, UploadId=u)
    # An upload id from another bucket is unknown here too.
    b2 = unique_bucket()
    s3.create_bucket(Bucket=b2)
    expect_error(404, "NoSuchUpload", s3.list_parts, Bucket=b2, Key=key, UploadId=uid)
    # Both uploads survived all of that.
    assert sorted(upload_ids(s3, bucket)) == sorted([(key, uid), (other, other_uid)])
    (p,) = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert p["ETag"] == e1


def test_create_in_missing_bucket(s3):
    expect_error(404, "NoSuchBucket", s3.create_multipart_upload, Bucket=unique_bucket(), Key="k")


def test_upload_part_content_md5_mismatch(server, s3, bucket):
    uid = create(s3, bucket, "k")
    r = server.request("PUT", sigv4.object_path(bucket, "k"),
                       query={"partNumber": "1", "uploadId": uid}, body=b"abc",
                       headers={"Content-MD5": base64.b64encode(hashlib.md5(b"abd").digest()).decode()})
    assert (r.status, r.error_code) == (400, "BadDigest"), r
    assert s3.list_parts(Bucket=bucket, Key="k", UploadId=uid).get("Parts", []) == []


def test_upload_part_copy_ranges_and_whole_sources(s3, bucket, mp_obj):
    """UploadPartCopy: byte ranges of a multipart source (across its parts), a
    whole small (inline) source, the part ETag is the md5 of the copied bytes,
    and the completed object is the concatenation."""
    src_bucket, src_key, _bodies, data = mp_obj
    s3.put_object(Bucket=bucket, Key="small-src", Body=b"inline tail")
    uid = create(s3, bucket, "copied")
    half = len(data) // 2
    r1 = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": src_bucket, "Key": src_key}, CopySourceRange=f"bytes=0-{half - 1}")
    r2 = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": src_bucket, "Key": src_key},
                             CopySourceRange=f"bytes={half}-{len(data) - 1}")
    r3 = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=uid, PartNumber=3,
                             CopySource={"Bucket": bucket, "Key": "small-src"})
    assert r1["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(data[:half]).hexdigest()
    parts = [{"PartNumber": i + 1, "ETag": r["CopyPartResult"]["ETag"]} for i, r in enumerate([r1, r2, r3])]
    s3.complete_multipart_upload(Bucket=bucket, Key="copied", UploadId=uid, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == data + b"inline tail"
    # A range past the source's end is refused.
    uid2 = create(s3, bucket, "bad-range")
    expect_error(416, "InvalidRange", s3.upload_part_copy, Bucket=bucket, Key="bad-range", UploadId=uid2,
                 PartNumber=1, CopySource={"Bucket": src_bucket, "Key": src_key},
                 CopySourceRange=f"bytes=0-{len(data)}")


def test_other_user_cannot_touch_upload(server, s3, bucket, user):
    key = "private"
    uid = create(s3, bucket, key)
    body = rbytes(100, 60)
    e1 = upload(s3, bucket, key, uid, 1, body)
    theirs = server.client(user.access_key, user.secret)
    expect_error(403, "AccessDenied", theirs.create_multipart_upload, Bucket=bucket, Key="x")
    expect_error(403, "AccessDenied", theirs.upload_part, Bucket=bucket, Key=key, UploadId=uid,
                 PartNumber=1, Body=b"evil")
    expect_error(403, "AccessDenied", theirs.list_parts, Bucket=bucket, Key=key, UploadId=uid)
    expect_error(403, "AccessDenied", theirs.list_multipart_uploads, Bucket=bucket)
    expect_error(403, "AccessDenied", theirs.abort_multipart_upload, Bucket=bucket, Key=key,
                 UploadId=uid)
    expect_error(403, "AccessDenied", complete, theirs, bucket, key, uid, [(1, e1)])
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key=key)
    # The owner's upload is intact and still completes with the owner's part.
    assert upload_ids(s3, bucket) == [(key, uid)]
    (p,) = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert p["ETag"] == e1
    complete(s3, bucket, key, uid, [(1, e1)])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_anonymous_cannot_create(server, bucket):
    r = server.request("POST", sigv4.object_path(bucket, "k"), query={"uploads": None},
                       anonymous=True)
    assert (r.status, r.error_code) == (403, "AccessDenied"), r


# ---- listings -----------------------------------------------------------------------------------------


def test_list_parts_paging(s3, bucket):
    uid = create(s3, bucket, "k")
    etags = {n: upload(s3, bucket, "k", uid, n, f"part {n}".encode()) for n in (1, 2, 3, 7)}
    page = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["IsTruncated"] is True and page["NextPartNumberMarker"] == 2
    assert page["MaxParts"] == 2
    page = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, MaxParts=2, PartNumberMarker=2)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in page["Parts"]] == \
        [(3, etags[3], 6), (7, etags[7], 6)]
    assert page["IsTruncated"] is False
    page = s3.list_parts(Bucket=bucket, Key="k", UploadId=uid, PartNumberMarker=7)
    assert page.get("Parts", []) == [] and page["IsTruncated"] is False
    # boto3's paginator follows the markers to the same four parts.
    pages = s3.get_paginator("list_parts").paginate(Bucket=bucket, Key="k", UploadId=uid,
                                                    PaginationConfig={"PageSize": 1})
    assert [p["PartNumber"] for pg in pages for p in pg.get("Parts", [])] == [1, 2, 3, 7]


def test_list_multipart_uploads(s3, bucket):
    keys = ["a/1", "a/2", "a/b/3", "b", "c", "c"]
    made = [(k, create(s3, bucket, k)) for k in keys]
    all_ = upload_ids(s3, bucket)
    assert sorted(all_) == sorted(made)
    assert [k for k, _ in all_] == sorted(keys), "uploads are listed in key order"

    assert sorted(upload_ids(s3, bucket, Prefix="a/")) == sorted(m for m in made if m[0].startswith("a/"))
    resp = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in resp.get("Uploads", [])] == ["b", "c", "c"]
    assert [p["Prefix"] for p in resp.get("CommonPrefixes", [])] == ["a/"]
    resp = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [u["Key"] for u in resp.get("Uploads", [])] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in resp.get("CommonPrefixes", [])] == ["a/b/"]

    # Paging one at a time with the Next markers visits every upload once.
    seen, kw = [], {}
    for _ in range(20):
        resp = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1, **kw)
        assert resp["MaxUploads"] == 1
        seen += [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", [])]
        if not resp["IsTruncated"]:
            break
        kw = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}
    assert seen == all_

    # Completed and aborted uploads leave the listing.
    c_ids = [u for k, u in made if k == "c"]
    s3.abort_multipart_upload(Bucket=bucket, Key="c", UploadId=c_ids[0])
    e = upload(s3, bucket, "b", made[3][1], 1, b"b")
    complete(s3, bucket, "b", made[3][1], [(1, e)])
    assert sorted(upload_ids(s3, bucket)) == sorted(m for m in made if m[0] not in ("b",) and m[1] != c_ids[0])


def test_list_multipart_uploads_key_marker_alone(s3, bucket):
    """Without upload-id-marker, only keys after key-marker are listed (the
    marker key's own uploads are not)."""
    for k in ["a", "b", "b", "c"]:
        create(s3, bucket, k)
    assert [k for k, _ in upload_ids(s3, bucket, KeyMarker="a")] == ["b", "b", "c"]
    assert [k for k, _ in upload_ids(s3, bucket, KeyMarker="b")] == ["c"]
    assert [k for k, _ in upload_ids(s3, bucket, KeyMarker="bb")] == ["c"]
    assert upload_ids(s3, bucket, KeyMarker="c") == []


def test_list_multipart_uploads_delimiter_paging(s3, bucket):
    """Paging one entry at a time with a delimiter reports each common prefix
    once, then the uploads after it."""
    made = {k: create(s3, bucket, k) for k in ["a/1", "a/2", "a/3", "b", "c/1"]}
    entries, kw = [], {}
    for _ in range(10):
        resp = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", MaxUploads=1, **kw)
        entries += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        entries += [u["Key"] for u in resp.get("Uploads", [])]
        if not resp["IsTruncated"]:
            break
        kw = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}
    assert entries == ["a/", "b", "c/"]
    assert len(made) == 5


def test_list_multipart_uploads_big_common_prefix_not_truncating(s3, bucket):
    """Many uploads folded into one common prefix must not end the listing
    early: with max-uploads=2, twelve uploads under a/ and two more keys, the
    pages together hold a/, b and c."""
    for i in range(12):
        create(s3, bucket, f"a/{i:02d}")
    create(s3, bucket, "b")
    create(s3, bucket, "c")
    entries, kw = [], {}
    for _ in range(10):
        resp = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", MaxUploads=2, **kw)
        entries += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        entries += [u["Key"] for u in resp.get("Uploads", [])]
        if not resp["IsTruncated"]:
            break
        kw = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}
    assert "b" in entries and "c" in entries, entries
    assert entries.count("a/") == 1, entries


# ---- stored bytes ----------------------------------------------------------------------------------------


def test_abort_removes_parts(make_server):
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    baseline = shard_files(srv)
    uid = create(s3, bucket, "k")
    upload(s3, bucket, "k", uid, 1, rbytes(PART, 70))
    upload(s3, bucket, "k", uid, 2, rbytes(1000, 71))
    assert len(shard_files(srv)) > len(baseline)
    resp = s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=uid)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert shard_files(srv) == baseline
    assert upload_ids(s3, bucket) == []
    expect_error(404, "NoSuchUpload", s3.abort_multipart_upload, Bucket=bucket, Key="k", UploadId=uid)
    expect_error(404, "NoSuchUpload", s3.list_parts, Bucket=bucket, Key="k", UploadId=uid)
    expect_error(404, "NoSuchUpload", s3.upload_part, Bucket=bucket, Key="k", UploadId=uid,
                 PartNumber=3, Body=b"x")
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="k")


def test_overwrite_and_delete_remove_all_part_shards(make_server):
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    baseline = shard_files(srv)

    build(s3, bucket, "k", [rbytes(PART, 80), rbytes(PART, 81), rbytes(10, 82)])
    three = shard_files(srv)
    assert len(three) > len(baseline)
    # Overwrite with a small (inline) object: every part's files go.
    s3.put_object(Bucket=bucket, Key="k", Body=b"small")
    assert shard_files(srv) == baseline
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"small"

    # Overwrite a multipart object with another multipart object.
    build(s3, bucket, "k", [rbytes(PART, 83), rbytes(20, 84)])
    first = set(shard_files(srv))
    build(s3, bucket, "k", [rbytes(PART, 85), rbytes(30, 86)])
    second = set(shard_files(srv))
    assert len(second) == len(first) and not (first - set(baseline)) & second
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == rbytes(PART, 85) + rbytes(30, 86)

    # Deleting it leaves nothing behind.
    s3.delete_object(Bucket=bucket, Key="k")
    assert shard_files(srv) == baseline
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="k")

    # DeleteObjects too.
    build(s3, bucket, "k2", [rbytes(PART, 87), rbytes(40, 88)])
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k2"}]})
    assert [d["Key"] for d in resp.get("Deleted", [])] == ["k2"]
    assert shard_files(srv) == baseline


@pytest.mark.deadline(90)
def test_kill9_after_parts_then_complete(make_server):
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    key = "survivor"
    uid = create(s3, bucket, key)
    b1, b2 = rbytes(PART, 90), rbytes(PART + 5, 91)
    e1 = upload(s3, bucket, key, uid, 1, b1)
    e2 = upload(s3, bucket, key, uid, 2, b2)
    srv.kill()                      # SIGKILL, no chance to flush anything
    srv.start()
    s3 = srv.client()
    assert upload_ids(s3, bucket) == [(key, uid)]
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, e1, PART), (2, e2, len(b2))]
    b3 = b"the end"
    e3 = upload(s3, bucket, key, uid, 3, b3)
    resp = complete(s3, bucket, key, uid, [(1, e1), (2, e2), (3, e3)])
    assert resp["ETag"] == mp_etag([b1, b2, b3])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b1 + b2 + b3
    # And the completed object survives another kill -9.
    srv.kill()
    srv.start()
    got = srv.client().get_object(Bucket=bucket, Key=key)
    assert got["ETag"] == mp_etag([b1, b2, b3])
    assert got["Body"].read() == b1 + b2 + b3
    # Nothing either crash left is out of place once the start's orphan
    # collection has run: fsck, with the server stopped, finds nothing.
    srv.stop_and_fsck()


# ---- real clients -------------------------------------------------------------------------------------------


@pytest.mark.deadline(120)
def test_boto3_managed_transfer(s3, bucket, tmp_path):
    data = rbytes(21 * MiB + 12345, 100)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                                           max_concurrency=4)
    s3.upload_file(str(src), bucket, "managed.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="managed.bin")
    chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert head["ETag"] == mp_etag(chunks)      # 5 parts: 4 x 5 MiB + the rest
    assert head["ContentLength"] == len(data)
    dst = tmp_path / "down.bin"
    s3.download_file(bucket, "managed.bin", str(dst), Config=cfg)
    assert dst.stat().st_size == len(data)
    assert md5_hex(dst.read_bytes()) == md5_hex(data)
    assert upload_ids(s3, bucket) == []


@pytest.mark.deadline(180)
def test_aws_cli_cp_uses_multipart(server, s3, bucket, tmp_path):
    aws = "/usr/bin/aws"
    if not os.path.exists(aws):
        pytest.skip("Debian's awscli (/usr/bin/aws) is not installed")
    data = rbytes(20 * MiB + 777, 110)
    src = tmp_path / "cli-up.bin"
    src.write_bytes(data)
    env = aws_cli_env(server, tmp_path)

    def cli(*args):
        cp = subprocess.run([aws, "--endpoint-url", server.endpoint, *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=150,
                            stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, f"aws {' '.join(map(str, args))} exited {cp.returncode}\n" \
                                   f"stdout:\n{cp.stdout[-2000:]}\nstderr:\n{cp.stderr[-2000:]}"
        return cp

    cli("s3", "cp", src, f"s3://{bucket}/cli/big.bin")
    head = s3.head_object(Bucket=bucket, Key="cli/big.bin")
    # The CLI's defaults: multipart above 8 MiB, 8 MiB parts -> 3 parts.
    chunks = [data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    assert head["ETag"] == mp_etag(chunks)
    dst = tmp_path / "cli-down.bin"
    cli("s3", "cp", f"s3://{bucket}/cli/big.bin", dst)
    cmp = subprocess.run(["cmp", str(src), str(dst)], capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert upload_ids(s3, bucket) == []
