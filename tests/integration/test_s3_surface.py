"""The smaller surface of S3 (issue 12): ListBuckets pagination, bucket
ownership controls, x-amz-expected-bucket-owner, non-ASCII user metadata,
Transfer-Encoding: chunked uploads without Content-Length, and
GetObjectAttributes.  Each success path through boto3 where boto3 can
express it, and every error as the S3 code and HTTP status on the wire."""
import base64
import email.header
import hashlib
import http.client
import zlib

import botocore.exceptions
import pytest

import sigv4
from conftest import unique_bucket, xml_find, xml_findall, xml_text


def path_of(bucket, key=None):
    return sigv4.object_path(bucket, key)


def err(r):
    return (r.status, r.error_code)


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def client_error(exc_info):
    e = exc_info.value.response
    return (e["ResponseMetadata"]["HTTPStatusCode"], e["Error"]["Code"])


# ---- ListBuckets pagination ------------------------------------------------------------------


@pytest.fixture
def user_s3(server, user):
    """A client of a new user, who owns only the buckets a test makes."""
    return server.client(user.access_key, user.secret)


def make_buckets(s3, tag, n):
    names = sorted(f"{tag}-{i:02d}" for i in range(n))
    for name in names:
        s3.create_bucket(Bucket=name)
    return names


def list_buckets(server, user, **params):
    """A raw ListBuckets (Debian's botocore 1.29 predates its parameters):
    (names, ContinuationToken or None, Prefix or None)."""
    query = [(k.replace("_", "-"), v) for k, v in params.items()]
    r = server.request("GET", "/", query=query, creds=user.creds)
    assert r.status == 200, r
    doc = r.xml()
    names = [xml_text(b, "Name") for b in xml_findall(xml_find(doc, "Buckets"), "Bucket")]
    tok, prefix = xml_find(doc, "ContinuationToken"), xml_find(doc, "Prefix")
    return names, (tok.text if tok is not None else None), (None if prefix is None else prefix.text or "")


def test_list_buckets_pages_with_max_buckets_and_tokens(server, user, user_s3):
    tag = unique_bucket("lbp")
    names = make_buckets(user_s3, tag, 5)
    seen, token, pages = [], None, 0
    while True:
        params = {"max_buckets": "2"}
        if token:
            params["continuation_token"] = token
        got, token, prefix = list_buckets(server, user, **params)
        pages += 1
        assert len(got) <= 2 and prefix is None
        seen += got
        if not token:
            break
        assert token not in names, "the token is opaque, not a bucket name"
    assert seen == names
    assert pages == 3
    # Without any paging parameter every bucket comes back, with no token
    # (boto3 1.26 sends none).
    r = user_s3.list_buckets()
    assert [b["Name"] for b in r["Buckets"]] == names and "ContinuationToken" not in r
    # A token alone pages with the default size, 10000.
    _, token, _ = list_buckets(server, user, max_buckets="1")
    got, token, _ = list_buckets(server, user, continuation_token=token)
    assert got == names[1:] and token is None


def test_list_buckets_prefix(server, user, user_s3):
    tag = unique_bucket("lbx")
    names = make_buckets(user_s3, tag, 3)
    other = tag + "z"
    user_s3.create_bucket(Bucket=other)
    assert list_buckets(server, user, prefix=tag + "-") == (names, None, tag + "-")
    got, token, _ = list_buckets(server, user, prefix=tag + "-", max_buckets="2")
    assert got == names[:2] and token
    assert list_buckets(server, user, prefix=tag + "-", max_buckets="2", continuation_token=token) == (
        names[2:], None, tag + "-")
    assert list_buckets(server, user, prefix=tag)[0] == names + [other]
    assert list_buckets(server, user, prefix="zz" + tag) == ([], None, "zz" + tag)
    # A prefix is echoed even when empty.
    assert list_buckets(server, user, prefix="") == (names + [other], None, "")
    # A prefix no bucket name can have.
    assert list_buckets(server, user, prefix="caf\u00e9") == ([], None, "caf\u00e9")


def test_list_buckets_of_a_user_only_theirs(server, user, user_s3):
    tag = unique_bucket("lbo")
    server.client().create_bucket(Bucket=tag + "-root")
    mine = make_buckets(user_s3, tag, 2)
    assert list_buckets(server, user, prefix=tag, max_buckets="10")[0] == mine
    # root sees every owner's
    names = [xml_text(b, "Name") for b in xml_findall(xml_find(
        server.request("GET", "/", query=[("prefix", tag)]).xml(), "Buckets"), "Bucket")]
    assert names == [tag + "-00", tag + "-01", tag + "-root"]


