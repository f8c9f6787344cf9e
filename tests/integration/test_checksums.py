"""S3's additional checksums past the single PUT (docs/checksums.md): the
stored checksum of an object (GET/HEAD with x-amz-checksum-mode: ENABLED,
GetObjectAttributes), and multipart uploads with x-amz-checksum-algorithm
and x-amz-checksum-type: per-part checksums verified and listed, Complete's
COMPOSITE and FULL_OBJECT checksums, and S3's errors.

The expected values come from crcmod and hashlib, never from cairn: a
composite checksum is the algorithm over the parts' binary checksums
("<base64>-<parts>"), a full-object one the CRC of the whole object.
Most requests are raw (sigv4.py): Debian's boto3 1.26 has no ChecksumType."""
import base64
import hashlib

import crcmod
import pytest

import sigv4
from conftest import xml_find, xml_findall, xml_text

MIB = 1024 * 1024

_CRC = {
    "CRC32": crcmod.mkCrcFun(0x104C11DB7, initCrc=0, rev=True, xorOut=0xFFFFFFFF),
    "CRC32C": crcmod.mkCrcFun(0x11EDC6F41, initCrc=0, rev=True, xorOut=0xFFFFFFFF),
    "CRC64NVME": crcmod.mkCrcFun(0x1AD93D23594C93659, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF),
}
_WIDTH = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8}
ALGS = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]


def raw_sum(alg, data):
    if alg in _CRC:
        return _CRC[alg](data).to_bytes(_WIDTH[alg], "big")
    return hashlib.new(alg.lower(), data).digest()


def b64sum(alg, data):
    return base64.b64encode(raw_sum(alg, data)).decode()


def composite(alg, parts):
    raw = b"".join(raw_sum(alg, p) for p in parts)
    return b64sum(alg, raw) + "-%d" % len(parts)


def header(alg):
    return "x-amz-checksum-" + alg.lower()


def elem(alg):
    return "Checksum" + alg


def path_of(bucket, key=None):
    return sigv4.object_path(bucket, key)


def create(server, bucket, key, alg=None, typ=None):
    h = {}
    if alg:
        h["x-amz-checksum-algorithm"] = alg
    if typ:
        h["x-amz-checksum-type"] = typ
    return server.request("POST", path_of(bucket, key), query=[("uploads", None)], headers=h)


def create_ok(server, bucket, key, alg=None, typ=None):
    r = create(server, bucket, key, alg, typ)
    assert r.status == 200, r
    return xml_text(r.xml(), "UploadId")


def put_part(server, bucket, key, upload, n, data, headers=None):
    return server.request("PUT", path_of(bucket, key), query=[("partNumber", n), ("uploadId", upload)],
                          headers=headers or {}, body=data)


def complete(server, bucket, key, upload, parts, headers=None):
    """parts: (number, etag, {element: value})."""
    body = "<CompleteMultipartUpload>"
    for n, etag, sums in parts:
        body += "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag>" % (n, etag)
        for k, v in sums.items():
            body += "<%s>%s</%s>" % (k, v, k)
        body += "</Part>"
    body += "</CompleteMultipartUpload>"
    return server.request("POST", path_of(bucket, key), query=[("uploadId", upload)], headers=headers or {},
                          body=body.encode())


def head(server, bucket, key, mode=True, extra=None):
    h = {"x-amz-checksum-mode": "ENABLED"} if mode else {}
    h.update(extra or {})
    return server.request("HEAD", path_of(bucket, key), headers=h)


def attributes(server, bucket, key, attrs="Checksum,ObjectParts", extra=None):
    h = {"x-amz-object-attributes": attrs}
    h.update(extra or {})
    r = server.request("GET", path_of(bucket, key), query=[("attributes", None)], headers=h)
    assert r.status == 200, r
    return r.xml()


def checksum_headers(r):
    return {k.lower(): v for k, v in r.headers.items() if k.lower().startswith("x-amz-checksum-")}


