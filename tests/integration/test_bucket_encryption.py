"""Bucket default encryption (docs/bucket-encryption.md): PutBucketEncryption,
GetBucketEncryption and DeleteBucketEncryption, with the refusals S3 answers
(MalformedXML, InvalidArgument for a key with AES256 or a key that is not
one, NotImplemented for aws:kms:dsse), a key ARN kept as its bare key id,
the owner alone configuring it, and the configuration's lifetime (none
until one is put; gone with its bucket).  cairn does not encrypt buckets by
default: GET answers 404 until a configuration is put."""
import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import unique_bucket, xml_text

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
NOT_FOUND = (404, "ServerSideEncryptionConfigurationNotFoundError")


def path_of(bucket):
    return sigv4.object_path(bucket, None)


def err(r):
    return (r.status, r.error_code)


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def config_xml(default, bucket_key=None, ns=True):
    bk = "" if bucket_key is None else "<BucketKeyEnabled>%s</BucketKeyEnabled>" % bucket_key
    return ("<ServerSideEncryptionConfiguration%s><Rule><ApplyServerSideEncryptionByDefault>%s"
            "</ApplyServerSideEncryptionByDefault>%s</Rule></ServerSideEncryptionConfiguration>"
            % (" " + NS if ns else "", default, bk))


def put_raw(server, bucket, body, headers=None, creds=None):
    if isinstance(body, str):
        body = body.encode()
    h = {"Content-MD5": md5_b64(body)}
    h.update(headers or {})
    return server.request("PUT", path_of(bucket), query=[("encryption", None)], body=body, headers=h, creds=creds)


def get_raw(server, bucket, creds=None):
    return server.request("GET", path_of(bucket), query=[("encryption", None)], creds=creds)


def delete_raw(server, bucket, creds=None):
    return server.request("DELETE", path_of(bucket), query=[("encryption", None)], creds=creds)


def stored(server, bucket):
    """(SSEAlgorithm, KMSMasterKeyID or None, BucketKeyEnabled) as GET answers them."""
    r = get_raw(server, bucket)
    assert r.status == 200, r
    doc = r.xml()
    return (xml_text(doc, "Rule/ApplyServerSideEncryptionByDefault/SSEAlgorithm"),
            xml_text(doc, "Rule/ApplyServerSideEncryptionByDefault/KMSMasterKeyID"),
            xml_text(doc, "Rule/BucketKeyEnabled"))


def test_none_until_one_is_put(server, bucket):
    r = get_raw(server, bucket)
    assert err(r) == NOT_FOUND, r
    assert xml_text(r.xml(), "Message") == "The server side encryption configuration was not found."
    assert xml_text(r.xml(), "BucketName") == bucket


def test_put_get_delete_round_trip(server, bucket):
    r = put_raw(server, bucket, config_xml("<SSEAlgorithm>AES256</SSEAlgorithm>"))
    assert r.status == 200, r
    assert stored(server, bucket) == ("AES256", None, "false")
    # replaced whole
    r = put_raw(server, bucket, config_xml("<SSEAlgorithm>aws:kms</SSEAlgorithm>"
                                           "<KMSMasterKeyID>my-key</KMSMasterKeyID>", bucket_key="true"))
    assert r.status == 200, r
    assert stored(server, bucket) == ("aws:kms", "my-key", "true")
    r = delete_raw(server, bucket)
    assert r.status == 204, r
    assert err(get_raw(server, bucket)) == NOT_FOUND
    # deleting none is 204 too
    r = delete_raw(server, bucket)
    assert r.status == 204, r


def test_namespace_optional_and_default_kms_key(server, bucket):
    r = put_raw(server, bucket, config_xml("<SSEAlgorithm>aws:kms</SSEAlgorithm>", ns=False))
    assert r.status == 200, r
    assert stored(server, bucket) == ("aws:kms", None, "false")


def test_a_key_arn_is_kept_as_its_key_id(server, bucket):
    arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    r = put_raw(server, bucket, config_xml("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>%s</KMSMasterKeyID>"
                                           % arn))
    assert r.status == 200, r
    assert stored(server, bucket) == ("aws:kms", "1234abcd-12ab-34cd-56ef-1234567890ab", "false")


@pytest.mark.parametrize("body", [
    "",
    "not xml",
    "<ServerSideEncryptionConfiguration " + NS + "><Rule>",
    "<ServerSideEncryptionConfiguration " + NS + "/>",
    "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256"
    "</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule><Rule><ApplyServerSideEncryptionByDefault>"
    "<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
    "</ServerSideEncryptionConfiguration>",
    config_xml(""),
    config_xml("<SSEAlgorithm>DES</SSEAlgorithm>"),
    config_xml("<SSEAlgorithm>AES256</SSEAlgorithm>", bucket_key="maybe"),
    "<CORSConfiguration/>",
], ids=["empty", "not-xml", "truncated", "no-rule", "two-rules", "no-algorithm", "unknown-algorithm",
        "bad-bucket-key", "other-document"])
