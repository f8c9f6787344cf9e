"""POST Object (docs/post-object.md): browser uploads through an HTML form.
Forms made by boto3's generate_presigned_post and sent by requests; the
answers S3 gives (204 by default, 200, 201 with PostResponse, 303 to
success_action_redirect), ${filename}, the stored fields (Content-Type,
metadata, tags), every policy refusal (expired, failed conditions, extra
fields, content-length-range, malformed policy), bad signatures, wrong
buckets, anonymous forms, malformed bodies, versions, a large streamed
upload with the gateway's memory watched, an upload cut mid-file leaving
nothing, and a real form posted by headless Chromium."""
import base64
import hashlib
import json
import os
import shutil
import socket
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import proc_status_kib, sanitizer_of_build, unique_bucket, wait_tmp_clean
from test_cluster import make_cluster  # noqa: F401  (the fixture)

RSS_GROWTH_LIMIT_MIB = 64


def url_of(server, bucket):
    return f"{server.endpoint}/{bucket}"


def post(server, bucket, fields, file_body=b"hello", filename="hello.txt", file_type="text/plain", url=None):
    files = {"file": (filename, file_body, file_type)}
    return requests.post(url or url_of(server, bucket), data=fields, files=files, allow_redirects=False,
                         timeout=60)


def err(r):
    root = ET.fromstring(r.content)
    return root.findtext("Code"), root.findtext("Message")


def presigned(s3, bucket, key, fields=None, conditions=None, expires=300):
    return s3.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires)


def get(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)


def absent(s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def resign(server, fields, policy_doc):
    """A form's fields with a policy of our own, signed with root's key as
    boto3 signs (the signature is the HMAC of the base64 policy)."""
    import hmac

    def h(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()

    cred = fields["x-amz-credential"]
    _ak, date, region, service, _ = cred.split("/")
    k = h(h(h(h(("AWS4" + server.root[1]).encode(), date), region), service), "aws4_request")
    pol = base64.b64encode(json.dumps(policy_doc).encode()).decode()
    out = dict(fields)
    out["policy"] = pol
    out["x-amz-signature"] = hmac.new(k, pol.encode(), hashlib.sha256).hexdigest()
    return out


def base_policy(fields, bucket, extra=(), expiration=None):
    exp = expiration or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))
    conds = [{"bucket": bucket}, {"key": fields["key"]}, {"x-amz-algorithm": fields["x-amz-algorithm"]},
             {"x-amz-credential": fields["x-amz-credential"]}, {"x-amz-date": fields["x-amz-date"]}]
    return {"expiration": exp, "conditions": conds + list(extra)}


# ---- success -----------------------------------------------------------------------------------


def test_default_answer_is_204_and_the_object_is_there(server, s3, bucket):
    p = presigned(s3, bucket, "a/b.txt")
    r = post(server, bucket, p["fields"], b"hello world")
    assert r.status_code == 204, r.text
    etag = '"%s"' % hashlib.md5(b"hello world").hexdigest()
    assert r.headers["ETag"] == etag
    assert r.headers["Location"].endswith(f"/{bucket}/a/b.txt")
    o = get(s3, bucket, "a/b.txt")
    assert o["Body"].read() == b"hello world" and o["ETag"] == etag


@pytest.mark.parametrize("status", ["200", "201", "204", "299"])
def test_success_action_status(server, s3, bucket, status):
    key = f"st-{status}"
    p = presigned(s3, bucket, key, fields={"success_action_status": status},
                  conditions=[{"success_action_status": status}])
    r = post(server, bucket, p["fields"], b"x")
    want = int(status) if status in ("200", "201") else 204
    assert r.status_code == want, r.text
    if want == 201:
        root = ET.fromstring(r.content)
        assert root.tag == "PostResponse"
        assert root.findtext("Bucket") == bucket and root.findtext("Key") == key
        assert root.findtext("ETag") == '"%s"' % hashlib.md5(b"x").hexdigest()
        assert root.findtext("Location").endswith(f"/{bucket}/{key}")
    else:
        assert r.content == b""
    assert get(s3, bucket, key)["Body"].read() == b"x"


def test_success_action_redirect(server, s3, bucket):
    target = "https://example.com/done?x=1"
    p = presigned(s3, bucket, "red k", fields={"success_action_redirect": target},
                  conditions=[{"success_action_redirect": target}])
    r = post(server, bucket, p["fields"], b"redirected")
    assert r.status_code == 303, r.text
    loc = urllib.parse.urlsplit(r.headers["Location"])
    assert loc.netloc == "example.com" and loc.path == "/done"
    q = urllib.parse.parse_qs(loc.query)
    assert q["x"] == ["1"] and q["bucket"] == [bucket] and q["key"] == ["red k"]
    assert q["etag"] == ['"%s"' % hashlib.md5(b"redirected").hexdigest()]


