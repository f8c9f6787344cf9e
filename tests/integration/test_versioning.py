"""Versioning, as S3 has it: PutBucketVersioning / GetBucketVersioning,
version ids on writes, GET / HEAD / DELETE / CopyObject by versionId,
delete markers, the null version of unversioned and suspended writes,
ListObjectVersions (prefix, delimiter, key-marker, version-id-marker,
max-keys), DeleteObjects with version ids, multipart on a versioned bucket,
and concurrent writers each making their own version.  Every error case
gets its S3 code and status.  The bytes of versions removed for good are
removed too (fsck finds no orphan).
"""

import concurrent.futures
import os

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import md5_hex, unique_bucket

KiB = 1024


def err(call, *args, **kw):
    """The S3 error of a call that must fail: (HTTP status, code, headers)."""
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["ResponseMetadata"]["HTTPHeaders"]


def enable(s3, bucket, status="Enabled"):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def body(s3, bucket, key, version=None):
    kw = {"VersionId": version} if version else {}
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


@pytest.fixture
def vbucket(s3, bucket):
    enable(s3, bucket)
    return bucket


def test_versioning_configuration_round_trips_and_never_goes_back_to_off(server, s3, bucket):
    got = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in got, "a bucket never versioned has no Status"
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    path = sigv4.object_path(bucket)
    for doc, code in [
        (b"<VersioningConfiguration><Status>Off</Status></VersioningConfiguration>",
         "IllegalVersioningConfigurationException"),
        (b"<VersioningConfiguration><Status>enabled</Status></VersioningConfiguration>",
         "IllegalVersioningConfigurationException"),
        (b"<VersioningConfiguration/>", "MalformedXML"),
        (b"<VersioningConfiguration><Status>Enabled</Status>", "MalformedXML"),
        (b"<Other><Status>Enabled</Status></Other>", "MalformedXML"),
        (b"", "MalformedXML"),
    ]:
        r = server.request("PUT", path, query={"versioning": None}, body=doc)
        assert (r.status, r.error_code) == (400, code), (doc, r)
    r = server.request("PUT", path, query={"versioning": None},
                       body=b"<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Enabled</MfaDelete>"
                            b"</VersioningConfiguration>")
    assert (r.status, r.error_code) == (501, "NotImplemented"), r
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended", "refused configurations change nothing"


