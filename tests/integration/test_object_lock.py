"""S3 Object Lock (WORM), as S3 has it: Put/GetObjectLockConfiguration,
the x-amz-object-lock-* headers of PutObject, CopyObject and multipart
uploads, the bucket's default retention, Put/GetObjectRetention and
Put/GetObjectLegalHold by version, and the enforcement: a locked version is
never removed (GOVERNANCE only with x-amz-bypass-governance-retention by
its owner or root, COMPLIANCE and legal holds never), a retention in force
is never shortened.  Every refusal gets S3's code and status.
"""

import datetime
import hashlib
import base64
import time

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import unique_bucket, wait_until, xml_text

UTC = datetime.timezone.utc


def err(call, *args, **kw):
    """(HTTP status, S3 error code) of a call that must fail."""
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    r = e.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def future(seconds=3600):
    return datetime.datetime.now(UTC) + datetime.timedelta(seconds=seconds)


def raw_err(r):
    return r.status, r.error_code


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def lbucket(s3):
    """A bucket made with object lock (versioning on for good)."""
    name = unique_bucket("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def put(s3, bucket, key="k", body=b"x", **kw):
    return s3.put_object(Bucket=bucket, Key=key, Body=body, **kw)["VersionId"]


# ---- the bucket's configuration --------------------------------------------------------------


def test_configuration_round_trip(s3, lbucket):
    got = s3.get_object_lock_configuration(Bucket=lbucket)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled"}, "made with object lock: enabled, no rule"
    for rule in ({"Mode": "GOVERNANCE", "Days": 2}, {"Mode": "COMPLIANCE", "Years": 1}):
        s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}})
        got = s3.get_object_lock_configuration(Bucket=lbucket)["ObjectLockConfiguration"]
        assert got == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}}
    # Without a rule: the default retention is gone.
    s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    got = s3.get_object_lock_configuration(Bucket=lbucket)["ObjectLockConfiguration"]
    assert got == {"ObjectLockEnabled": "Enabled"}


def test_configuration_on_a_bucket_without_object_lock(s3, bucket):
    """S3 since 2023: an existing bucket gets object lock, for good, once its
    versioning is enabled; before that the configuration is 409."""
    assert err(s3.get_object_lock_configuration, Bucket=bucket) == (404, "ObjectLockConfigurationNotFoundError")
    assert err(s3.put_object_lock_configuration, Bucket=bucket,
               ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}) == (409, "InvalidBucketState")
    old = s3.put_object(Bucket=bucket, Key="before", Body=b"b")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert err(s3.put_object_lock_configuration, Bucket=bucket,
               ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}) == (409, "InvalidBucketState")
    assert err(s3.get_object_lock_configuration, Bucket=bucket) == (404, "ObjectLockConfigurationNotFoundError")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    # For good: versioning cannot be suspended any more.
    assert err(s3.put_bucket_versioning, Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}) == \
        (409, "InvalidBucketState")
    # New versions get the default retention; what was there before has none.
    v = s3.put_object(Bucket=bucket, Key="after", Body=b"a")["VersionId"]
    assert s3.head_object(Bucket=bucket, Key="after", VersionId=v)["ObjectLockMode"] == "GOVERNANCE"
    assert err(s3.delete_object, Bucket=bucket, Key="after", VersionId=v) == (403, "AccessDenied")
    assert "ObjectLockMode" not in s3.head_object(Bucket=bucket, Key="before")
    s3.delete_object(Bucket=bucket, Key="after", VersionId=v, BypassGovernanceRetention=True)
    assert old["ETag"]


NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


