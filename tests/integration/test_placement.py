"""Every set of shards metadata references is seen by the jobs that verify and
move shards: an object's own version, a part of a completed multipart object
(layout "mp:N"), and a part of an upload still in progress.  The scrubber,
drain/rebalance and the reference count behind `cairn admin node remove` all
walk the same placements; before that, multipart data was skipped by all
three, so draining and removing nodes destroyed it."""
import os

import boto3
import pytest
from botocore.config import Config

from conftest import unique_bucket, wait_until
from test_membership import AK, SK, Cluster
from test_scrub import metric, shard_files

PART = 5 * 1024 * 1024


def s3_client(port):
    return boto3.session.Session().client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=AK, aws_secret_access_key=SK,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
                      signature_version="s3v4", read_timeout=120))


def multipart(s3, bucket, key, bodies, complete=True):
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for i, b in enumerate(bodies, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=b)["ETag"]
        parts.append({"PartNumber": i, "ETag": etag})
    if complete:
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})
    return uid, parts


@pytest.mark.deadline(300)
def test_drain_and_remove_keep_multipart_objects_and_live_uploads(tmp_path):
    c = Cluster(tmp_path)
    try:
        s3 = s3_client(c.port)
        bucket = unique_bucket()
        s3.create_bucket(Bucket=bucket)
        done = [os.urandom(PART), os.urandom(300_000)]
        multipart(s3, bucket, "done", done)
        live = [os.urandom(PART), os.urandom(70_000)]
        uid, parts = multipart(s3, bucket, "live", live, complete=False)
        plain = os.urandom(90_000)
        s3.put_object(Bucket=bucket, Key="plain", Body=plain)
        # 4 placements of 6 shards each: two parts of "done", two of "live", "plain".
        assert sum(c.shards(i) for i in range(6)) == 5 * 6

        # A seventh node joins, so that one of the first six can be drained.
        c.add_and_rebalance(f"http://127.0.0.1:{c.node_ports[6]}")
        listing = c.admin("node", "list").stdout.split("\n")
        victim_id = listing[0].split()[0]
        victim = next(i for i in range(6) if f"127.0.0.1:{c.node_ports[i]}" in listing[0])
        holds = c.shards(victim)
        assert holds > 0
        # The reference count counts parts: it refuses while the node holds any.
        refused = c.admin("node", "remove", victim_id, check=False)
        assert refused.returncode == 1 and "drain it first" in refused.stderr, refused.stderr
        assert f"objects={holds} " in listing[0], listing[0]

        c.admin("node", "drain", victim_id)
        wait_until(lambda: c.shards(victim) == 0, 60, what="every shard, parts included, to leave the drained node")
        assert "objects=0 " in c.admin("node", "list").stdout.split("\n")[0]
        c.admin("node", "remove", victim_id)
        # The drained node is gone for good: its process and its disk.
        c.procs[victim].kill()
        c.procs[victim].wait()
        for root, _dirs, files in os.walk(tmp_path / f"node{victim}"):
            for f in files:
                os.remove(os.path.join(root, f))

        assert s3.get_object(Bucket=bucket, Key="done")["Body"].read() == b"".join(done)
        assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == plain
        s3.complete_multipart_upload(Bucket=bucket, Key="live", UploadId=uid, MultipartUpload={"Parts": parts})
        assert s3.get_object(Bucket=bucket, Key="live")["Body"].read() == b"".join(live)
    finally:
        c.close()


@pytest.mark.deadline(120)
def test_scrubber_repairs_parts_of_multipart_objects_and_uploads(make_server, tmp_path):
    drives = [str(tmp_path / f"d{i}") for i in range(6)]
    srv = make_server(env={"CAIRN_DRIVES": ",".join(drives), "CAIRN_EC_BLOCK_SIZE": "4KiB",
                           "CAIRN_SCRUB_INTERVAL": "1", "CAIRN_SCRUB_RATE": "0"})
    s3 = srv.client()
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    done = [os.urandom(PART), os.urandom(20_000)]
    multipart(s3, bucket, "done", done)
    live = [os.urandom(30_000)]
    uid, parts = multipart(s3, bucket, "live", live, complete=False)
    files = shard_files(drives)
    assert len(files) == 3 * 6
    originals = {f: open(f, "rb").read() for f in files}
    # Damage one shard of every placement; nobody reads anything.
    by_version = {}
    for f in files:
        by_version.setdefault(os.path.basename(f).split(".")[0], f)
    assert len(by_version) == 3
    for f in by_version.values():
        data = bytearray(originals[f])
        data[4 + 10] ^= 0xFF
        with open(f, "wb") as out:
            out.write(data)
    before = metric(srv, "cairn_scrub_repaired_shards_total")
    wait_until(lambda: all(open(f, "rb").read() == originals[f] for f in by_version.values())
               and metric(srv, "cairn_scrub_repaired_shards_total") >= before + 3, 60,
               what="the scrubber to repair a shard of each part")
    assert s3.get_object(Bucket=bucket, Key="done")["Body"].read() == b"".join(done)
    s3.complete_multipart_upload(Bucket=bucket, Key="live", UploadId=uid, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="live")["Body"].read() == b"".join(live)
