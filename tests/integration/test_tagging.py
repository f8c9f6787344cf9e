"""S3 tagging: Put/Get/DeleteObjectTagging (any version), the x-amz-tagging
header of PutObject, CreateMultipartUpload and CopyObject (with
x-amz-tagging-directive), x-amz-tagging-count on GET and HEAD, and
Put/Get/DeleteBucketTagging; S3's limits and error codes."""
import base64
import hashlib
import threading

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import unique_bucket, xml_find, xml_findall, xml_text


def path_of(bucket, key=None):
    return sigv4.object_path(bucket, key)


def rerr(r):
    return (r.status, r.error_code)


def err(call, **kw):
    """The S3 error of a boto3 call that must fail: (HTTP status, code, message)."""
    with pytest.raises(ClientError) as e:
        call(**kw)
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message")


def tagset(**tags):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


def as_dict(resp):
    return {t["Key"]: t["Value"] for t in resp["TagSet"]}


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def doc(*pairs):
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f"<Tagging><TagSet>{tags}</TagSet></Tagging>".encode()


def put_tagging_raw(server, bucket, key, body, query=None, creds=None, md5=True):
    q = [("tagging", None)] + list(query or [])
    headers = {"Content-MD5": md5_b64(body)} if md5 else {}
    return server.request("PUT", path_of(bucket, key), query=q, body=body, headers=headers, creds=creds)


def header(resp, name):
    return resp["ResponseMetadata"]["HTTPHeaders"].get(name)


# ---- object tags: the operations -----------------------------------------------------------


def test_put_get_delete_object_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(env="prod", team="a b"))
    got = s3.get_object_tagging(Bucket=bucket, Key="k")
    assert got["TagSet"] == [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "a b"}]
    assert "VersionId" not in got, "no version id on a bucket that never had versioning"
    # a put replaces the whole set
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(only="1"))
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"only": "1"}
    r = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    # deleting tags that are not there is still 204; the object is untouched
    assert s3.delete_object_tagging(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_tags_are_not_metadata_and_count_on_get_and_head(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ContentType="text/plain", Metadata={"m": "1"},
                  Tagging="a=1&b=2&c=")
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["TagCount"] == 3
    assert g["Metadata"] == {"m": "1"} and g["ContentType"] == "text/plain"
    h = s3.head_object(Bucket=bucket, Key="k")
    assert header(h, "x-amz-tagging-count") == "3"
    assert h["Metadata"] == {"m": "1"}
    for method in ("GET", "HEAD"):
        r = server.request(method, path_of(bucket, "k"))
        assert r.status == 200
        assert r.header("x-amz-tagging-count") == "3"
        assert r.header("x-amz-tagging") is None, "the stored tags are never a response header"
    # an object without tags has no count
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="k")
    assert header(s3.head_object(Bucket=bucket, Key="k"), "x-amz-tagging-count") is None
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {"m": "1"}, "metadata kept by a tag change"


def test_put_object_tagging_header_forms(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="my%20key=a+b&k2=%2B%2F%3A%40&empty&e=")
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"my key": "a b", "k2": "+/:@", "empty": "",
                                                                     "e": ""}
    s3.put_object(Bucket=bucket, Key="u", Body=b"x", Tagging="%C3%A9t%C3%A9=%E6%97%A5")
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="u")) == {"été": "日"}
    s3.put_object(Bucket=bucket, Key="none", Body=b"x", Tagging="")
    assert s3.get_object_tagging(Bucket=bucket, Key="none")["TagSet"] == []


@pytest.mark.parametrize("value,code", [
    ("a=1&a=2", "InvalidArgument"),          # a key twice
    ("=v", "InvalidArgument"),               # no key
    ("a=%zz", "InvalidArgument"),            # a bad escape
    ("a=%C3", "InvalidArgument"),            # not UTF-8
    ("a!=1", "InvalidTag"),
    ("a=%3F", "InvalidTag"),
    ("aws%3Akey=1", "InvalidTag"),
    ("&".join(f"k{i}=v" for i in range(11)), "InvalidTag"),
])
def test_put_object_with_bad_tagging_header_stores_nothing(server, s3, bucket, value, code):
    r = server.request("PUT", path_of(bucket, "k"), body=b"data", headers={"x-amz-tagging": value})
    assert rerr(r) == (400, code), r
    assert rerr(server.request("HEAD", path_of(bucket, "k")))[0] == 404
    # CreateMultipartUpload refuses it the same way, and starts no upload
    r = server.request("POST", path_of(bucket, "k"), query=[("uploads", None)], headers={"x-amz-tagging": value})
    assert rerr(r) == (400, code), r
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_upload_carries_its_tags(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="a=1&b=2")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"p" * 100)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="mp")) == {"a": "1", "b": "2"}
    assert s3.get_object(Bucket=bucket, Key="mp")["TagCount"] == 2