def test_filename_substitution(server, s3, bucket):
    p = s3.generate_presigned_post(bucket, "uploads/${filename}", ExpiresIn=300)
    r = post(server, bucket, p["fields"], b"named", filename="photo 1.jpg")
    assert r.status_code == 204, r.text
    assert get(s3, bucket, "uploads/photo 1.jpg")["Body"].read() == b"named"


def test_fields_are_stored_with_the_object(server, s3, bucket):
    tagging = ("<Tagging><TagSet><Tag><Key>t1</Key><Value>v1</Value></Tag>"
               "<Tag><Key>t2</Key><Value>v 2</Value></Tag></TagSet></Tagging>")
    fields = {"Content-Type": "image/png", "Cache-Control": "max-age=60", "Content-Disposition": "inline",
              "Content-Encoding": "identity", "Expires": "Wed, 21 Oct 2035 07:28:00 GMT",
              "x-amz-meta-colour": "blue", "tagging": tagging, "acl": "private"}
    conds = [{k: v} for k, v in fields.items()]
    p = presigned(s3, bucket, "meta", fields=fields, conditions=conds)
    r = post(server, bucket, p["fields"], b"\x89PNG", file_type="application/octet-stream")
    assert r.status_code == 204, r.text
    o = get(s3, bucket, "meta")
    assert o["ContentType"] == "image/png"
    assert o["CacheControl"] == "max-age=60"
    assert o["ContentDisposition"] == "inline"
    assert o["ContentEncoding"] == "identity"
    assert o["Metadata"] == {"colour": "blue"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="meta")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("t1", "v1"), ("t2", "v 2")]


def test_starts_with_and_content_length_range_admit(server, s3, bucket):
    p = presigned(s3, bucket, "user/1/${filename}", fields={"Content-Type": "text/plain"},
                  conditions=[["starts-with", "$key", "user/1/"], ["starts-with", "$Content-Type", "text/"],
                              ["content-length-range", 1, 10]])
    r = post(server, bucket, p["fields"], b"0123456789", filename="f.txt")
    assert r.status_code == 204, r.text
    assert get(s3, bucket, "user/1/f.txt")["ContentLength"] == 10


def test_fields_after_the_file_are_ignored(server, s3, bucket):
    p = presigned(s3, bucket, "order")
    boundary = "----cairn" + uuid.uuid4().hex
    parts = []
    for k, v in p["fields"].items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
                 f'Content-Type: text/plain\r\n\r\n'.encode() + b"file body\r\n")
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="unlisted"\r\n\r\nignored\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    r = requests.post(url_of(server, bucket), data=body,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=30)
    assert r.status_code == 204, r.text
    assert get(s3, bucket, "order")["Body"].read() == b"file body"


def test_virtual_host_style(make_server):
    srv = make_server(env={"CAIRN_DOMAIN": "s3.local"})
    s3 = srv.client()
    bucket = unique_bucket("vh")
    s3.create_bucket(Bucket=bucket)
    p = presigned(s3, bucket, "vh-key")
    files = {"file": ("f", b"virtual", "text/plain")}
    r = requests.post(f"{srv.endpoint}/", data=p["fields"], files=files,
                      headers={"Host": f"{bucket}.s3.local:{srv.port}"}, timeout=30)
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="vh-key")["Body"].read() == b"virtual"


def test_versioned_bucket_answers_the_version_id(server, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    p = presigned(s3, bucket, "v")
    r1 = post(server, bucket, p["fields"], b"one")
    r2 = post(server, bucket, p["fields"], b"two")
    assert r1.status_code == r2.status_code == 204
    v1, v2 = r1.headers["x-amz-version-id"], r2.headers["x-amz-version-id"]
    assert v1 != v2
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=v2)["Body"].read() == b"two"


def test_a_users_form_on_its_own_bucket(server, user):
    us3 = server.client(user.access_key, user.secret)
    bucket = unique_bucket("own")
    us3.create_bucket(Bucket=bucket)
    p = presigned(us3, bucket, "mine")
    assert post(server, bucket, p["fields"], b"m").status_code == 204
    # ... but not on another's
    other = server.client()
    theirs = unique_bucket("theirs")
    other.create_bucket(Bucket=theirs)
    p = presigned(us3, theirs, "x")
    r = post(server, theirs, p["fields"], b"m")
    assert r.status_code == 403 and err(r)[0] == "AccessDenied"
    assert absent(other, theirs, "x")


# ---- refusals --------------------------------------------------------------------------------------


