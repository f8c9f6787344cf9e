"""Bucket operations: ListBuckets, CreateBucket (naming rules, conflicts),
HeadBucket, DeleteBucket, GetBucketLocation, and virtual-host addressing.

Invalid names are sent as raw signed requests because boto3 validates some
bucket names on the client side and would never put them on the wire.
"""

import uuid

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import unique_bucket, xml_find, xml_findall, xml_text


def error_of(excinfo):
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


# ---- ListBuckets ---------------------------------------------------------------


def test_list_buckets_shows_created_buckets_with_owner(server, s3):
    names = sorted(unique_bucket("lb") for _ in range(2))
    for n in names:
        s3.create_bucket(Bucket=n)
    resp = s3.list_buckets()
    listed = [b["Name"] for b in resp["Buckets"]]
    for n in names:
        assert listed.count(n) == 1
    assert listed == sorted(listed), "ListBuckets is sorted by name"
    for b in resp["Buckets"]:
        if b["Name"] in names:
            assert b["CreationDate"].year >= 2024
    assert resp["Owner"].get("ID"), resp["Owner"]
    assert resp["Owner"].get("DisplayName"), resp["Owner"]


def test_list_buckets_raw_xml_shape(server, bucket):
    r = server.request("GET", "/")
    assert r.status == 200, r
    assert r.header("Content-Type", "").startswith(("application/xml", "text/xml"))
    root = r.xml()
    assert root.tag.endswith("ListAllMyBucketsResult")
    assert xml_text(root, "Owner/ID")
    buckets = xml_find(root, "Buckets")
    assert buckets is not None, r.body
    names = [xml_text(b, "Name") for b in xml_findall(buckets, "Bucket")]
    for b in xml_findall(buckets, "Bucket"):
        assert xml_text(b, "CreationDate"), "every Bucket has a CreationDate"
    assert bucket in names


def test_user_lists_only_own_buckets_root_sees_all(server, s3, user):
    ucl = server.client(user.access_key, user.secret)
    mine = unique_bucket("own")
    ucl.create_bucket(Bucket=mine)
    roots = unique_bucket("root")
    s3.create_bucket(Bucket=roots)
    user_names = [b["Name"] for b in ucl.list_buckets()["Buckets"]]
    assert user_names == [mine]
    root_names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert mine in root_names and roots in root_names
    owner = ucl.list_buckets()["Owner"]
    assert owner.get("ID") and owner.get("DisplayName")
    assert owner["ID"] != s3.list_buckets()["Owner"]["ID"]


# ---- CreateBucket --------------------------------------------------------------


def _hex(n):
    return uuid.uuid4().hex[:n]


VALID_NAMES = {
    "min-length": lambda: "abc",                       # exactly 3 characters
    "max-length": lambda: ("a" + _hex(32)).ljust(63, "a"),
    "dots-and-hyphens": lambda: f"my.bucket-{_hex(8)}",
    "starts-with-digit": lambda: f"1{_hex(10)}",
    "ends-with-digit": lambda: f"bucket-{_hex(6)}9",
    "inner-dot-hyphen": lambda: f"a-b.c-d{_hex(6)}",
}


@pytest.mark.parametrize("case", sorted(VALID_NAMES))
def test_create_bucket_valid_names(server, s3, case):
    name = VALID_NAMES[case]()
    assert 3 <= len(name) <= 63
    r = s3.create_bucket(Bucket=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]


INVALID_NAMES = [
    "ab",                 # too short
    "a" * 64,             # too long
    "MyBucket",           # uppercase
    "my_bucket",          # underscore
    "-abc",               # must start with a letter or digit
    "abc-",               # must end with a letter or digit
    ".abc",
    "abc.",
    "a..b",               # two adjacent periods
    "192.168.5.4",        # formatted as an IP address
    "xn--abc",            # reserved prefix
    "abc-s3alias",        # reserved suffix
    "a b c",
    "abc!",
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_create_bucket_invalid_name(server, name):
    r = server.request("PUT", "/" + sigv4.uri_encode(name))
    assert r.status == 400, r
    assert r.error_code == "InvalidBucketName", r


def test_create_bucket_twice_same_owner(server, s3, bucket):
    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket=bucket)
    assert error_of(ei) == ("BucketAlreadyOwnedByYou", 409)


