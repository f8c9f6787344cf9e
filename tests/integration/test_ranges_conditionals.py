"""Range reads and conditional requests on GetObject / HeadObject.

Raw signed requests are used so the exact status codes (206, 304, 412, 416)
and headers are visible.  Expected behaviour follows the S3 GetObject
documentation and RFC 7232/7233: a single range is served as 206; a
multi-range request is ignored by S3 (200, full body); an unsatisfiable range
is 416 InvalidRange with Content-Range: bytes */SIZE.  Precedence: If-Match
true wins over a false If-Unmodified-Since (200); a false If-None-Match with a
true If-Modified-Since gives 304.
"""

import datetime
import email.utils
import os
import random

import pytest

import sigv4
from conftest import md5_hex

SIZE = 1000


@pytest.fixture
def obj(server, s3, bucket):
    """An object of SIZE random bytes; returns (path, body, etag, last_modified)."""
    body = os.urandom(SIZE)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    head = s3.head_object(Bucket=bucket, Key="r")
    return sigv4.object_path(bucket, "r"), body, head["ETag"], head["LastModified"]


def http_date(dt):
    return email.utils.format_datetime(dt.astimezone(datetime.timezone.utc), usegmt=True)


# ---- ranges --------------------------------------------------------------------------


@pytest.mark.parametrize("spec,first,last", [
    ("bytes=0-9", 0, 9),
    ("bytes=0-0", 0, 0),
    ("bytes=10-19", 10, 19),
    ("bytes=990-", 990, 999),
    ("bytes=0-", 0, 999),
    ("bytes=-10", 990, 999),
    ("bytes=-1", 999, 999),
    ("bytes=995-2000", 995, 999),     # end past the object: clamped
    ("bytes=-2000", 0, 999),          # suffix longer than the object: whole object
    ("bytes=999-999", 999, 999),
])
def test_single_range(server, obj, spec, first, last):
    path, body, etag, _ = obj
    r = server.request("GET", path, headers={"Range": spec})
    assert r.status == 206, r
    assert r.header("Content-Range") == f"bytes {first}-{last}/{SIZE}"
    assert int(r.header("Content-Length")) == last - first + 1
    assert r.body == body[first:last + 1]
    assert r.header("ETag") == etag


@pytest.mark.parametrize("spec", ["bytes=1000-1010", "bytes=1000-", "bytes=5000-6000"])
def test_unsatisfiable_range(server, obj, spec):
    path, _body, _etag, _ = obj
    r = server.request("GET", path, headers={"Range": spec})
    assert r.status == 416, r
    assert r.error_code == "InvalidRange", r
    assert r.header("Content-Range") == f"bytes */{SIZE}"


def test_multiple_ranges_ignored(server, obj):
    path, body, _etag, _ = obj
    r = server.request("GET", path, headers={"Range": "bytes=0-9,20-29"})
    assert r.status == 200, r
    assert r.body == body
    assert r.header("Content-Range") is None


def test_range_on_head(server, obj):
    path, _body, _etag, _ = obj
    r = server.request("HEAD", path, headers={"Range": "bytes=100-199"})
    assert r.status == 206, r
    assert r.header("Content-Range") == f"bytes 100-199/{SIZE}"
    assert r.header("Content-Length") == "100"


def test_range_via_boto3(s3, bucket):
    body = os.urandom(SIZE)
    s3.put_object(Bucket=bucket, Key="b", Body=body)
    got = s3.get_object(Bucket=bucket, Key="b", Range="bytes=100-299")
    assert got["ContentRange"] == f"bytes 100-299/{SIZE}"
    assert got["Body"].read() == body[100:300]


def test_random_ranges_on_large_object(server, s3, bucket):
    """Ranges that start and end anywhere in a multi-MiB object (crossing any
    internal block or stripe boundary) return exactly those bytes."""
    size = 5 * 1024 * 1024 + 123
    body = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="large", Body=body)
    path = sigv4.object_path(bucket, "large")
    rng = random.Random(1234)
    points = [0, 1, 65535, 65536, 65537, 1 << 20, (1 << 20) - 1, size - 1]
    specs = [(a, b) for a, b in zip(points, points[1:]) if a <= b]
    specs += sorted((rng.randrange(size), rng.randrange(size)) for _ in range(10))
    for a, b in specs:
        a, b = min(a, b), max(a, b)
        r = server.request("GET", path, headers={"Range": f"bytes={a}-{b}"})
        assert r.status == 206, (a, b, r)
        assert r.header("Content-Range") == f"bytes {a}-{b}/{size}"
        assert r.body == body[a:b + 1], f"wrong bytes for range {a}-{b}"