def test_list_buckets_bucket_region(server, user, user_s3):
    names = make_buckets(user_s3, unique_bucket("lbr"), 2)
    assert list_buckets(server, user, bucket_region="us-east-1")[0] == names
    assert list_buckets(server, user, bucket_region="eu-west-1")[0] == []


@pytest.mark.parametrize("value", ["0", "10001", "-1", "abc", "", "1.5", "99999999999999999999"])
def test_list_buckets_bad_max_buckets(server, value):
    r = server.request("GET", "/", query=[("max-buckets", value)])
    assert err(r) == (400, "InvalidArgument"), r


def test_list_buckets_max_buckets_bounds(server, user, user_s3):
    make_buckets(user_s3, unique_bucket("lbm"), 2)
    for value, n in (("1", 1), ("10000", 2)):
        doc = server.request("GET", "/", query=[("max-buckets", value)], creds=user.creds).xml()
        assert len(xml_findall(xml_find(doc, "Buckets"), "Bucket")) == n, value


@pytest.mark.parametrize("token", [
    "not base64!",
    base64.b64encode(b"Pab-c").decode(),          # a prefix token of ListObjectsV2
    base64.b64encode(b"KNot_A_Bucket").decode(),  # no bucket can have that name
    base64.b64encode(b"K" + b"a" * 100).decode(),
    "K",
])
def test_list_buckets_bad_continuation_token(server, token):
    r = server.request("GET", "/", query=[("continuation-token", token)])
    assert err(r) == (400, "InvalidArgument"), r


def test_list_buckets_empty_token_is_none(server, user, user_s3):
    names = make_buckets(user_s3, unique_bucket("lbe"), 2)
    doc = server.request("GET", "/", query=[("continuation-token", "")], creds=user.creds).xml()
    assert [xml_text(b, "Name") for b in xml_findall(xml_find(doc, "Buckets"), "Bucket")] == names


# ---- bucket ownership controls ------------------------------------------------------------------


def ownership_doc(*values, root="OwnershipControls"):
    rules = "".join(f"<Rule><ObjectOwnership>{v}</ObjectOwnership></Rule>" for v in values)
    return f'<{root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{rules}</{root}>'.encode()


def put_ownership(server, bucket, body, headers=None, md5=True, creds=None):
    h = {"Content-MD5": md5_b64(body)} if md5 else {}
    h.update(headers or {})
    return server.request("PUT", path_of(bucket), query=[("ownershipControls", None)], body=body, headers=h,
                          creds=creds)


def get_ownership(s3, bucket):
    return s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"][0]["ObjectOwnership"]


def test_new_bucket_is_bucket_owner_enforced(s3, bucket):
    """S3 gives every new bucket BucketOwnerEnforced (since April 2023)."""
    assert get_ownership(s3, bucket) == "BucketOwnerEnforced"


@pytest.mark.parametrize("value", ["BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"])
def test_create_bucket_with_object_ownership(s3, value):
    name = unique_bucket("own")
    s3.create_bucket(Bucket=name, ObjectOwnership=value)
    assert get_ownership(s3, name) == value


@pytest.mark.parametrize("value", ["bucketownerenforced", "Nobody", ""])
def test_create_bucket_with_bad_object_ownership(server, s3, value):
    name = unique_bucket("own")
    r = server.request("PUT", path_of(name), headers={"x-amz-object-ownership": value})
    assert err(r) == (400, "InvalidArgument"), r
    r = server.request("HEAD", path_of(name))
    assert r.status == 404, "no bucket was made"


def test_put_get_delete_ownership_controls(server, s3, bucket):
    for value in ("ObjectWriter", "BucketOwnerPreferred", "BucketOwnerEnforced"):
        s3.put_bucket_ownership_controls(Bucket=bucket,
                                         OwnershipControls={"Rules": [{"ObjectOwnership": value}]})
        assert get_ownership(s3, bucket) == value
    r = server.request("GET", path_of(bucket), query=[("ownershipControls", None)])
    assert r.status == 200 and xml_text(xml_find(r.xml(), "Rule"), "ObjectOwnership") == "BucketOwnerEnforced"
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_bucket_ownership_controls(Bucket=bucket)
    assert client_error(e) == (404, "OwnershipControlsNotFoundError")
    r = server.request("GET", path_of(bucket), query=[("ownershipControls", None)])
    assert err(r) == (404, "OwnershipControlsNotFoundError") and xml_text(r.xml(), "BucketName") == bucket
    # Deleting what is not there is still 204.
    r = server.request("DELETE", path_of(bucket), query=[("ownershipControls", None)])
    assert r.status == 204, r
    # And set again after a delete.
    assert put_ownership(server, bucket, ownership_doc("ObjectWriter")).status == 200
    assert get_ownership(s3, bucket) == "ObjectWriter"


