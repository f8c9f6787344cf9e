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