@pytest.mark.parametrize("doc,code", [
    ("<ObjectLockConfiguration %s/>" % NS, "MalformedXML"),
    ("<ObjectLockConfiguration %s><ObjectLockEnabled>Disabled</ObjectLockEnabled></ObjectLockConfiguration>" % NS,
     "MalformedXML"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
     "<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years></DefaultRetention></Rule></ObjectLockConfiguration>",
     "MalformedXML"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
     "<Mode>GOVERNANCE</Mode></DefaultRetention></Rule></ObjectLockConfiguration>", "MalformedXML"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
     "<Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>", "MalformedXML"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
     "<Mode>SOFT</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>", "MalformedXML"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
     "<Mode>GOVERNANCE</Mode><Days>0</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
     "InvalidArgument"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
     "<Mode>GOVERNANCE</Mode><Years>-1</Years></DefaultRetention></Rule></ObjectLockConfiguration>",
     "InvalidArgument"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
     "<Mode>GOVERNANCE</Mode><Days>36501</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
     "InvalidArgument"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule/></ObjectLockConfiguration>",
     "MalformedXML"),
    ("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Other/></ObjectLockConfiguration>",
     "MalformedXML"),
    ("<NotIt/>", "MalformedXML"),
    ("<ObjectLockConfiguration>", "MalformedXML"),
])
def test_configuration_validation(server, s3, lbucket, doc, code):
    body = doc.encode()
    r = server.request("PUT", sigv4.object_path(lbucket, None), query=[("object-lock", None)], body=body,
                       headers={"Content-MD5": md5_b64(body)})
    assert raw_err(r) == (400, code), r
    assert s3.get_object_lock_configuration(Bucket=lbucket)["ObjectLockConfiguration"] == \
        {"ObjectLockEnabled": "Enabled"}, "nothing stored"


def test_configuration_needs_a_body_digest(server, lbucket):
    body = b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"
    r = server.request("PUT", sigv4.object_path(lbucket, None), query=[("object-lock", None)], body=body)
    assert raw_err(r) == (400, "InvalidRequest"), r


# ---- the lock of a version ---------------------------------------------------------------------