@pytest.mark.parametrize("body", [
    b"",
    b"<OwnershipControls",
    ownership_doc(),                                        # no Rule
    ownership_doc("ObjectWriter", "ObjectWriter"),          # two
    ownership_doc("Everyone"),
    ownership_doc("objectwriter"),
    ownership_doc(""),
    ownership_doc("ObjectWriter", root="Ownership"),
    b"<OwnershipControls><Rule/></OwnershipControls>",
    b"<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership>"
    b"<ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></OwnershipControls>",
    b"<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership><X/></Rule></OwnershipControls>",
    b"<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule><X/></OwnershipControls>",
])
def test_put_ownership_controls_bad_document(server, s3, bucket, body):
    r = put_ownership(server, bucket, body)
    assert err(r) == (400, "MalformedXML"), r
    assert get_ownership(s3, bucket) == "BucketOwnerEnforced", "unchanged"


def test_put_ownership_controls_digests(server, s3, bucket):
    body = ownership_doc("ObjectWriter")
    r = put_ownership(server, bucket, body, md5=False)
    assert err(r) == (400, "InvalidRequest"), r
    r = put_ownership(server, bucket, body, md5=False, headers={"Content-MD5": md5_b64(b"other")})
    assert err(r) == (400, "BadDigest"), r
    r = put_ownership(server, bucket, body, md5=False, headers={"Content-MD5": "not-base64"})
    assert err(r) == (400, "InvalidDigest"), r
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    r = put_ownership(server, bucket, body, md5=False, headers={"x-amz-checksum-crc32": "AAAAAA=="})
    assert err(r) == (400, "BadDigest"), r
    assert get_ownership(s3, bucket) == "BucketOwnerEnforced"
    r = put_ownership(server, bucket, body, md5=False, headers={"x-amz-checksum-crc32": crc})
    assert r.status == 200, r
    sha = base64.b64encode(hashlib.sha256(ownership_doc("BucketOwnerPreferred")).digest()).decode()
    r = put_ownership(server, bucket, ownership_doc("BucketOwnerPreferred"), md5=False,
                      headers={"x-amz-checksum-sha256": sha})
    assert r.status == 200, r
    assert get_ownership(s3, bucket) == "BucketOwnerPreferred"


def test_ownership_controls_of_another_users_bucket(server, bucket, user):
    body = ownership_doc("ObjectWriter")
    assert err(put_ownership(server, bucket, body, creds=user.creds)) == (403, "AccessDenied")
    for method in ("GET", "DELETE"):
        r = server.request(method, path_of(bucket), query=[("ownershipControls", None)], creds=user.creds)
        assert err(r) == (403, "AccessDenied"), (method, r)


def test_ownership_controls_of_a_missing_bucket(server):
    name = unique_bucket("gone")
    assert err(put_ownership(server, name, ownership_doc("ObjectWriter"))) == (404, "NoSuchBucket")
    for method in ("GET", "DELETE"):
        r = server.request(method, path_of(name), query=[("ownershipControls", None)])
        assert err(r) == (404, "NoSuchBucket"), (method, r)


# ---- x-amz-expected-bucket-owner --------------------------------------------------------------


def owner_id(s3):
    """The account id cairn shows for the caller: Owner/ID of ListBuckets."""
    return s3.list_buckets()["Owner"]["ID"]


# (operation, extra arguments): calls on a bucket that has the object "k"
EXPECTED_OWNER_CALLS = [
    ("head_bucket", {}),
    ("list_objects_v2", {}),
    ("list_objects", {}),
    ("get_bucket_location", {}),
    ("get_bucket_acl", {}),
    ("get_bucket_versioning", {}),
    ("get_bucket_ownership_controls", {}),
    ("list_multipart_uploads", {}),
    ("get_object", {"Key": "k"}),
    ("head_object", {"Key": "k"}),
    ("get_object_acl", {"Key": "k"}),
    ("get_object_tagging", {"Key": "k"}),
    ("put_object_tagging", {"Key": "k", "Tagging": {"TagSet": [{"Key": "t", "Value": "1"}]}}),
    ("delete_object_tagging", {"Key": "k"}),
    ("put_bucket_tagging", {"Tagging": {"TagSet": [{"Key": "t", "Value": "1"}]}}),
    ("delete_bucket_tagging", {}),
    ("get_object_attributes", {"Key": "k", "ObjectAttributes": ["ETag"]}),
    ("put_object", {"Key": "new", "Body": b"x"}),
    ("delete_object", {"Key": "k"}),
    ("delete_objects", {"Delete": {"Objects": [{"Key": "k"}]}}),
    ("create_multipart_upload", {"Key": "mp"}),
    ("copy_object", {"Key": "copy", "CopySource": "{bucket}/k"}),
    ("delete_bucket_ownership_controls", {}),
]


