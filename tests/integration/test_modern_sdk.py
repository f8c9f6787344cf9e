"""Smoke test with a modern boto3 (flexible checksums on by default).

The suite itself runs on Debian's python3-boto3 1.26, which predates the SDK
defaults real users now have: since botocore 1.36 every PutObject carries an
x-amz-checksum-crc32 header, DeleteObjects sends a CRC32 instead of
Content-MD5, and GetObject asks for checksum validation.  This module looks
for another python3 on PATH (e.g. pyenv's) that imports boto3, and runs a
short script with it in a subprocess against the shared server.
"""

import json
import os
import subprocess

import pytest

from conftest import unique_bucket, which_all

SCRIPT = r'''
import hashlib, json, os, sys, tempfile
import boto3, botocore
from botocore.config import Config

endpoint, ak, sk, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=ak, aws_secret_access_key=sk,
                  config=Config(s3={"addressing_style": "path"},
                                retries={"max_attempts": 1, "mode": "standard"}))
report = {"boto3": boto3.__version__, "botocore": botocore.__version__}
sent = []
s3.meta.events.register("before-send.s3", lambda request, **kw: sent.append(
    {k.lower(): v for k, v in request.headers.items()}))

s3.create_bucket(Bucket=bucket)
body = os.urandom(300 * 1024)
put = s3.put_object(Bucket=bucket, Key="modern/obj", Body=body)
assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), put["ETag"]
report["put_checksum_headers"] = sorted(k for k in sent[-1] if k.startswith("x-amz-checksum")
                                        or k == "x-amz-sdk-checksum-algorithm")

got = s3.get_object(Bucket=bucket, Key="modern/obj", ChecksumMode="ENABLED")
assert got["Body"].read() == body
got = s3.get_object(Bucket=bucket, Key="modern/obj")
assert got["Body"].read() == body

for i in range(3):
    s3.put_object(Bucket=bucket, Key="modern/k%d" % i, Body=b"x" * i)
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="modern/")["Contents"]]
assert keys == ["modern/k0", "modern/k1", "modern/k2", "modern/obj"], keys

# The smaller surface (test_s3_surface.py) as a current SDK sends it:
# ListBuckets pages, ownership controls with a CRC32 instead of
# Content-MD5, GetObjectAttributes, x-amz-expected-bucket-owner.
s3.create_bucket(Bucket=bucket + "-2")
page = s3.list_buckets(MaxBuckets=1, Prefix=bucket)
assert [b["Name"] for b in page["Buckets"]] == [bucket] and page["ContinuationToken"], page
page = s3.list_buckets(MaxBuckets=1, Prefix=bucket, ContinuationToken=page["ContinuationToken"])
assert [b["Name"] for b in page["Buckets"]] == [bucket + "-2"] and "ContinuationToken" not in page, page
assert page["Prefix"] == bucket
s3.delete_bucket(Bucket=bucket + "-2")
owner = s3.list_buckets()["Owner"]["ID"]
s3.put_bucket_ownership_controls(Bucket=bucket, ExpectedBucketOwner=owner,
                                 OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
report["ownership_headers"] = sorted(k for k in sent[-1] if k.startswith(("x-amz-checksum", "content-md5")))
got = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
assert got == [{"ObjectOwnership": "ObjectWriter"}], got
attrs = s3.get_object_attributes(Bucket=bucket, Key="modern/obj", ObjectAttributes=["ETag", "ObjectSize"])
assert attrs["ObjectSize"] == len(body) and attrs["ETag"] == hashlib.md5(body).hexdigest(), attrs

with tempfile.TemporaryDirectory() as d:
    src = os.path.join(d, "up.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(2 * 1024 * 1024))
    s3.upload_file(src, bucket, "modern/uploaded")
    dst = os.path.join(d, "down.bin")
    s3.download_file(bucket, "modern/uploaded", dst)
    assert open(src, "rb").read() == open(dst, "rb").read()

head = s3.head_object(Bucket=bucket, Key="modern/uploaded")
assert head["ContentLength"] == 2 * 1024 * 1024

s3.delete_object(Bucket=bucket, Key="modern/uploaded")
resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
    {"Key": "modern/k0"}, {"Key": "modern/k1"}, {"Key": "modern/k2"}, {"Key": "modern/obj"}]})
report["delete_objects_headers"] = sorted(k for k in sent[-1] if k.startswith(("x-amz-checksum", "content-md5")))
assert not resp.get("Errors"), resp.get("Errors")
assert sorted(d["Key"] for d in resp["Deleted"]) == ["modern/k0", "modern/k1", "modern/k2", "modern/obj"]
assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
s3.delete_bucket(Bucket=bucket)
print(json.dumps(report))
'''


def modern_python():
    """A python3 other than /usr/bin/python3 that imports boto3, or None."""
    debian = os.path.realpath("/usr/bin/python3")
    candidates = which_all("python3") + ["/root/.pyenv/shims/python3"]
    for exe in candidates:
        if not os.path.exists(exe) or os.path.realpath(exe) == debian:
            continue
        try:
            cp = subprocess.run([exe, "-c", "import boto3; print(boto3.__version__)"],
                                capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if cp.returncode == 0:
            return exe, cp.stdout.strip()
    return None


def test_modern_boto3_smoke(server, user):
    found = modern_python()
    if found is None:
        why = "no python3 besides /usr/bin/python3 that can import boto3 (e.g. pyenv) found"
        print(f"skipping: {why}")
        pytest.skip(why)
    exe, version = found
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CAIRN_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    cp = subprocess.run([exe, "-c", SCRIPT, server.endpoint, user.access_key, user.secret,
                         unique_bucket("modern")],
                        capture_output=True, text=True, timeout=180, env=env)
    assert cp.returncode == 0, (f"modern boto3 {version} ({exe}) failed:\n"
                                f"{cp.stdout[-2000:]}\n{cp.stderr[-4000:]}")
    report = json.loads(cp.stdout.strip().splitlines()[-1])
    print(f"modern SDK: {report}")