def two_parts(seed=1):
    return [bytes([seed]) * (5 * MIB) + b"tail", b"second part %d" % seed * 50]


def upload_parts(server, bucket, key, upload, parts, alg, send=True):
    """Uploads parts with their checksum header (send); returns [(n, etag, sums)]."""
    out = []
    for i, data in enumerate(parts, 1):
        h = {header(alg): b64sum(alg, data)} if send else {}
        r = put_part(server, bucket, key, upload, i, data, h)
        assert r.status == 200, r
        assert r.header(header(alg)) == b64sum(alg, data), "UploadPart returns the part's checksum"
        out.append((i, r.header("ETag"), {elem(alg): b64sum(alg, data)}))
    return out


# ---- PutObject: the stored checksum -----------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_put_checksum_is_returned_only_in_checksum_mode(server, bucket, alg):
    data = b"checksum me " * 1000
    want = b64sum(alg, data)
    r = server.request("PUT", path_of(bucket, "k"), headers={header(alg): want}, body=data)
    assert r.status == 200, r
    assert r.header(header(alg)) == want and r.header("x-amz-checksum-type") == "FULL_OBJECT"
    assert checksum_headers(head(server, bucket, "k", mode=False)) == {}, "only when asked"
    assert checksum_headers(head(server, bucket, "k")) == {header(alg): want, "x-amz-checksum-type": "FULL_OBJECT"}
    g = server.request("GET", path_of(bucket, "k"), headers={"x-amz-checksum-mode": "ENABLED"})
    assert g.status == 200 and g.body == data
    assert g.header(header(alg)) == want and g.header("x-amz-checksum-type") == "FULL_OBJECT"
    g = server.request("GET", path_of(bucket, "k"))
    assert g.status == 200 and checksum_headers(g) == {}
    # A range is not the object the checksum is of.
    g = server.request("GET", path_of(bucket, "k"), headers={"x-amz-checksum-mode": "ENABLED", "Range": "bytes=0-9"})
    assert g.status == 206 and checksum_headers(g) == {}
    a = attributes(server, bucket, "k", "Checksum,ObjectSize")
    assert xml_text(a, "Checksum/" + elem(alg)) == want
    assert xml_text(a, "Checksum/ChecksumType") == "FULL_OBJECT"
    assert xml_find(a, "ObjectParts") is None


def test_part_one_of_a_plain_object_is_the_whole_and_has_its_checksum(server, bucket):
    data = b"plain object" * 100
    r = server.request("PUT", path_of(bucket, "p"), body=data, headers={header("CRC32C"): b64sum("CRC32C", data)})
    assert r.status == 200, r
    r = server.request("HEAD", path_of(bucket, "p"), query=[("partNumber", 1)],
                       headers={"x-amz-checksum-mode": "ENABLED"})
    assert r.status == 200 and checksum_headers(r) == {header("CRC32C"): b64sum("CRC32C", data),
                                                       "x-amz-checksum-type": "FULL_OBJECT"}


def test_put_without_checksum_has_none(server, bucket):
    assert server.request("PUT", path_of(bucket, "k"), body=b"plain").status == 200
    assert checksum_headers(head(server, bucket, "k")) == {}
    assert xml_find(attributes(server, bucket, "k", "Checksum,ETag"), "Checksum") is None


def test_put_checksum_mismatch_stores_nothing(server, bucket):
    r = server.request("PUT", path_of(bucket, "k"), headers={header("CRC32C"): b64sum("CRC32C", b"other")},
                       body=b"data")
    assert (r.status, r.error_code) == (400, "BadDigest")
    assert head(server, bucket, "k").status == 404


def test_boto3_head_checksum_mode(server, s3, bucket):
    data = b"boto3 " * 100
    s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumSHA256=b64sum("SHA256", data))
    assert s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")["ChecksumSHA256"] == b64sum("SHA256", data)
    assert "ChecksumSHA256" not in s3.head_object(Bucket=bucket, Key="k")