@pytest.mark.parametrize("op,kw", EXPECTED_OWNER_CALLS, ids=[c[0] for c in EXPECTED_OWNER_CALLS])
def test_expected_bucket_owner(s3, bucket, op, kw):
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    kw = {k: (v.format(bucket=bucket) if isinstance(v, str) else v) for k, v in kw.items()}
    mine = owner_id(s3)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        getattr(s3, op)(Bucket=bucket, ExpectedBucketOwner=str(int(mine) + 1000), **kw)
    status, code = client_error(e)
    assert status == 403 and code in ("AccessDenied", "403"), (status, code)
    # Nothing happened: the object is still there, nothing new was made.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["k"], keys
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert get_ownership(s3, bucket) == "BucketOwnerEnforced"
    # The owner's id is accepted.
    getattr(s3, op)(Bucket=bucket, ExpectedBucketOwner=mine, **kw)


# (Whitespace around a header value is not part of it, in HTTP.)
@pytest.mark.parametrize("value", ["", "abc", "{id}x", "0{id}", "+{id}", "123456789012"])
def test_expected_bucket_owner_must_match_exactly(server, s3, bucket, value):
    r = server.request("GET", path_of(bucket), query=[("list-type", "2")],
                       headers={"x-amz-expected-bucket-owner": value.format(id=owner_id(s3))})
    assert err(r) == (403, "AccessDenied"), r


def test_expected_bucket_owner_of_another_users_bucket(server, s3, bucket, user):
    """A user who names the real owner of a bucket not theirs is still denied;
    one who names themselves learns nothing more than AccessDenied."""
    user_s3 = server.client(user.access_key, user.secret)
    for expected in (owner_id(s3), owner_id(user_s3)):
        r = server.request("GET", path_of(bucket), query=[("list-type", "2")], creds=user.creds,
                           headers={"x-amz-expected-bucket-owner": expected})
        assert err(r) == (403, "AccessDenied"), r


def test_delete_bucket_with_wrong_expected_owner_keeps_it(s3):
    name = unique_bucket("eo")
    s3.create_bucket(Bucket=name)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket=name, ExpectedBucketOwner="999999")
    assert client_error(e) == (403, "AccessDenied")
    s3.head_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name, ExpectedBucketOwner=owner_id(s3))


def test_source_expected_bucket_owner(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", ExpectedSourceBucketOwner="999999")
    assert client_error(e) == (403, "AccessDenied")
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, CopySource=f"{bucket}/src",
                            ExpectedSourceBucketOwner="999999")
    assert client_error(e) == (403, "AccessDenied")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src", ExpectedSourceBucketOwner=owner_id(s3))
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"data"
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up)


# ---- non-ASCII user metadata ------------------------------------------------------------------------

CAFE = "caf\u00e9 \u2713"
CAFE_WORD = "=?UTF-8?B?" + base64.b64encode(CAFE.encode()).decode() + "?="


def decoded(value):
    """What a mail-safe header value means (RFC 2047), as email.header reads it."""
    return str(email.header.make_header(email.header.decode_header(value)))


def latin1_signed(server, method, path, headers, body=b""):
    """A SigV4 request whose header values (str) go on the wire as
    ISO-8859-1 bytes, as http.client sends them, and are signed as those
    bytes (sigv4.sign_request hashes UTF-8)."""
    import hmac
    date = sigv4.amz_date()
    h = dict(headers, Host=server.host)
    h["x-amz-date"] = date
    h["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    creq, signed = sigv4.canonical_request(method, path, None, h, h["x-amz-content-sha256"])
    sc = sigv4.scope(date[:8])
    sts = "\n".join([sigv4.ALGORITHM, date, sc, hashlib.sha256(creq.encode("latin-1")).hexdigest()])
    sig = hmac.new(sigv4.signing_key(server.root[1], date[:8]), sts.encode(), hashlib.sha256).hexdigest()
    h["Authorization"] = f"{sigv4.ALGORITHM} Credential={server.root[0]}/{sc}, SignedHeaders={signed}, Signature={sig}"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def raw_put(server, bucket, key, headers, body=b"data"):
    """A PutObject whose header values go on the wire as the bytes given
    (each character of a str one byte)."""
    status, data = latin1_signed(server, "PUT", path_of(bucket, key), headers, body)
    assert status == 200, data


def wire_header(server, bucket, key, name, method="HEAD"):
    r = server.request(method, path_of(bucket, key))
    assert r.status == 200, r
    return r.headers.get(name)


def test_boto3_refuses_non_ascii_metadata_so_it_is_sent_encoded(s3, bucket):
    """botocore will not put non-ASCII metadata on the wire (its
    validate_ascii_metadata handler); the way to store "café ✓" with it is
    an RFC 2047 encoded word, which S3 decodes and stores, and which comes
    back as it was sent."""
    with pytest.raises(botocore.exceptions.ParamValidationError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"name": CAFE})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"name": CAFE_WORD, "plain": "ascii"})
    for got in (s3.head_object(Bucket=bucket, Key="k"), s3.get_object(Bucket=bucket, Key="k")):
        assert got["Metadata"] == {"name": CAFE_WORD, "plain": "ascii"}
        assert decoded(got["Metadata"]["name"]) == CAFE


