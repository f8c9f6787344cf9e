"""S3 bucket lifecycle (docs/lifecycle.md): Put/Get/DeleteBucketLifecycle-
Configuration and S3's validation of it; runs through the job queue that
expire current versions (a delete marker where versions are kept),
noncurrent versions, lone delete markers and incomplete uploads; object
lock respected; a run resumed after kill -9; x-amz-expiration on GET and
HEAD; and a short scale run (LIFECYCLE_SCALE_OBJECTS, default 5,000; `make
lifecycle-scale` runs it with 1,000,000).

Days are shortened with the test knob lifecycle_day_seconds: with 1, a
version is due one to two seconds after it was written."""
import base64
import datetime
import email.utils
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import postgres, pg_cluster, unique_bucket, wait_until


FAST = {"CAIRN_LIFECYCLE_DAY_SECONDS": "1", "CAIRN_LIFECYCLE_OBJECTS_PER_SECOND": "0", "CAIRN_JOB_POLL_MS": "50"}


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def put_raw(server, bucket, body, md5=True):
    if isinstance(body, str):
        body = body.encode()
    headers = {"Content-MD5": md5_b64(body)} if md5 else {}
    return server.request("PUT", sigv4.object_path(bucket, None), query=[("lifecycle", None)], body=body,
                          headers=headers)


def rule(body, rid="r1", status="Enabled", flt="<Filter><Prefix></Prefix></Filter>"):
    return f"<Rule><ID>{rid}</ID>{flt}<Status>{status}</Status>{body}</Rule>"


def config(*rules):
    return "<LifecycleConfiguration>" + "".join(rules) + "</LifecycleConfiguration>"


def err(call, **kw):
    with pytest.raises(ClientError) as e:
        call(**kw)
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


# ---- the configuration ---------------------------------------------------------------------


def test_get_without_configuration_is_404(s3, bucket):
    assert err(s3.get_bucket_lifecycle_configuration, Bucket=bucket) == (404, "NoSuchLifecycleConfiguration")
    # deleting none is fine (S3 answers 204)
    assert s3.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_round_trip_of_every_rule_kind(s3, bucket):
    rules = [
        {"ID": "days", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}},
        {"ID": "date", "Filter": {"Tag": {"Key": "t", "Value": "v"}}, "Status": "Disabled",
         "Expiration": {"Date": datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)}},
        {"ID": "marker", "Filter": {"Prefix": "m/"}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "nc", "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k", "Value": "1"}, {"Key": "j", "Value": ""}],
                                        "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
         "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}},
        {"ID": "mpu", "Filter": {"ObjectSizeGreaterThan": 5}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}},
        {"ID": "small", "Filter": {"ObjectSizeLessThan": 5}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "all", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 2}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got == rules
    r = s3.delete_bucket_lifecycle(Bucket=bucket)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert err(s3.get_bucket_lifecycle_configuration, Bucket=bucket) == (404, "NoSuchLifecycleConfiguration")


def test_legacy_rule_prefix_and_made_up_id(server, bucket):
    r = put_raw(server, bucket, "<LifecycleConfiguration><Rule><Prefix>old/</Prefix><Status>Enabled</Status>"
                                "<Expiration><Days>5</Days></Expiration></Rule></LifecycleConfiguration>")
    assert r.status == 200, r.body
    got = server.request("GET", sigv4.object_path(bucket, None), query=[("lifecycle", None)])
    assert got.status == 200
    text = got.body.decode()
    assert "<Prefix>old/</Prefix>" in text and "<Filter>" not in text
    rid = text.split("<ID>")[1].split("</ID>")[0]
    assert 1 <= len(rid) <= 255, "S3 names a rule that has no ID"


def test_bad_digest_is_refused(server, bucket):
    body = config(rule("<Expiration><Days>1</Days></Expiration>")).encode()
    r = server.request("PUT", sigv4.object_path(bucket, None), query=[("lifecycle", None)], body=body,
                       headers={"Content-MD5": md5_b64(b"other")})
    assert (r.status, r.error_code) == (400, "BadDigest")
    r = server.request("PUT", sigv4.object_path(bucket, None), query=[("lifecycle", None)], body=body,
                       headers={"Content-MD5": "nope"})
    assert (r.status, r.error_code) == (400, "InvalidDigest")


EXP1 = "<Expiration><Days>1</Days></Expiration>"