def test_copy_object_tagging_directive(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Metadata={"m": "src"}, Tagging="s=1&t=2")
    src = {"Bucket": bucket, "Key": "src"}
    # COPY, the default: the source's tags
    s3.copy_object(Bucket=bucket, Key="d1", CopySource=src)
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="d1")) == {"s": "1", "t": "2"}
    s3.copy_object(Bucket=bucket, Key="d2", CopySource=src, TaggingDirective="COPY", Tagging="ignored=1")
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="d2")) == {"s": "1", "t": "2"}
    # ... also when the metadata is replaced
    s3.copy_object(Bucket=bucket, Key="d3", CopySource=src, MetadataDirective="REPLACE", Metadata={"m": "new"})
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="d3")) == {"s": "1", "t": "2"}
    assert s3.head_object(Bucket=bucket, Key="d3")["Metadata"] == {"m": "new"}
    # REPLACE: the request's tags, or none; the metadata still copied
    s3.copy_object(Bucket=bucket, Key="d4", CopySource=src, TaggingDirective="REPLACE", Tagging="r=9")
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="d4")) == {"r": "9"}
    assert s3.head_object(Bucket=bucket, Key="d4")["Metadata"] == {"m": "src"}
    s3.copy_object(Bucket=bucket, Key="d5", CopySource=src, TaggingDirective="REPLACE")
    assert s3.get_object_tagging(Bucket=bucket, Key="d5")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="d5")
    s3.copy_object(Bucket=bucket, Key="d6", CopySource=src, TaggingDirective="REPLACE", Tagging="r=1",
                   MetadataDirective="REPLACE", Metadata={"m": "6"})
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="d6")) == {"r": "1"}
    assert s3.head_object(Bucket=bucket, Key="d6")["Metadata"] == {"m": "6"}
    # the source keeps its own
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="src")) == {"s": "1", "t": "2"}


@pytest.mark.parametrize("headers,code", [
    ({"x-amz-tagging-directive": "MERGE"}, "InvalidArgument"),
    ({"x-amz-tagging-directive": "copy"}, "InvalidArgument"),
    ({"x-amz-tagging-directive": "REPLACE", "x-amz-tagging": "a=1&a=2"}, "InvalidArgument"),
    ({"x-amz-tagging-directive": "REPLACE", "x-amz-tagging": "a?=1"}, "InvalidTag"),
])
def test_copy_object_bad_tagging(server, s3, bucket, headers, code):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    h = {"x-amz-copy-source": f"/{bucket}/src", **headers}
    r = server.request("PUT", path_of(bucket, "dst"), headers=h)
    assert rerr(r) == (400, code), r
    assert rerr(server.request("HEAD", path_of(bucket, "dst")))[0] == 404


# ---- object tags: validation ------------------------------------------------------------------


@pytest.mark.parametrize("body,code,message", [
    (b"<Tagging><TagSet>", "MalformedXML", None),
    (b"", "MalformedXML", None),
    (b"<Tagging></Tagging>", "MalformedXML", None),
    (b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>", "MalformedXML", None),
    (b"<Other><TagSet/></Other>", "MalformedXML", None),
    (doc(*[(f"k{i}", "v") for i in range(11)]), "InvalidTag", "Object tags cannot be greater than 10"),
    (doc(("a", "1"), ("a", "2")), "InvalidTag", "Cannot provide multiple Tags with the same key"),
    (doc(("", "1")), "InvalidTag", "The TagKey you have provided is invalid"),
    (doc(("k" * 129, "1")), "InvalidTag", "The TagKey you have provided is invalid"),
    (doc(("a#b", "1")), "InvalidTag", "The TagKey you have provided is invalid"),
    (doc(("a", "v" * 257)), "InvalidTag", "The TagValue you have provided is invalid"),
    (doc(("a", "x;y")), "InvalidTag", "The TagValue you have provided is invalid"),
    (doc(("aws:k", "1")), "InvalidTag", "Your TagKey cannot be prefixed with aws:"),
])
def test_put_object_tagging_invalid(server, s3, bucket, body, code, message):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=1")
    r = put_tagging_raw(server, bucket, "k", body)
    assert rerr(r) == (400, code), r
    if message:
        assert xml_text(r.xml(), "Message") == message
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"keep": "1"}, "a refused put changes nothing"