def test_raw_utf8_metadata_comes_back_as_an_encoded_word(server, s3, bucket):
    """A client that sends UTF-8 bytes (browsers, curl) gets the value back
    as S3 sends it, one =?UTF-8?B?...?= word, which decodes to what was sent."""
    raw_put(server, bucket, "k", {"x-amz-meta-name": CAFE.encode().decode("latin-1"),
                                  "x-amz-meta-plain": "ascii"})
    for method in ("HEAD", "GET"):
        assert wire_header(server, bucket, "k", "x-amz-meta-name", method) == CAFE_WORD
        assert wire_header(server, bucket, "k", "x-amz-meta-plain", method) == "ascii"
    assert decoded(s3.head_object(Bucket=bucket, Key="k")["Metadata"]["name"]) == CAFE


@pytest.mark.parametrize("sent,stored", [
    (CAFE_WORD, CAFE),
    ("=?utf-8?b?" + base64.b64encode(CAFE.encode()).decode() + "?=", CAFE),
    ("=?UTF-8?Q?caf=C3=A9_=E2=9C=93?=", CAFE),
    ("=?ISO-8859-1?Q?caf=E9?=", "caf\u00e9"),
    ("=?UTF-8?B?Y2Fm?= =?UTF-8?B?w6k=?=", "caf\u00e9"),      # whitespace between words is dropped
    ("=?UTF-8?B?aGVsbG8=?=", "hello"),                       # decodes to ASCII: goes out as ASCII
    ("=?UTF-8?B?not base64?=", "=?UTF-8?B?not base64?="),   # not a word: kept as sent
    ("=?UTF-8?B?/w==?=", "=?UTF-8?B?/w==?="),                # not UTF-8 inside: kept
    ("=?UTF-8?Q?a=00b?=", "=?UTF-8?Q?a=00b?="),              # a NUL inside: kept
    ("=?KOI8-R?B?w8/Q?=", "=?KOI8-R?B?w8/Q?="),              # a charset we do not decode: kept
    ("x =?UTF-8?B?w6k=?=", "x =?UTF-8?B?w6k=?="),            # not only words: kept
    ("=?UTF-8?B?w6k=?= x", "=?UTF-8?B?w6k=?= x"),
])
def test_encoded_words_are_decoded_before_storing(server, bucket, sent, stored):
    raw_put(server, bucket, "k", {"x-amz-meta-v": sent})
    got = wire_header(server, bucket, "k", "x-amz-meta-v")
    ascii_only = all(32 <= ord(c) < 127 for c in stored)
    assert got == (stored if ascii_only else "=?UTF-8?B?" + base64.b64encode(stored.encode()).decode() + "?=")
    if not ascii_only:
        assert decoded(got) == stored


def test_latin1_metadata_bytes_are_read_as_iso_8859_1(server, bucket):
    """A byte that is not UTF-8 is ISO-8859-1 (what HTTP header bytes are):
    http.client sends str headers that way.  The other stored headers
    survive with it."""
    raw_put(server, bucket, "k", {"x-amz-meta-v": "caf\u00e9", "Content-Type": "text/x-caf\u00e9",
                                  "Content-Disposition": "attachment"})
    r = server.request("HEAD", path_of(bucket, "k"))
    assert r.headers["x-amz-meta-v"] == "=?UTF-8?B?" + base64.b64encode("caf\u00e9".encode()).decode() + "?="
    assert r.headers["Content-Disposition"] == "attachment"
    assert r.headers["Content-Type"].encode("latin-1").decode() == "text/x-caf\u00e9"


def test_encoded_metadata_counts_decoded_toward_the_limit(server, bucket):
    """The 2 KiB limit is on what is stored: a long encoded word that decodes
    within it is accepted, a value over it is not."""
    value = "\u00e9" * 700                      # 1400 bytes stored, 1900 as a B word
    word = "=?UTF-8?B?" + base64.b64encode(value.encode()).decode() + "?="
    assert len(word) > 1800
    raw_put(server, bucket, "k", {"x-amz-meta-v": word, "x-amz-meta-w": "x" * 600})
    status, body = latin1_signed(server, "PUT", path_of(bucket, "k2"), {"x-amz-meta-v": word, "x-amz-meta-w": "x" * 700},
                                 b"x")
    assert status == 400 and b"<Code>MetadataTooLarge</Code>" in body, body