def test_retention_and_legal_hold_round_trip_by_version(s3, lbucket):
    v1 = put(s3, lbucket)
    v2 = put(s3, lbucket)
    assert err(s3.get_object_retention, Bucket=lbucket, Key="k") == (404, "NoSuchObjectLockConfiguration")
    assert err(s3.get_object_legal_hold, Bucket=lbucket, Key="k") == (404, "NoSuchObjectLockConfiguration")
    until = future().replace(microsecond=0)
    r = s3.put_object_retention(Bucket=lbucket, Key="k", VersionId=v1,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = s3.get_object_retention(Bucket=lbucket, Key="k", VersionId=v1)["Retention"]
    assert got == {"Mode": "GOVERNANCE", "RetainUntilDate": until}
    assert err(s3.get_object_retention, Bucket=lbucket, Key="k", VersionId=v2) == \
        (404, "NoSuchObjectLockConfiguration"), "the other version is untouched"
    s3.put_object_legal_hold(Bucket=lbucket, Key="k", LegalHold={"Status": "ON"})   # the current one: v2
    assert s3.get_object_legal_hold(Bucket=lbucket, Key="k", VersionId=v2)["LegalHold"] == {"Status": "ON"}
    assert err(s3.get_object_legal_hold, Bucket=lbucket, Key="k", VersionId=v1) == \
        (404, "NoSuchObjectLockConfiguration")
    # GET and HEAD say it as headers; the lock keeps the version's own headers.
    head = s3.head_object(Bucket=lbucket, Key="k", VersionId=v1)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    assert "ObjectLockLegalHoldStatus" not in head
    get = s3.get_object(Bucket=lbucket, Key="k")
    assert get["ObjectLockLegalHoldStatus"] == "ON"
    assert get["Body"].read() == b"x"
    s3.put_object_legal_hold(Bucket=lbucket, Key="k", VersionId=v2, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=lbucket, Key="k", VersionId=v2)["LegalHold"] == {"Status": "OFF"}
    # Versions that are not there, and delete markers.
    missing = "0123456789abcdef0123456789abcdef"
    assert err(s3.get_object_retention, Bucket=lbucket, Key="k", VersionId="null") == (404, "NoSuchVersion"), \
        "a lock bucket was never unversioned: it has no null version"
    assert err(s3.get_object_retention, Bucket=lbucket, Key="k", VersionId=missing) == (404, "NoSuchVersion")
    assert err(s3.put_object_legal_hold, Bucket=lbucket, Key="nope", LegalHold={"Status": "ON"}) == \
        (404, "NoSuchKey")
    marker = s3.delete_object(Bucket=lbucket, Key="k")["VersionId"]
    assert err(s3.get_object_retention, Bucket=lbucket, Key="k") == (404, "NoSuchKey")
    assert err(s3.get_object_legal_hold, Bucket=lbucket, Key="k", VersionId=marker) == (405, "MethodNotAllowed")


def test_a_bucket_without_object_lock_refuses_every_lock_call(s3, bucket):
    """Even naming its null version, which it has."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    until = future()
    assert err(s3.put_object_retention, Bucket=bucket, Key="k", VersionId="null",
               Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until}) == (400, "InvalidRequest")
    assert err(s3.get_object_retention, Bucket=bucket, Key="k") == (400, "InvalidRequest")
    assert err(s3.put_object_legal_hold, Bucket=bucket, Key="k", LegalHold={"Status": "ON"}) == \
        (400, "InvalidRequest")
    assert err(s3.get_object_legal_hold, Bucket=bucket, Key="k") == (400, "InvalidRequest")
    assert err(s3.put_object, Bucket=bucket, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON") == \
        (400, "InvalidRequest")
    assert err(s3.put_object, Bucket=bucket, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
               ObjectLockRetainUntilDate=until) == (400, "InvalidRequest")
    assert err(s3.create_multipart_upload, Bucket=bucket, Key="k", ObjectLockLegalHoldStatus="ON") == \
        (400, "InvalidRequest")
    assert err(s3.copy_object, Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"},
               ObjectLockLegalHoldStatus="ON") == (400, "InvalidRequest")
    assert s3.list_object_versions(Bucket=bucket)["Versions"][0]["Key"] == "k", "one version, nothing else"
    assert len(s3.list_object_versions(Bucket=bucket)["Versions"]) == 1


@pytest.mark.parametrize("headers,message", [
    ({"x-amz-object-lock-mode": "GOVERNANCE"}, "must both be supplied"),
    ({"x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}, "must both be supplied"),
    ({"x-amz-object-lock-mode": "SOFT", "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"},
     "Unknown wormMode"),
    ({"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "tomorrow"}, "ISO 8601"),
    ({"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "2001-01-01T00:00:00Z"},
     "in the future"),
    ({"x-amz-object-lock-legal-hold": "on"}, "Legal Hold"),
])
def test_write_headers_are_validated(server, s3, lbucket, headers, message):
    r = server.request("PUT", sigv4.object_path(lbucket, "k"), headers=headers, body=b"x")
    assert raw_err(r) == (400, "InvalidArgument"), r
    assert message in xml_text(r.xml(), "Message"), r.body
    r = server.request("POST", sigv4.object_path(lbucket, "k"), query=[("uploads", None)], headers=headers)
    assert raw_err(r) == (400, "InvalidArgument"), r
    assert "Versions" not in s3.list_object_versions(Bucket=lbucket), "nothing written"


@pytest.mark.parametrize("doc", [
    "<Retention><Mode>SOFT</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate></Retention>",
    "<Retention><Mode>GOVERNANCE</Mode></Retention>",
    "<Retention><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate></Retention>",
    "<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>soon</RetainUntilDate></Retention>",
    "<Retention><Mode>GOVERNANCE</Mode><Mode>GOVERNANCE</Mode></Retention>",
    "<LegalHold><Status>MAYBE</Status></LegalHold>",
    "<LegalHold/>",
    "<Other/>",
])
def test_retention_and_legal_hold_documents_are_validated(server, s3, lbucket, doc):
    put(s3, lbucket)
    sub = "retention" if doc.startswith("<Retention") or doc == "<Other/>" else "legal-hold"
    body = doc.encode()
    r = server.request("PUT", sigv4.object_path(lbucket, "k"), query=[(sub, None)], body=body,
                       headers={"Content-MD5": md5_b64(body)})
    assert raw_err(r) == (400, "MalformedXML"), r
    r = server.request("PUT", sigv4.object_path(lbucket, "k"), query=[(sub, None)], body=body)
    assert raw_err(r) == (400, "InvalidRequest"), "a digest is required"


def test_a_retain_until_date_in_the_past_is_refused(s3, lbucket):
    put(s3, lbucket)
    past = datetime.datetime(2001, 1, 1, tzinfo=UTC)
    assert err(s3.put_object_retention, Bucket=lbucket, Key="k",
               Retention={"Mode": "GOVERNANCE", "RetainUntilDate": past}) == (400, "InvalidArgument")
    assert err(s3.put_object, Bucket=lbucket, Key="k", Body=b"y", ObjectLockMode="GOVERNANCE",
               ObjectLockRetainUntilDate=past) == (400, "InvalidArgument")


def test_put_headers_and_default_retention(s3, lbucket):
    until = future().replace(microsecond=0)
    v = put(s3, lbucket, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
            ObjectLockLegalHoldStatus="ON")
    head = s3.head_object(Bucket=lbucket, Key="k", VersionId=v)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) == \
        ("COMPLIANCE", until, "ON")
    plain = put(s3, lbucket, key="plain")
    assert "ObjectLockMode" not in s3.head_object(Bucket=lbucket, Key="plain", VersionId=plain)
    s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 3}}})
    before = datetime.datetime.now(UTC)
    d = put(s3, lbucket, key="d")
    after = datetime.datetime.now(UTC)
    got = s3.get_object_retention(Bucket=lbucket, Key="d", VersionId=d)["Retention"]
    assert got["Mode"] == "GOVERNANCE"
    three = datetime.timedelta(days=3)
    assert before + three - datetime.timedelta(seconds=1) <= got["RetainUntilDate"] <= after + three
    # Headers win over the default.
    h = put(s3, lbucket, key="h", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    assert s3.get_object_retention(Bucket=lbucket, Key="h", VersionId=h)["Retention"]["Mode"] == "COMPLIANCE"
    # Years are calendar years.
    s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}})
    y = put(s3, lbucket, key="y")
    got = s3.get_object_retention(Bucket=lbucket, Key="y", VersionId=y)["Retention"]
    assert got["Mode"] == "COMPLIANCE"
    assert datetime.timedelta(days=364) < got["RetainUntilDate"] - before < datetime.timedelta(days=367)


def test_multipart_and_copy_carry_the_lock(s3, lbucket):
    until = future().replace(microsecond=0)
    up = s3.create_multipart_upload(Bucket=lbucket, Key="mp", ObjectLockMode="GOVERNANCE",
                                    ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")
    etag = s3.upload_part(Bucket=lbucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"p")["ETag"]
    v = s3.complete_multipart_upload(Bucket=lbucket, Key="mp", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})["VersionId"]
    head = s3.head_object(Bucket=lbucket, Key="mp", VersionId=v)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) == \
        ("GOVERNANCE", until, "ON")
    # A copy's lock is its own: the source's does not come along ...
    c = s3.copy_object(Bucket=lbucket, Key="c1", CopySource={"Bucket": lbucket, "Key": "mp", "VersionId": v})
    head = s3.head_object(Bucket=lbucket, Key="c1", VersionId=c["VersionId"])
    assert "ObjectLockMode" not in head and "ObjectLockLegalHoldStatus" not in head
    # ... the copy's headers say it, with either directive.
    for directive in ("COPY", "REPLACE"):
        c = s3.copy_object(Bucket=lbucket, Key="c2", CopySource={"Bucket": lbucket, "Key": "mp", "VersionId": v},
                           MetadataDirective=directive, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
        head = s3.head_object(Bucket=lbucket, Key="c2", VersionId=c["VersionId"])
        assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("COMPLIANCE", until)
        assert "ObjectLockLegalHoldStatus" not in head
    # The default retention applies to completes and copies too.
    s3.put_object_lock_configuration(Bucket=lbucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    up = s3.create_multipart_upload(Bucket=lbucket, Key="mp2")
    etag = s3.upload_part(Bucket=lbucket, Key="mp2", UploadId=up["UploadId"], PartNumber=1, Body=b"p")["ETag"]
    v2 = s3.complete_multipart_upload(Bucket=lbucket, Key="mp2", UploadId=up["UploadId"],
                                      MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})["VersionId"]
    assert s3.head_object(Bucket=lbucket, Key="mp2", VersionId=v2)["ObjectLockMode"] == "GOVERNANCE"
    c = s3.copy_object(Bucket=lbucket, Key="c3", CopySource={"Bucket": lbucket, "Key": "mp", "VersionId": v})
    assert s3.head_object(Bucket=lbucket, Key="c3", VersionId=c["VersionId"])["ObjectLockMode"] == "GOVERNANCE"


# ---- enforcement ----------------------------------------------------------------------------


def test_governance_blocks_delete_until_bypassed_by_the_owner(server, s3, lbucket, user):
    v = put(s3, lbucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=future())
    assert err(s3.delete_object, Bucket=lbucket, Key="k", VersionId=v) == (403, "AccessDenied")
    assert s3.get_object(Bucket=lbucket, Key="k", VersionId=v)["Body"].read() == b"x"
    # Another user cannot bypass (nothing grants it the bucket at all).
    other = server.client(user.access_key, user.secret)
    assert err(other.delete_object, Bucket=lbucket, Key="k", VersionId=v, BypassGovernanceRetention=True) == \
        (403, "AccessDenied")
    # A plain delete only adds a marker: allowed.
    marker = s3.delete_object(Bucket=lbucket, Key="k")
    assert marker["DeleteMarker"] is True
    # The header without "true" bypasses nothing.
    r = server.request("DELETE", sigv4.object_path(lbucket, "k"), query=[("versionId", v)],
                       headers={"x-amz-bypass-governance-retention": "false"})
    assert raw_err(r) == (403, "AccessDenied"), r
    s3.delete_object(Bucket=lbucket, Key="k", VersionId=v, BypassGovernanceRetention=True)
    assert err(s3.head_object, Bucket=lbucket, Key="k", VersionId=v)[0] == 404


def test_governance_bypass_by_a_bucket_owner_who_is_not_root(server, user):
    mine = server.client(user.access_key, user.secret)
    name = unique_bucket("lockown")
    mine.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    v = put(mine, name, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=future())
    assert err(mine.delete_object, Bucket=name, Key="k", VersionId=v) == (403, "AccessDenied")
    mine.delete_object(Bucket=name, Key="k", VersionId=v, BypassGovernanceRetention=True)
    assert "Versions" not in mine.list_object_versions(Bucket=name)


def test_governance_bypass_is_the_policys_permission(server, user):
    """s3:BypassGovernanceRetention: another user granted it (and the
    delete) by the bucket policy may bypass; one granted only the delete
    may not; an explicit deny takes it from the owner too."""
    import json
    owner = server.create_user()
    mine, other = server.client(*owner.creds), server.client(user.access_key, user.secret)
    name = unique_bucket("lockpol")
    mine.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    other_id = other.list_buckets()["Owner"]["ID"]
    objects = f"arn:aws:s3:::{name}/*"

    def policy(*statements):
        mine.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))

    v = put(mine, name, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=future())
    policy({"Effect": "Allow", "Principal": {"AWS": other_id}, "Action": "s3:DeleteObjectVersion", "Resource": objects})
    assert err(other.delete_object, Bucket=name, Key="k", VersionId=v, BypassGovernanceRetention=True) == \
        (403, "AccessDenied"), "the delete alone does not bypass"
    policy({"Effect": "Allow", "Principal": {"AWS": other_id},
            "Action": ["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"], "Resource": objects})
    assert err(other.delete_object, Bucket=name, Key="k", VersionId=v) == (403, "AccessDenied"), "not without the header"
    other.delete_object(Bucket=name, Key="k", VersionId=v, BypassGovernanceRetention=True)
    v = put(mine, name, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=future())
    policy({"Effect": "Deny", "Principal": "*", "Action": "s3:BypassGovernanceRetention", "Resource": objects})
    assert err(mine.delete_object, Bucket=name, Key="k", VersionId=v, BypassGovernanceRetention=True) == \
        (403, "AccessDenied"), "denied to the owner too"
    mine.delete_bucket_policy(Bucket=name)
    mine.delete_object(Bucket=name, Key="k", VersionId=v, BypassGovernanceRetention=True)


def test_compliance_is_never_bypassed_not_even_by_root(server, s3, lbucket):
    until = future()
    v = put(s3, lbucket, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    assert err(s3.delete_object, Bucket=lbucket, Key="k", VersionId=v, BypassGovernanceRetention=True) == \
        (403, "AccessDenied")
    r = server.request("DELETE", sigv4.object_path(lbucket, "k"), query=[("versionId", v)],
                       headers={"x-amz-bypass-governance-retention": "true"})
    assert raw_err(r) == (403, "AccessDenied"), r
    assert "object lock" in xml_text(r.xml(), "Message")
    # Nor is it shortened or weakened, with or without the bypass.
    for mode, when in (("COMPLIANCE", until - datetime.timedelta(minutes=5)), ("GOVERNANCE", until),
                       ("GOVERNANCE", until + datetime.timedelta(days=1))):
        assert err(s3.put_object_retention, Bucket=lbucket, Key="k", VersionId=v, BypassGovernanceRetention=True,
                   Retention={"Mode": mode, "RetainUntilDate": when}) == (403, "AccessDenied"), (mode, when)
    r = server.request("PUT", sigv4.object_path(lbucket, "k"), query=[("retention", None), ("versionId", v)],
                       body=b"<Retention/>", headers={"Content-MD5": md5_b64(b"<Retention/>"),
                                                      "x-amz-bypass-governance-retention": "true"})
    assert raw_err(r) == (403, "AccessDenied"), "not removed either"
    # Extending is allowed.
    later = (until + datetime.timedelta(days=1)).replace(microsecond=0)
    s3.put_object_retention(Bucket=lbucket, Key="k", VersionId=v,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    assert s3.get_object_retention(Bucket=lbucket, Key="k", VersionId=v)["Retention"]["RetainUntilDate"] == later
    assert s3.get_object(Bucket=lbucket, Key="k", VersionId=v)["Body"].read() == b"x"


def test_governance_shortening_needs_the_bypass_and_extending_does_not(s3, lbucket):
    until = future().replace(microsecond=0)
    v = put(s3, lbucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    shorter = until - datetime.timedelta(minutes=10)
    assert err(s3.put_object_retention, Bucket=lbucket, Key="k", VersionId=v,
               Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter}) == (403, "AccessDenied")
    later = until + datetime.timedelta(hours=1)
    s3.put_object_retention(Bucket=lbucket, Key="k", VersionId=v,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
    s3.put_object_retention(Bucket=lbucket, Key="k", VersionId=v, BypassGovernanceRetention=True,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": shorter})
    assert s3.get_object_retention(Bucket=lbucket, Key="k", VersionId=v)["Retention"]["RetainUntilDate"] == shorter
    # GOVERNANCE may become COMPLIANCE (stronger) without the bypass; never back.
    s3.put_object_retention(Bucket=lbucket, Key="k", VersionId=v,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": shorter})
    assert err(s3.put_object_retention, Bucket=lbucket, Key="k", VersionId=v, BypassGovernanceRetention=True,
               Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later}) == (403, "AccessDenied")


def test_removing_a_governance_retention_needs_the_bypass(server, s3, lbucket):
    v = put(s3, lbucket, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=future())
    body = b"<Retention/>"
    path = sigv4.object_path(lbucket, "k")
    q = [("retention", None), ("versionId", v)]
    r = server.request("PUT", path, query=q, body=body, headers={"Content-MD5": md5_b64(body)})
    assert raw_err(r) == (403, "AccessDenied"), r
    r = server.request("PUT", path, query=q, body=body, headers={"Content-MD5": md5_b64(body),
                                                                 "x-amz-bypass-governance-retention": "true"})
    assert r.status == 200, r
    assert err(s3.get_object_retention, Bucket=lbucket, Key="k", VersionId=v) == (404, "NoSuchObjectLockConfiguration")
    s3.delete_object(Bucket=lbucket, Key="k", VersionId=v)


def test_legal_hold_blocks_delete_until_removed(s3, lbucket):
    v = put(s3, lbucket, ObjectLockLegalHoldStatus="ON")
    assert err(s3.delete_object, Bucket=lbucket, Key="k", VersionId=v, BypassGovernanceRetention=True) == \
        (403, "AccessDenied")
    s3.put_object_legal_hold(Bucket=lbucket, Key="k", VersionId=v, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=lbucket, Key="k", VersionId=v)
    # Put on later, by the call, it blocks the same way.
    w = put(s3, lbucket)
    s3.put_object_legal_hold(Bucket=lbucket, Key="k", VersionId=w, LegalHold={"Status": "ON"})
    assert err(s3.delete_object, Bucket=lbucket, Key="k", VersionId=w) == (403, "AccessDenied")
    s3.put_object_legal_hold(Bucket=lbucket, Key="k", VersionId=w, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=lbucket, Key="k", VersionId=w)
    assert "Versions" not in s3.list_object_versions(Bucket=lbucket)


def test_an_expired_retention_lets_the_delete_through(s3, lbucket):
    # boto3 sends the header's date in whole seconds.
    until = (datetime.datetime.now(UTC) + datetime.timedelta(seconds=3)).replace(microsecond=0)
    v = put(s3, lbucket, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    head = s3.head_object(Bucket=lbucket, Key="k", VersionId=v)
    assert err(s3.delete_object, Bucket=lbucket, Key="k", VersionId=v) == (403, "AccessDenied")
    # Refused while in force; once its date passes, the same delete goes.
    assert head["ObjectLockRetainUntilDate"] > datetime.datetime.now(UTC) - datetime.timedelta(seconds=1)

    def deleted():
        try:
            s3.delete_object(Bucket=lbucket, Key="k", VersionId=v)
            return True
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied"
            assert datetime.datetime.now(UTC) < until + datetime.timedelta(seconds=2), "still locked after its date"
            return False

    wait_until(deleted, 30, interval=0.2, what="the retention to expire")
    assert datetime.datetime.now(UTC) >= until - datetime.timedelta(milliseconds=50)
    assert err(s3.head_object, Bucket=lbucket, Key="k", VersionId=v)[0] == 404


def test_delete_objects_reports_locked_versions_and_deletes_the_rest(s3, lbucket):
    locked = put(s3, lbucket, key="a", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=future())
    held = put(s3, lbucket, key="b", ObjectLockLegalHoldStatus="ON")
    free = put(s3, lbucket, key="c")
    gov = put(s3, lbucket, key="d", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=future())
    objs = [{"Key": "a", "VersionId": locked}, {"Key": "b", "VersionId": held}, {"Key": "c", "VersionId": free},
            {"Key": "d", "VersionId": gov}, {"Key": "e"}]
    r = s3.delete_objects(Bucket=lbucket, Delete={"Objects": objs})
    errors = {(e["Key"], e.get("VersionId"), e["Code"]) for e in r["Errors"]}
    assert errors == {("a", locked, "AccessDenied"), ("b", held, "AccessDenied"), ("d", gov, "AccessDenied")}
    assert {(d["Key"], d.get("VersionId")) for d in r["Deleted"]} == {("c", free), ("e", None)}
    left = {(v["Key"], v["VersionId"]) for v in s3.list_object_versions(Bucket=lbucket)["Versions"]}
    assert left == {("a", locked), ("b", held), ("d", gov)}
    # With the bypass, GOVERNANCE goes; COMPLIANCE and the hold stay.
    r = s3.delete_objects(Bucket=lbucket, BypassGovernanceRetention=True, Delete={"Objects": objs[:4]})
    assert {(e["Key"], e["Code"]) for e in r["Errors"]} == {("a", "AccessDenied"), ("b", "AccessDenied")}
    left = {(v["Key"], v["VersionId"]) for v in s3.list_object_versions(Bucket=lbucket)["Versions"]}
    assert left == {("a", locked), ("b", held)}


@pytest.mark.deadline(120)
def test_locked_versions_survive_every_delete_and_fsck_is_clean(make_server):
    srv = make_server()
    s3 = srv.client()
    name = unique_bucket("lockfsck")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    big = b"z" * (300 * 1024)   # stored as shards, not inline
    until = future()
    keep = put(s3, name, key="keep", body=big, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    gone = put(s3, name, key="gone", body=big, ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    assert err(s3.delete_object, Bucket=name, Key="keep", VersionId=keep, BypassGovernanceRetention=True) == \
        (403, "AccessDenied")
    r = s3.delete_objects(Bucket=name, BypassGovernanceRetention=True,
                          Delete={"Objects": [{"Key": "keep", "VersionId": keep}, {"Key": "gone", "VersionId": gone}]})
    assert [e["Key"] for e in r["Errors"]] == ["keep"]
    # Each refusal is logged with its request's id.
    r = srv.request("DELETE", sigv4.object_path(name, "keep"), query=[("versionId", keep)])
    assert raw_err(r) == (403, "AccessDenied"), r
    rid = xml_text(r.xml(), "RequestId")
    wait_until(lambda: any(rid in line and "object lock refused" in line for line in srv.current_log().splitlines()),
               10, what="the refusal's log line")
    assert s3.get_object(Bucket=name, Key="keep", VersionId=keep)["Body"].read() == big
    srv.stop_and_fsck()
    srv.start()
    s3 = srv.client()
    assert s3.get_object(Bucket=name, Key="keep", VersionId=keep)["Body"].read() == big
    assert err(s3.delete_object, Bucket=name, Key="keep", VersionId=keep) == (403, "AccessDenied")