def test_expired_policy(server, s3, bucket):
    p = presigned(s3, bucket, "exp")
    past = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    fields = resign(server, p["fields"], base_policy(p["fields"], bucket, expiration=past))
    r = post(server, bucket, fields)
    assert r.status_code == 403
    assert err(r) == ("AccessDenied", "Invalid according to Policy: Policy expired.")
    assert absent(s3, bucket, "exp")


def test_bad_signature(server, s3, bucket):
    p = presigned(s3, bucket, "sig")
    fields = dict(p["fields"])
    fields["x-amz-signature"] = "0" * 64
    r = post(server, bucket, fields)
    assert r.status_code == 403 and err(r)[0] == "SignatureDoesNotMatch"
    # a policy changed after signing is a bad signature too
    fields = dict(p["fields"])
    doc = json.loads(base64.b64decode(fields["policy"]))
    doc["conditions"].append(["starts-with", "$key", ""])
    fields["policy"] = base64.b64encode(json.dumps(doc).encode()).decode()
    r = post(server, bucket, fields)
    assert r.status_code == 403 and err(r)[0] == "SignatureDoesNotMatch"
    assert absent(s3, bucket, "sig")


def test_unknown_access_key(server, s3, bucket):
    p = presigned(server.client("AKIDNOTKNOWN12345678", "x" * 40), bucket, "ak")
    r = post(server, bucket, p["fields"])
    assert r.status_code == 403 and err(r)[0] == "InvalidAccessKeyId"


def test_condition_failures(server, s3, bucket):
    p = presigned(s3, bucket, "cond/k")
    cases = [
        ([["eq", "$key", "other"]], 'Invalid according to Policy: Policy Condition failed: ["eq", "$key", "other"]'),
        ([["starts-with", "$key", "nope/"]],
         'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "nope/"]'),
        ([{"bucket": "another-bucket"}],
         'Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "another-bucket"]'),
        ([{"x-amz-meta-missing": "v"}],
         'Invalid according to Policy: Policy Condition failed: ["eq", "$x-amz-meta-missing", "v"]'),
    ]
    for extra, message in cases:
        fields = resign(server, p["fields"], base_policy(p["fields"], bucket, extra))
        r = post(server, bucket, fields)
        assert r.status_code == 403, (extra, r.text)
        assert err(r) == ("AccessDenied", message), extra
    assert absent(s3, bucket, "cond/k")


def test_extra_fields(server, s3, bucket):
    p = presigned(s3, bucket, "extra")
    fields = dict(p["fields"])
    fields["x-amz-meta-sneaky"] = "1"
    fields["x-ignore-this"] = "fine"
    r = post(server, bucket, fields)
    assert r.status_code == 403
    assert err(r) == ("AccessDenied", "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky")
    assert absent(s3, bucket, "extra")


def test_content_length_range(server, s3, bucket):
    p = presigned(s3, bucket, "range", conditions=[["content-length-range", 5, 10]])
    r = post(server, bucket, p["fields"], b"x" * 11)
    assert r.status_code == 400 and err(r)[0] == "EntityTooLarge"
    r = post(server, bucket, p["fields"], b"x" * 4)
    assert r.status_code == 400 and err(r)[0] == "EntityTooSmall"
    assert absent(s3, bucket, "range")
    # large enough to be on shards when refused: nothing stays behind
    p = presigned(s3, bucket, "range-big", conditions=[["content-length-range", 0, 3 << 20]])
    r = post(server, bucket, p["fields"], os.urandom(4 << 20))
    assert r.status_code == 400 and err(r)[0] == "EntityTooLarge"
    assert absent(s3, bucket, "range-big")
    wait_tmp_clean(server)