def test_malformed_xml(server, bucket, body):
    r = put_raw(server, bucket, body)
    assert err(r) == (400, "MalformedXML"), r
    assert err(get_raw(server, bucket)) == NOT_FOUND


def test_dsse_is_refused_as_not_supported(server, bucket):
    r = put_raw(server, bucket, config_xml("<SSEAlgorithm>aws:kms:dsse</SSEAlgorithm>"))
    assert err(r) == (501, "NotImplemented"), r
    assert "aws:kms:dsse" in xml_text(r.xml(), "Message")
    assert err(get_raw(server, bucket)) == NOT_FOUND


def test_a_kms_key_with_aes256_is_refused(server, bucket):
    r = put_raw(server, bucket, config_xml("<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>"))
    assert err(r) == (400, "InvalidArgument"), r
    assert err(get_raw(server, bucket)) == NOT_FOUND


@pytest.mark.parametrize("key", ["alias/aws/s3", "arn:aws:kms:us-east-1:111122223333:alias/mine", "a b", "x" * 65])
def test_a_key_that_is_not_one_is_refused(server, bucket, key):
    r = put_raw(server, bucket, config_xml("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>%s</KMSMasterKeyID>"
                                           % key))
    assert err(r) == (400, "InvalidArgument"), r


def test_a_refused_put_keeps_the_configuration_there_was(server, bucket):
    assert put_raw(server, bucket, config_xml("<SSEAlgorithm>AES256</SSEAlgorithm>")).status == 200
    assert err(put_raw(server, bucket, config_xml("<SSEAlgorithm>DES</SSEAlgorithm>"))) == (400, "MalformedXML")
    assert stored(server, bucket) == ("AES256", None, "false")


def test_content_md5_is_checked(server, bucket):
    body = config_xml("<SSEAlgorithm>AES256</SSEAlgorithm>").encode()
    r = put_raw(server, bucket, body, headers={"Content-MD5": md5_b64(b"other")})
    assert err(r) == (400, "BadDigest"), r
    r = put_raw(server, bucket, body, headers={"Content-MD5": "not-base64!"})
    assert err(r) == (400, "InvalidDigest"), r
    assert err(get_raw(server, bucket)) == NOT_FOUND


def test_only_the_owner_configures(server, bucket, user):
    body = config_xml("<SSEAlgorithm>AES256</SSEAlgorithm>")
    assert err(put_raw(server, bucket, body, creds=user.creds)) == (403, "AccessDenied")
    assert put_raw(server, bucket, body).status == 200
    for method in ("GET", "DELETE"):
        r = server.request(method, path_of(bucket), query=[("encryption", None)], creds=user.creds)
        assert err(r) == (403, "AccessDenied"), (method, r)
        r = server.request(method, path_of(bucket), query=[("encryption", None)], anonymous=True)
        assert err(r) == (403, "AccessDenied"), (method, r)
    assert stored(server, bucket) == ("AES256", None, "false")


def test_missing_bucket(server):
    gone = unique_bucket("gone")
    assert err(put_raw(server, gone, config_xml("<SSEAlgorithm>AES256</SSEAlgorithm>"))) == (404, "NoSuchBucket")
    for method in ("GET", "DELETE"):
        r = server.request(method, path_of(gone), query=[("encryption", None)])
        assert err(r) == (404, "NoSuchBucket"), (method, r)


def test_a_bucket_made_again_under_its_name_has_none(server, s3):
    name = unique_bucket("again")
    s3.create_bucket(Bucket=name)
    assert put_raw(server, name, config_xml("<SSEAlgorithm>AES256</SSEAlgorithm>")).status == 200
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    assert err(get_raw(server, name)) == NOT_FOUND


def test_boto3(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "ServerSideEncryptionConfigurationNotFoundError"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": "arn:aws:kms:us-east-1:111122223333:key/team-key"},
        "BucketKeyEnabled": True}]})
    got = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert got["Rules"] == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                                     "KMSMasterKeyID": "team-key"},
                             "BucketKeyEnabled": True}]
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    got = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert got["Rules"] == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                             "BucketKeyEnabled": False}]
    resp = s3.delete_bucket_encryption(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "ServerSideEncryptionConfigurationNotFoundError"
