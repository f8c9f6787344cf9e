"""No user ever sees another user's data, also through a bucket name that
changes hands.

A bucket's identity is an id that is never reused, not its name.  Deleting a
bucket aborts its multipart uploads (as in S3) and removes their parts'
bytes; an upload, a part or an object of a deleted bucket can never surface
in a new bucket of the same name, whoever owns it.  The sequence that leaked
before: user A creates bucket b and starts an upload, deletes b (which
succeeded and left the upload), user B creates b, lists the stale upload,
completes it and reads A's bytes.
"""
import os

import pytest
from botocore.exceptions import ClientError

from conftest import unique_bucket, wait_until
from test_multipart import shard_files


def code_of(fn, *args, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(*args, **kwargs)
    return ei.value.response["ResponseMetadata"]["HTTPStatusCode"], ei.value.response["Error"]["Code"]


@pytest.mark.deadline(120)
def test_deleted_bucket_uploads_never_surface_under_a_new_owner(make_server):
    srv = make_server()
    a, b = srv.create_user("alice"), srv.create_user("bob")
    sa, sb = srv.client(*a.creds), srv.client(*b.creds)
    name = unique_bucket("shared")
    sa.create_bucket(Bucket=name)
    baseline = shard_files(srv)
    secret = os.urandom(300_000)
    uid = sa.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
    etag = sa.upload_part(Bucket=name, Key="k", UploadId=uid, PartNumber=1, Body=secret)["ETag"]
    uid2 = sa.create_multipart_upload(Bucket=name, Key="other")["UploadId"]
    sa.upload_part(Bucket=name, Key="other", UploadId=uid2, PartNumber=1, Body=os.urandom(50_000))
    assert len(shard_files(srv)) > len(baseline)

    # As in S3, DeleteBucket succeeds with uploads in progress: it aborts them
    # and their bytes go.
    assert sa.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    wait_until(lambda: shard_files(srv) == baseline, 20, what="the aborted uploads' parts to be removed")
    assert code_of(sa.list_parts, Bucket=name, Key="k", UploadId=uid) == (404, "NoSuchBucket")

    # Another user takes the name: nothing of the old bucket is there.
    sb.create_bucket(Bucket=name)
    assert sb.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert code_of(sb.list_parts, Bucket=name, Key="k", UploadId=uid) == (404, "NoSuchUpload")
    assert code_of(sb.upload_part, Bucket=name, Key="k", UploadId=uid, PartNumber=2, Body=b"x") == \
        (404, "NoSuchUpload")
    assert code_of(sb.complete_multipart_upload, Bucket=name, Key="k", UploadId=uid,
                   MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}) == (404, "NoSuchUpload")
    assert code_of(sb.abort_multipart_upload, Bucket=name, Key="k", UploadId=uid) == (404, "NoSuchUpload")
    assert code_of(sb.get_object, Bucket=name, Key="k") == (404, "NoSuchKey")
    assert sb.list_objects_v2(Bucket=name).get("KeyCount") == 0
    # Nor can the old owner reach into it, by its old upload ids or otherwise.
    assert code_of(sa.list_multipart_uploads, Bucket=name) == (403, "AccessDenied")
    assert code_of(sa.upload_part, Bucket=name, Key="k", UploadId=uid, PartNumber=1, Body=b"x") == \
        (403, "AccessDenied")
    # And the new bucket works normally for its owner.
    uid3 = sb.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
    e3 = sb.upload_part(Bucket=name, Key="k", UploadId=uid3, PartNumber=1, Body=b"bob's")["ETag"]
    sb.complete_multipart_upload(Bucket=name, Key="k", UploadId=uid3,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e3}]})
    assert sb.get_object(Bucket=name, Key="k")["Body"].read() == b"bob's"


def test_bucket_name_reuse_by_same_owner_sees_an_empty_bucket(server, s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    uid = s3.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert code_of(s3.upload_part, Bucket=name, Key="k", UploadId=uid, PartNumber=1, Body=b"x") == \
        (404, "NoSuchUpload")