@pytest.mark.parametrize("policy, message", [
    (base64.b64encode(b"not json").decode(), "Invalid Policy: Invalid JSON."),
    ("!!!!", "Invalid Policy: Invalid Base64 Encoding."),
    (base64.b64encode(b'{"conditions": []}').decode(), "Invalid Policy: Policy missing expiration."),
    (base64.b64encode(b'{"expiration": "2099-01-01T00:00:00Z"}').decode(),
     "Invalid Policy: Policy missing conditions."),
    (base64.b64encode(b'{"expiration": "tomorrow", "conditions": []}').decode(),
     "Invalid Policy: Invalid 'expiration' value."),
])
def test_malformed_policy(server, s3, bucket, policy, message):
    import hmac
    p = presigned(s3, bucket, "badpol")
    fields = dict(p["fields"])
    fields["policy"] = policy
    _ak, date, region, service, _ = fields["x-amz-credential"].split("/")

    def h(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()
    k = h(h(h(h(("AWS4" + server.root[1]).encode(), date), region), service), "aws4_request")
    fields["x-amz-signature"] = hmac.new(k, policy.encode(), hashlib.sha256).hexdigest()
    r = post(server, bucket, fields)
    assert r.status_code == 400
    assert err(r) == ("InvalidPolicyDocument", message)


def test_missing_fields(server, s3, bucket):
    p = presigned(s3, bucket, "miss")
    for name in ("key", "x-amz-signature", "policy", "x-amz-credential"):
        fields = {k: v for k, v in p["fields"].items() if k != name}
        r = post(server, bucket, fields)
        assert r.status_code == 400, (name, r.text)
        assert err(r) == ("InvalidArgument", f"Bucket POST must contain a field named '{name}'.  If it is "
                                             f"specified, please check the order of the fields."), name


def test_no_file(server, s3, bucket):
    p = presigned(s3, bucket, "nofile")
    r = requests.post(url_of(server, bucket), files={k: (None, v) for k, v in p["fields"].items()}, timeout=30)
    assert r.status_code == 400
    assert err(r) == ("InvalidArgument", "POST requires exactly one file upload per request.")


def test_acl_field_where_the_bucket_owner_is_enforced(server, s3, bucket):
    """A bucket made with S3's default (BucketOwnerEnforced) takes only the
    owner's full control, as x-amz-acl on a PUT."""
    p = presigned(s3, bucket, "acl", fields={"acl": "public-read"}, conditions=[{"acl": "public-read"}])
    r = post(server, bucket, p["fields"])
    assert r.status_code == 400 and err(r)[0] == "AccessControlListNotSupported"
    assert absent(s3, bucket, "acl")
    p = presigned(s3, bucket, "own", fields={"acl": "bucket-owner-full-control"},
                  conditions=[{"acl": "bucket-owner-full-control"}])
    assert post(server, bucket, p["fields"]).status_code == 204


def test_acl_field_is_the_objects_acl(server, s3):
    """Where ACLs apply, the form's canned ACL is stamped on the object as
    x-amz-acl is on a PUT: public-read is readable anonymously, private is
    not, and a name S3 does not know is refused before a byte is stored."""
    bucket = unique_bucket("pacl")
    s3.create_bucket(Bucket=bucket, ObjectOwnership="ObjectWriter")
    for key, acl in (("pub", "public-read"), ("priv", "private")):
        p = presigned(s3, bucket, key, fields={"acl": acl}, conditions=[{"acl": acl}])
        assert post(server, bucket, p["fields"], key.encode()).status_code == 204
    assert requests.get(url_of(server, bucket) + "/pub", timeout=30).content == b"pub"
    assert requests.get(url_of(server, bucket) + "/priv", timeout=30).status_code == 403
    grants = s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants)
    p = presigned(s3, bucket, "bad", fields={"acl": "world-writable"}, conditions=[{"acl": "world-writable"}])
    r = post(server, bucket, p["fields"])
    assert r.status_code == 400 and err(r) == ("InvalidArgument", "Invalid canned ACL.")
    assert absent(s3, bucket, "bad")
    # the public access block refuses a public ACL
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    p = presigned(s3, bucket, "blocked", fields={"acl": "public-read"}, conditions=[{"acl": "public-read"}])
    r = post(server, bucket, p["fields"])
    assert r.status_code == 403 and err(r)[0] == "AccessDenied"
    assert absent(s3, bucket, "blocked")


def test_another_users_form_makes_an_object_they_own(server, user):
    """An ObjectWriter bucket whose policy lets another user post: the
    object is the writer's, and the bucket owner reads it only as its ACL
    allows (bucket-owner-read)."""
    o = server.create_user()
    owner = server.client(o.access_key, o.secret)
    bucket = unique_bucket("pown")
    owner.create_bucket(Bucket=bucket, ObjectOwnership="ObjectWriter")
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::123456789012:user/{user.name}"}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    us3 = server.client(user.access_key, user.secret)
    p = presigned(us3, bucket, "theirs")
    assert post(server, bucket, p["fields"], b"t").status_code == 204
    p = presigned(us3, bucket, "shared", fields={"acl": "bucket-owner-read"}, conditions=[{"acl": "bucket-owner-read"}])
    assert post(server, bucket, p["fields"], b"s").status_code == 204
    assert us3.get_object_acl(Bucket=bucket, Key="theirs")["Owner"]["ID"] == us3.list_buckets()["Owner"]["ID"]
    with pytest.raises(ClientError) as e:
        owner.get_object(Bucket=bucket, Key="theirs")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert owner.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"s"


def test_bad_tagging_is_refused(server, s3, bucket):
    p = presigned(s3, bucket, "tags", fields={"tagging": "<Tagging>"}, conditions=[{"tagging": "<Tagging>"}])
    r = post(server, bucket, p["fields"])
    assert r.status_code == 400 and err(r)[0] == "MalformedXML"
    assert absent(s3, bucket, "tags")