def test_a_user_cannot_version_anothers_bucket(server, bucket, user):
    other = server.client(user.access_key, user.secret)
    status, code, _ = err(other.put_bucket_versioning, Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert (status, code) == (403, "AccessDenied")


def test_every_write_is_a_version_and_each_reads_back(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"from before versioning")
    enable(s3, bucket)
    ids = []
    datas = [os.urandom(100), os.urandom(200 * KiB), os.urandom(7)]   # inline and erasure-coded
    for d in datas:
        r = s3.put_object(Bucket=bucket, Key="k", Body=d)
        assert r["VersionId"] not in ("", "null")
        ids.append(r["VersionId"])
    assert len(set(ids)) == 3
    g = s3.get_object(Bucket=bucket, Key="k")
    assert g["VersionId"] == ids[-1] and g["Body"].read() == datas[-1]
    for vid, d in zip(ids, datas):
        assert body(s3, bucket, "k", vid) == d
        h = s3.head_object(Bucket=bucket, Key="k", VersionId=vid)
        assert h["VersionId"] == vid and h["ContentLength"] == len(d)
    assert body(s3, bucket, "k", "null") == b"from before versioning"
    status, code, _ = err(s3.get_object, Bucket=bucket, Key="k", VersionId="0123456789abcdef0123456789abcdef")
    assert (status, code) == (404, "NoSuchVersion")
    status, _, _ = err(s3.head_object, Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert status == 404
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == ids[::-1] + ["null"], "newest first"
    assert [v["IsLatest"] for v in versions] == [True, False, False, False]
    assert [v["Size"] for v in versions] == [len(d) for d in datas[::-1]] + [len(b"from before versioning")]


def test_an_empty_version_id_is_invalid(server, s3, vbucket):
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    for method in ("GET", "HEAD", "DELETE"):
        r = server.request(method, sigv4.object_path(vbucket, "k"), query={"versionId": ""})
        assert r.status == 400, (method, r)
        if method != "HEAD":
            assert r.error_code == "InvalidArgument"


def test_a_delete_marker_hides_the_object_until_it_is_removed(server, s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"one")["VersionId"]
    d = s3.delete_object(Bucket=vbucket, Key="k")
    assert d["DeleteMarker"] is True
    marker = d["VersionId"]
    assert marker not in (v1, "null")
    status, code, headers = err(s3.get_object, Bucket=vbucket, Key="k")
    assert (status, code) == (404, "NoSuchKey")
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    r = server.request("GET", sigv4.object_path(vbucket, "k"), query={"versionId": marker})
    assert (r.status, r.error_code) == (405, "MethodNotAllowed"), r
    assert r.header("x-amz-delete-marker") == "true" and r.header("Last-Modified")
    assert s3.list_objects_v2(Bucket=vbucket)["KeyCount"] == 0, "a listing skips the key"
    assert body(s3, vbucket, "k", v1) == b"one", "the version is still there"
    lv = s3.list_object_versions(Bucket=vbucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in lv["DeleteMarkers"]] == [(marker, True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in lv["Versions"]] == [(v1, False)]
    # A copy may not name the marker as its source.
    status, code, _ = err(s3.copy_object, Bucket=vbucket, Key="c",
                          CopySource={"Bucket": vbucket, "Key": "k", "VersionId": marker})
    assert (status, code) == (400, "InvalidRequest")
    # Removing the marker for good brings the object back.
    d = s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert d["DeleteMarker"] is True and d["VersionId"] == marker
    g = s3.get_object(Bucket=vbucket, Key="k")
    assert g["VersionId"] == v1 and g["Body"].read() == b"one"
    # A plain delete on a key with no object still makes a marker.
    d = s3.delete_object(Bucket=vbucket, Key="never-written")
    assert d["DeleteMarker"] is True


def test_deleting_the_current_version_makes_the_previous_one_current(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=vbucket, Key="k", Body=b"two")["VersionId"]
    d = s3.delete_object(Bucket=vbucket, Key="k", VersionId=v2)
    assert d["VersionId"] == v2 and "DeleteMarker" not in d
    g = s3.get_object(Bucket=vbucket, Key="k")
    assert g["VersionId"] == v1 and g["Body"].read() == b"one"
    status, code, _ = err(s3.get_object, Bucket=vbucket, Key="k", VersionId=v2)
    assert (status, code) == (404, "NoSuchVersion")
    # Deleting a version that is not there answers 204, as S3 does.
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=v2)


def test_suspended_writes_replace_the_null_version_and_keep_the_others(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"null one")
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    enable(s3, bucket, "Suspended")
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"null two")
    assert r["VersionId"] == "null"
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"null three")
    assert r["VersionId"] == "null"
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [("null", True), (v1, False)]
    assert body(s3, bucket, "k", "null") == b"null three"
    d = s3.delete_object(Bucket=bucket, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    lv = s3.list_object_versions(Bucket=bucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in lv["DeleteMarkers"]] == [("null", True)]
    assert [v["VersionId"] for v in lv["Versions"]] == [v1], "the null version went with the null marker"
    assert body(s3, bucket, "k", v1) == b"versioned"


def test_list_object_versions_pages_with_markers_prefix_and_delimiter(server, s3, vbucket):
    expect = []
    for key in ("a/1", "a/2", "b", "c/x/1"):
        for i in range(3):
            vid = s3.put_object(Bucket=vbucket, Key=key, Body=f"{key}-{i}".encode())["VersionId"]
            expect.append((key, vid))
    # newest first within each key
    order = []
    for key in ("a/1", "a/2", "b", "c/x/1"):
        order += [e for e in expect if e[0] == key][::-1]
    got, kw = [], {}
    while True:
        page = s3.list_object_versions(Bucket=vbucket, MaxKeys=5, **kw)
        got += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        assert len(page["Versions"]) == 5
        kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert got == order
    page = s3.list_object_versions(Bucket=vbucket, Prefix="a/")
    assert [v["Key"] for v in page["Versions"]] == ["a/1"] * 3 + ["a/2"] * 3
    page = s3.list_object_versions(Bucket=vbucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/", "c/"]
    assert [v["Key"] for v in page["Versions"]] == ["b"] * 3
    page = s3.list_object_versions(Bucket=vbucket, KeyMarker="a/2")
    assert [v["Key"] for v in page["Versions"]] == ["b"] * 3 + ["c/x/1"] * 3, "after every version of the marker"
    page = s3.list_object_versions(Bucket=vbucket, Delimiter="/", KeyMarker="a/", MaxKeys=2)
    assert [v["Key"] for v in page.get("Versions", [])] == ["b", "b"] and page["IsTruncated"]
    r = server.request("GET", sigv4.object_path(vbucket), query={"versions": None, "version-id-marker": "null"})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r
    r = server.request("GET", sigv4.object_path(vbucket),
                       query={"versions": None, "key-marker": "b", "version-id-marker": "0123456789abcdef0123456789abcdef"})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r
    r = server.request("GET", sigv4.object_path(vbucket), query={"versions": None, "max-keys": "x"})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r
    r = server.request("GET", sigv4.object_path(vbucket), query={"versions": None, "encoding-type": "xml"})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r


def test_delete_objects_takes_version_ids_and_reports_markers(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="a", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=vbucket, Key="a", Body=b"2")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="b", Body=b"b")
    r = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [{"Key": "a", "VersionId": v1}, {"Key": "b"}]})
    deleted = {(d["Key"], d.get("VersionId")): d for d in r["Deleted"]}
    assert ("a", v1) in deleted and "DeleteMarker" not in deleted[("a", v1)]
    assert deleted[("b", None)]["DeleteMarker"] is True and deleted[("b", None)]["DeleteMarkerVersionId"]
    marker = deleted[("b", None)]["DeleteMarkerVersionId"]
    assert body(s3, vbucket, "a") == b"2"
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=vbucket, Prefix="a")["Versions"]] == [v2]
    r = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [{"Key": "b", "VersionId": marker}]})
    assert r["Deleted"][0]["DeleteMarker"] is True and r["Deleted"][0]["DeleteMarkerVersionId"] == marker
    assert body(s3, vbucket, "b") == b"b"