def test_range_on_zero_byte_object(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    r = server.request("GET", sigv4.object_path(bucket, "empty"), headers={"Range": "bytes=0-9"})
    assert r.status == 416, r
    assert r.error_code == "InvalidRange"


# ---- conditionals ----------------------------------------------------------------------


def test_if_match(server, obj):
    path, body, etag, _ = obj
    r = server.request("GET", path, headers={"If-Match": etag})
    assert (r.status, r.body) == (200, body)
    r = server.request("GET", path, headers={"If-Match": etag.strip('"')})
    assert r.status == 200, "an unquoted ETag matches too"
    r = server.request("GET", path, headers={"If-Match": '"0123456789abcdef0123456789abcdef"'})
    assert r.status == 412, r
    assert r.error_code == "PreconditionFailed"
    r = server.request("HEAD", path, headers={"If-Match": '"0123456789abcdef0123456789abcdef"'})
    assert r.status == 412 and r.body == b""


def test_if_match_star_and_list(server, obj):
    path, _body, etag, _ = obj
    assert server.request("GET", path, headers={"If-Match": "*"}).status == 200
    lst = f'"ffffffffffffffffffffffffffffffff", {etag}'
    assert server.request("GET", path, headers={"If-Match": lst}).status == 200


def test_if_none_match(server, obj):
    path, body, etag, _ = obj
    for method in ("GET", "HEAD"):
        r = server.request(method, path, headers={"If-None-Match": etag})
        assert r.status == 304, (method, r)
        assert r.body == b""
        assert r.header("ETag") == etag
    r = server.request("GET", path, headers={"If-None-Match": '"ffffffffffffffffffffffffffffffff"'})
    assert (r.status, r.body) == (200, body)


def test_if_modified_since(server, obj):
    path, body, _etag, last_modified = obj
    earlier = last_modified - datetime.timedelta(days=1)
    r = server.request("GET", path, headers={"If-Modified-Since": http_date(earlier)})
    assert (r.status, r.body) == (200, body)
    # Last-Modified has second granularity: the same second is "not modified"
    for method in ("GET", "HEAD"):
        r = server.request(method, path, headers={"If-Modified-Since": http_date(last_modified)})
        assert r.status == 304, (method, r)
        assert r.body == b""


def test_if_unmodified_since(server, obj):
    path, body, _etag, last_modified = obj
    r = server.request("GET", path, headers={"If-Unmodified-Since": http_date(last_modified)})
    assert (r.status, r.body) == (200, body)
    earlier = last_modified - datetime.timedelta(days=1)
    for method in ("GET", "HEAD"):
        r = server.request(method, path, headers={"If-Unmodified-Since": http_date(earlier)})
        assert r.status == 412, (method, r)
    r = server.request("GET", path, headers={"If-Unmodified-Since": http_date(earlier)})
    assert r.error_code == "PreconditionFailed"


def test_if_match_true_beats_if_unmodified_since_false(server, obj):
    path, body, etag, last_modified = obj
    earlier = last_modified - datetime.timedelta(days=1)
    r = server.request("GET", path, headers={"If-Match": etag,
                                             "If-Unmodified-Since": http_date(earlier)})
    assert (r.status, r.body) == (200, body)


def test_if_none_match_false_with_if_modified_since_true_is_304(server, obj):
    path, _body, etag, last_modified = obj
    earlier = last_modified - datetime.timedelta(days=1)
    r = server.request("GET", path, headers={"If-None-Match": etag,
                                             "If-Modified-Since": http_date(earlier)})
    assert r.status == 304, r


def test_if_none_match_true_ignores_if_modified_since(server, obj):
    # RFC 7232 section 6: If-Modified-Since is evaluated only without If-None-Match.
    path, body, _etag, last_modified = obj
    r = server.request("GET", path, headers={
        "If-None-Match": '"ffffffffffffffffffffffffffffffff"',
        "If-Modified-Since": http_date(last_modified)})
    assert (r.status, r.body) == (200, body)


def test_if_match_false_beats_everything(server, obj):
    path, _body, etag, last_modified = obj
    r = server.request("GET", path, headers={
        "If-Match": '"ffffffffffffffffffffffffffffffff"',
        "If-None-Match": '"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"',
        "If-Modified-Since": http_date(last_modified - datetime.timedelta(days=1))})
    assert r.status == 412, r


def test_conditional_with_range(server, obj):
    path, body, etag, _ = obj
    r = server.request("GET", path, headers={"If-Match": etag, "Range": "bytes=5-9"})
    assert (r.status, r.body) == (206, body[5:10])
    r = server.request("GET", path, headers={"If-None-Match": etag, "Range": "bytes=5-9"})
    assert r.status == 304


def test_invalid_date_is_ignored(server, obj):
    path, body, _etag, _ = obj
    r = server.request("GET", path, headers={"If-Modified-Since": "not a date"})
    assert (r.status, r.body) == (200, body)
    r = server.request("GET", path, headers={"If-Unmodified-Since": "yesterday-ish"})
    assert (r.status, r.body) == (200, body)


def test_conditionals_via_boto3(s3, bucket):
    body = b"conditional body"
    etag = s3.put_object(Bucket=bucket, Key="c", Body=body)["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == body
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"' + md5_hex(b"other") + '"')
    assert ei.value.response["Error"]["Code"] == "PreconditionFailed"