def test_limits_count_characters(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tags = {"é" * 128: "日" * 256, "k" * 128: "v" * 256, "a+-=._:/@ b": ""}
    tags.update({f"n{i}": str(i) for i in range(7)})
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": k, "Value": v}
                                                                        for k, v in tags.items()]})
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == tags
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 10


def test_put_object_tagging_digest(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    body = doc(("a", "1"))
    r = server.request("PUT", path_of(bucket, "k"), query=[("tagging", None)], body=body,
                       headers={"Content-MD5": md5_b64(b"other")})
    assert rerr(r) == (400, "BadDigest"), r
    r = server.request("PUT", path_of(bucket, "k"), query=[("tagging", None)], body=body,
                       headers={"Content-MD5": "notbase64!"})
    assert rerr(r) == (400, "InvalidDigest"), r
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    # without a Content-MD5 the document is taken
    assert put_tagging_raw(server, bucket, "k", body, md5=False).status == 200
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"a": "1"}


def test_object_tagging_missing_key_and_bucket(server, s3, bucket):
    for call, kw in ((s3.get_object_tagging, {}), (s3.delete_object_tagging, {}),
                     (s3.put_object_tagging, {"Tagging": tagset(a="1")})):
        assert err(call, Bucket=bucket, Key="missing", **kw)[:2] == (404, "NoSuchKey")
        assert err(call, Bucket=unique_bucket("gone"), Key="k", **kw)[:2] == (404, "NoSuchBucket")


def test_object_tagging_of_another_user_is_denied(server, s3, bucket, user):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    other = server.client(*user.creds)
    assert err(other.get_object_tagging, Bucket=bucket, Key="k")[:2] == (403, "AccessDenied")
    assert err(other.put_object_tagging, Bucket=bucket, Key="k", Tagging=tagset(b="2"))[:2] == (403, "AccessDenied")
    assert err(other.delete_object_tagging, Bucket=bucket, Key="k")[:2] == (403, "AccessDenied")
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"a": "1"}


def test_null_version_id_on_an_unversioned_bucket(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = put_tagging_raw(server, bucket, "k", doc(("a", "1")), query=[("versionId", "null")])
    assert r.status == 200 and r.header("x-amz-version-id") == "null", r
    r = server.request("GET", path_of(bucket, "k"), query=[("tagging", None), ("versionId", "null")])
    assert r.status == 200 and r.header("x-amz-version-id") == "null"
    assert xml_text(xml_find(xml_find(r.xml(), "TagSet"), "Tag"), "Key") == "a"
    r = server.request("GET", path_of(bucket, "k"), query=[("tagging", None), ("versionId", "")])
    assert rerr(r) == (400, "InvalidArgument"), r
    r = server.request("GET", path_of(bucket, "k"), query=[("tagging", None), ("versionId", "nope")])
    assert rerr(r) == (404, "NoSuchVersion"), r
    r = put_tagging_raw(server, bucket, "k", doc(("a", "1")), query=[("versionId", "nope")])
    assert rerr(r) == (404, "NoSuchVersion"), r
    r = server.request("DELETE", path_of(bucket, "k"), query=[("tagging", None), ("versionId", "nope")])
    assert rerr(r) == (404, "NoSuchVersion"), r
    r = server.request("DELETE", path_of(bucket, "k"), query=[("tagging", None), ("versionId", "null")])
    assert r.status == 204 and r.header("x-amz-version-id") == "null", r


# ---- object tags: versions --------------------------------------------------------------------


def test_tags_belong_to_a_version(server, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="gen=1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"2")["VersionId"]
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [], "a new version starts without tags"
    # tagging the current version leaves the old one alone
    r = s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(gen="2"))
    assert r["VersionId"] == v2
    got = s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)
    assert as_dict(got) == {"gen": "1"} and got["VersionId"] == v1
    got = s3.get_object_tagging(Bucket=bucket, Key="k")
    assert as_dict(got) == {"gen": "2"} and got["VersionId"] == v2
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["TagCount"] == 1
    # by id: the old version changes, the current one does not
    assert s3.put_object_tagging(Bucket=bucket, Key="k", VersionId=v1, Tagging=tagset(old="yes"))["VersionId"] == v1
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)) == {"old": "yes"}
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"gen": "2"}
    r = s3.delete_object_tagging(Bucket=bucket, Key="k", VersionId=v1)
    assert r["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)["TagSet"] == []
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"gen": "2"}
    # the bytes and ETag of each version are untouched
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"1"
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([v1, v2])