def test_encoded_metadata_through_copy_and_multipart(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Metadata={"name": CAFE_WORD})
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/src")
    assert s3.head_object(Bucket=bucket, Key="copy")["Metadata"] == {"name": CAFE_WORD}
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   Metadata={"other": "=?UTF-8?Q?=E2=9C=93?="})
    assert decoded(s3.head_object(Bucket=bucket, Key="replaced")["Metadata"]["other"]) == "\u2713"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Metadata={"name": CAFE_WORD})["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"p")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.head_object(Bucket=bucket, Key="mp")["Metadata"] == {"name": CAFE_WORD}


# ---- Transfer-Encoding: chunked without Content-Length --------------------------------------


def chunked_put(srv, path, chunks, payload_hash=sigv4.UNSIGNED_PAYLOAD, headers=None, query=None):
    """A SigV4 request whose body goes with Transfer-Encoding: chunked and no
    Content-Length (http.client frames an iterator body so).  Returns
    (status, body bytes)."""
    h = dict(headers or {}, Host=srv.host)
    ak, sk = srv.root
    h, _sig, _date = sigv4.sign_request("PUT", path, query, h, ak, sk, payload_hash)
    q = sigv4.wire_query(query)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        conn.request("PUT", path + ("?" + q if q else ""), body=iter(chunks), headers=h, encode_chunked=True)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def code_of(body):
    return body.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in body else None


@pytest.mark.parametrize("size", [0, 100, 16 * 1024, 16 * 1024 + 1, 3 * 1024 * 1024 + 17])
def test_chunked_unsigned_put_object(server, s3, bucket, size):
    """Inline (at most inline_max_size, 16 KiB) and stored in shards, also
    when the buffer fills in the middle of a chunk."""
    data = bytes((i * 7 + size) % 251 for i in range(size))
    chunks = [data[i:i + 10000] for i in range(0, len(data), 10000)] or [b""]
    status, headers, body = chunked_put(server, path_of(bucket, "k"), chunks,
                                        headers={"Content-Type": "text/x-chunked"})
    assert status == 200, body
    assert headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == data and got["ContentLength"] == size
    assert got["ContentType"] == "text/x-chunked"


def test_chunked_unsigned_put_checks_content_md5_and_checksums(server, s3, bucket):
    data = b"x" * 40000
    chunks = [data[:25000], data[25000:]]
    status, _, body = chunked_put(server, path_of(bucket, "k"), chunks, headers={"Content-MD5": md5_b64(b"other")})
    assert (status, code_of(body)) == (400, "BadDigest")
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    status, _, body = chunked_put(server, path_of(bucket, "k"), chunks, headers={"x-amz-checksum-crc32": "AAAAAA=="})
    assert (status, code_of(body)) == (400, "BadDigest")
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    status, _, body = chunked_put(server, path_of(bucket, "k"), chunks,
                                  headers={"Content-MD5": md5_b64(data), "x-amz-checksum-crc32": crc})
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


def test_chunked_put_with_signed_payload_needs_content_length(server, s3, bucket):
    """A payload signed as one SHA-256 is refused as S3 refuses any chunked
    body without aws-chunked framing: 411 MissingContentLength."""
    data = b"y" * 1000
    status, _, body = chunked_put(server, path_of(bucket, "k"), [data],
                                  payload_hash=hashlib.sha256(data).hexdigest())
    assert (status, code_of(body)) == (411, "MissingContentLength")
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    # The connection's other requests still work.
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_aws_chunked_body_with_transfer_encoding_chunked(server, s3, bucket):
    """aws-chunked framing inside Transfer-Encoding: chunked, with
    x-amz-decoded-content-length: what the SDKs send for unknown lengths."""
    data = bytes(range(256)) * 300
    body = sigv4.encode_unsigned_trailer_chunks(sigv4.split_chunks(data, 64 * 1024), "x-amz-checksum-crc32",
                                                base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode())
    hdrs = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32"}
    status, _, resp = chunked_put(server, path_of(bucket, "k"), [body[i:i + 5000] for i in range(0, len(body), 5000)],
                                  payload_hash=sigv4.STREAMING_UNSIGNED_TRAILER, headers=hdrs)
    assert status == 200, resp
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    # Without the decoded length: 411.
    del hdrs["x-amz-decoded-content-length"]
    status, _, resp = chunked_put(server, path_of(bucket, "k2"), [body],
                                  payload_hash=sigv4.STREAMING_UNSIGNED_TRAILER, headers=hdrs)
    assert (status, code_of(resp)) == (411, "MissingContentLength")


def test_chunked_unsigned_upload_part(server, s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part1 = b"a" * (5 * 1024 * 1024 + 3)
    part2 = b"b" * 1000
    etags = []
    for n, data in ((1, part1), (2, part2)):
        status, headers, body = chunked_put(server, path_of(bucket, "mp"),
                                            [data[i:i + 65536] for i in range(0, len(data), 65536)],
                                            query=[("partNumber", str(n)), ("uploadId", up)])
        assert status == 200, body
        assert headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        etags.append(headers["ETag"])
    status, _, body = chunked_put(server, path_of(bucket, "mp"), [b"z" * 10],
                                  payload_hash=hashlib.sha256(b"z" * 10).hexdigest(),
                                  query=[("partNumber", "3"), ("uploadId", up)])
    assert (status, code_of(body)) == (411, "MissingContentLength")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == part1 + part2


def test_chunked_unsigned_put_over_max_object_size(make_server):
    srv = make_server(env={"CAIRN_MAX_OBJECT_SIZE": "100KiB"})
    s3 = srv.client()
    name = unique_bucket("big")
    s3.create_bucket(Bucket=name)
    status, _, body = chunked_put(srv, path_of(name, "k"), [b"q" * 60000, b"q" * 60000])
    assert (status, code_of(body)) == (400, "EntityTooLarge")
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=name, Key="k")
    status, _, body = chunked_put(srv, path_of(name, "k"), [b"q" * 60000, b"q" * 40000])
    assert status == 200, body


# ---- GetObjectAttributes ---------------------------------------------------------------------------

ALL_ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def test_object_attributes_of_a_plain_object(s3, bucket):
    data = b"attributes" * 100
    s3.put_object(Bucket=bucket, Key="k", Body=data)
    head = s3.head_object(Bucket=bucket, Key="k")
    r = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=ALL_ATTRIBUTES)
    assert r["ETag"] == hashlib.md5(data).hexdigest(), "unquoted, as S3 gives it here"
    assert r["ObjectSize"] == len(data)
    assert r["StorageClass"] == "STANDARD"
    assert r["LastModified"] == head["LastModified"]
    assert "ObjectParts" not in r, "a plain object has no parts"
    assert "Checksum" not in r, "no checksum is stored"
    r = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert r["ObjectSize"] == len(data) and "ETag" not in r and "StorageClass" not in r
    r = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag"], VersionId="null")
    assert r["VersionId"] == "null" and r["ETag"] == hashlib.md5(data).hexdigest()


