"""ListObjectsV2 and ListObjects (V1): prefix, delimiter and CommonPrefixes,
max-keys and paging (continuation-token, marker, NextMarker, start-after),
fetch-owner, encoding-type=url, binary UTF-8 key order, KeyCount and
IsTruncated, and paging through ~3000 keys where every key must appear once.

boto3 always asks for encoding-type=url and decodes the answer, so the raw
encoding behaviour is checked with hand-signed requests.
"""

import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from conftest import unique_bucket, xml_find, xml_findall, xml_text

TREE = ["a/1", "a/2", "a/b/3", "a/b/4", "b/1", "c", "d/e/f", "e"]


@pytest.fixture
def tree(s3, bucket):
    for k in TREE:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def keys_of(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def prefixes_of(resp):
    return [p["Prefix"] for p in resp.get("CommonPrefixes", [])]


# ---- V2 basics ---------------------------------------------------------------------


def test_v2_lists_everything_sorted(s3, tree):
    resp = s3.list_objects_v2(Bucket=tree)
    assert keys_of(resp) == sorted(TREE)
    assert resp["KeyCount"] == len(TREE)
    assert resp["IsTruncated"] is False
    assert "NextContinuationToken" not in resp
    assert resp["Name"] == tree
    assert resp["MaxKeys"] == 1000
    for o in resp["Contents"]:
        assert o["Size"] == len(o["Key"])
        assert o["ETag"].startswith('"') and len(o["ETag"]) == 34
        assert o["StorageClass"] == "STANDARD"
        assert o["LastModified"] is not None
        assert "Owner" not in o, "V2 returns Owner only with fetch-owner=true"


def test_v2_prefix(s3, tree):
    assert keys_of(s3.list_objects_v2(Bucket=tree, Prefix="a/")) == ["a/1", "a/2", "a/b/3", "a/b/4"]
    assert keys_of(s3.list_objects_v2(Bucket=tree, Prefix="a/b")) == ["a/b/3", "a/b/4"]
    resp = s3.list_objects_v2(Bucket=tree, Prefix="zzz")
    assert resp["KeyCount"] == 0 and "Contents" not in resp and resp["IsTruncated"] is False


def test_v2_delimiter(s3, tree):
    resp = s3.list_objects_v2(Bucket=tree, Delimiter="/")
    assert keys_of(resp) == ["c", "e"]
    assert prefixes_of(resp) == ["a/", "b/", "d/"]
    assert resp["KeyCount"] == 5, "KeyCount counts keys and common prefixes"
    resp = s3.list_objects_v2(Bucket=tree, Delimiter="/", Prefix="a/")
    assert keys_of(resp) == ["a/1", "a/2"]
    assert prefixes_of(resp) == ["a/b/"]
    resp = s3.list_objects_v2(Bucket=tree, Delimiter="/", Prefix="d/")
    assert keys_of(resp) == [] and prefixes_of(resp) == ["d/e/"]


def test_v2_non_slash_delimiter(s3, bucket):
    for k in ("x-1-a", "x-1-b", "x-2", "y"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    resp = s3.list_objects_v2(Bucket=bucket, Delimiter="-", Prefix="x-")
    assert prefixes_of(resp) == ["x-1-"]
    assert keys_of(resp) == ["x-2"]


def test_v2_max_keys_and_continuation(s3, tree):
    seen = []
    token = None
    pages = 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        resp = s3.list_objects_v2(Bucket=tree, MaxKeys=3, **kw)
        pages += 1
        assert resp["KeyCount"] == len(keys_of(resp)) <= 3
        assert resp["MaxKeys"] == 3
        seen += keys_of(resp)
        if not resp["IsTruncated"]:
            assert "NextContinuationToken" not in resp
            break
        token = resp["NextContinuationToken"]
        assert token
        if token and kw:
            assert resp["ContinuationToken"] == kw["ContinuationToken"]
    assert seen == sorted(TREE)
    assert pages == 3


def test_v2_common_prefixes_count_toward_max_keys(s3, tree):
    resp = s3.list_objects_v2(Bucket=tree, Delimiter="/", MaxKeys=2)
    assert resp["IsTruncated"] is True
    assert resp["KeyCount"] == 2
    assert prefixes_of(resp) == ["a/", "b/"] and keys_of(resp) == []
    resp2 = s3.list_objects_v2(Bucket=tree, Delimiter="/", MaxKeys=2,
                               ContinuationToken=resp["NextContinuationToken"])
    assert keys_of(resp2) == ["c"] and prefixes_of(resp2) == ["d/"]
    resp3 = s3.list_objects_v2(Bucket=tree, Delimiter="/", MaxKeys=2,
                               ContinuationToken=resp2["NextContinuationToken"])
    assert keys_of(resp3) == ["e"] and resp3["IsTruncated"] is False


def test_v2_start_after(s3, tree):
    assert keys_of(s3.list_objects_v2(Bucket=tree, StartAfter="a/b/3")) == ["a/b/4", "b/1", "c", "d/e/f", "e"]
    assert keys_of(s3.list_objects_v2(Bucket=tree, StartAfter="b")) == ["b/1", "c", "d/e/f", "e"]
    assert keys_of(s3.list_objects_v2(Bucket=tree, StartAfter="zzz")) == []
    resp = s3.list_objects_v2(Bucket=tree, StartAfter="c", Delimiter="/")
    assert prefixes_of(resp) == ["d/"] and keys_of(resp) == ["e"]


def test_v2_max_keys_zero(s3, tree):
    resp = s3.list_objects_v2(Bucket=tree, MaxKeys=0)
    assert keys_of(resp) == []
    assert resp["KeyCount"] == 0


def test_v2_fetch_owner(s3, tree):
    resp = s3.list_objects_v2(Bucket=tree, FetchOwner=True)
    owner_id = s3.list_buckets()["Owner"]["ID"]
    for o in resp["Contents"]:
        assert o["Owner"]["ID"] == owner_id


def test_list_missing_bucket(s3):
    with pytest.raises(ClientError) as ei:
        s3.list_objects_v2(Bucket=unique_bucket("nolist"))
    assert ei.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as ei:
        s3.list_objects(Bucket=unique_bucket("nolist"))
    assert ei.value.response["Error"]["Code"] == "NoSuchBucket"


# ---- V1 ----------------------------------------------------------------------------


def test_v1_marker_paging(s3, tree):
    seen = []
    marker = ""
    while True:
        resp = s3.list_objects(Bucket=tree, MaxKeys=3, Marker=marker)
        assert resp["Marker"] == marker
        seen += keys_of(resp)
        for o in resp.get("Contents", []):
            assert o["Owner"]["ID"], "V1 includes the owner"
        if not resp["IsTruncated"]:
            break
        # without a delimiter S3 may omit NextMarker: the last key is the marker
        marker = resp.get("NextMarker") or keys_of(resp)[-1]
    assert seen == sorted(TREE)


def test_v1_next_marker_with_delimiter(s3, tree):
    resp = s3.list_objects(Bucket=tree, Delimiter="/", MaxKeys=2)
    assert resp["IsTruncated"] is True
    assert prefixes_of(resp) == ["a/", "b/"]
    assert resp["NextMarker"] == "b/"
    resp2 = s3.list_objects(Bucket=tree, Delimiter="/", MaxKeys=2, Marker=resp["NextMarker"])
    assert keys_of(resp2) == ["c"] and prefixes_of(resp2) == ["d/"]
    assert resp2["NextMarker"] == "d/"
    resp3 = s3.list_objects(Bucket=tree, Delimiter="/", MaxKeys=2, Marker=resp2["NextMarker"])
    assert keys_of(resp3) == ["e"] and resp3["IsTruncated"] is False


def test_v1_prefix_delimiter(s3, tree):
    resp = s3.list_objects(Bucket=tree, Prefix="a/", Delimiter="/")
    assert keys_of(resp) == ["a/1", "a/2"]
    assert prefixes_of(resp) == ["a/b/"]
    assert resp["Prefix"] == "a/" and resp["Delimiter"] == "/"


def test_prefix_and_start_after_with_special_characters(s3, bucket):
    # query values arrive percent-encoded; '+' (sent as %2B) is a plus, never a space
    for k in ("sp ace/1", "plus+/2", "uni/ü/3", "eq=amp&/4"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    for prefix in ("sp ace", "plus+", "uni/ü", "eq=amp&"):
        resp = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        assert resp["Prefix"] == prefix
        keys = keys_of(resp)
        assert len(keys) == 1 and keys[0].startswith(prefix), (prefix, keys)
    resp = s3.list_objects_v2(Bucket=bucket, StartAfter="plus+/2", Delimiter="/")
    assert [p["Prefix"] for p in resp.get("CommonPrefixes", [])] == ["sp ace/", "uni/"]


# ---- raw XML: encoding-type and escaping ---------------------------------------------------


ODD_KEYS = ["sp ace", "plus+plus", "amp&lt<gt>", "uni/ü/日本", "pct%20", "q?x=y"]


@pytest.fixture
def odd(s3, bucket):
    for k in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    return bucket


def test_raw_listing_without_encoding_is_xml_escaped(server, odd):
    r = server.request("GET", "/" + odd, query={"list-type": "2"})
    assert r.status == 200, r
    root = r.xml()
    keys = [xml_text(c, "Key") for c in xml_findall(root, "Contents")]
    assert keys == sorted(ODD_KEYS, key=lambda k: k.encode())
    assert xml_find(root, "EncodingType") is None


def test_raw_listing_encoding_type_url(server, odd):
    r = server.request("GET", "/" + odd, query={"list-type": "2", "encoding-type": "url",
                                                "prefix": "", "delimiter": "/"})
    assert r.status == 200, r
    root = r.xml()
    assert xml_text(root, "EncodingType") == "url"
    raw_keys = [xml_text(c, "Key") for c in xml_findall(root, "Contents")]
    for k in raw_keys:
        assert " " not in k and all(ord(ch) < 128 for ch in k), f"not URL-encoded: {k!r}"
        assert "+plus" not in k, "a literal '+' must be encoded as %2B"
    decoded = [urllib.parse.unquote_plus(k) for k in raw_keys]
    expected = sorted((k for k in ODD_KEYS if "/" not in k), key=lambda k: k.encode())
    assert decoded == expected
    prefixes = [urllib.parse.unquote_plus(xml_text(p, "Prefix"))
                for p in xml_findall(root, "CommonPrefixes")]
    assert prefixes == ["uni/"]


def test_raw_v1_encoding_type_url(server, odd):
    r = server.request("GET", "/" + odd, query={"encoding-type": "url", "prefix": "uni/"})
    assert r.status == 200, r
    root = r.xml()
    assert xml_text(root, "EncodingType") == "url"
    (key,) = [xml_text(c, "Key") for c in xml_findall(root, "Contents")]
    assert urllib.parse.unquote_plus(key) == "uni/ü/日本"
    assert all(ord(ch) < 128 for ch in key)


def test_raw_v2_response_fields(server, s3, tree):
    r = server.request("GET", "/" + tree, query={"list-type": "2", "max-keys": "2"})
    root = r.xml()
    assert root.tag.endswith("ListBucketResult")
    assert xml_text(root, "Name") == tree
    assert xml_text(root, "KeyCount") == "2"
    assert xml_text(root, "MaxKeys") == "2"
    assert xml_text(root, "IsTruncated") == "true"
    assert xml_text(root, "NextContinuationToken")


def test_invalid_max_keys(server, tree):
    r = server.request("GET", "/" + tree, query={"list-type": "2", "max-keys": "-1"})
    assert r.status == 400
    assert r.error_code == "InvalidArgument", r
    r = server.request("GET", "/" + tree, query={"list-type": "2", "max-keys": "abc"})
    assert r.status == 400
    assert r.error_code == "InvalidArgument", r


def test_max_keys_capped_at_1000(server, s3, tree):
    resp = s3.list_objects_v2(Bucket=tree, MaxKeys=5000)
    assert keys_of(resp) == sorted(TREE)
    assert resp["MaxKeys"] in (1000, 5000)


# ---- ordering ----------------------------------------------------------------------------


def test_binary_utf8_order(s3, bucket):
    keys = ["a", "B", "Z", "aa", "a/b", "a-b", "a~", "é", "ÿ", "中", "\uff21",
            "\U0001F600", "\ufffd", "0", "~", " "]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    listed = keys_of(s3.list_objects_v2(Bucket=bucket))
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))
    # paging one key at a time keeps the same order
    paged, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        resp = s3.list_objects_v2(Bucket=bucket, MaxKeys=4, **kw)
        paged += keys_of(resp)
        if not resp["IsTruncated"]:
            break
        token = resp["NextContinuationToken"]
    assert paged == listed
    # and start-after compares bytes too: U+FFFD sorts before U+1F600
    after = keys_of(s3.list_objects_v2(Bucket=bucket, StartAfter="\ufffd"))
    assert after == ["\U0001F600"]


# ---- many keys ---------------------------------------------------------------------------


N_MANY = 3000


@pytest.fixture(scope="module")
def many(server):
    """A bucket with N_MANY zero-byte keys 'p{i%10}/{i:05d}', put in parallel."""
    s3 = server.client()
    name = unique_bucket("many")
    s3.create_bucket(Bucket=name)
    keys = [f"p{i % 10}/{i:05d}" for i in range(N_MANY)]

    def put(k):
        s3.put_object(Bucket=name, Key=k, Body=b"")

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, keys))
    return name, sorted(keys)