def test_tagging_and_delete_markers(server, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="a=1")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    for method, body in (("GET", b""), ("PUT", doc(("b", "2"))), ("DELETE", b"")):
        headers = {"Content-MD5": md5_b64(body)} if body else None
        r = server.request(method, path_of(bucket, "k"), query=[("tagging", None)], body=body, headers=headers)
        assert rerr(r) == (404, "NoSuchKey"), r
        assert r.header("x-amz-delete-marker") == "true"
        r = server.request(method, path_of(bucket, "k"), query=[("tagging", None), ("versionId", marker)],
                           body=body, headers=headers)
        assert rerr(r) == (405, "MethodNotAllowed"), r
        assert r.header("x-amz-version-id") == marker
    # the version under the marker is still there, tags and all
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)) == {"a": "1"}


def test_suspended_bucket_tags_the_null_version(server, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="v=1")["VersionId"]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"2", Tagging="v=null")
    got = s3.get_object_tagging(Bucket=bucket, Key="k")
    assert got["VersionId"] == "null" and as_dict(got) == {"v": "null"}
    s3.put_object_tagging(Bucket=bucket, Key="k", VersionId="null", Tagging=tagset(v="null2"))
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k")) == {"v": "null2"}
    assert as_dict(s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)) == {"v": "1"}


