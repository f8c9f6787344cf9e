"""S3 CORS (docs/cors.md): PutBucketCors, GetBucketCors and DeleteBucketCors
with every validation error S3 answers, the preflight (OPTIONS on a bucket
or an object, unauthenticated), the Access-Control-* headers on actual
responses (errors included), the configuration's lifetime (replaced and
removed at once on this gateway; gone with its bucket), and a real
browser (Debian's headless Chromium) that may, or may not, read an object
from another origin."""
import base64
import hashlib
import http.server
import json
import shutil
import subprocess
import threading
import urllib.parse

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import unique_bucket, wait_until, xml_findall, xml_text

ORIGIN = "https://app.example.com"
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Access-Control-Allow-Credentials")
NOT_ALLOWED = ("CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
               "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not "
               "whitelisted by the resource's CORS spec.")


def path_of(bucket, key=None):
    return sigv4.object_path(bucket, key)


def err(r):
    return (r.status, r.error_code)


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def rule(origins, methods, headers=None, expose=None, max_age=None, rule_id=None):
    r = {"AllowedOrigins": list(origins), "AllowedMethods": list(methods)}
    if headers is not None:
        r["AllowedHeaders"] = list(headers)
    if expose is not None:
        r["ExposeHeaders"] = list(expose)
    if max_age is not None:
        r["MaxAgeSeconds"] = max_age
    if rule_id is not None:
        r["ID"] = rule_id
    return r


def put_cors(s3, bucket, *rules):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": list(rules)})


def put_raw(server, bucket, body, headers=None, creds=None):
    if isinstance(body, str):
        body = body.encode()
    h = {"Content-MD5": md5_b64(body)}
    h.update(headers or {})
    return server.request("PUT", path_of(bucket), query=[("cors", None)], body=body, headers=h, creds=creds)


def preflight(server, bucket, key=None, origin=ORIGIN, method="GET", req_headers=None, extra=None):
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if req_headers is not None:
        h["Access-Control-Request-Headers"] = req_headers
    h.update(extra or {})
    return server.request("OPTIONS", path_of(bucket, key), headers=h, anonymous=True)


def cors_headers(r):
    return {h: r.header(h) for h in CORS_HEADERS if r.header(h) is not None}


def no_cors(r):
    return not cors_headers(r) and r.header("Vary") is None


def config_xml(*rules_xml):
    return ('<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' + "".join(rules_xml) +
            "</CORSConfiguration>")


def rule_xml(inner):
    return "<CORSRule>" + inner + "</CORSRule>"


OK_RULE = "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"


# ---- PutBucketCors, GetBucketCors, DeleteBucketCors -------------------------------------------