INVALID = [
    # bad XML and schema
    ("not xml", "MalformedXML"),
    ("<Other/>", "MalformedXML"),
    ("<LifecycleConfiguration></LifecycleConfiguration>", "MalformedXML"),
    (config("<Bogus/>"), "MalformedXML"),
    (config(rule(EXP1, status="On")), "MalformedXML"),
    (config("<Rule><ID>x</ID><Filter/>" + EXP1 + "</Rule>"), "MalformedXML"),              # no Status
    (config("<Rule><ID>x</ID><Status>Enabled</Status>" + EXP1 + "</Rule>"), "MalformedXML"),  # no filter
    (config(rule(EXP1, flt="<Prefix>a</Prefix><Filter/>")), "MalformedXML"),                 # both
    (config(rule(EXP1, flt="<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>")),
     "MalformedXML"),                                                                         # two predicates, no And
    (config(rule(EXP1, flt="<Filter><Tag><Key>k</Key></Tag></Filter>")), "MalformedXML"),    # Tag without Value
    (config(rule(EXP1, flt="<Filter><ObjectSizeLessThan>-1</ObjectSizeLessThan></Filter>")), "MalformedXML"),
    (config(rule("<Expiration></Expiration>")), "MalformedXML"),
    (config(rule("<Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date></Expiration>")), "MalformedXML"),
    (config(rule("<Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>"
                 "</Expiration>")), "MalformedXML"),
    (config(rule("<Expiration><ExpiredObjectDeleteMarker>yes</ExpiredObjectDeleteMarker></Expiration>")),
     "MalformedXML"),
    (config(rule("<Expiration><Days>x</Days></Expiration>")), "MalformedXML"),
    (config(rule("<NoncurrentVersionExpiration></NoncurrentVersionExpiration>")), "MalformedXML"),
    (config(rule("<AbortIncompleteMultipartUpload></AbortIncompleteMultipartUpload>")), "MalformedXML"),
    (config(rule(EXP1 + EXP1)), "MalformedXML"),                                             # action twice
    # values S3 judges
    (config(rule("<Expiration><Days>0</Days></Expiration>")), "InvalidArgument"),
    (config(rule("<Expiration><Days>-3</Days></Expiration>")), "InvalidArgument"),
    (config(rule("<Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>")), "InvalidArgument"),
    (config(rule("<Expiration><Date>someday</Date></Expiration>")), "InvalidArgument"),
    (config(rule("<NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays></NoncurrentVersionExpiration>")),
     "InvalidArgument"),
    (config(rule("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                 "<NewerNoncurrentVersions>0</NewerNoncurrentVersions></NoncurrentVersionExpiration>")),
     "InvalidArgument"),
    (config(rule("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
                 "<NewerNoncurrentVersions>101</NewerNoncurrentVersions></NoncurrentVersionExpiration>")),
     "InvalidArgument"),
    (config(rule("<AbortIncompleteMultipartUpload><DaysAfterInitiation>0</DaysAfterInitiation>"
                 "</AbortIncompleteMultipartUpload>")), "InvalidArgument"),
    (config(rule(EXP1, rid="x" * 256)), "InvalidArgument"),
    (config(rule(EXP1, rid="same"), rule(EXP1, rid="same")), "InvalidArgument"),
    (config(rule(EXP1, flt="<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
                           "<ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter>")), "InvalidArgument"),
    (config(rule(EXP1, flt="<Filter><ObjectSizeLessThan>0</ObjectSizeLessThan></Filter>")), "InvalidArgument"),
    (config(rule("")), "InvalidRequest"),                                                     # no action
    (config(rule("<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>",
                 flt="<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>")), "InvalidRequest"),
    (config(rule("<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
                 "</AbortIncompleteMultipartUpload>",
                 flt="<Filter><And><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter>")),
     "InvalidRequest"),
    (config(rule(EXP1, flt="<Filter><And><Tag><Key>k</Key><Value>1</Value></Tag>"
                           "<Tag><Key>k</Key><Value>2</Value></Tag></And></Filter>")), "InvalidRequest"),
    (config(rule(EXP1, flt="<Filter><Tag><Key></Key><Value>v</Value></Tag></Filter>")), "InvalidTag"),
    # transitions: one storage class here
    (config(rule("<Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>")), "NotImplemented"),
    (config(rule("<NoncurrentVersionTransition><NoncurrentDays>1</NoncurrentDays><StorageClass>GLACIER"
                 "</StorageClass></NoncurrentVersionTransition>")), "NotImplemented"),
]


@pytest.mark.parametrize("body,code", INVALID)
def test_validation(server, bucket, body, code):
    r = put_raw(server, bucket, body)
    assert r.error_code == code, (r.status, r.body)
    assert r.status == (501 if code == "NotImplemented" else 400)
    g = server.request("GET", sigv4.object_path(bucket, None), query=[("lifecycle", None)])
    assert g.error_code == "NoSuchLifecycleConfiguration", "a refused configuration is not stored"


def test_rule_count_limit(server, bucket):
    ok = config(*[rule(EXP1, rid=f"r{i}", flt=f"<Filter><Prefix>p{i}/</Prefix></Filter>") for i in range(1000)])
    assert put_raw(server, bucket, ok).status == 200
    too_many = config(*[rule(EXP1, rid=f"r{i}") for i in range(1001)])
    r = put_raw(server, bucket, too_many)
    assert (r.status, r.error_code) == (400, "InvalidRequest")


def test_another_users_bucket_is_denied(server, bucket, user):
    body = config(rule(EXP1)).encode()
    for method, b in (("GET", b""), ("PUT", body), ("DELETE", b"")):
        r = server.request(method, sigv4.object_path(bucket, None), query=[("lifecycle", None)], body=b,
                           headers={"Content-MD5": md5_b64(b)} if b else {}, creds=user.creds)
        assert (r.status, r.error_code) == (403, "AccessDenied"), (method, r.status, r.body)


def test_configuration_needs_a_signature_and_the_bucket(server, bucket):
    r = server.request("GET", sigv4.object_path(bucket, None), query=[("lifecycle", None)], anonymous=True)
    assert r.status == 403
    r = put_raw(server, unique_bucket(), config(rule(EXP1)))
    assert (r.status, r.error_code) == (404, "NoSuchBucket")


# ---- execution ------------------------------------------------------------------------------


RUN_DONE = "lifecycle run done"


def runs_done(srv, bucket):
    return [r for r in srv.log_records() if r.get("msg") == RUN_DONE and r.get("bucket") == bucket]


def run_now(srv, bucket, deadline=60):
    """Asks for a run of bucket now and waits for it to complete; returns its log record."""
    before = len(runs_done(srv, bucket))
    srv.admin("lifecycle", "run", "--bucket", bucket)
    wait_until(lambda: len(runs_done(srv, bucket)) > before, deadline, interval=0.05,
               what=f"a lifecycle run of {bucket}")
    return runs_done(srv, bucket)[-1]


def wait_due(seconds=2.2):
    """With lifecycle_day_seconds 1, a version written now is due within two
    seconds: the precondition of a run, not a negative check."""
    time.sleep(seconds)


def keys(s3, bucket):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def versions(s3, bucket):
    r = s3.list_object_versions(Bucket=bucket)
    return ([(v["Key"], v["VersionId"], v["IsLatest"]) for v in r.get("Versions", [])],
            [(m["Key"], m["VersionId"], m["IsLatest"]) for m in r.get("DeleteMarkers", [])])


@pytest.fixture
def fast(make_server):
    return make_server(env=FAST)


def lifecycle(s3, bucket, *rules):
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": list(rules)})


def test_expiration_days_on_an_unversioned_bucket_deletes(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    for k in ("logs/a", "logs/b", "keep/c"):
        s3.put_object(Bucket=b, Key=k, Body=b"x" * 10)
    s3.put_object(Bucket=b, Key="logs/big", Body=b"x" * 5000)
    s3.put_object(Bucket=b, Key="logs/tagged", Body=b"x", Tagging="keep=yes")
    lifecycle(s3, b, {"ID": "logs", "Filter": {"And": {"Prefix": "logs/", "ObjectSizeLessThan": 1000}},
                      "Status": "Enabled", "Expiration": {"Days": 1}},
              {"ID": "off", "Filter": {"Prefix": "keep/"}, "Status": "Disabled", "Expiration": {"Days": 1}})
    wait_due()
    rec = run_now(fast, b)
    assert keys(s3, b) == ["keep/c", "logs/big"]
    assert versions(s3, b)[1] == [], "an unversioned bucket gets no delete markers"
    assert int(rec["expired"]) == 3
    # idempotent: a second run finds nothing more to do
    rec = run_now(fast, b)
    assert int(rec["expired"]) == 0 and keys(s3, b) == ["keep/c", "logs/big"]


def test_expiration_by_tag_and_by_date(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="t1", Body=b"x", Tagging="class=tmp&x=1")
    s3.put_object(Bucket=b, Key="t2", Body=b"x", Tagging="class=keep")
    s3.put_object(Bucket=b, Key="d/1", Body=b"x")
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    lifecycle(s3, b, {"ID": "tag", "Filter": {"Tag": {"Key": "class", "Value": "tmp"}}, "Status": "Enabled",
                      "Expiration": {"Days": 1}},
              {"ID": "date", "Filter": {"Prefix": "d/"}, "Status": "Enabled", "Expiration": {"Date": past}})
    wait_due()
    run_now(fast, b)
    assert keys(s3, b) == ["t2"]


def test_expiration_on_a_versioned_bucket_makes_a_delete_marker(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    lifecycle(s3, b, {"ID": "e", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}})
    wait_due()
    run_now(fast, b)
    vs, ms = versions(s3, b)
    assert vs == [("k", v1, False)], "the version stays, noncurrent"
    assert len(ms) == 1 and ms[0][0] == "k" and ms[0][2] is True
    # a rerun makes no second marker
    run_now(fast, b)
    assert len(versions(s3, b)[1]) == 1


def test_expiration_on_a_suspended_bucket_replaces_the_null_version(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=b, Key="k", Body=b"versioned")["VersionId"]
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=b, Key="k", Body=b"null one")
    lifecycle(s3, b, {"ID": "e", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}})
    wait_due()
    rec = run_now(fast, b)
    vs, ms = versions(s3, b)
    assert vs == [("k", kept, False)], "the null version went, the versioned one stays"
    assert ms == [("k", "null", True)], "a null delete marker is current"
    assert int(rec["expired"]) == 1 and int(rec["markers_made"]) == 1


def test_expired_multipart_objects_leave_no_parts(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    for key in ("mp/1", "mp/2"):
        up = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        etags = [s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=n, Body=bytes([n]) * (5 << 20 if n == 1 else 1000))["ETag"]
                 for n in (1, 2)]
        s3.complete_multipart_upload(Bucket=b, Key=key, UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags)]})
    s3.put_object(Bucket=b, Key="plain", Body=b"p" * 100000)
    lifecycle(s3, b, {"ID": "e", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}})
    wait_due()
    rec = run_now(fast, b)
    assert keys(s3, b) == [] and int(rec["expired"]) == 3
    fast.wait_jobs_idle(kind="empty_trash")
    assert fast.stop() == 0
    fast.fsck()   # no shard of a part or of the plain object is left behind