def test_wrong_bucket(server, s3, bucket):
    other = unique_bucket("other")
    s3.create_bucket(Bucket=other)
    p = presigned(s3, bucket, "wb")
    r = post(server, other, p["fields"])
    assert r.status_code == 403
    assert err(r) == ("AccessDenied",
                      f'Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "{bucket}"]')
    r = post(server, "no-such-bucket-" + uuid.uuid4().hex[:8], p["fields"])
    assert r.status_code == 404 and err(r)[0] == "NoSuchBucket"
    assert absent(s3, other, "wb")


def test_anonymous_form_is_refused_on_a_private_bucket(server, s3, bucket):
    r = post(server, bucket, {"key": "anon"})
    assert r.status_code == 403 and err(r)[0] == "AccessDenied"
    assert absent(s3, bucket, "anon")


def test_not_a_form(server, s3, bucket):
    r = requests.post(url_of(server, bucket), data=b"plain", headers={"Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 412 and err(r)[0] == "PreconditionFailed"
    root = ET.fromstring(r.content)
    assert root.findtext("Condition") == "Bucket POST must be of the enclosure-type multipart/form-data"


@pytest.mark.parametrize("body", [
    b"--B\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n",            # no closing boundary
    b"--B\r\nX-No-Disposition: 1\r\n\r\nk\r\n--B--\r\n",                           # no Content-Disposition
    b"--B\r\nContent-Disposition: attachment; name=\"key\"\r\n\r\nk\r\n--B--\r\n",  # not form-data
    b"--B\r\nContent-Disposition: form-data; name=\"key\"\r\n" + b"X: " + b"a" * 5000 + b"\r\n\r\nk\r\n--B--\r\n",
    b"--Bxx",                                                                       # a bad boundary line
])
def test_malformed_form(server, bucket, body):
    r = requests.post(url_of(server, bucket), data=body,
                      headers={"Content-Type": "multipart/form-data; boundary=B"}, timeout=30)
    assert r.status_code == 400 and err(r)[0] == "MalformedPOSTRequest", r.text


def test_too_many_field_bytes_before_the_file(server, s3, bucket):
    p = presigned(s3, bucket, "big-fields")
    fields = dict(p["fields"])
    fields["x-ignore-pad"] = "p" * 30000
    r = post(server, bucket, fields)
    assert r.status_code == 400 and err(r)[0] == "MaxPostPreDataLengthExceededError"


# ---- streaming -------------------------------------------------------------------------------------


class Pattern:
    """A file-like stream of size bytes, made as it is read."""

    def __init__(self, size):
        self.size = size
        self.pos = 0
        self.h = hashlib.md5()

    def read(self, n=-1):
        if self.pos >= self.size:
            return b""
        n = min(1 << 20 if n < 0 else n, self.size - self.pos, 1 << 20)
        block = bytes([(self.pos // (1 << 20)) % 251]) * n
        self.pos += n
        self.h.update(block)
        return block


def stream_form(server, bucket, fields, size, cut_after=None):
    """Sends a form whose file has size bytes over a raw socket; cut_after:
    close the connection after that many file bytes."""
    boundary = "cairnpost" + uuid.uuid4().hex
    head = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items())
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big"\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + size + len(tail)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    sock.sendall((f"POST /{bucket} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {length}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + head)
    src = Pattern(size)
    sent = 0
    while True:
        if cut_after is not None and sent >= cut_after:
            sock.close()
            return None, src
        b = src.read()
        if not b:
            break
        sock.sendall(b)
        sent += len(b)
    sock.sendall(tail)
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = sock.recv(65536)
        if not chunk:
            break
        resp += chunk
    sock.close()
    return resp, src


@pytest.mark.deadline(600)
def test_large_upload_streams_with_bounded_memory(make_server):
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket("bigpost")
    s3.create_bucket(Bucket=bucket)
    warm = presigned(s3, bucket, "warm")
    resp, _ = stream_form(srv, bucket, warm["fields"], 16 << 20)
    assert resp.startswith(b"HTTP/1.1 204"), resp
    baseline = proc_status_kib(srv.proc.pid, "VmRSS")
    size = 256 << 20
    p = presigned(s3, bucket, "big")
    resp, src = stream_form(srv, bucket, p["fields"], size)
    assert resp.startswith(b"HTTP/1.1 204"), resp
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == size
    assert head["ETag"] == '"%s"' % src.h.hexdigest()
    growth = (proc_status_kib(srv.proc.pid, "VmHWM") - baseline) / 1024
    print(f"POST {size >> 20} MiB: gateway RSS growth {growth:.1f} MiB")
    if sanitizer_of_build() is None:
        assert growth <= RSS_GROWTH_LIMIT_MIB, f"gateway RSS grew by {growth:.1f} MiB"


def test_upload_cut_mid_file_leaves_nothing(make_server):
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket("cut")
    s3.create_bucket(Bucket=bucket)
    p = presigned(s3, bucket, "cut")
    resp, _ = stream_form(srv, bucket, p["fields"], 64 << 20, cut_after=8 << 20)
    assert resp is None
    wait_tmp_clean(srv, deadline=30)
    assert absent(s3, bucket, "cut")
    srv.stop_and_fsck()


# ---- a real browser --------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><body><form id="f" method="post" enctype="multipart/form-data" action=%(action)s>%(inputs)s
<input type="file" name="file" id="file"></form><pre id="result">pending</pre><script>
async function run() {
  const out = {};
  try {
    const form = document.getElementById("f");
    const data = new FormData(form);
    data.set("file", new File([%(body)s], "from-browser.txt", {type: "text/plain"}));
    const r = await fetch(form.action, {method: "POST", body: data});
    out.status = r.status;
    out.text = await r.text();
  } catch (e) { out.error = e.name + ": " + e.message; }
  document.getElementById("result").textContent = JSON.stringify(out);
  try { await fetch("/report", {method: "POST", body: JSON.stringify(out)}); } catch (e) {}
}
run();
</script></body></html>
"""


@pytest.mark.deadline(300)
def test_browser_form_upload(tmp_path, server, s3, bucket):
    from test_cors import PageServer, put_cors, rule, run_chromium
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (scripts/install-deps.sh installs it)"
    body = "posted by a browser form"
    p = s3.generate_presigned_post(bucket, "browser/${filename}", Fields={"success_action_status": "201"},
                                   Conditions=[{"success_action_status": "201"}], ExpiresIn=300)
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in p["fields"].items())
    page = PageServer(PAGE % {"action": json.dumps(url_of(server, bucket)), "inputs": inputs,
                              "body": json.dumps(body)})
    try:
        put_cors(s3, bucket, rule([page.origin], ["POST"], headers=["*"], max_age=0))
        report = run_chromium(tmp_path, chromium, page)
    finally:
        page.close()
    assert report.get("status") == 201, report
    assert "<Key>browser/from-browser.txt</Key>" in report["text"], report
    assert s3.get_object(Bucket=bucket, Key="browser/from-browser.txt")["Body"].read() == body.encode()


# ---- more refusals -----------------------------------------------------------------------------------


def test_a_field_given_twice(server, s3, bucket):
    p = presigned(s3, bucket, "twice")
    files = [(k, (None, v)) for k, v in p["fields"].items()] + [("Key", (None, "again")),
                                                                 ("file", ("f", b"x", "text/plain"))]
    r = requests.post(url_of(server, bucket), files=files, timeout=30)
    assert r.status_code == 400
    assert err(r) == ("InvalidArgument", "The form has the field 'key' more than once.")
    assert absent(s3, bucket, "twice")


def test_too_many_fields(server, s3, bucket):
    p = presigned(s3, bucket, "many")
    fields = dict(p["fields"])
    fields.update({f"x-ignore-{i}": "" for i in range(70)})
    r = post(server, bucket, fields)
    assert r.status_code == 400 and err(r)[0] == "MaxPostPreDataLengthExceededError"


def test_sigv2_forms(server, s3, bucket, user):
    """Forms botocore signs with SigV2 (signature_version "s3"): AWSAccessKeyId,
    policy and an HMAC-SHA1 signature."""
    from test_sigv2 import v2_client
    p = v2_client(server).generate_presigned_post(bucket, "v2", Fields={"Content-Type": "text/plain"},
                                                  Conditions=[{"Content-Type": "text/plain"}])
    assert {"AWSAccessKeyId", "signature", "policy"} <= set(p["fields"]), p["fields"]
    r = post(server, bucket, p["fields"], b"v2 form")
    assert r.status_code == 204, r.text
    got = get(s3, bucket, "v2")
    assert got["Body"].read() == b"v2 form" and got["ContentType"] == "text/plain"
    # the policy's conditions hold for SigV2 forms too
    bad = dict(p["fields"], **{"Content-Type": "image/png"})
    r = post(server, bucket, bad, b"x")
    assert r.status_code == 403 and err(r)[0] == "AccessDenied"
    bad = dict(p["fields"], signature=base64.b64encode(b"x" * 20).decode())
    r = post(server, bucket, bad, b"forged")
    assert r.status_code == 403 and err(r)[0] == "SignatureDoesNotMatch"
    bad = dict(p["fields"], AWSAccessKeyId="AKIDNOTKNOWN00000000")
    r = post(server, bucket, bad, b"forged")
    assert r.status_code == 403 and err(r)[0] == "InvalidAccessKeyId"
    r = post(server, bucket, {k: v for k, v in p["fields"].items() if k != "signature"}, b"x")
    assert r.status_code == 400 and err(r)[0] == "InvalidArgument"
    v4 = presigned(s3, bucket, "v2")["fields"]
    r = post(server, bucket, dict(v4, AWSAccessKeyId=p["fields"]["AWSAccessKeyId"], signature=p["fields"]["signature"]))
    assert r.status_code == 400 and err(r)[0] == "InvalidArgument"
    assert get(s3, bucket, "v2")["Body"].read() == b"v2 form", "no refused form changed it"
    # a user's SigV2 form is judged by access control as theirs
    p = v2_client(server, user.creds).generate_presigned_post(bucket, "theirs")
    r = post(server, bucket, p["fields"], b"x")
    assert r.status_code == 403 and err(r)[0] == "AccessDenied"
    assert absent(s3, bucket, "theirs")


def test_sigv2_forms_when_sigv2_is_off(make_server):
    srv = make_server(env={"CAIRN_SIGV2": "false"})
    s3 = srv.client()
    bucket = unique_bucket("nov2")
    s3.create_bucket(Bucket=bucket)
    from test_sigv2 import v2_client
    p = v2_client(srv).generate_presigned_post(bucket, "v2")
    r = post(srv, bucket, p["fields"], b"x")
    assert r.status_code == 400 and err(r)[0] == "InvalidRequest"
    assert absent(s3, bucket, "v2")


def test_content_md5_field_is_verified(server, s3, bucket):
    body = b"checked by md5"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    p = presigned(s3, bucket, "md5", fields={"Content-MD5": good}, conditions=[{"Content-MD5": good}])
    assert post(server, bucket, p["fields"], body).status_code == 204
    assert get(s3, bucket, "md5")["Body"].read() == body
    r = post(server, bucket, p["fields"], body + b"!")
    assert r.status_code == 400 and err(r)[0] == "BadDigest"
    assert get(s3, bucket, "md5")["Body"].read() == body, "a refused form leaves the object as it was"
    p = presigned(s3, bucket, "md5bad", fields={"Content-MD5": "not base64"}, conditions=[{"Content-MD5": "not base64"}])
    r = post(server, bucket, p["fields"], body)
    assert r.status_code == 400 and err(r)[0] == "InvalidDigest"
    assert absent(s3, bucket, "md5bad")


def test_object_lock_fields(server, s3):
    bucket = unique_bucket("plock")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    f = {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": until,
         "x-amz-object-lock-legal-hold": "ON"}
    p = presigned(s3, bucket, "locked", fields=f, conditions=[{k: v} for k, v in f.items()])
    r = post(server, bucket, p["fields"], b"worm")
    assert r.status_code == 204, r.text
    vid = r.headers["x-amz-version-id"]
    ret = s3.get_object_retention(Bucket=bucket, Key="locked", VersionId=vid)["Retention"]
    assert ret["Mode"] == "GOVERNANCE"
    assert s3.get_object_legal_hold(Bucket=bucket, Key="locked", VersionId=vid)["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=bucket, Key="locked", VersionId=vid)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    # a bad mode, and a date in the past, are refused before the file is stored
    for bad in ({"x-amz-object-lock-mode": "FOREVER", "x-amz-object-lock-retain-until-date": until},
                {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "2001-01-01T00:00:00Z"},
                {"x-amz-object-lock-mode": "GOVERNANCE"}):
        p = presigned(s3, bucket, "bad", fields=bad, conditions=[{k: v} for k, v in bad.items()])
        r = post(server, bucket, p["fields"], b"x")
        assert r.status_code == 400 and err(r)[0] == "InvalidArgument", (bad, r.text)
    assert absent(s3, bucket, "bad")
    s3.put_object_legal_hold(Bucket=bucket, Key="locked", VersionId=vid, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=bucket, Key="locked", VersionId=vid, BypassGovernanceRetention=True)


def test_object_lock_fields_on_a_bucket_without_lock(server, s3, bucket):
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    f = {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": until}
    p = presigned(s3, bucket, "nolock", fields=f, conditions=[{k: v} for k, v in f.items()])
    r = post(server, bucket, p["fields"], b"x")
    assert r.status_code == 400 and err(r)[0] == "InvalidRequest"
    assert absent(s3, bucket, "nolock")


def test_wrong_region_and_algorithm(server, s3, bucket):
    p = presigned(s3, bucket, "reg")
    fields = dict(p["fields"])
    fields["x-amz-credential"] = fields["x-amz-credential"].replace("us-east-1", "eu-west-1")
    r = post(server, bucket, fields)
    assert r.status_code == 400 and err(r)[0] == "InvalidArgument"
    fields = dict(p["fields"])
    fields["x-amz-algorithm"] = "AWS4-HMAC-SHA1"
    r = post(server, bucket, fields)
    assert r.status_code == 400 and err(r)[0] == "InvalidArgument"
    assert absent(s3, bucket, "reg")


def test_post_sends_an_object_created_post_event(server, s3, bucket):
    import asyncio
    import websockets
    from test_events import recv_json, record, run, ws_url

    async def main():
        async with websockets.connect(ws_url(server, bucket=bucket)) as ws:
            p = presigned(s3, bucket, "evented")
            r = await asyncio.to_thread(post, server, bucket, p["fields"], b"event body")
            assert r.status_code == 204, r.text
            return record(await recv_json(ws))

    ev = run(main())
    assert ev["eventName"] == "ObjectCreated:Post"
    assert ev["s3"]["object"]["key"] == "evented" and ev["s3"]["object"]["size"] == 10


@pytest.mark.deadline(120)
def test_a_gateway_with_storage_nodes_stores_a_form_upload(make_cluster):
    """The form carries no file length: the gateway streams the file's
    shards to the nodes chunked (docs/shard-api.md); the bytes read back."""
    from test_cluster import new_bucket, payload
    cl = make_cluster()
    gw = cl.gateway
    bucket = new_bucket(gw)
    s3 = gw.client()
    data = payload(2 * 1024 * 1024 + 999, 9)
    p = presigned(s3, bucket, "on-nodes")
    r = post(gw, bucket, p["fields"], file_body=data)
    assert r.status_code == 204, r.text
    assert r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert get(s3, bucket, "on-nodes")["Body"].read() == data
    # and a small one, kept inline
    p = presigned(s3, bucket, "small")
    assert post(gw, bucket, p["fields"], file_body=b"tiny").status_code == 204
    assert get(s3, bucket, "small")["Body"].read() == b"tiny"
    assert all(n.tmp_files() == [] for n in cl.nodes)
    gw.stop_and_fsck()


def checksum_of(algo, data):
    import zlib
    if algo == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    else:
        raw = hashlib.new(algo, data).digest()
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("algo", ["crc32", "sha1", "sha256"])
def test_checksum_fields(server, s3, bucket, algo):
    data = b"checked " * 1000
    name = f"x-amz-checksum-{algo}"
    good = checksum_of(algo, data)
    p = presigned(s3, bucket, f"ck-{algo}", fields={name: good}, conditions=[{name: good}])
    r = post(server, bucket, p["fields"], data)
    assert r.status_code == 204, r.text
    assert r.headers[name] == good
    assert get(s3, bucket, f"ck-{algo}")["Body"].read() == data
    bad = checksum_of(algo, b"other")
    p = presigned(s3, bucket, f"ck-bad-{algo}", fields={name: bad}, conditions=[{name: bad}])
    r = post(server, bucket, p["fields"], data)
    assert r.status_code == 400 and err(r)[0] == "BadDigest"
    assert absent(s3, bucket, f"ck-bad-{algo}")


def test_checksum_field_refusals(server, s3, bucket):
    two = {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": "x"}
    p = presigned(s3, bucket, "ck2", fields=two, conditions=[{k: v} for k, v in two.items()])
    r = post(server, bucket, p["fields"])
    assert r.status_code == 400 and err(r) == ("InvalidRequest", "Expecting a single x-amz-checksum- field.")
    p = presigned(s3, bucket, "ck3", fields={"x-amz-checksum-md4": "x"}, conditions=[{"x-amz-checksum-md4": "x"}])
    r = post(server, bucket, p["fields"])
    assert r.status_code == 400 and err(r)[0] == "InvalidRequest"
    assert absent(s3, bucket, "ck2") and absent(s3, bucket, "ck3")


@pytest.mark.parametrize("field, value", [
    ("x-amz-credential", "nonsense"),
    ("x-amz-credential", "AKID/2026-01-01/us-east-1/s3/aws4_request"),
    ("x-amz-date", "yesterday"),
    ("x-amz-date", "19990101T000000Z"),      # not the credential's day
])
def test_malformed_credential_and_date(server, s3, bucket, field, value):
    p = presigned(s3, bucket, "cred")
    fields = dict(p["fields"])
    fields[field] = value
    r = post(server, bucket, fields)
    assert r.status_code == 400 and err(r)[0] == "InvalidArgument", r.text
    assert absent(s3, bucket, "cred")