def test_multipart_and_copy_make_versions(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="mp", Body=b"small first")["VersionId"]
    uid = s3.create_multipart_upload(Bucket=vbucket, Key="mp")["UploadId"]
    part = os.urandom(5 * 1024 * KiB)
    etag = s3.upload_part(Bucket=vbucket, Key="mp", UploadId=uid, PartNumber=1, Body=part)["ETag"]
    tail = os.urandom(1000)
    etag2 = s3.upload_part(Bucket=vbucket, Key="mp", UploadId=uid, PartNumber=2, Body=tail)["ETag"]
    done = s3.complete_multipart_upload(Bucket=vbucket, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}, {"PartNumber": 2, "ETag": etag2}]})
    assert done["VersionId"] not in (v1, "null")
    assert body(s3, vbucket, "mp") == part + tail
    assert body(s3, vbucket, "mp", v1) == b"small first", "the version the upload displaced stays"
    c = s3.copy_object(Bucket=vbucket, Key="copy", CopySource={"Bucket": vbucket, "Key": "mp", "VersionId": v1})
    assert c["CopySourceVersionId"] == v1 and c["VersionId"] not in ("", "null")
    assert body(s3, vbucket, "copy") == b"small first"
    status, code, _ = err(s3.copy_object, Bucket=vbucket, Key="copy2",
                          CopySource={"Bucket": vbucket, "Key": "mp", "VersionId": "0123456789abcdef0123456789abcdef"})
    assert (status, code) == (404, "NoSuchVersion")


def test_a_bucket_with_versions_is_not_empty(s3, vbucket):
    vid = s3.put_object(Bucket=vbucket, Key="k", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=vbucket, Key="k")
    status, code, _ = err(s3.delete_bucket, Bucket=vbucket)
    assert (status, code) == (409, "BucketNotEmpty")
    marker = s3.list_object_versions(Bucket=vbucket)["DeleteMarkers"][0]["VersionId"]
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=vid)
    status, code, _ = err(s3.delete_bucket, Bucket=vbucket)
    assert (status, code) == (409, "BucketNotEmpty"), "a delete marker is a version too"
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    s3.delete_bucket(Bucket=vbucket)


def test_object_lock_at_creation_turns_versioning_on_for_good(s3):
    name = unique_bucket("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    status, code, _ = err(s3.put_bucket_versioning, Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    assert (status, code) == (409, "InvalidBucketState")
    assert s3.put_object(Bucket=name, Key="k", Body=b"x")["VersionId"] != "null"


def test_concurrent_writers_each_make_their_own_version(s3, vbucket):
    writers = 16

    def write(i):
        data = os.urandom(300 + i)
        return s3.put_object(Bucket=vbucket, Key="hot", Body=data)["VersionId"], md5_hex(data)

    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        made = list(pool.map(write, range(writers)))
    versions = s3.list_object_versions(Bucket=vbucket)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted(vid for vid, _ in made)
    assert sum(v["IsLatest"] for v in versions) == 1
    latest = versions[0]
    assert latest["IsLatest"]
    assert md5_hex(body(s3, vbucket, "hot")) == dict(made)[latest["VersionId"]]
    for vid, md5 in made:
        assert md5_hex(body(s3, vbucket, "hot", vid)) == md5


@pytest.mark.deadline(120)
def test_versions_removed_for_good_take_their_bytes_with_them(make_server):
    srv = make_server()
    s3 = srv.client()
    name = unique_bucket("vgc")
    s3.create_bucket(Bucket=name)
    enable(s3, name)
    ids = [s3.put_object(Bucket=name, Key="k", Body=os.urandom(300 * KiB))["VersionId"] for _ in range(3)]
    s3.delete_object(Bucket=name, Key="k")
    for vid in ids[:2]:
        s3.delete_object(Bucket=name, Key="k", VersionId=vid)
    assert len(s3.list_object_versions(Bucket=name)["Versions"]) == 1
    doc = srv.stop_and_fsck()
    assert doc["check"]["orphans"] == 0, doc["check"]