def test_noncurrent_expiration_keeps_the_newer_versions(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    ids = [s3.put_object(Bucket=b, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(5)]
    s3.put_object(Bucket=b, Key="other", Body=b"o")
    lifecycle(s3, b, {"ID": "nc", "Filter": {"Prefix": "k"}, "Status": "Enabled",
                      "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}})
    wait_due()
    rec = run_now(fast, b)
    vs, _ = versions(s3, b)
    left = [v for (k, v, _l) in vs if k == "k"]
    # current (ids[4]) and the two newest noncurrent (ids[3], ids[2]) stay
    assert left == [ids[4], ids[3], ids[2]]
    assert int(rec["noncurrent_removed"]) == 2
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"v4"


def test_expired_object_delete_marker_is_removed_when_alone(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=b, Key="lone", Body=b"x")
    s3.put_object(Bucket=b, Key="kept", Body=b"x")
    s3.delete_object(Bucket=b, Key="lone")
    s3.delete_object(Bucket=b, Key="kept")
    # the version under "lone" goes first (by hand), leaving its marker alone
    vid = [v for (k, v, _l) in versions(s3, b)[0] if k == "lone"][0]
    s3.delete_object(Bucket=b, Key="lone", VersionId=vid)
    lifecycle(s3, b, {"ID": "m", "Filter": {"Prefix": ""}, "Status": "Enabled",
                      "Expiration": {"ExpiredObjectDeleteMarker": True}})
    rec = run_now(fast, b)
    vs, ms = versions(s3, b)
    assert [m[0] for m in ms] == ["kept"], "the marker with a version behind it stays"
    assert [v[0] for v in vs] == ["kept"]
    assert int(rec["markers_removed"]) == 1


def test_abort_incomplete_multipart_uploads(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    up = s3.create_multipart_upload(Bucket=b, Key="tmp/big")["UploadId"]
    s3.upload_part(Bucket=b, Key="tmp/big", UploadId=up, PartNumber=1, Body=b"p" * (1 << 20))
    keep = s3.create_multipart_upload(Bucket=b, Key="other/big")["UploadId"]
    lifecycle(s3, b, {"ID": "mpu", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
                      "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}})
    wait_due()
    rec = run_now(fast, b)
    left = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b).get("Uploads", [])]
    assert left == [keep]
    assert int(rec["uploads_aborted"]) == 1
    s3.abort_multipart_upload(Bucket=b, Key="other/big", UploadId=keep)
    fast.stop()
    fast.fsck()   # the aborted upload's part bytes went with it


def test_object_lock_is_respected(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    ids = {}
    for k, extra in (("gov", {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until}),
                     ("comp", {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}),
                     ("hold", {"ObjectLockLegalHoldStatus": "ON"}),
                     ("free", {})):
        ids[k] = s3.put_object(Bucket=b, Key=k, Body=b"old", **extra)["VersionId"]
        s3.put_object(Bucket=b, Key=k, Body=b"new")   # makes the locked one noncurrent
    lifecycle(s3, b, {"ID": "nc", "Filter": {}, "Status": "Enabled",
                      "NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    wait_due()
    rec = run_now(fast, b)
    left = {(k, v) for (k, v, _l) in versions(s3, b)[0]}
    for k in ("gov", "comp", "hold"):
        assert (k, ids[k]) in left, f"lifecycle removed a locked version ({k})"
    assert ("free", ids["free"]) not in left
    assert int(rec["locked_skipped"]) == 3 and int(rec["noncurrent_removed"]) == 1
    s3.put_object_legal_hold(Bucket=b, Key="hold", VersionId=ids["hold"], LegalHold={"Status": "OFF"})
    run_now(fast, b)
    assert ("hold", ids["hold"]) not in {(k, v) for (k, v, _l) in versions(s3, b)[0]}


def test_x_amz_expiration_on_get_and_head(fast):
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="logs/a", Body=b"x")
    s3.put_object(Bucket=b, Key="other", Body=b"x")
    assert "x-amz-expiration" not in s3.head_object(Bucket=b, Key="logs/a")["ResponseMetadata"]["HTTPHeaders"]
    lifecycle(s3, b, {"ID": "log \"rule\"", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
                      "Expiration": {"Days": 3}})
    for call in (s3.head_object, s3.get_object):
        h = call(Bucket=b, Key="logs/a")["ResponseMetadata"]["HTTPHeaders"]
        value = h["x-amz-expiration"]
        assert value.endswith('rule-id="log \\"rule\\""'), value
        date = value.split('expiry-date="')[1].split('"')[0]
        due = email.utils.parsedate_to_datetime(date).timestamp()
        mtime = email.utils.parsedate_to_datetime(h["last-modified"]).timestamp()
        # mtime + 3 "days" of 1 s, rounded up to the next "midnight" (a whole second)
        assert mtime + 3 <= due <= mtime + 5, (date, h["last-modified"])
        assert "x-amz-expiration" not in call(Bucket=b, Key="other")["ResponseMetadata"]["HTTPHeaders"]
    s3.delete_bucket_lifecycle(Bucket=b)
    assert "x-amz-expiration" not in s3.head_object(Bucket=b, Key="logs/a")["ResponseMetadata"]["HTTPHeaders"]


def test_x_amz_expiration_with_real_days(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    lifecycle(s3, bucket, {"ID": "r", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 2}})
    h = s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    date = email.utils.parsedate_to_datetime(h["x-amz-expiration"].split('"')[1])
    mtime = email.utils.parsedate_to_datetime(h["last-modified"])
    assert (date.hour, date.minute, date.second) == (0, 0, 0), "rounded up to midnight UTC"
    assert datetime.timedelta(days=2) <= date - mtime <= datetime.timedelta(days=3)


def test_periodic_scan_queues_runs(make_server):
    srv = make_server(env={**FAST, "CAIRN_JOB_PERIOD_S": "1"})
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"x")
    lifecycle(s3, b, {"ID": "e", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}})
    wait_until(lambda: keys(s3, b) == [], 30, interval=0.1, what="the periodic lifecycle scan to expire k")


def test_removals_are_published_on_the_live_stream(fast):
    import asyncio
    import urllib.parse
    import websockets
    s3 = fast.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=b, Key="k", Body=b"1")["VersionId"]
    s3.put_object(Bucket=b, Key="k", Body=b"2")
    lifecycle(s3, b, {"ID": "e", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1},
                      "NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    wait_due()
    query = sigv4.presign("GET", fast.host, "/events/ws", fast.root[0], fast.root[1],
                          extra_query=[("bucket", b), ("events", "s3:LifecycleExpiration:*")])

    async def main():
        async with websockets.connect(f"ws://{fast.host}/events/ws?{query}") as ws:
            await asyncio.to_thread(run_now, fast, b)
            return [json.loads(await asyncio.wait_for(ws.recv(), 20))["data"]["Records"][0] for _ in range(2)]
    got = asyncio.run(asyncio.wait_for(main(), 60))
    names = sorted((g["eventName"], urllib.parse.unquote_plus(g["s3"]["object"]["key"])) for g in got)
    assert names == [("LifecycleExpiration:Delete", "k"), ("LifecycleExpiration:DeleteMarkerCreated", "k")]
    removed = [g for g in got if g["eventName"] == "LifecycleExpiration:Delete"][0]
    assert removed["s3"]["object"]["versionId"] == old
    assert removed["userIdentity"]["principalId"] == "cairn:lifecycle"


def test_admin_lifecycle_run_usage(fast):
    cp = fast.admin("lifecycle", "run", "--bucket", unique_bucket(), check=False)
    assert cp.returncode == 1 and "no bucket" in cp.stderr
    cp = fast.admin("lifecycle", "walk", check=False)
    assert cp.returncode == 2 and "lifecycle run" in cp.stderr
    cp = fast.admin("lifecycle", "run", check=True)
    assert "lifecycle scan queued" in cp.stdout


def test_a_configuration_deleted_mid_run_stops_it(make_server):
    # 100 objects/s: after the 500th removal the run has 10 s to go, room
    # for the delete below to land mid-run on a loaded machine (at 300/s it
    # once finished first in CI).
    srv = make_server(env={**FAST, "CAIRN_LIFECYCLE_OBJECTS_PER_SECOND": "100", "CAIRN_JOB_BACKOFF_BASE_MS": "100"})
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    put_many(s3, b, [f"k/{i:05d}" for i in range(1500)])
    lifecycle(s3, b, {"ID": "e", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}})
    wait_due()
    srv.admin("lifecycle", "run", "--bucket", b)
    wait_until(lambda: s3.list_objects_v2(Bucket=b, MaxKeys=1000)["KeyCount"] < 1000, 60, interval=0.1,
               what="the run to remove some versions")
    s3.delete_bucket_lifecycle(Bucket=b)
    paused = "lifecycle run paused: the configuration changed; the next run resumes"
    wait_until(lambda: any(r.get("msg") == paused for r in srv.log_records()), 60, interval=0.1,
               what="the run to notice the deleted configuration")
    srv.wait_jobs_idle(kind="lifecycle")
    left = sum(page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b))
    assert 0 < left < 1500, left
    assert not runs_done(srv, b), "the run stopped short of the end"


# ---- crashes -------------------------------------------------------------------------------


def put_many(s3, bucket, keys_, body=b"x", threads=8):
    errors = []

    def work(part):
        try:
            for k in part:
                s3.put_object(Bucket=bucket, Key=k, Body=body)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    ts = [threading.Thread(target=work, args=(keys_[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]


def test_a_run_killed_mid_way_resumes_and_fsck_is_clean(make_server):
    # 200 a second: the run takes about 11 s, and is killed once its first
    # page (256 versions) is gone, about 1.5 s in, however slow the machine
    env = {"CAIRN_LIFECYCLE_DAY_SECONDS": "1", "CAIRN_LIFECYCLE_OBJECTS_PER_SECOND": "200",
           "CAIRN_JOB_LEASE_MS": "1500", "CAIRN_JOB_POLL_MS": "50"}
    srv = make_server(env=env)
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    doomed = [f"tmp/{i:05d}" for i in range(2000)]
    # the ledger: acknowledged writes no rule touches, and their bytes
    ledger = {f"keep/{i:04d}": f"keep {i} ".encode() * 700 for i in range(200)}
    put_many(s3, b, doomed, body=b"y" * 5000)   # past the inline limit: shard files
    for k, body in ledger.items():
        s3.put_object(Bucket=b, Key=k, Body=body)
    lifecycle(s3, b, {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled", "Expiration": {"Days": 1}})
    wait_due()
    srv.admin("lifecycle", "run", "--bucket", b)

    def some_gone():
        # keys are removed in order: fewer than 1000 after tmp/00299 means
        # the run is past its first page (256) and saved its cursor
        n = s3.list_objects_v2(Bucket=b, Prefix="tmp/", MaxKeys=1000, StartAfter="tmp/00299")["KeyCount"]
        return n < 1000
    wait_until(some_gone, 60, interval=0.1, what="the run to remove some versions")
    srv.kill()
    srv.start()
    s3 = srv.client()
    wait_until(lambda: runs_done(srv, b), 120, interval=0.1, what="the resumed run to complete")
    rec = runs_done(srv, b)[-1]
    assert int(rec["examined"]) < len(doomed) + len(ledger), "the run resumed from its cursor, not the top"
    assert s3.list_objects_v2(Bucket=b, Prefix="tmp/")["KeyCount"] == 0
    for k, body in ledger.items():
        assert s3.get_object(Bucket=b, Key=k)["Body"].read() == body, k
    srv.stop_and_fsck(heals=False)


# ---- scale ------------------------------------------------------------------------------------

SCALE = int(os.environ.get("LIFECYCLE_SCALE_OBJECTS", "5000"))
SCALE_RATE = int(os.environ.get("LIFECYCLE_SCALE_RATE", str(max(1000, SCALE // 100))))


def meta_query(srv, q):
    """One value of a query on the server's metadata (read-only), or None."""
    db = srv.metadata_db()
    if db is None:
        con = sqlite3.connect(f"file:{srv.data_dir / 'meta.db'}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute(q).fetchone()
        finally:
            con.close()
        return row[0] if row else None
    return pg_cluster().sql(q, db=db).stdout.strip() or None


def run_position(srv, bucket_id):
    """How far a run of the scale bucket is: the number in the key of its
    cursor (old/NNNNNNNNNN), read straight from the metadata; None when
    there is no cursor."""
    body = meta_query(srv, f"SELECT body FROM bucket_configs WHERE bucket_id = {bucket_id} "
                           "AND kind = 'lifecycle_cursor'")
    if not body:
        return None
    key = bytes.fromhex(json.loads(body)["key"]).decode()
    return int(key[4:]) if key.startswith("old/") else None


def load_metadata_only(srv, bucket, template, n):
    """Copies the template object's rows (inline bytes included) n times
    under keys old/0000000000.., written three days ago: a fast path straight
    into the (stopped) server's database, metadata only (inline objects have
    no shard files)."""
    old_ms = int(time.time() * 1000) - 3 * 86400 * 1000
    db = srv.metadata_db()
    if db is None:
        con = sqlite3.connect(srv.data_dir / "meta.db")
        con.executescript(f"""
            BEGIN;
            WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {n - 1})
            INSERT INTO objects (bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, headers_json, layout)
              SELECT o.bucket, 'old/' || printf('%010d', g.i), lower(hex(randomblob(16))), o.size, o.etag, {old_ms},
                     o.owner_id, o.storage, o.headers_json, o.layout
              FROM objects o, g WHERE o.bucket = '{bucket}' AND o.key = '{template}';
            INSERT INTO object_data (version_id, data)
              SELECT o.version_id, d.data FROM objects o, object_data d, objects t
              WHERE o.bucket = '{bucket}' AND o.key >= 'old/' AND o.key < 'old0'
                AND t.bucket = '{bucket}' AND t.key = '{template}' AND d.version_id = t.version_id;
            COMMIT;""")
        con.close()
    else:
        pg_cluster().sql(f"""
            BEGIN;
            INSERT INTO objects (bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, headers_json, layout)
              SELECT o.bucket, convert_to('old/' || lpad(g::text, 10, '0'), 'UTF8'), md5('lc-' || g || random()),
                     o.size, o.etag, {old_ms}, o.owner_id, o.storage, o.headers_json, o.layout
              FROM objects o, generate_series(0, {n - 1}) g
              WHERE o.bucket = '{bucket}' AND o.key = convert_to('{template}', 'UTF8');
            INSERT INTO object_data (version_id, data)
              SELECT o.version_id, d.data FROM objects o, objects t, object_data d
              WHERE o.bucket = '{bucket}' AND o.key >= convert_to('old/', 'UTF8') AND o.key < convert_to('old0', 'UTF8')
                AND t.bucket = '{bucket}' AND t.key = convert_to('{template}', 'UTF8') AND d.version_id = t.version_id;
            COMMIT;""", db=db)


@pytest.mark.deadline(int(SCALE / SCALE_RATE * 3) + SCALE // 2000 + 180)
def test_scale_steady_pace_while_serving_gets(make_server):
    env = {"CAIRN_LIFECYCLE_OBJECTS_PER_SECOND": str(SCALE_RATE), "CAIRN_JOB_POLL_MS": "50"}
    srv = make_server(env=env)
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="template", Body=b"t" * 100)
    s3.put_object(Bucket=b, Key="hot", Body=b"h" * 100)
    lifecycle(s3, b, {"ID": "old", "Filter": {"Prefix": "old/"}, "Status": "Enabled", "Expiration": {"Days": 1}})
    assert srv.stop() == 0
    load_metadata_only(srv, b, "template", SCALE)
    srv.start()
    s3 = srv.client()
    assert s3.list_objects_v2(Bucket=b, Prefix="old/", MaxKeys=5)["KeyCount"] == 5
    bucket_id = int(meta_query(srv, f"SELECT id FROM buckets WHERE name = '{b}'"))
    latencies, failures, stop = [], [], threading.Event()
    positions = []   # (seconds since the run was asked for, cursor position)

    def sampler(t0):
        while not stop.wait(1.0):
            try:
                pos = run_position(srv, bucket_id)
            except (sqlite3.Error, RuntimeError):
                continue   # busy: the next sample
            if pos is not None:
                positions.append((time.monotonic() - t0, pos))

    def reader():
        # about 50 GETs a second: a client's steady load, not one that
        # takes the test's own CPU from the server on a small machine
        c = srv.client()
        while not stop.wait(0.02):
            t0 = time.monotonic()
            try:
                assert c.get_object(Bucket=b, Key="hot")["Body"].read() == b"h" * 100
            except Exception as e:  # noqa: BLE001 - counted
                failures.append(e)
            latencies.append(time.monotonic() - t0)
    t = threading.Thread(target=reader)
    t.start()
    t_start = time.monotonic()
    ts = threading.Thread(target=sampler, args=(t_start,))
    ts.start()
    try:
        srv.admin("lifecycle", "run", "--bucket", b)
        expected_s = SCALE / SCALE_RATE
        wait_until(lambda: runs_done(srv, b), expected_s * 3 + 60, interval=0.5, what="the scale run to complete")
        elapsed = time.monotonic() - t_start
    finally:
        stop.set()
        t.join()
        ts.join()
    rec = runs_done(srv, b)[-1]
    assert int(rec["expired"]) == SCALE
    assert s3.list_objects_v2(Bucket=b, Prefix="old/", MaxKeys=5)["KeyCount"] == 0
    assert keys(s3, b) == ["hot", "template"]
    # paced: never faster than the configured rate (pacing), and not much slower
    assert elapsed >= expected_s * 0.9, (elapsed, expected_s)
    assert not failures, failures[:3]
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0
    print(f"lifecycle scale: {SCALE} objects in {elapsed:.1f}s (rate {SCALE_RATE}/s), "
          f"{len(latencies)} GETs meanwhile, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert p99 < 1.0, "GETs starved while lifecycle ran"
    # steady: between samples a second apart the run never goes faster than
    # its pace (with a page of slack) and never stalls
    rates = [(p1 - p0) / (t1 - t0) for (t0, p0), (t1, p1) in zip(positions, positions[1:])]
    print(f"lifecycle scale: progress per second {[round(r) for r in rates]}")
    assert all(r <= SCALE_RATE * 1.25 + 256 for r in rates), rates
    assert all(r > 0 for r in rates), f"a run stalled: {rates}"
    assert srv.stop() == 0
    srv.fsck()