def test_object_attributes_of_a_multipart_object(server, s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    sizes = {1: 5 * 1024 * 1024, 2: 5 * 1024 * 1024, 4: 123}
    parts = []
    for n, size in sizes.items():
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=bytes([n]) * size)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    r = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL_ATTRIBUTES)
    assert r["ETag"] == done["ETag"].strip('"') and r["ETag"].endswith("-3")
    assert r["ObjectSize"] == sum(sizes.values())
    op = r["ObjectParts"]
    assert op["TotalPartsCount"] == 3 and op["IsTruncated"] is False and op["MaxParts"] == 1000
    assert [(p["PartNumber"], p["Size"]) for p in op["Parts"]] == list(sizes.items())
    # Paged by max-parts and part-number-marker.
    r = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2)
    op = r["ObjectParts"]
    assert [p["PartNumber"] for p in op["Parts"]] == [1, 2]
    assert op["IsTruncated"] is True and op["NextPartNumberMarker"] == 2 and op["TotalPartsCount"] == 3
    r = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2,
                                 PartNumberMarker=2)
    op = r["ObjectParts"]
    assert [p["PartNumber"] for p in op["Parts"]] == [4] and op["IsTruncated"] is False
    assert op["PartNumberMarker"] == 2 and "NextPartNumberMarker" not in op