def test_create_bucket_owned_by_another_user(server, s3, user, bucket):
    ucl = server.client(user.access_key, user.secret)
    with pytest.raises(ClientError) as ei:
        ucl.create_bucket(Bucket=bucket)
    assert error_of(ei) == ("BucketAlreadyExists", 409)


def test_created_bucket_is_empty(s3, bucket):
    resp = s3.list_objects_v2(Bucket=bucket)
    assert resp["KeyCount"] == 0
    assert "Contents" not in resp


# ---- HeadBucket ----------------------------------------------------------------


def test_head_bucket_exists(server, bucket):
    r = server.request("HEAD", "/" + bucket)
    assert r.status == 200
    assert r.header("x-amz-request-id")


def test_head_bucket_missing_is_404_without_body(server):
    name = unique_bucket("nohead")
    r = server.request("HEAD", "/" + name)
    assert r.status == 404
    assert r.body == b""


def test_head_bucket_missing_via_boto3(s3):
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket=unique_bucket("nohead"))
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---- DeleteBucket --------------------------------------------------------------


def test_delete_empty_bucket(server, s3):
    name = unique_bucket("del")
    s3.create_bucket(Bucket=name)
    r = s3.delete_bucket(Bucket=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket=name)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # the name is free again
    s3.create_bucket(Bucket=name)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0


def test_delete_non_empty_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    with pytest.raises(ClientError) as ei:
        s3.delete_bucket(Bucket=bucket)
    assert error_of(ei) == ("BucketNotEmpty", 409)
    # the object survived
    assert s3.get_object(Bucket=bucket, Key="x")["Body"].read() == b"1"
    s3.delete_object(Bucket=bucket, Key="x")
    s3.delete_bucket(Bucket=bucket)


def test_delete_missing_bucket(s3):
    with pytest.raises(ClientError) as ei:
        s3.delete_bucket(Bucket=unique_bucket("gone"))
    assert error_of(ei) == ("NoSuchBucket", 404)


def test_recreated_bucket_does_not_resurrect_objects(s3):
    name = unique_bucket("re")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"old")
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    with pytest.raises(ClientError) as ei:
        s3.get_object(Bucket=name, Key="k")
    assert error_of(ei) == ("NoSuchKey", 404)


# ---- GetBucketLocation ---------------------------------------------------------


def test_get_bucket_location_us_east_1(server, s3, bucket):
    # S3 answers an empty LocationConstraint for us-east-1, which boto3 reads as None.
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    r = server.request("GET", "/" + bucket, query={"location": None})
    assert r.status == 200, r
    assert r.xml().tag.endswith("LocationConstraint")


def test_get_bucket_location_missing_bucket(s3):
    with pytest.raises(ClientError) as ei:
        s3.get_bucket_location(Bucket=unique_bucket("noloc"))
    assert error_of(ei) == ("NoSuchBucket", 404)


# ---- virtual-host style ----------------------------------------------------------


def test_virtual_host_addressing(make_server):
    srv = make_server(env={"CAIRN_DOMAIN": "example.test"})
    name = unique_bucket("vh")
    vhost = f"{name}.example.test:{srv.port}"
    # create via virtual-host style: PUT / on the bucket's host
    r = srv.request("PUT", "/", host=vhost)
    assert r.status == 200, r
    # path style still works next to it
    r = srv.request("PUT", f"/{name}/from-path", body=b"path")
    assert r.status == 200, r
    r = srv.request("PUT", "/from-vhost", body=b"vhost", host=vhost)
    assert r.status == 200, r
    r = srv.request("GET", "/from-path", host=vhost)
    assert (r.status, r.body) == (200, b"path")
    r = srv.request("GET", f"/{name}/from-vhost")
    assert (r.status, r.body) == (200, b"vhost")
    r = srv.request("GET", "/", query={"list-type": "2"}, host=vhost)
    assert r.status == 200, r
    keys = sorted(xml_text(c, "Key") for c in xml_findall(r.xml(), "Contents"))
    assert keys == ["from-path", "from-vhost"]
    assert xml_text(r.xml(), "Name") == name
    # a key that looks like a bucket name stays a key in virtual-host style
    r = srv.request("GET", f"/{name}", host=vhost)
    assert r.status == 404 and r.error_code == "NoSuchKey", r