# ---- CreateMultipartUpload ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg,typ,want", [
    ("CRC32", None, "COMPOSITE"), ("CRC32C", None, "COMPOSITE"), ("SHA1", None, "COMPOSITE"),
    ("SHA256", None, "COMPOSITE"), ("CRC64NVME", None, "FULL_OBJECT"),
    ("CRC32", "FULL_OBJECT", "FULL_OBJECT"), ("CRC32C", "FULL_OBJECT", "FULL_OBJECT"),
    ("CRC64NVME", "FULL_OBJECT", "FULL_OBJECT"), ("SHA256", "COMPOSITE", "COMPOSITE"),
    ("crc32c", None, "COMPOSITE"),
])
def test_create_answers_algorithm_and_type(server, bucket, alg, typ, want):
    r = create(server, bucket, "k", alg, typ)
    assert r.status == 200, r
    assert r.header("x-amz-checksum-algorithm") == alg.upper()
    assert r.header("x-amz-checksum-type") == want
    upload = xml_text(r.xml(), "UploadId")
    lp = server.request("GET", path_of(bucket, "k"), query=[("uploadId", upload)])
    assert xml_text(lp.xml(), "ChecksumAlgorithm") == alg.upper()
    assert xml_text(lp.xml(), "ChecksumType") == want
    lu = server.request("GET", path_of(bucket), query=[("uploads", None)]).xml()
    (u,) = [u for u in xml_findall(lu, "Upload") if xml_text(u, "UploadId") == upload]
    assert (xml_text(u, "ChecksumAlgorithm"), xml_text(u, "ChecksumType")) == (alg.upper(), want)


def test_create_without_algorithm_answers_none(server, bucket):
    r = create(server, bucket, "k")
    assert r.status == 200 and checksum_headers(r) == {}
    lu = server.request("GET", path_of(bucket), query=[("uploads", None)]).xml()
    assert xml_find(xml_find(lu, "Upload"), "ChecksumAlgorithm") is None


@pytest.mark.parametrize("alg,typ,fragment", [
    ("SHA1", "FULL_OBJECT", "FULL_OBJECT checksum type cannot be used with the sha1"),
    ("SHA256", "FULL_OBJECT", "FULL_OBJECT checksum type cannot be used with the sha256"),
    ("CRC64NVME", "COMPOSITE", "COMPOSITE checksum type cannot be used with the crc64nvme"),
    (None, "COMPOSITE", "can only be used with the x-amz-checksum-algorithm"),
    ("CRC32", "BOTH", "x-amz-checksum-type header is invalid"),
    ("MD5", None, "Checksum algorithm provided is unsupported"),
])
def test_create_refuses_what_s3_refuses(server, bucket, alg, typ, fragment):
    r = create(server, bucket, "k", alg, typ)
    assert (r.status, r.error_code) == (400, "InvalidRequest"), r
    assert fragment in xml_text(r.xml(), "Message")
    lu = server.request("GET", path_of(bucket), query=[("uploads", None)])
    assert xml_findall(lu.xml(), "Upload") == [], "no upload was made"