def test_object_attributes_on_the_wire(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = server.request("GET", path_of(bucket, "k"), query=[("attributes", None)],
                       headers={"x-amz-object-attributes": " ObjectSize , ETag"})
    assert r.status == 200, r
    doc = r.xml()
    assert doc.tag.endswith("GetObjectAttributesOutput")
    assert xml_text(doc, "ObjectSize") == "1" and xml_text(doc, "ETag") == hashlib.md5(b"x").hexdigest()
    assert r.headers["Last-Modified"]


@pytest.mark.parametrize("headers", [
    {},
    {"x-amz-object-attributes": ""},
    {"x-amz-object-attributes": "Size"},
    {"x-amz-object-attributes": "etag"},
    {"x-amz-object-attributes": "ETag,"},
    {"x-amz-object-attributes": "ETag,,ObjectSize"},
    {"x-amz-object-attributes": "ETag,Bogus"},
    {"x-amz-object-attributes": "ETag", "x-amz-max-parts": "-1"},
    {"x-amz-object-attributes": "ETag", "x-amz-max-parts": "ten"},
    {"x-amz-object-attributes": "ETag", "x-amz-part-number-marker": "x"},
])
def test_object_attributes_bad_request(server, s3, bucket, headers):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = server.request("GET", path_of(bucket, "k"), query=[("attributes", None)], headers=headers)
    assert err(r) == (400, "InvalidArgument"), r


def test_object_attributes_of_what_is_not_there(server, s3, bucket, user):
    h = {"x-amz-object-attributes": "ETag"}
    r = server.request("GET", path_of(bucket, "missing"), query=[("attributes", None)], headers=h)
    assert err(r) == (404, "NoSuchKey"), r
    r = server.request("GET", path_of(unique_bucket("gone"), "k"), query=[("attributes", None)], headers=h)
    assert err(r) == (404, "NoSuchBucket"), r
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = server.request("GET", path_of(bucket, "k"), query=[("attributes", None), ("versionId", "v1")], headers=h)
    assert err(r) == (404, "NoSuchVersion"), r
    r = server.request("GET", path_of(bucket, "k"), query=[("attributes", None), ("versionId", "")], headers=h)
    assert err(r) == (400, "InvalidArgument"), r
    r = server.request("GET", path_of(bucket, "k"), query=[("attributes", None)], headers=h, creds=user.creds)
    assert err(r) == (403, "AccessDenied"), r
    r = server.request("GET", path_of(bucket, "k"), query=[("attributes", None)], headers=h, anonymous=True)
    assert err(r) == (403, "AccessDenied"), r


def test_object_attributes_of_a_public_bucket_need_a_signature(server, s3, bucket):
    """A public-read bucket lets anyone GetObject; S3 asks
    s3:GetObjectAttributes besides for this, which public-read does not give."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    server.admin("bucket", "set-public", bucket)
    try:
        assert server.request("GET", path_of(bucket, "k"), anonymous=True).status == 200
        r = server.request("GET", path_of(bucket, "k"), query=[("attributes", None)], anonymous=True,
                           headers={"x-amz-object-attributes": "ETag"})
        assert err(r) == (403, "AccessDenied"), r
    finally:
        server.admin("bucket", "set-public", bucket, "--off")


# ---- bucket configuration writes that fail ------------------------------------------------------


def refuse_bucket_config_writes(srv, on):
    """Makes every write of a bucket configuration fail in the database
    itself (a trigger), on either backend; on=False lifts it."""
    db = srv.metadata_db()
    if db is None:
        import sqlite3
        conn = sqlite3.connect(str(srv.data_dir / "meta.db"), timeout=10, isolation_level=None)
        try:
            for op in ("INSERT", "UPDATE", "DELETE"):
                conn.execute(f"DROP TRIGGER IF EXISTS refuse_{op.lower()}")
                if on:
                    conn.execute(f"CREATE TRIGGER refuse_{op.lower()} BEFORE {op} ON bucket_configs "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        finally:
            conn.close()
        return
    from conftest import pg_cluster
    if on:
        pg_cluster().sql("CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$", db=db)
        pg_cluster().sql("CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON bucket_configs "
                         "FOR EACH ROW EXECUTE FUNCTION refuse()", db=db)
    else:
        pg_cluster().sql("DROP TRIGGER IF EXISTS refuse ON bucket_configs", db=db)


def test_ownership_writes_that_fail(make_server):
    """A CreateBucket whose ownership controls cannot be stored makes no
    bucket (it is removed again, and the failure logged with the request
    id); Put/DeleteBucketOwnershipControls answer 500 and change nothing."""
    srv = make_server()
    s3 = srv.client()
    kept = unique_bucket("kept")
    s3.create_bucket(Bucket=kept, ObjectOwnership="ObjectWriter")
    refuse_bucket_config_writes(srv, True)
    name = unique_bucket("undone")
    r = srv.request("PUT", path_of(name))
    assert err(r) == (500, "InternalError"), r
    request_id = r.headers["x-amz-request-id"]
    assert srv.request("HEAD", path_of(name)).status == 404, "the bucket was removed again"
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    lines = [l for l in srv.log_text().splitlines() if "storing its ownership controls failed" in l]
    assert lines and request_id in lines[-1] and "bucket removed" in lines[-1], lines
    r = put_ownership(srv, kept, ownership_doc("BucketOwnerPreferred"))
    assert err(r) == (500, "InternalError"), r
    r = srv.request("DELETE", path_of(kept), query=[("ownershipControls", None)])
    assert err(r) == (500, "InternalError"), r
    assert get_ownership(s3, kept) == "ObjectWriter"
    refuse_bucket_config_writes(srv, False)
    s3.create_bucket(Bucket=name)
    assert get_ownership(s3, name) == "BucketOwnerEnforced"