def test_tagging_races_overwrites_and_deletes(server, s3, bucket):
    """A version replaced between the read and the write is read again:
    every answer is 200 or NoSuchKey, never a 500."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"0")
    stop = threading.Event()
    errors = []

    def churn():
        i = 0
        while not stop.is_set():
            i += 1
            try:
                if i % 3 == 0:
                    s3.delete_object(Bucket=bucket, Key="k")
                else:
                    s3.put_object(Bucket=bucket, Key="k", Body=str(i).encode())
            except ClientError as e:  # pragma: no cover - reported below
                errors.append(e)

    t = threading.Thread(target=churn)
    t.start()
    try:
        answers = set()
        for i in range(60):
            r = put_tagging_raw(server, bucket, "k", doc(("n", str(i))))
            answers.add(rerr(r) if r.status != 200 else (200, None))
    finally:
        stop.set()
        t.join()
    assert not errors
    assert answers <= {(200, None), (404, "NoSuchKey")}, answers
    assert (200, None) in answers


# ---- bucket tags ------------------------------------------------------------------------------


def test_put_get_delete_bucket_tagging(server, s3, bucket):
    assert err(s3.get_bucket_tagging, Bucket=bucket)[:2] == (404, "NoSuchTagSet")
    r = s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(env="prod", owner="team a"))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "env", "Value": "prod"},
                                                              {"Key": "owner", "Value": "team a"}]
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(only="1"))
    assert as_dict(s3.get_bucket_tagging(Bucket=bucket)) == {"only": "1"}
    assert s3.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert err(s3.get_bucket_tagging, Bucket=bucket)[:2] == (404, "NoSuchTagSet")
    assert s3.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    # an empty set leaves none
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(a="1"))
    r = server.request("PUT", path_of(bucket), query=[("tagging", None)], body=doc(),
                       headers={"Content-MD5": md5_b64(doc())})
    assert r.status == 204, r
    assert err(s3.get_bucket_tagging, Bucket=bucket)[:2] == (404, "NoSuchTagSet")


def test_bucket_takes_fifty_tags(s3, bucket):
    tags = {f"k{i}": f"v{i}" for i in range(50)}
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
    assert as_dict(s3.get_bucket_tagging(Bucket=bucket)) == tags


@pytest.mark.parametrize("body,code,message", [
    (b"<Tagging><TagSet>", "MalformedXML", None),
    (b"<Tagging/>", "MalformedXML", None),
    (doc(*[(f"k{i}", "v") for i in range(51)]), "InvalidTag", "Bucket tag count cannot be greater than 50"),
    (doc(("a", "1"), ("a", "2")), "InvalidTag", "Cannot provide multiple Tags with the same key"),
    (doc(("a*", "1")), "InvalidTag", "The TagKey you have provided is invalid"),
    (doc(("a", "v" * 257)), "InvalidTag", "The TagValue you have provided is invalid"),
    (doc(("aws:a", "1")), "InvalidTag", "System tags cannot be added/updated by requester"),
])
def test_put_bucket_tagging_invalid(server, s3, bucket, body, code, message):
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(keep="1"))
    r = put_tagging_raw(server, bucket, None, body)
    assert rerr(r) == (400, code), r
    if message:
        assert xml_text(r.xml(), "Message") == message
    assert as_dict(s3.get_bucket_tagging(Bucket=bucket)) == {"keep": "1"}


def test_put_bucket_tagging_needs_a_digest(server, s3, bucket):
    body = doc(("a", "1"))
    r = put_tagging_raw(server, bucket, None, body, md5=False)
    assert rerr(r) == (400, "InvalidRequest"), r
    r = server.request("PUT", path_of(bucket), query=[("tagging", None)], body=body,
                       headers={"Content-MD5": md5_b64(b"other")})
    assert rerr(r) == (400, "BadDigest"), r
    assert err(s3.get_bucket_tagging, Bucket=bucket)[:2] == (404, "NoSuchTagSet")


def test_bucket_tagging_of_another_user_is_denied(server, s3, bucket, user):
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(a="1"))
    other = server.client(*user.creds)
    assert err(other.get_bucket_tagging, Bucket=bucket)[:2] == (403, "AccessDenied")
    assert err(other.put_bucket_tagging, Bucket=bucket, Tagging=tagset(b="2"))[:2] == (403, "AccessDenied")
    assert err(other.delete_bucket_tagging, Bucket=bucket)[:2] == (403, "AccessDenied")
    assert as_dict(s3.get_bucket_tagging(Bucket=bucket)) == {"a": "1"}


def test_bucket_tagging_missing_bucket(s3):
    gone = unique_bucket("gone")
    assert err(s3.get_bucket_tagging, Bucket=gone)[:2] == (404, "NoSuchBucket")
    assert err(s3.put_bucket_tagging, Bucket=gone, Tagging=tagset(a="1"))[:2] == (404, "NoSuchBucket")
    assert err(s3.delete_bucket_tagging, Bucket=gone)[:2] == (404, "NoSuchBucket")


def test_bucket_tags_go_with_the_bucket(s3):
    name = unique_bucket("retag")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_tagging(Bucket=name, Tagging=tagset(a="1"))
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    assert err(s3.get_bucket_tagging, Bucket=name)[:2] == (404, "NoSuchTagSet")
    s3.delete_bucket(Bucket=name)


def test_bucket_and_object_tags_are_apart(s3, bucket):
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(b="1"))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(o="1"))
    assert as_dict(s3.get_bucket_tagging(Bucket=bucket)) == {"b": "1"}


def test_tags_and_object_lock_share_a_version(s3):
    """Both live in the version's stored headers: changing one keeps the other."""
    import datetime
    name = unique_bucket("locktag")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    v = s3.put_object(Bucket=name, Key="k", Body=b"x", Tagging="a=1", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")["VersionId"]
    s3.put_object_tagging(Bucket=name, Key="k", VersionId=v, Tagging=tagset(b="2"))
    h = s3.head_object(Bucket=name, Key="k", VersionId=v)
    assert h["ObjectLockMode"] == "GOVERNANCE" and h["ObjectLockLegalHoldStatus"] == "ON"
    assert header(h, "x-amz-tagging-count") == "1"
    s3.put_object_legal_hold(Bucket=name, Key="k", VersionId=v, LegalHold={"Status": "OFF"})
    assert as_dict(s3.get_object_tagging(Bucket=name, Key="k", VersionId=v)) == {"b": "2"}
    s3.delete_object_tagging(Bucket=name, Key="k", VersionId=v)
    assert s3.get_object_retention(Bucket=name, Key="k", VersionId=v)["Retention"]["Mode"] == "GOVERNANCE"
    # a copy takes the source's tags, never its lock
    c = s3.copy_object(Bucket=name, Key="c", CopySource={"Bucket": name, "Key": "k"}, TaggingDirective="REPLACE",
                       Tagging="c=3")["VersionId"]
    assert as_dict(s3.get_object_tagging(Bucket=name, Key="c", VersionId=c)) == {"c": "3"}
    assert "ObjectLockMode" not in s3.head_object(Bucket=name, Key="c", VersionId=c)