# ---- COMPOSITE --------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_composite_multipart(server, bucket, alg):
    parts = two_parts()
    upload = create_ok(server, bucket, "mp", alg)
    done = upload_parts(server, bucket, "mp", upload, parts, alg)
    lp = server.request("GET", path_of(bucket, "mp"), query=[("uploadId", upload)]).xml()
    assert [xml_text(p, elem(alg)) for p in xml_findall(lp, "Part")] == [b64sum(alg, p) for p in parts]
    r = complete(server, bucket, "mp", upload, done)
    assert r.status == 200, r
    want = composite(alg, parts)
    assert xml_text(r.xml(), elem(alg)) == want and want.endswith("-2")
    assert xml_text(r.xml(), "ChecksumType") == "COMPOSITE"
    assert checksum_headers(head(server, bucket, "mp")) == {header(alg): want, "x-amz-checksum-type": "COMPOSITE"}
    assert checksum_headers(head(server, bucket, "mp", mode=False)) == {}
    r = server.request("HEAD", path_of(bucket, "mp"), query=[("partNumber", 2)],
                       headers={"x-amz-checksum-mode": "ENABLED"})
    assert r.status == 206 and checksum_headers(r) == {header(alg): b64sum(alg, parts[1]),
                                                       "x-amz-checksum-type": "COMPOSITE"}, \
        "a part's own checksum with a response of that part"
    g = server.request("GET", path_of(bucket, "mp"), query=[("partNumber", 1)],
                       headers={"x-amz-checksum-mode": "ENABLED"})
    assert g.status == 206 and g.body == parts[0]
    assert checksum_headers(g)[header(alg)] == b64sum(alg, parts[0])
    r = server.request("HEAD", path_of(bucket, "mp"), query=[("partNumber", 2)])
    assert r.status == 206 and checksum_headers(r) == {}, "only in checksum mode"
    r = server.request("GET", path_of(bucket, "mp"), headers={"x-amz-checksum-mode": "ENABLED", "Range": "bytes=0-9"})
    assert r.status == 206 and checksum_headers(r) == {}, "a range's bytes have no stored checksum"
    a = attributes(server, bucket, "mp")
    assert xml_text(a, "Checksum/" + elem(alg)) == want[:-2], "GetObjectAttributes gives it without '-N'"
    assert xml_text(a, "Checksum/ChecksumType") == "COMPOSITE"
    assert xml_text(a, "ObjectParts/PartsCount") == "2"
    got = [(xml_text(p, "PartNumber"), xml_text(p, elem(alg))) for p in xml_findall(xml_find(a, "ObjectParts"), "Part")]
    assert got == [("1", b64sum(alg, parts[0])), ("2", b64sum(alg, parts[1]))]
    # Paged by x-amz-max-parts and x-amz-part-number-marker.
    a = attributes(server, bucket, "mp", "ObjectParts", {"x-amz-max-parts": "1"})
    assert xml_text(a, "ObjectParts/IsTruncated") == "true"
    assert xml_text(a, "ObjectParts/NextPartNumberMarker") == "1"
    assert xml_text(a, "ObjectParts/Part/" + elem(alg)) == b64sum(alg, parts[0])
    a = attributes(server, bucket, "mp", "ObjectParts", {"x-amz-part-number-marker": "1"})
    assert [xml_text(p, elem(alg)) for p in xml_findall(xml_find(a, "ObjectParts"), "Part")] == [b64sum(alg, parts[1])]
    g = server.request("GET", path_of(bucket, "mp"))
    assert g.body == b"".join(parts)


def test_composite_part_without_checksum_is_refused(server, bucket):
    upload = create_ok(server, bucket, "mp", "SHA256")
    r = put_part(server, bucket, "mp", upload, 1, b"no checksum")
    assert (r.status, r.error_code) == (400, "InvalidRequest"), r
    assert "expected checksum Type: sha256, actual checksum Type: null" in xml_text(r.xml(), "Message")


@pytest.mark.parametrize("typ", ["COMPOSITE", "FULL_OBJECT"])
def test_part_of_another_algorithm_is_refused(server, bucket, typ):
    upload = create_ok(server, bucket, "mp", "CRC32", typ)
    r = put_part(server, bucket, "mp", upload, 1, b"x", {header("CRC32C"): b64sum("CRC32C", b"x")})
    assert (r.status, r.error_code) == (400, "InvalidRequest"), r
    assert "expected checksum Type: crc32, actual checksum Type: crc32c" in xml_text(r.xml(), "Message")
    lp = server.request("GET", path_of(bucket, "mp"), query=[("uploadId", upload)]).xml()
    assert xml_findall(lp, "Part") == []


