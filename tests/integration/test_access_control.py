"""Access control: bucket policies, ACLs, the public access block, and the one
authorization stage that judges every request by them (docs/access-control.md).

Each test runs on SQLite and on PostgreSQL (the integration suite's two
passes).  Callers are the bucket's owner (alice), another user (bob),
anonymous requests, and root; each check says what S3 answers.
"""
import base64
import hashlib
import json

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import unique_bucket, xml_text

UNSIGNED = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}


def code_of(fn, *args, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(*args, **kwargs)
    return ei.value.response["ResponseMetadata"]["HTTPStatusCode"], ei.value.response["Error"]["Code"]


@pytest.fixture
def users(server):
    a, b = server.create_user(), server.create_user()
    return a, b


def owner_id(client):
    return client.list_buckets()["Owner"]["ID"]


def policy(bucket, *statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def stmt(effect, principal, action, resource, condition=None, sid=None):
    s = {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource}
    if condition:
        s["Condition"] = condition
    if sid:
        s["Sid"] = sid
    return s


def anon(server, method, bucket, key=None, query=None, body=b""):
    path = sigv4.object_path(bucket, key) if key is not None else "/" + bucket
    return server.request(method, path, query=query, anonymous=True, headers=UNSIGNED, body=body)


# ---- bucket policies: the calls -----------------------------------------------------------------

def test_policy_put_get_delete_and_status(server, users):
    a, _ = users
    sa = server.client(*a.creds)
    b = unique_bucket("pol")
    sa.create_bucket(Bucket=b)
    assert code_of(sa.get_bucket_policy, Bucket=b) == (404, "NoSuchBucketPolicy")
    assert code_of(sa.get_bucket_policy_status, Bucket=b) == (404, "NoSuchBucketPolicy")
    doc = policy(b, stmt("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{b}/*"))
    sa.put_bucket_policy(Bucket=b, Policy=doc)
    assert json.loads(sa.get_bucket_policy(Bucket=b)["Policy"]) == json.loads(doc)
    assert sa.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is True
    private = policy(b, stmt("Allow", {"AWS": owner_id(sa)}, "s3:*", [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]))
    sa.put_bucket_policy(Bucket=b, Policy=private)
    assert sa.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is False
    pinned = policy(b, stmt("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{b}/*",
                            {"IpAddress": {"aws:SourceIp": "10.1.0.0/16"}}))
    sa.put_bucket_policy(Bucket=b, Policy=pinned)
    assert sa.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is False
    sa.delete_bucket_policy(Bucket=b)
    assert code_of(sa.get_bucket_policy, Bucket=b) == (404, "NoSuchBucketPolicy")
    sa.delete_bucket_policy(Bucket=b)  # deleting none is fine, as in S3


@pytest.mark.parametrize("doc,reason", [
    ("not json", "valid JSON"),
    ("[]", "valid JSON"),
    ('{"Version":"2012-10-17"}', "Statement"),
    ('{"Version":"2012-10-17","Statement":[]}', "Statement"),
    ('{"Version":"1999-01-01","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"}]}', "version"),
    ('{"Statement":[{"Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"}]}', "Effect"),
    ('{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"}]}', "effect"),
    ('{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"}]}', "Principal"),
    ('{"Statement":[{"Effect":"Allow","Principal":"*","Resource":"arn:aws:s3:::B/*"}]}', "Action"),
    ('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ec2:RunInstances","Resource":"arn:aws:s3:::B/*"}]}', "action"),
    ('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}]}', "Resource"),
    ('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::someone-else/*"}]}', "resource"),
    ('{"Statement":[{"Effect":"Allow","Principal":{"Group":"x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"}]}', "principal"),
    ('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*","Condition":{"StringSounds":{"s3:prefix":"a"}}}]}', "Condition"),
    ('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*","Condition":{"StringEquals":{"ec2:thing":"a"}}}]}', "condition key"),
    ('{"Statement":[{"Sid":"x","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"},{"Sid":"x","Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"}]}', "unique"),
    ('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*","Bogus":1}]}', "invalid field"),
    ('{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::B/*"},"Statement":[]}', "valid JSON"),
])
def test_malformed_policies_are_refused_with_the_reason(server, s3, bucket, doc, reason):
    doc = doc.replace("arn:aws:s3:::B", f"arn:aws:s3:::{bucket}")
    r = server.request("PUT", "/" + bucket, query={"policy": None}, body=doc.encode())
    assert (r.status, r.error_code) == (400, "MalformedPolicy"), r
    assert reason.lower() in xml_text(r.xml(), "Message").lower(), r.body
    assert code_of(s3.get_bucket_policy, Bucket=bucket) == (404, "NoSuchBucketPolicy")
    assert any(rec.get("request_id") == r.header("x-amz-request-id") for rec in server.log_records()), \
        "the refusal has a log line with its request id"


def test_a_policy_too_large_is_refused(server, bucket):
    big = policy(bucket, *[stmt("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/prefix-{i:05d}-" + "x" * 40)
                           for i in range(300)])
    assert len(big) > 20480
    r = server.request("PUT", "/" + bucket, query={"policy": None}, body=big.encode())
    assert (r.status, r.error_code) == (400, "MalformedPolicy")


def test_only_the_owner_manages_the_policy(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("own")
    sa.create_bucket(Bucket=bk)
    doc = policy(bk, stmt("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bk}/*"))
    assert code_of(sb.put_bucket_policy, Bucket=bk, Policy=doc) == (403, "AccessDenied")
    sa.put_bucket_policy(Bucket=bk, Policy=doc)
    assert code_of(sb.get_bucket_policy, Bucket=bk) == (403, "AccessDenied")
    assert code_of(sb.delete_bucket_policy, Bucket=bk) == (403, "AccessDenied")
    r = anon(server, "DELETE", bk, query={"policy": None})
    assert (r.status, r.error_code) == (403, "AccessDenied")


# ---- bucket policies: what they grant and deny ----------------------------------------------------

def test_anonymous_access_is_what_the_policy_grants(server, users):
    a, _ = users
    sa = server.client(*a.creds)
    bk = unique_bucket("anon")
    sa.create_bucket(Bucket=bk)
    sa.put_object(Bucket=bk, Key="pub/a.txt", Body=b"public")
    sa.put_object(Bucket=bk, Key="private/b.txt", Body=b"secret")
    assert anon(server, "GET", bk, "pub/a.txt").status == 403
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bk}/pub/*")))
    r = anon(server, "GET", bk, "pub/a.txt")
    assert (r.status, r.body) == (200, b"public")
    assert anon(server, "HEAD", bk, "pub/a.txt").status == 200
    r = anon(server, "GET", bk, "private/b.txt")
    assert (r.status, r.error_code) == (403, "AccessDenied")
    r = anon(server, "GET", bk, query={"list-type": "2"})
    assert (r.status, r.error_code) == (403, "AccessDenied"), "listing was not granted"
    r = anon(server, "PUT", bk, "pub/new", body=b"x")
    assert (r.status, r.error_code) == (403, "AccessDenied")
    # a missing key the caller may read is 404; the policy let it ask
    assert anon(server, "GET", bk, "pub/none").status == 404
    # a policy granting writes to anyone: an anonymous PUT lands
    sa.put_bucket_policy(Bucket=bk, Policy=policy(
        bk, stmt("Allow", "*", ["s3:GetObject", "s3:PutObject"], f"arn:aws:s3:::{bk}/drop/*")))
    r = anon(server, "PUT", bk, "drop/file", body=b"dropped")
    assert r.status == 200, r
    assert sa.get_object(Bucket=bk, Key="drop/file")["Body"].read() == b"dropped"
    assert anon(server, "GET", bk, "pub/a.txt").status == 403, "the new policy replaced the old"


def test_policy_grants_another_user_by_name_or_id(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("grant")
    sa.create_bucket(Bucket=bk)
    sa.put_object(Bucket=bk, Key="k", Body=b"data")
    assert code_of(sb.get_object, Bucket=bk, Key="k") == (403, "AccessDenied")
    assert code_of(sb.list_objects_v2, Bucket=bk) == (403, "AccessDenied")
    for principal in ({"AWS": f"arn:aws:iam::123456789012:user/{b.name}"}, {"AWS": owner_id(sb)},
                      {"AWS": f"arn:aws:iam::{owner_id(sb)}:root"}, {"CanonicalUser": owner_id(sb)}):
        sa.put_bucket_policy(Bucket=bk, Policy=policy(
            bk, stmt("Allow", principal, ["s3:GetObject", "s3:ListBucket"], [f"arn:aws:s3:::{bk}", f"arn:aws:s3:::{bk}/*"])))
        assert sb.get_object(Bucket=bk, Key="k")["Body"].read() == b"data", principal
        assert [o["Key"] for o in sb.list_objects_v2(Bucket=bk)["Contents"]] == ["k"]
        assert code_of(sb.put_object, Bucket=bk, Key="k", Body=b"no") == (403, "AccessDenied")
        assert code_of(sb.delete_object, Bucket=bk, Key="k") == (403, "AccessDenied")
    # another user's ARN grants bob nothing
    sa.put_bucket_policy(Bucket=bk, Policy=policy(
        bk, stmt("Allow", {"AWS": "arn:aws:iam::1:user/someone-else"}, "s3:GetObject", f"arn:aws:s3:::{bk}/*")))
    assert code_of(sb.get_object, Bucket=bk, Key="k") == (403, "AccessDenied")


def test_not_action_not_resource_and_wildcards(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("nota")
    sa.create_bucket(Bucket=bk)
    for k in ("docs/a", "docs/b", "secret/c"):
        sa.put_object(Bucket=bk, Key=k, Body=k.encode())
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, {
        "Effect": "Allow", "Principal": {"AWS": owner_id(sb)}, "NotAction": ["s3:Delete*", "s3:Put*"],
        "NotResource": f"arn:aws:s3:::{bk}/secret/*"}))
    assert sb.get_object(Bucket=bk, Key="docs/a")["Body"].read() == b"docs/a"
    assert code_of(sb.get_object, Bucket=bk, Key="secret/c") == (403, "AccessDenied")
    assert code_of(sb.put_object, Bucket=bk, Key="docs/z", Body=b"") == (403, "AccessDenied")
    assert code_of(sb.delete_object, Bucket=bk, Key="docs/a") == (403, "AccessDenied")
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt(
        "Allow", {"AWS": owner_id(sb)}, "s3:Get?bject", f"arn:aws:s3:::{bk}/docs/?")))
    assert sb.get_object(Bucket=bk, Key="docs/b")["Body"].read() == b"docs/b"
    assert code_of(sb.get_object, Bucket=bk, Key="secret/c") == (403, "AccessDenied")


def test_explicit_deny_wins_even_over_the_owner(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("deny")
    sa.create_bucket(Bucket=bk)
    sa.put_object(Bucket=bk, Key="k", Body=b"v")
    everything = [f"arn:aws:s3:::{bk}", f"arn:aws:s3:::{bk}/*"]
    sa.put_bucket_policy(Bucket=bk, Policy=policy(
        bk, stmt("Allow", "*", "s3:*", everything), stmt("Deny", "*", ["s3:DeleteObject", "s3:PutObject"], everything)))
    assert sb.get_object(Bucket=bk, Key="k")["Body"].read() == b"v"
    assert code_of(sb.put_object, Bucket=bk, Key="k", Body=b"x") == (403, "AccessDenied")
    assert code_of(sa.put_object, Bucket=bk, Key="k", Body=b"x") == (403, "AccessDenied"), "the owner is denied too"
    assert code_of(sa.delete_object, Bucket=bk, Key="k") == (403, "AccessDenied")
    # the owner can always manage the policy, so it can never lock itself out
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Deny", "*", "s3:*", everything)))
    assert code_of(sa.get_object, Bucket=bk, Key="k") == (403, "AccessDenied")
    assert json.loads(sa.get_bucket_policy(Bucket=bk)["Policy"])["Statement"][0]["Effect"] == "Deny"
    sa.delete_bucket_policy(Bucket=bk)
    assert sa.get_object(Bucket=bk, Key="k")["Body"].read() == b"v"
    # root is the operator: never locked out
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Deny", "*", "s3:*", everything)))
    assert server.client().get_object(Bucket=bk, Key="k")["Body"].read() == b"v"


def test_conditions(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("cond")
    sa.create_bucket(Bucket=bk)
    for k in ("home/bob/x", "home/eve/y"):
        sa.put_object(Bucket=bk, Key=k, Body=b"1")
    obj = f"arn:aws:s3:::{bk}/*"
    bob = {"AWS": owner_id(sb)}

    def put(*statements):
        sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, *statements))

    # IpAddress / NotIpAddress on aws:SourceIp (the tests connect from 127.0.0.1)
    put(stmt("Allow", "*", "s3:GetObject", obj, {"IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}}))
    assert anon(server, "GET", bk, "home/bob/x").status == 200
    put(stmt("Allow", "*", "s3:GetObject", obj, {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert anon(server, "GET", bk, "home/bob/x").status == 403
    put(stmt("Allow", "*", "s3:GetObject", obj), stmt("Deny", "*", "s3:GetObject", obj,
                                                      {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert anon(server, "GET", bk, "home/bob/x").status == 403
    # aws:SecureTransport: this listener is plain HTTP
    put(stmt("Allow", "*", "s3:GetObject", obj), stmt("Deny", "*", "s3:*", obj, {"Bool": {"aws:SecureTransport": "false"}}))
    assert anon(server, "GET", bk, "home/bob/x").status == 403
    put(stmt("Allow", "*", "s3:GetObject", obj), stmt("Deny", "*", "s3:*", obj, {"Bool": {"aws:SecureTransport": True}}))
    assert anon(server, "GET", bk, "home/bob/x").status == 200
    # aws:CurrentTime with DateLessThan / DateGreaterThan
    put(stmt("Allow", "*", "s3:GetObject", obj, {"DateGreaterThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"}}))
    assert anon(server, "GET", bk, "home/bob/x").status == 403
    put(stmt("Allow", "*", "s3:GetObject", obj, {"DateLessThan": {"aws:CurrentTime": "2099-01-01T00:00:00Z"},
                                                 "DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}))
    assert anon(server, "GET", bk, "home/bob/x").status == 200
    # aws:username with StringLike and a per-user prefix
    put(stmt("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bk}/home/*",
             {"StringEquals": {"aws:username": b.name}}))
    assert sb.get_object(Bucket=bk, Key="home/bob/x")["Body"].read() == b"1"
    assert anon(server, "GET", bk, "home/bob/x").status == 403, "anonymous has no username"
    # s3:prefix and s3:max-keys on ListBucket
    put(stmt("Allow", bob, "s3:ListBucket", f"arn:aws:s3:::{bk}",
             {"StringLike": {"s3:prefix": "home/bob/*"}, "NumericLessThan": {"s3:max-keys": "100"}}))
    assert [o["Key"] for o in sb.list_objects_v2(Bucket=bk, Prefix="home/bob/", MaxKeys=10)["Contents"]] == ["home/bob/x"]
    assert code_of(sb.list_objects_v2, Bucket=bk, Prefix="home/eve/", MaxKeys=10) == (403, "AccessDenied")
    assert code_of(sb.list_objects_v2, Bucket=bk, Prefix="home/bob/", MaxKeys=500) == (403, "AccessDenied")
    assert code_of(sb.list_objects_v2, Bucket=bk) == (403, "AccessDenied"), "no prefix: the condition fails"
    # s3:x-amz-acl on PutObject
    put(stmt("Allow", bob, "s3:PutObject", obj, {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}))
    assert code_of(sb.put_object, Bucket=bk, Key="up", Body=b"x") == (403, "AccessDenied")
    sb.put_object(Bucket=bk, Key="up", Body=b"x", ACL="bucket-owner-full-control")
    assert sa.get_object(Bucket=bk, Key="up")["Body"].read() == b"x"
    # s3:ExistingObjectTag/<k>
    sa.put_object(Bucket=bk, Key="tagged", Body=b"t", Tagging="class=public")
    sa.put_object(Bucket=bk, Key="untagged", Body=b"u")
    put(stmt("Allow", "*", "s3:GetObject", obj, {"StringEquals": {"s3:ExistingObjectTag/class": "public"}}))
    assert anon(server, "GET", bk, "tagged").status == 200
    assert anon(server, "GET", bk, "untagged").status == 403
    # IfExists and Null
    put(stmt("Allow", "*", "s3:GetObject", obj, {"StringEqualsIfExists": {"s3:x-amz-acl": "private"}}))
    assert anon(server, "GET", bk, "untagged").status == 200
    put(stmt("Allow", "*", "s3:GetObject", obj, {"Null": {"aws:username": "true"}}))
    assert anon(server, "GET", bk, "untagged").status == 200
    assert code_of(sb.get_object, Bucket=bk, Key="untagged") == (403, "AccessDenied")


def test_presigned_urls_stop_when_access_is_lost(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("presign")
    sa.create_bucket(Bucket=bk)
    sa.put_object(Bucket=bk, Key="k", Body=b"shared")
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Allow", {"AWS": owner_id(sb)}, "s3:GetObject",
                                                            f"arn:aws:s3:::{bk}/*")))
    url = sb.generate_presigned_url("get_object", Params={"Bucket": bk, "Key": "k"}, ExpiresIn=600)
    path = url.split(str(server.port), 1)[1]
    r = server.get_url("GET", path)
    assert (r.status, r.body) == (200, b"shared")
    sa.delete_bucket_policy(Bucket=bk)
    r = server.get_url("GET", path)
    assert (r.status, r.error_code) == (403, "AccessDenied")
    # and a deny that names bob stops one of his own buckets' grants too
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Allow", {"AWS": owner_id(sb)}, "s3:GetObject",
                                                            f"arn:aws:s3:::{bk}/*")))
    assert server.get_url("GET", path).status == 200
    sa.put_bucket_policy(Bucket=bk, Policy=policy(
        bk, stmt("Allow", {"AWS": owner_id(sb)}, "s3:GetObject", f"arn:aws:s3:::{bk}/*"),
        stmt("Deny", {"AWS": f"arn:aws:iam::1:user/{b.name}"}, "s3:*", f"arn:aws:s3:::{bk}/*")))
    assert server.get_url("GET", path).status == 403


def test_copy_needs_read_access_to_the_source(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    src, dst = unique_bucket("src"), unique_bucket("dst")
    sa.create_bucket(Bucket=src)
    sb.create_bucket(Bucket=dst)
    sa.put_object(Bucket=src, Key="open/a", Body=b"A")
    sa.put_object(Bucket=src, Key="closed/b", Body=b"B")
    assert code_of(sb.copy_object, Bucket=dst, Key="x", CopySource={"Bucket": src, "Key": "open/a"}) == (403, "AccessDenied")
    sa.put_bucket_policy(Bucket=src, Policy=policy(src, stmt("Allow", {"AWS": owner_id(sb)}, "s3:GetObject",
                                                              f"arn:aws:s3:::{src}/open/*")))
    sb.copy_object(Bucket=dst, Key="x", CopySource={"Bucket": src, "Key": "open/a"})
    assert sb.get_object(Bucket=dst, Key="x")["Body"].read() == b"A"
    assert code_of(sb.copy_object, Bucket=dst, Key="y", CopySource={"Bucket": src, "Key": "closed/b"}) == (403, "AccessDenied")


def test_delete_objects_is_judged_per_key(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("multi")
    sa.create_bucket(Bucket=bk)
    for k in ("tmp/1", "keep/2"):
        sa.put_object(Bucket=bk, Key=k, Body=b"x")
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Allow", {"AWS": owner_id(sb)}, "s3:DeleteObject",
                                                            f"arn:aws:s3:::{bk}/tmp/*")))
    out = sb.delete_objects(Bucket=bk, Delete={"Objects": [{"Key": "tmp/1"}, {"Key": "keep/2"}]})
    assert [d["Key"] for d in out.get("Deleted", [])] == ["tmp/1"]
    assert [(e["Key"], e["Code"]) for e in out.get("Errors", [])] == [("keep/2", "AccessDenied")]
    assert [o["Key"] for o in sa.list_objects_v2(Bucket=bk)["Contents"]] == ["keep/2"]


def test_set_public_is_a_policy_shortcut(server, users):
    a, _ = users
    sa = server.client(*a.creds)
    bk = unique_bucket("setpub")
    sa.create_bucket(Bucket=bk)
    sa.put_object(Bucket=bk, Key="k", Body=b"v")
    mine = stmt("Allow", {"AWS": "1"}, "s3:GetObject", f"arn:aws:s3:::{bk}/*", sid="Mine")
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, mine))
    server.admin("bucket", "set-public", bk)
    sids = [s.get("Sid") for s in json.loads(sa.get_bucket_policy(Bucket=bk)["Policy"])["Statement"]]
    assert sids == ["Mine", "CairnPublicRead"], "the shortcut adds its statement and keeps the others"
    assert anon(server, "GET", bk, "k").status == 200
    assert sa.get_bucket_policy_status(Bucket=bk)["PolicyStatus"]["IsPublic"] is True
    server.admin("bucket", "set-public", bk, "--off")
    sids = [s.get("Sid") for s in json.loads(sa.get_bucket_policy(Bucket=bk)["Policy"])["Statement"]]
    assert sids == ["Mine"]
    assert anon(server, "GET", bk, "k").status == 403
    sa.delete_bucket_policy(Bucket=bk)
    server.admin("bucket", "set-public", bk)
    server.admin("bucket", "set-public", bk, "--off")
    assert code_of(sa.get_bucket_policy, Bucket=bk) == (404, "NoSuchBucketPolicy"), "nothing left: no policy"


def test_a_deleted_buckets_policy_never_applies_to_its_successor(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("succ")
    sa.create_bucket(Bucket=bk)
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Allow", "*", "s3:*", [f"arn:aws:s3:::{bk}", f"arn:aws:s3:::{bk}/*"])))
    sa.delete_bucket(Bucket=bk)
    sb.create_bucket(Bucket=bk)
    sb.put_object(Bucket=bk, Key="mine", Body=b"bob's")
    assert anon(server, "GET", bk, "mine").status == 403
    assert code_of(sa.get_object, Bucket=bk, Key="mine") == (403, "AccessDenied")
    assert code_of(sb.get_bucket_policy, Bucket=bk) == (404, "NoSuchBucketPolicy")


# ---- the public access block -----------------------------------------------------------------

PAB_ALL = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def test_public_access_block_calls(server, s3, bucket):
    assert code_of(s3.get_public_access_block, Bucket=bucket) == (404, "NoSuchPublicAccessBlockConfiguration")
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    got = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert got == {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
                   "RestrictPublicBuckets": False}
    for body in (b"<PublicAccessBlockConfiguration><BlockPublicAcls>maybe</BlockPublicAcls>"
                 b"</PublicAccessBlockConfiguration>", b"<Other/>", b"<PublicAccessBlockConfiguration><Unknown>true"
                 b"</Unknown></PublicAccessBlockConfiguration>"):
        r = server.request("PUT", "/" + bucket, query={"publicAccessBlock": None}, body=body,
                           headers={"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})
        assert (r.status, r.error_code) == (400, "MalformedXML"), r
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    s3.delete_public_access_block(Bucket=bucket)
    assert code_of(s3.get_public_access_block, Bucket=bucket) == (404, "NoSuchPublicAccessBlockConfiguration")


def test_block_public_policy_and_restrict_public_buckets(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("pab")
    sa.create_bucket(Bucket=bk)
    sa.put_object(Bucket=bk, Key="k", Body=b"v")
    public = policy(bk, stmt("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bk}/*"))
    sa.put_bucket_policy(Bucket=bk, Policy=public)
    assert anon(server, "GET", bk, "k").status == 200
    assert sb.get_object(Bucket=bk, Key="k")["Body"].read() == b"v"
    sa.put_public_access_block(Bucket=bk, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    assert anon(server, "GET", bk, "k").status == 403, "a public policy grants only the owner now"
    assert code_of(sb.get_object, Bucket=bk, Key="k") == (403, "AccessDenied")
    assert sa.get_object(Bucket=bk, Key="k")["Body"].read() == b"v"
    sa.put_public_access_block(Bucket=bk, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    assert anon(server, "GET", bk, "k").status == 200, "the stored policy still applies"
    assert code_of(sa.put_bucket_policy, Bucket=bk, Policy=public) == (403, "AccessDenied")
    # a non-public policy is still accepted
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Allow", {"AWS": owner_id(sb)}, "s3:GetObject",
                                                            f"arn:aws:s3:::{bk}/*")))
    assert sb.get_object(Bucket=bk, Key="k")["Body"].read() == b"v"
    assert code_of(sb.put_public_access_block, Bucket=bk, PublicAccessBlockConfiguration=PAB_ALL) == (403, "AccessDenied")


def test_public_acls_blocked_and_ignored(server, users):
    a, _ = users
    sa = server.client(*a.creds)
    bk = unique_bucket("pacl")
    sa.create_bucket(Bucket=bk, ObjectOwnership="ObjectWriter")
    sa.put_object(Bucket=bk, Key="k", Body=b"v", ACL="public-read")
    assert anon(server, "GET", bk, "k").status == 200
    sa.put_public_access_block(Bucket=bk, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
    assert anon(server, "GET", bk, "k").status == 403
    sa.put_public_access_block(Bucket=bk, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    assert anon(server, "GET", bk, "k").status == 200
    assert code_of(sa.put_object, Bucket=bk, Key="k2", Body=b"v", ACL="public-read") == (403, "AccessDenied")
    assert code_of(sa.head_object, Bucket=bk, Key="k2")[0] == 404, "the refused write stored nothing"
    assert code_of(sa.put_bucket_acl, Bucket=bk, ACL="public-read") == (403, "AccessDenied")
    assert code_of(sa.put_object_acl, Bucket=bk, Key="k", ACL="public-read-write") == (403, "AccessDenied")
    sa.put_object_acl(Bucket=bk, Key="k", ACL="private")
    assert anon(server, "GET", bk, "k").status == 403


# ---- ACLs ------------------------------------------------------------------------------------

def test_acls_are_refused_where_the_bucket_owner_is_enforced(server, users):
    a, _ = users
    sa = server.client(*a.creds)
    bk = unique_bucket("enf")
    sa.create_bucket(Bucket=bk)  # BucketOwnerEnforced, S3's default
    assert code_of(sa.put_bucket_acl, Bucket=bk, ACL="public-read") == (400, "AccessControlListNotSupported")
    sa.put_bucket_acl(Bucket=bk, ACL="private")
    assert code_of(sa.put_object, Bucket=bk, Key="k", Body=b"", ACL="public-read") == (400, "AccessControlListNotSupported")
    sa.put_object(Bucket=bk, Key="k", Body=b"", ACL="bucket-owner-full-control")
    sa.put_object(Bucket=bk, Key="k2", Body=b"", ACL="private")
    acl = sa.get_object_acl(Bucket=bk, Key="k")
    assert [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == [(owner_id(sa), "FULL_CONTROL")]
    assert code_of(sa.create_bucket, Bucket=unique_bucket("enf2"), ACL="public-read") == \
        (400, "InvalidBucketAclWithObjectOwnership")
    r = server.request("PUT", "/" + unique_bucket("enf3"), headers={"x-amz-acl": "public-read"}, creds=a.creds)
    assert (r.status, r.error_code) == (400, "InvalidBucketAclWithObjectOwnership")


def test_bucket_acl_grants(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("bacl")
    sa.create_bucket(Bucket=bk, ObjectOwnership="ObjectWriter")
    sa.put_object(Bucket=bk, Key="k", Body=b"v")
    assert code_of(sb.list_objects_v2, Bucket=bk) == (403, "AccessDenied")
    sa.put_bucket_acl(Bucket=bk, GrantRead=f'id="{owner_id(sb)}"', GrantFullControl=f'id="{owner_id(sa)}"')
    acl = sa.get_bucket_acl(Bucket=bk)
    grants = sorted((g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"])
    assert grants == sorted([(owner_id(sa), "FULL_CONTROL"), (owner_id(sb), "READ")])
    assert acl["Owner"]["ID"] == owner_id(sa)
    assert [o["Key"] for o in sb.list_objects_v2(Bucket=bk)["Contents"]] == ["k"]
    assert code_of(sb.get_object, Bucket=bk, Key="k") == (403, "AccessDenied"), "bucket READ lists, does not read objects"
    assert code_of(sb.put_object, Bucket=bk, Key="new", Body=b"x") == (403, "AccessDenied")
    sa.put_bucket_acl(Bucket=bk, GrantWrite=f'id="{owner_id(sb)}"', GrantFullControl=f'id="{owner_id(sa)}"')
    sb.put_object(Bucket=bk, Key="bobs", Body=b"from bob")
    # ObjectWriter: bob owns what he wrote, and alice cannot read it unless granted
    assert sb.get_object(Bucket=bk, Key="bobs")["Body"].read() == b"from bob"
    assert sb.get_object_acl(Bucket=bk, Key="bobs")["Owner"]["ID"] == owner_id(sb)
    # the AccessControlPolicy body form, with a group grant
    sa.put_bucket_acl(Bucket=bk, AccessControlPolicy={
        "Owner": {"ID": owner_id(sa)},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner_id(sa)}, "Permission": "FULL_CONTROL"},
                   {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                    "Permission": "READ"}]})
    r = anon(server, "GET", bk, query={"list-type": "2"})
    assert r.status == 200 and b"<Key>k</Key>" in r.body
    assert code_of(sb.put_bucket_acl, Bucket=bk, ACL="private") == (403, "AccessDenied")
    sa.put_bucket_acl(Bucket=bk, ACL="private")
    assert anon(server, "GET", bk, query={"list-type": "2"}).status == 403


@pytest.mark.parametrize("headers,body,code", [
    ({"x-amz-grant-read": 'emailAddress="bob@example.com"'}, b"", "UnresolvableGrantByEmailAddress"),
    ({"x-amz-grant-read": 'nonsense'}, b"", "InvalidArgument"),
    ({"x-amz-grant-read": 'uri="http://example.com/group"'}, b"", "InvalidArgument"),
    ({"x-amz-acl": "world-writable"}, b"", "InvalidArgument"),
    ({"x-amz-acl": "private", "x-amz-grant-read": 'id="1"'}, b"", "InvalidRequest"),
    ({}, b"", "MissingSecurityHeader"),
    ({}, b"<AccessControlPolicy><Owner><ID>1</ID></Owner>", "MalformedACLError"),
    ({}, b"<AccessControlPolicy><Owner><ID>OWNER</ID></Owner><AccessControlList><Grant><Grantee><ID>1</ID></Grantee>"
         b"<Permission>EVERYTHING</Permission></Grant></AccessControlList></AccessControlPolicy>", "MalformedACLError"),
])
def test_bad_acls_are_refused(server, users, headers, body, code):
    a, _ = users
    sa = server.client(*a.creds)
    bk = unique_bucket("badacl")
    sa.create_bucket(Bucket=bk, ObjectOwnership="ObjectWriter")
    body = body.replace(b"OWNER", owner_id(sa).encode())
    r = server.request("PUT", "/" + bk, query={"acl": None}, headers=headers, body=body, creds=a.creds)
    assert (r.status, r.error_code) == (400, code), r
    assert [g["Permission"] for g in sa.get_bucket_acl(Bucket=bk)["Grants"]] == ["FULL_CONTROL"]


def test_object_acls(server, users):
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk = unique_bucket("oacl")
    sa.create_bucket(Bucket=bk, ObjectOwnership="BucketOwnerPreferred")
    sa.put_object(Bucket=bk, Key="pub", Body=b"p", ACL="public-read")
    sa.put_object(Bucket=bk, Key="priv", Body=b"q")
    assert anon(server, "GET", bk, "pub").status == 200
    assert anon(server, "HEAD", bk, "pub").status == 200
    assert anon(server, "GET", bk, "priv").status == 403
    r = anon(server, "GET", bk, "missing")
    assert (r.status, r.error_code) == (403, "AccessDenied"), "no ListBucket: a missing key is not told apart"
    # an object grant to bob by id
    sa.put_object_acl(Bucket=bk, Key="priv", GrantRead=f'id="{owner_id(sb)}"')
    assert sb.get_object(Bucket=bk, Key="priv")["Body"].read() == b"q"
    assert code_of(sb.get_object_acl, Bucket=bk, Key="priv") == (403, "AccessDenied")
    sa.put_object_acl(Bucket=bk, Key="priv", GrantReadACP=f'id="{owner_id(sb)}"', GrantRead=f'id="{owner_id(sb)}"')
    got = sb.get_object_acl(Bucket=bk, Key="priv")
    assert sorted(g["Permission"] for g in got["Grants"]) == ["READ", "READ_ACP"]
    assert code_of(sb.put_object_acl, Bucket=bk, Key="priv", ACL="public-read") == (403, "AccessDenied")
    # ACLs are not copied: a copy starts private
    sa.copy_object(Bucket=bk, Key="copy", CopySource={"Bucket": bk, "Key": "pub"})
    assert anon(server, "GET", bk, "copy").status == 403
    # BucketOwnerPreferred: bob's write with bucket-owner-full-control is alice's
    sa.put_bucket_acl(Bucket=bk, GrantWrite=f'id="{owner_id(sb)}"', GrantFullControl=f'id="{owner_id(sa)}"')
    sb.put_object(Bucket=bk, Key="given", Body=b"g", ACL="bucket-owner-full-control")
    assert sa.get_object_acl(Bucket=bk, Key="given")["Owner"]["ID"] == owner_id(sa)
    sb.put_object(Bucket=bk, Key="kept", Body=b"k")
    assert sb.get_object_acl(Bucket=bk, Key="kept")["Owner"]["ID"] == owner_id(sb)
    # multipart: the ACL named at create is the object's
    up = sa.create_multipart_upload(Bucket=bk, Key="mp", ACL="public-read")
    etag = sa.upload_part(Bucket=bk, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 10)["ETag"]
    sa.complete_multipart_upload(Bucket=bk, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    assert anon(server, "GET", bk, "mp").status == 200
    # the ACL member is never sent as a header
    r = anon(server, "GET", bk, "pub")
    assert not any(h.lower().startswith("cairn") for h in r.headers), r.headers


def test_object_writer_objects_of_others_are_read_only_as_their_acl_allows(server, users):
    """ObjectWriter: what bob writes is bob's; alice, the bucket owner, may
    list and delete it but reads its bytes or its ACL only when bob's ACL
    grants it, and her own grants (owner, policy) do not reach it."""
    a, b = users
    sa, sb = server.client(*a.creds), server.client(*b.creds)
    bk, other = unique_bucket("owr"), unique_bucket("owr2")
    sa.create_bucket(Bucket=bk, ObjectOwnership="ObjectWriter")
    sa.create_bucket(Bucket=other)
    sa.put_bucket_acl(Bucket=bk, GrantWrite=f'id="{owner_id(sb)}"', GrantRead=f'id="{owner_id(sb)}"',
                      GrantFullControl=f'id="{owner_id(sa)}"')
    sb.put_object(Bucket=bk, Key="bobs", Body=b"from bob")
    sb.put_object(Bucket=bk, Key="shared", Body=b"shared", ACL="bucket-owner-read")
    sa.put_object(Bucket=bk, Key="alices", Body=b"from alice")
    assert sorted(o["Key"] for o in sa.list_objects_v2(Bucket=bk)["Contents"]) == ["alices", "bobs", "shared"]
    assert code_of(sa.get_object, Bucket=bk, Key="bobs") == (403, "AccessDenied")
    assert code_of(sa.head_object, Bucket=bk, Key="bobs") == (403, "403")
    assert code_of(sa.get_object_acl, Bucket=bk, Key="bobs") == (403, "AccessDenied")
    assert code_of(sa.put_object_acl, Bucket=bk, Key="bobs", ACL="private") == (403, "AccessDenied")
    assert code_of(sa.copy_object, Bucket=other, Key="c", CopySource={"Bucket": bk, "Key": "bobs"}) == \
        (403, "AccessDenied")
    # a policy alice writes for herself does not reach bob's object either
    sa.put_bucket_policy(Bucket=bk, Policy=policy(bk, stmt("Allow", {"AWS": [f"arn:aws:iam::123456789012:user/{a.name}"]},
                                                           "s3:GetObject", f"arn:aws:s3:::{bk}/*")))
    assert code_of(sa.get_object, Bucket=bk, Key="bobs") == (403, "AccessDenied")
    assert sa.get_object(Bucket=bk, Key="alices")["Body"].read() == b"from alice"
    sa.delete_bucket_policy(Bucket=bk)
    # bucket-owner-read grants her the bytes (and a copy of them), not the ACL
    assert sa.get_object(Bucket=bk, Key="shared")["Body"].read() == b"shared"
    sa.copy_object(Bucket=other, Key="c", CopySource={"Bucket": bk, "Key": "shared"})
    assert sa.get_object(Bucket=other, Key="c")["Body"].read() == b"shared"
    assert code_of(sa.get_object_acl, Bucket=bk, Key="shared") == (403, "AccessDenied")
    # bob grants her read: she reads
    sb.put_object_acl(Bucket=bk, Key="bobs", GrantRead=f'id="{owner_id(sa)}"')
    assert sa.get_object(Bucket=bk, Key="bobs")["Body"].read() == b"from bob"
    # root is not held back
    assert server.client(*server.root).get_object(Bucket=bk, Key="shared")["Body"].read() == b"shared"
    # BucketOwnerEnforced makes alice the owner of everything again
    sb.put_object(Bucket=bk, Key="bobs2", Body=b"again")
    assert code_of(sa.get_object, Bucket=bk, Key="bobs2") == (403, "AccessDenied")
    sa.put_bucket_ownership_controls(Bucket=bk, OwnershipControls={"Rules": [{"ObjectOwnership":
                                                                              "BucketOwnerEnforced"}]})
    assert sa.get_object(Bucket=bk, Key="bobs2")["Body"].read() == b"again"
    # and she may delete what others wrote, whatever its ACL
    sa.put_bucket_ownership_controls(Bucket=bk, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    sa.delete_object(Bucket=bk, Key="bobs2")
    assert code_of(sa.head_object, Bucket=bk, Key="bobs2") == (404, "404")


def test_object_acl_by_version(server, users):
    a, _ = users
    sa = server.client(*a.creds)
    bk = unique_bucket("vacl")
    sa.create_bucket(Bucket=bk, ObjectOwnership="ObjectWriter")
    sa.put_bucket_versioning(Bucket=bk, VersioningConfiguration={"Status": "Enabled"})
    v1 = sa.put_object(Bucket=bk, Key="k", Body=b"1")["VersionId"]
    sa.put_object(Bucket=bk, Key="k", Body=b"2")
    sa.put_object_acl(Bucket=bk, Key="k", VersionId=v1, ACL="public-read")
    assert anon(server, "GET", bk, "k", query={"versionId": v1}).status == 200
    assert anon(server, "GET", bk, "k").status == 403, "the current version stays private"
    assert code_of(sa.get_object_acl, Bucket=bk, Key="k", VersionId="nope") == (404, "NoSuchVersion")
    assert code_of(sa.get_object_acl, Bucket=bk, Key="none") == (404, "NoSuchKey")