@pytest.mark.deadline(300)
def test_paging_3000_keys_v2(s3, many):
    name, keys = many
    seen, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        resp = s3.list_objects_v2(Bucket=name, **kw)
        pages += 1
        assert resp["KeyCount"] == len(keys_of(resp))
        seen += keys_of(resp)
        if not resp["IsTruncated"]:
            break
        token = resp["NextContinuationToken"]
        assert pages < 10
    assert pages == 3, "1000 keys per page by default"
    assert len(seen) == len(set(seen)) == N_MANY
    assert seen == keys


def test_paging_3000_keys_v1_odd_page_size(s3, many):
    name, keys = many
    paginator = s3.get_paginator("list_objects")
    seen = []
    for page in paginator.paginate(Bucket=name, PaginationConfig={"PageSize": 777}):
        assert len(page.get("Contents", [])) <= 777
        seen += keys_of(page)
    assert seen == keys


def test_paging_3000_keys_with_prefix_and_delimiter(s3, many):
    name, keys = many
    resp = s3.list_objects_v2(Bucket=name, Delimiter="/")
    assert prefixes_of(resp) == [f"p{i}/" for i in range(10)]
    assert keys_of(resp) == []
    paginator = s3.get_paginator("list_objects_v2")
    seen = []
    for page in paginator.paginate(Bucket=name, Prefix="p7/", PaginationConfig={"PageSize": 100}):
        seen += keys_of(page)
    assert seen == [k for k in keys if k.startswith("p7/")]
    assert len(seen) == N_MANY // 10
    # the delimiter paged one prefix at a time yields each prefix once
    prefixes, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=name, Delimiter="/", MaxKeys=3, **kw)
        prefixes += prefixes_of(page)
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert prefixes == [f"p{i}/" for i in range(10)]