@pytest.mark.parametrize("alg", ["CRC32", "SHA1"])
def test_part_checksum_mismatch_is_bad_digest(server, bucket, alg):
    upload = create_ok(server, bucket, "mp", alg)
    r = put_part(server, bucket, "mp", upload, 1, b"the bytes", {header(alg): b64sum(alg, b"other bytes")})
    assert (r.status, r.error_code) == (400, "BadDigest"), r
    lp = server.request("GET", path_of(bucket, "mp"), query=[("uploadId", upload)]).xml()
    assert xml_findall(lp, "Part") == [], "the part was not stored"


def test_complete_part_checksum_mismatch_is_invalid_part(server, bucket):
    parts = two_parts(2)
    upload = create_ok(server, bucket, "mp", "CRC32C")
    done = upload_parts(server, bucket, "mp", upload, parts, "CRC32C")
    bad = [done[0], (2, done[1][1], {elem("CRC32C"): b64sum("CRC32C", b"not it")})]
    r = complete(server, bucket, "mp", upload, bad)
    assert (r.status, r.error_code) == (400, "InvalidPart"), r
    other = [done[0], (2, done[1][1], {elem("CRC32"): b64sum("CRC32", parts[1])})]
    r = complete(server, bucket, "mp", upload, other)
    assert (r.status, r.error_code) == (400, "InvalidPart"), "a checksum of another algorithm"
    assert complete(server, bucket, "mp", upload, done).status == 200, "the upload is still there"


def test_composite_complete_needs_every_part_checksum(server, bucket):
    parts = two_parts(3)
    upload = create_ok(server, bucket, "mp", "SHA1")
    done = upload_parts(server, bucket, "mp", upload, parts, "SHA1")
    r = complete(server, bucket, "mp", upload, [done[0], (2, done[1][1], {})])
    assert (r.status, r.error_code) == (400, "InvalidRequest"), r
    assert "created using a sha1 checksum" in xml_text(r.xml(), "Message")
    assert "missing for part 2" in xml_text(r.xml(), "Message")
    assert complete(server, bucket, "mp", upload, done).status == 200


def test_composite_complete_header_is_verified(server, bucket):
    parts = two_parts(4)
    upload = create_ok(server, bucket, "mp", "CRC32")
    done = upload_parts(server, bucket, "mp", upload, parts, "CRC32")
    r = complete(server, bucket, "mp", upload, done, {header("CRC32"): "AAAAAA==-2"})
    assert (r.status, r.error_code) == (400, "BadDigest"), r
    r = complete(server, bucket, "mp", upload, done, {"x-amz-checksum-type": "FULL_OBJECT"})
    assert (r.status, r.error_code) == (400, "BadDigest"), "the type must be the upload's"
    r = complete(server, bucket, "mp", upload, done, {header("CRC32"): composite("CRC32", parts),
                                                      "x-amz-checksum-type": "COMPOSITE"})
    assert r.status == 200, r