def test_put_get_delete_round_trip(server, s3, bucket):
    rules = [
        rule(["https://a.example.com", "http://*.example.org"], ["GET", "PUT"], headers=["x-amz-*", "Content-Type"],
             expose=["ETag", "x-amz-request-id"], max_age=3000, rule_id="first"),
        rule(["*"], ["HEAD"]),
    ]
    put_cors(s3, bucket, *rules)
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got == rules
    # replaced whole by the next PUT
    put_cors(s3, bucket, rules[1])
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [rules[1]]
    resp = s3.delete_bucket_cors(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # deleting what is not there is 204 too, as in S3
    r = server.request("DELETE", path_of(bucket), query=[("cors", None)])
    assert r.status == 204, r


def test_get_answers_the_document_it_stored(server, bucket):
    body = config_xml(rule_xml("<ID>r&amp;1</ID><AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod>"
                               "<AllowedOrigin>https://x.test</AllowedOrigin><MaxAgeSeconds>0</MaxAgeSeconds>"))
    assert put_raw(server, bucket, body).status == 200
    r = server.request("GET", path_of(bucket), query=[("cors", None)])
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/xml"
    rules = xml_findall(r.xml(), "CORSRule")
    assert len(rules) == 1
    assert xml_text(rules[0], "ID") == "r&1"
    assert [m.text for m in xml_findall(rules[0], "AllowedMethod")] == ["PUT", "GET"]
    assert xml_text(rules[0], "MaxAgeSeconds") == "0"


def test_get_without_configuration_is_404(server, bucket):
    r = server.request("GET", path_of(bucket), query=[("cors", None)])
    assert err(r) == (404, "NoSuchCORSConfiguration"), r
    assert xml_text(r.xml(), "BucketName") == bucket


def test_a_hundred_rules_are_taken(server, bucket):
    assert put_raw(server, bucket, config_xml(*[rule_xml(OK_RULE)] * 100)).status == 200


BAD = [
    ("not xml", "<CORSConfiguration>", "MalformedXML", None),
    ("empty body", "", "MalformedXML", None),
    ("wrong root", "<CORS>" + rule_xml(OK_RULE) + "</CORS>", "MalformedXML", None),
    ("no rules", config_xml(), "MalformedXML", None),
    ("unknown child", config_xml(rule_xml(OK_RULE), "<Rule/>"), "MalformedXML", None),
    ("no origin", config_xml(rule_xml("<AllowedMethod>GET</AllowedMethod>")), "MalformedXML", None),
    ("no method", config_xml(rule_xml("<AllowedOrigin>*</AllowedOrigin>")), "MalformedXML", None),
    ("unknown element", config_xml(rule_xml(OK_RULE + "<Foo>1</Foo>")), "MalformedXML", None),
    ("max age not a number", config_xml(rule_xml(OK_RULE + "<MaxAgeSeconds>soon</MaxAgeSeconds>")), "MalformedXML",
     None),
    ("negative max age", config_xml(rule_xml(OK_RULE + "<MaxAgeSeconds>-1</MaxAgeSeconds>")), "MalformedXML", None),
    ("two max ages", config_xml(rule_xml(OK_RULE + "<MaxAgeSeconds>1</MaxAgeSeconds><MaxAgeSeconds>2</MaxAgeSeconds>")),
     "MalformedXML", None),
    ("id too long", config_xml(rule_xml(OK_RULE + "<ID>" + "i" * 256 + "</ID>")), "MalformedXML", None),
    ("101 rules", config_xml(*[rule_xml(OK_RULE)] * 101), "MalformedXML", None),
    ("control character", config_xml(rule_xml(OK_RULE + "<ExposeHeader>a&#10;b</ExposeHeader>")), "MalformedXML",
     None),
    ("method PATCH", config_xml(rule_xml("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>")),
     "InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"),
    ("method OPTIONS", config_xml(rule_xml("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>OPTIONS</AllowedMethod>")),
     "InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is OPTIONS"),
    ("method lowercase", config_xml(rule_xml("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>get</AllowedMethod>")),
     "InvalidRequest", "Found unsupported HTTP method in CORS config. Unsupported method is get"),
    ("origin two wildcards",
     config_xml(rule_xml("<AllowedOrigin>*example*.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod>")),
     "InvalidRequest", 'AllowedOrigin "*example*.com" can not have more than one wildcard.'),
    ("header two wildcards", config_xml(rule_xml(OK_RULE + "<AllowedHeader>x-*-*</AllowedHeader>")),
     "InvalidRequest", 'AllowedHeader "x-*-*" can not have more than one wildcard.'),
    ("expose wildcard", config_xml(rule_xml(OK_RULE + "<ExposeHeader>x-amz-*</ExposeHeader>")),
     "InvalidRequest", 'ExposeHeader "x-amz-*" contains wildcard. We currently do not support wildcard for '
                       'ExposeHeader.'),
]


@pytest.mark.parametrize("what,body,code,message", BAD, ids=[b[0] for b in BAD])
def test_invalid_configurations_are_refused_and_change_nothing(server, s3, bucket, what, body, code, message):
    keep = rule(["https://kept.example"], ["GET"])
    put_cors(s3, bucket, keep)
    r = put_raw(server, bucket, body)
    assert err(r) == (400, code), r
    if message:
        assert xml_text(r.xml(), "Message") == message
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [keep]


def test_a_document_over_64_kib_is_refused(server, bucket):
    body = config_xml(rule_xml(OK_RULE + "<ExposeHeader>" + "h" * (64 * 1024) + "</ExposeHeader>"))
    r = put_raw(server, bucket, body)
    assert err(r) == (400, "MalformedXML"), r


def test_content_md5_is_checked(server, bucket):
    body = config_xml(rule_xml(OK_RULE)).encode()
    r = put_raw(server, bucket, body, headers={"Content-MD5": md5_b64(b"other")})
    assert err(r) == (400, "BadDigest"), r
    r = put_raw(server, bucket, body, headers={"Content-MD5": "not-base64!"})
    assert err(r) == (400, "InvalidDigest"), r
    r = server.request("GET", path_of(bucket), query=[("cors", None)])
    assert err(r) == (404, "NoSuchCORSConfiguration"), r


def test_only_the_owner_configures(server, bucket, user):
    body = config_xml(rule_xml(OK_RULE))
    assert err(put_raw(server, bucket, body, creds=user.creds)) == (403, "AccessDenied")
    for method in ("GET", "DELETE"):
        r = server.request(method, path_of(bucket), query=[("cors", None)], creds=user.creds)
        assert err(r) == (403, "AccessDenied"), (method, r)
        r = server.request(method, path_of(bucket), query=[("cors", None)], anonymous=True)
        assert err(r) == (403, "AccessDenied"), (method, r)


def test_missing_bucket(server):
    gone = unique_bucket("gone")
    assert err(put_raw(server, gone, config_xml(rule_xml(OK_RULE)))) == (404, "NoSuchBucket")
    for method in ("GET", "DELETE"):
        r = server.request(method, path_of(gone), query=[("cors", None)])
        assert err(r) == (404, "NoSuchBucket"), (method, r)


# ---- preflight ---------------------------------------------------------------------------------


def test_preflight_allowed(server, s3, bucket):
    put_cors(s3, bucket, rule([ORIGIN], ["GET", "PUT"], headers=["*"], expose=["ETag", "x-amz-version-id"],
                              max_age=600))
    r = preflight(server, bucket, "some/key", method="PUT", req_headers="Content-Type, X-Amz-Date")
    assert r.status == 200, r
    assert r.body == b""
    assert cors_headers(r) == {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Methods": "GET, PUT",
        "Access-Control-Allow-Headers": "content-type, x-amz-date",
        "Access-Control-Expose-Headers": "ETag, x-amz-version-id",
        "Access-Control-Max-Age": "600",
        "Access-Control-Allow-Credentials": "true",
    }
    assert r.header("Vary") == VARY
    # on the bucket itself too, and without requested headers none are answered
    r = preflight(server, bucket, method="GET")
    assert r.status == 200, r
    assert r.header("Access-Control-Allow-Headers") is None


def test_preflight_any_origin_answers_star_without_credentials(server, s3, bucket):
    put_cors(s3, bucket, rule(["*"], ["GET"]))
    r = preflight(server, bucket, "k", origin="http://random:1234")
    assert r.status == 200, r
    assert cors_headers(r) == {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET"}
    assert r.header("Vary") == VARY


@pytest.mark.parametrize("origin,allowed", [
    ("http://a.example.com", True),
    ("http://a.b.example.com", True),
    ("http://.example.com", True),              # '*' matches the empty run too
    ("https://a.example.com", False),
    ("http://example.com", False),
    ("http://a.example.com.evil", False),       # anchored at both ends
    ("http://A.EXAMPLE.COM", False),            # origins match exactly (browsers send them lowercase)
])
def test_preflight_wildcard_origins(server, s3, bucket, origin, allowed):
    put_cors(s3, bucket, rule(["http://*.example.com"], ["GET"]))
    r = preflight(server, bucket, "k", origin=origin)
    if allowed:
        assert r.status == 200, r
        assert r.header("Access-Control-Allow-Origin") == origin
    else:
        assert err(r) == (403, "AccessForbidden"), r
        assert xml_text(r.xml(), "Message") == NOT_ALLOWED
        assert no_cors(r)


@pytest.mark.parametrize("req_headers,answer", [
    ("x-amz-date", "x-amz-date"),
    ("X-AMZ-Content-SHA256,content-type", "x-amz-content-sha256, content-type"),   # names without regard to case
    ("  x-amz-meta-a ,, Content-Type ", "x-amz-meta-a, content-type"),             # spaces and empty elements
    ("x-other", None),
    ("x-amz-date, authorization", None),        # every requested header must be allowed
])
def test_preflight_header_matching(server, s3, bucket, req_headers, answer):
    put_cors(s3, bucket, rule([ORIGIN], ["PUT"], headers=["X-Amz-*", "content-TYPE"]))
    r = preflight(server, bucket, "k", method="PUT", req_headers=req_headers)
    if answer:
        assert r.status == 200, r
        assert r.header("Access-Control-Allow-Headers") == answer
    else:
        assert err(r) == (403, "AccessForbidden"), r


def test_preflight_with_headers_against_a_rule_without_allowed_headers(server, s3, bucket):
    put_cors(s3, bucket, rule([ORIGIN], ["GET"], expose=["x-amz-meta-header1"]))
    assert err(preflight(server, bucket, "k", req_headers="x-amz-meta-header1")) == (403, "AccessForbidden")


def test_preflight_first_matching_rule_decides(server, s3, bucket):
    put_cors(s3, bucket,
             rule([ORIGIN], ["PUT"], max_age=1),
             rule(["https://*.example.com"], ["GET", "PUT"], max_age=2),
             rule(["*"], ["GET", "HEAD", "DELETE", "POST", "PUT"], max_age=3))
    assert preflight(server, bucket, "k", method="PUT").header("Access-Control-Max-Age") == "1"
    assert preflight(server, bucket, "k", method="GET").header("Access-Control-Max-Age") == "2"
    r = preflight(server, bucket, "k", method="DELETE")
    assert (r.header("Access-Control-Max-Age"), r.header("Access-Control-Allow-Origin")) == ("3", "*")


def test_preflight_method_not_allowed(server, s3, bucket):
    put_cors(s3, bucket, rule([ORIGIN], ["GET"]))
    for key, resource in (("k", "OBJECT"), (None, "BUCKET")):
        r = preflight(server, bucket, key, method="DELETE")
        assert err(r) == (403, "AccessForbidden"), r
        doc = r.xml()
        assert xml_text(doc, "Message") == NOT_ALLOWED
        assert (xml_text(doc, "Method"), xml_text(doc, "ResourceType")) == ("DELETE", resource)
        assert no_cors(r)
    # a method S3 does not have matches nothing either
    assert err(preflight(server, bucket, "k", method="PATCH")) == (403, "AccessForbidden")


def test_preflight_without_configuration(server, bucket):
    r = preflight(server, bucket, "k", method="PUT")
    assert err(r) == (403, "AccessForbidden"), r
    doc = r.xml()
    assert xml_text(doc, "Message") == "CORSResponse: CORS is not enabled for this bucket."
    assert (xml_text(doc, "Method"), xml_text(doc, "ResourceType")) == ("PUT", "BUCKET")
    # without a method, the same (S3 looks at the configuration first)
    r = preflight(server, bucket, "k", method=None)
    assert err(r) == (403, "AccessForbidden"), r
    assert xml_text(r.xml(), "Method") == "OPTIONS"


def test_preflight_missing_headers_are_400(server, s3, bucket):
    r = preflight(server, bucket, "k", origin=None)
    assert err(r) == (400, "BadRequest"), r
    assert xml_text(r.xml(), "Message") == "Insufficient information. Origin request header needed."
    # whatever the bucket: also one that does not exist
    r = preflight(server, unique_bucket("gone"), "k", origin=None, method=None)
    assert err(r) == (400, "BadRequest"), r
    put_cors(s3, bucket, rule(["*"], ["GET"]))
    r = preflight(server, bucket, "k", method=None)
    assert err(r) == (400, "BadRequest"), r
    assert xml_text(r.xml(), "Message") == "Invalid Access-Control-Request-Method: null"


def test_preflight_on_a_missing_bucket(server):
    """S3 answers 403 AccessForbidden "CORSResponse: Bucket not found" (not
    404 NoSuchBucket): a preflight's answer is about CORS."""
    for name in (unique_bucket("gone"), "ab"):
        r = preflight(server, name, "k")
        assert err(r) == (403, "AccessForbidden"), r
        assert xml_text(r.xml(), "Message") == "CORSResponse: Bucket not found"


def test_preflight_needs_no_credentials_and_ignores_bad_ones(server, s3, bucket):
    put_cors(s3, bucket, rule([ORIGIN], ["GET"]))
    r = preflight(server, bucket, "k", extra={"Authorization": "AWS4-HMAC-SHA256 Credential=nobody/garbage"})
    assert r.status == 200, r
    # and a presigned URL's query does not matter either
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    parsed = urllib.parse.urlsplit(url)
    r = server.get_url("OPTIONS", parsed.path + "?" + parsed.query,
                       headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert r.status == 200, r


# ---- headers on actual responses ---------------------------------------------------------------


def test_actual_responses_carry_the_rule_headers(server, s3, bucket, user):
    put_cors(s3, bucket, rule([ORIGIN], ["GET", "PUT", "HEAD"], expose=["ETag"], max_age=60))
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    want = {"Access-Control-Allow-Origin": ORIGIN, "Access-Control-Allow-Methods": "GET, PUT, HEAD",
            "Access-Control-Expose-Headers": "ETag", "Access-Control-Max-Age": "60",
            "Access-Control-Allow-Credentials": "true"}
    o = {"Origin": ORIGIN}
    cases = [
        ("GET ok", server.request("GET", path_of(bucket, "k"), headers=o), 200),
        ("HEAD ok", server.request("HEAD", path_of(bucket, "k"), headers=o), 200),
        ("PUT ok", server.request("PUT", path_of(bucket, "k2"), headers=o, body=b"x"), 200),
        ("GET 404", server.request("GET", path_of(bucket, "missing"), headers=o), 404),
        ("GET 403 foreign", server.request("GET", path_of(bucket, "k"), headers=o, creds=user.creds), 403),
        ("GET 403 anonymous", server.request("GET", path_of(bucket, "k"), headers=o, anonymous=True), 403),
        ("PUT 403 bad signature",
         server.request("PUT", path_of(bucket, "k3"), headers=o, body=b"x", creds=(server.root[0], "wrong")), 403),
    ]
    for what, r, status in cases:
        assert r.status == status, (what, r)
        assert cors_headers(r) == want, what
        assert r.header("Vary") == VARY, what
    assert xml_text(cases[3][1].xml(), "Code") == "NoSuchKey"
    assert xml_text(cases[6][1].xml(), "Code") == "SignatureDoesNotMatch"


def test_actual_responses_without_a_matching_rule_have_no_cors_headers(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    # no configuration
    assert no_cors(server.request("GET", path_of(bucket, "k"), headers={"Origin": ORIGIN}))
    put_cors(s3, bucket, rule([ORIGIN], ["GET"]))
    # no Origin
    assert no_cors(server.request("GET", path_of(bucket, "k")))
    # another origin
    assert no_cors(server.request("GET", path_of(bucket, "k"), headers={"Origin": "https://other.example"}))
    # a method the rule does not allow: served, without CORS headers
    r = server.request("PUT", path_of(bucket, "k"), headers={"Origin": ORIGIN}, body=b"new")
    assert r.status == 200 and no_cors(r), r
    # Access-Control-Request-Method decides the match on an actual request, as in S3
    r = server.request("PUT", path_of(bucket, "k"), headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
                       body=b"newer")
    assert r.header("Access-Control-Allow-Origin") == ORIGIN, r
    r = server.request("GET", path_of(bucket, "k"), headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"})
    assert r.status == 200 and no_cors(r), r


def test_any_origin_rule_answers_star_on_actual_requests(server, s3, bucket):
    put_cors(s3, bucket, rule(["*"], ["GET"]))
    r = server.request("GET", path_of(bucket), headers={"Origin": "null"})
    assert r.status == 200, r
    assert cors_headers(r) == {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET"}


def test_bucket_and_service_responses(server, s3, bucket):
    put_cors(s3, bucket, rule([ORIGIN], ["GET", "PUT", "DELETE"]))
    # listing, and the configuration's own requests
    assert server.request("GET", path_of(bucket), headers={"Origin": ORIGIN}).header(
        "Access-Control-Allow-Origin") == ORIGIN
    r = server.request("GET", path_of(bucket), query=[("cors", None)], headers={"Origin": ORIGIN})
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") == ORIGIN, r
    # the service names no bucket: no CORS
    assert no_cors(server.request("GET", "/", headers={"Origin": ORIGIN}))


# ---- the configuration's lifetime --------------------------------------------------------------


def test_changes_apply_at_once_on_this_gateway(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    # warm the cache with "none", then put: the next request sees the rule
    assert err(preflight(server, bucket, "k")) == (403, "AccessForbidden")
    assert no_cors(server.request("GET", path_of(bucket, "k"), headers={"Origin": ORIGIN}))
    put_cors(s3, bucket, rule([ORIGIN], ["GET"]))
    assert preflight(server, bucket, "k").status == 200
    assert server.request("GET", path_of(bucket, "k"), headers={"Origin": ORIGIN}).header(
        "Access-Control-Allow-Origin") == ORIGIN
    # replaced
    put_cors(s3, bucket, rule(["https://other.example"], ["GET"]))
    assert err(preflight(server, bucket, "k")) == (403, "AccessForbidden")
    assert preflight(server, bucket, "k", origin="https://other.example").status == 200
    # removed
    s3.delete_bucket_cors(Bucket=bucket)
    r = preflight(server, bucket, "k", origin="https://other.example")
    assert xml_text(r.xml(), "Message") == "CORSResponse: CORS is not enabled for this bucket.", r
    assert no_cors(server.request("GET", path_of(bucket, "k"), headers={"Origin": "https://other.example"}))


def test_configuration_is_gone_with_its_bucket(server, s3, user):
    name = unique_bucket("cors")
    s3.create_bucket(Bucket=name)
    put_cors(s3, name, rule(["*"], ["GET"]))
    assert preflight(server, name, "k").status == 200
    s3.delete_bucket(Bucket=name)
    r = preflight(server, name, "k")
    assert xml_text(r.xml(), "Message") == "CORSResponse: Bucket not found", r
    other = server.client(*user.creds)
    other.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        other.get_bucket_cors(Bucket=name)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    r = preflight(server, name, "k")
    assert err(r) == (403, "AccessForbidden"), r
    assert xml_text(r.xml(), "Message") == "CORSResponse: CORS is not enabled for this bucket."
    other.put_object(Bucket=name, Key="k", Body=b"x")
    assert no_cors(server.request("GET", path_of(name, "k"), headers={"Origin": ORIGIN}, creds=user.creds))


# ---- a real browser ----------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><body><pre id="result">pending</pre><script>
const putUrl = %(put)s, getUrl = %(get)s, body = %(body)s;
async function run() {
  const out = {};
  try {
    const r = await fetch(putUrl, {method: "PUT", body: body});
    out.put = {status: r.status, etag: r.headers.get("ETag")};
  } catch (e) { out.put = {error: e.name + ": " + e.message}; }
  try {
    const r = await fetch(getUrl);
    out.get = {status: r.status, body: await r.text()};
  } catch (e) { out.get = {error: e.name + ": " + e.message}; }
  document.getElementById("result").textContent = JSON.stringify(out);
  try { await fetch("/report", {method: "POST", body: JSON.stringify(out)}); } catch (e) {}
}
run();
</script></body></html>
"""


class PageServer:
    """Serves one page from another origin (another port) and takes the
    report its script POSTs back."""

    def __init__(self, page):
        self.page = page.encode()
        self.reports = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(outer.page)))
                self.end_headers()
                self.wfile.write(outer.page)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                outer.reports.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def browser_run(s3, bucket, put_key, get_key, body):
    """Loads a page of another origin in headless Chromium whose script PUTs
    then GETs with presigned URLs; returns (the page's origin, its report)."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (scripts/install-deps.sh installs it)"
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": put_key}, ExpiresIn=300)
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": get_key}, ExpiresIn=300)
    page = PageServer(PAGE % {"put": json.dumps(put_url), "get": json.dumps(get_url), "body": json.dumps(body)})
    return page, chromium


def run_chromium(tmp_path, chromium, page):
    profile = tmp_path / "chromium-profile"
    cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", "--disable-background-networking", f"--user-data-dir={profile}",
           "--virtual-time-budget=30000", "--dump-dom", page.origin + "/page.html"]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # The report comes by POST; the DOM dump is the witness if it did not.
    wait_until(lambda: page.reports, 30, what=f"the page's report (chromium exited {cp.returncode}: "
                                             f"{cp.stderr[-2000:]}\nDOM: {cp.stdout[-2000:]})")
    return page.reports[0]


@pytest.mark.deadline(300)
def test_browser_reads_and_writes_only_with_a_rule_for_its_origin(tmp_path, server, s3, bucket):
    body = "written by a page of another origin"
    # with a rule for the page's origin: both requests succeed and the page reads what it wrote
    page, chromium = browser_run(s3, bucket, "from-page", "from-page", body)
    try:
        put_cors(s3, bucket, rule([page.origin], ["GET", "PUT"], headers=["*"], expose=["ETag"], max_age=0))
        report = run_chromium(tmp_path, chromium, page)
    finally:
        page.close()
    assert report["put"] == {"status": 200, "etag": '"%s"' % hashlib.md5(body.encode()).hexdigest()}, report
    assert report["get"] == {"status": 200, "body": body}, report
    assert s3.get_object(Bucket=bucket, Key="from-page")["Body"].read() == body.encode()

    # without one: the browser refuses both, and the page learns nothing of the object
    s3.delete_bucket_cors(Bucket=bucket)
    secret = "not for other origins"
    s3.put_object(Bucket=bucket, Key="secret", Body=secret.encode())
    page, chromium = browser_run(s3, bucket, "denied-put", "secret", body)
    try:
        report = run_chromium(tmp_path / "second", chromium, page)
    finally:
        page.close()
    assert report["put"]["error"].startswith("TypeError"), report
    assert report["get"]["error"].startswith("TypeError"), report
    assert secret not in json.dumps(report)
    # the refused preflight kept the PUT from being sent at all
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="denied-put")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.postgres_only("two gateways share one PostgreSQL database; a SQLite database is one process's")
def test_a_second_gateway_sees_a_change_within_its_cache_lifetime(make_server):
    """Gateway B caches "no configuration" for the bucket; a PutBucketCors
    through A reaches B's answers once B's cache slot expires (1 s), and
    so does a DeleteBucketCors.  Polled with a deadline of seconds."""
    a = make_server(env={"CAIRN_MASTER_KEY": "5a" * 32})
    b = make_server(env=a.meta_env(), root=a.root)
    name = unique_bucket("cors")
    s3a = a.client()
    s3a.create_bucket(Bucket=name)
    r = preflight(b, name, "k")
    assert xml_text(r.xml(), "Message") == "CORSResponse: CORS is not enabled for this bucket.", r
    put_cors(s3a, name, rule([ORIGIN], ["GET"]))
    assert preflight(a, name, "k").status == 200        # at once on the gateway that wrote
    wait_until(lambda: preflight(b, name, "k").status == 200, 10, what="gateway B applying the new rule")
    assert b.client().get_bucket_cors(Bucket=name)["CORSRules"] == [rule([ORIGIN], ["GET"])]
    s3a.delete_bucket_cors(Bucket=name)
    wait_until(lambda: preflight(b, name, "k").status == 403, 10, what="gateway B dropping the rule")