# ---- FULL_OBJECT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg,typ", [("CRC32", "FULL_OBJECT"), ("CRC32C", "FULL_OBJECT"), ("CRC64NVME", None)])
def test_full_object_multipart(server, bucket, alg, typ):
    parts = [bytes(range(256)) * (5 * MIB // 256) + b"odd", b"x" * (5 * MIB + 777), b"last"]
    upload = create_ok(server, bucket, "mp", alg, typ)
    done = upload_parts(server, bucket, "mp", upload, parts[:2], alg)
    # The client may leave a part's checksum out of a FULL_OBJECT upload: it is computed.
    r = put_part(server, bucket, "mp", upload, 3, parts[2])
    assert r.status == 200, r
    assert r.header(header(alg)) == b64sum(alg, parts[2])
    done.append((3, r.header("ETag"), {}))
    whole = b64sum(alg, b"".join(parts))
    r = complete(server, bucket, "mp", upload, done, {header(alg): whole})
    assert r.status == 200, r
    assert xml_text(r.xml(), elem(alg)) == whole
    assert xml_text(r.xml(), "ChecksumType") == "FULL_OBJECT"
    assert checksum_headers(head(server, bucket, "mp")) == {header(alg): whole, "x-amz-checksum-type": "FULL_OBJECT"}
    a = attributes(server, bucket, "mp")
    assert xml_text(a, "Checksum/" + elem(alg)) == whole
    assert xml_text(a, "Checksum/ChecksumType") == "FULL_OBJECT"
    assert [xml_text(p, elem(alg)) for p in xml_findall(xml_find(a, "ObjectParts"), "Part")] == \
        [b64sum(alg, p) for p in parts]
    r = server.request("HEAD", path_of(bucket, "mp"), query=[("partNumber", 3)],
                       headers={"x-amz-checksum-mode": "ENABLED"})
    assert r.status == 206 and checksum_headers(r)[header(alg)] == b64sum(alg, parts[2])


def test_full_object_complete_mismatch_is_bad_digest(server, bucket):
    parts = two_parts(5)
    upload = create_ok(server, bucket, "mp", "CRC64NVME")
    done = upload_parts(server, bucket, "mp", upload, parts, "CRC64NVME")
    r = complete(server, bucket, "mp", upload, done, {header("CRC64NVME"): b64sum("CRC64NVME", b"wrong")})
    assert (r.status, r.error_code) == (400, "BadDigest"), r
    r = complete(server, bucket, "mp", upload, done, {header("CRC32"): b64sum("CRC32", b"".join(parts))})
    assert (r.status, r.error_code) == (400, "InvalidRequest"), "another algorithm than the upload's"
    assert head(server, bucket, "mp").status == 404, "no object yet"
    r = complete(server, bucket, "mp", upload, done, {header("CRC64NVME"): b64sum("CRC64NVME", b"".join(parts))})
    assert r.status == 200, r


def test_full_object_complete_checks_named_part_checksums(server, bucket):
    parts = two_parts(6)
    upload = create_ok(server, bucket, "mp", "CRC32", "FULL_OBJECT")
    done = upload_parts(server, bucket, "mp", upload, parts, "CRC32")
    r = complete(server, bucket, "mp", upload, [done[0], (2, done[1][1], {elem("CRC32"): "AAAAAA=="})])
    assert (r.status, r.error_code) == (400, "InvalidPart"), r
    # Left out, they are not needed.
    r = complete(server, bucket, "mp", upload, [(n, e, {}) for n, e, _ in done])
    assert r.status == 200, r
    assert xml_text(r.xml(), elem("CRC32")) == b64sum("CRC32", b"".join(parts))


# ---- uploads without an algorithm, copies -----------------------------------------------------------


def test_upload_without_algorithm_keeps_part_checksums_but_no_object_checksum(server, bucket):
    parts = two_parts(7)
    upload = create_ok(server, bucket, "mp")
    done = upload_parts(server, bucket, "mp", upload, parts, "CRC32")
    r = put_part(server, bucket, "mp", upload, 3, b"bad", {header("SHA256"): b64sum("SHA256", b"good")})
    assert (r.status, r.error_code) == (400, "BadDigest"), "still verified"
    lp = server.request("GET", path_of(bucket, "mp"), query=[("uploadId", upload)]).xml()
    assert xml_find(lp, "ChecksumAlgorithm") is None
    assert [xml_text(p, elem("CRC32")) for p in xml_findall(lp, "Part")] == [b64sum("CRC32", p) for p in parts]
    r = complete(server, bucket, "mp", upload, [(n, e, {}) for n, e, _ in done])
    assert r.status == 200, r
    assert xml_find(r.xml(), elem("CRC32")) is None
    assert checksum_headers(head(server, bucket, "mp")) == {}


def test_upload_part_copy_computes_the_part_checksum(server, s3, bucket):
    src = bytes(range(256)) * (5 * MIB // 256 + 1)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    upload = create_ok(server, bucket, "mp", "SHA256")
    r = server.request("PUT", path_of(bucket, "mp"), query=[("partNumber", 1), ("uploadId", upload)],
                       headers={"x-amz-copy-source": "/%s/src" % bucket, "x-amz-copy-source-range": "bytes=0-5242879"})
    assert r.status == 200, r
    assert xml_text(r.xml(), elem("SHA256")) == b64sum("SHA256", src[:5 * MIB])
    p1 = (1, xml_text(r.xml(), "ETag"), {elem("SHA256"): b64sum("SHA256", src[:5 * MIB])})
    r = put_part(server, bucket, "mp", upload, 2, b"tail", {header("SHA256"): b64sum("SHA256", b"tail")})
    p2 = (2, r.header("ETag"), {elem("SHA256"): b64sum("SHA256", b"tail")})
    r = complete(server, bucket, "mp", upload, [p1, p2])
    assert r.status == 200, r
    assert xml_text(r.xml(), elem("SHA256")) == composite("SHA256", [src[:5 * MIB], b"tail"])


def test_copy_keeps_a_full_object_checksum_and_drops_a_composite_one(server, s3, bucket):
    data = b"full " * 100
    server.request("PUT", path_of(bucket, "plain"), headers={header("CRC32C"): b64sum("CRC32C", data)}, body=data)
    s3.copy_object(Bucket=bucket, Key="plain-copy", CopySource={"Bucket": bucket, "Key": "plain"})
    assert head(server, bucket, "plain-copy").header(header("CRC32C")) == b64sum("CRC32C", data)
    parts = two_parts(8)
    upload = create_ok(server, bucket, "mp", "SHA1")
    assert complete(server, bucket, "mp", upload, upload_parts(server, bucket, "mp", upload, parts, "SHA1")).status == 200
    s3.copy_object(Bucket=bucket, Key="mp-copy", CopySource={"Bucket": bucket, "Key": "mp"})
    assert checksum_headers(head(server, bucket, "mp-copy")) == {}, "the copy has no parts"
    assert xml_find(attributes(server, bucket, "mp-copy"), "Checksum") is None


def test_boto3_multipart_with_checksums(s3, bucket):
    parts = two_parts(9)
    up = s3.create_multipart_upload(Bucket=bucket, Key="b", ChecksumAlgorithm="SHA256")
    assert up["ChecksumAlgorithm"] == "SHA256"
    done = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="b", UploadId=up["UploadId"], PartNumber=n, Body=data,
                           ChecksumSHA256=b64sum("SHA256", data))
        assert r["ChecksumSHA256"] == b64sum("SHA256", data)
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    lp = s3.list_parts(Bucket=bucket, Key="b", UploadId=up["UploadId"])
    assert lp["ChecksumAlgorithm"] == "SHA256"
    assert [p["ChecksumSHA256"] for p in lp["Parts"]] == [b64sum("SHA256", p) for p in parts]
    r = s3.complete_multipart_upload(Bucket=bucket, Key="b", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": done})
    assert r["ChecksumSHA256"] == composite("SHA256", parts)
    assert s3.head_object(Bucket=bucket, Key="b", ChecksumMode="ENABLED")["ChecksumSHA256"] == composite("SHA256", parts)
    a = s3.get_object_attributes(Bucket=bucket, Key="b", ObjectAttributes=["Checksum", "ObjectParts"])
    assert a["Checksum"]["ChecksumSHA256"] == composite("SHA256", parts)[:-2]
    assert [p["ChecksumSHA256"] for p in a["ObjectParts"]["Parts"]] == [b64sum("SHA256", p) for p in parts]
