"""Full drives: with write quorum lost to ENOSPC the PUT answers 507
InsufficientStorage and nothing becomes visible; with quorum it succeeds.
Then, with the server stopped, `cairn admin fsck` finds no trace of the
refused write (no orphaned shard, no temp file) and nothing else amiss."""
import hashlib
import os
import subprocess

import pytest

import sigv4
from conftest import unique_bucket


@pytest.fixture
def tiny_mounts(tmp_path):
    mounts = []
    for i in range(2):
        d = tmp_path / f"tiny{i}"
        d.mkdir()
        cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True, text=True)
        if cp.returncode != 0:
            for m in mounts:
                subprocess.run(["umount", str(m)])
            pytest.skip(f"cannot mount a tmpfs here (needs root): {cp.stderr.strip()}")
        mounts.append(d)
    yield mounts
    for m in mounts:
        subprocess.run(["umount", "-l", str(m)])


def test_put_without_quorum_on_full_drives_is_507(make_server, tmp_path, tiny_mounts):
    drives = [str(tmp_path / f"d{i}") for i in range(4)] + [str(m) for m in tiny_mounts]
    srv = make_server(env={"CAIRN_DRIVES": ",".join(drives), "CAIRN_EC_BLOCK_SIZE": "64KiB",
                           "CAIRN_MIN_FREE_DISK": "0"})
    bucket = unique_bucket()
    assert srv.request("PUT", sigv4.object_path(bucket)).status == 200
    # 4+2 over six drives: every object puts a shard on both tiny drives.
    # 8 MiB makes 2 MiB shards: both tiny drives fill, quorum (5) is lost.
    body = os.urandom(8 * 1024 * 1024)
    r = srv.request("PUT", sigv4.object_path(bucket, "too-big"), body=body)
    assert (r.status, r.error_code) == (507, "InsufficientStorage"), r
    assert srv.request("HEAD", sigv4.object_path(bucket, "too-big")).status == 404
    for d in drives:
        assert os.listdir(os.path.join(d, "tmp")) == [], d          # nothing half-written left
        assert not any(os.scandir(os.path.join(d, "objects"))) or all(
            not os.listdir(e.path) for e in os.scandir(os.path.join(d, "objects"))), d
    # Small objects still fit everywhere and succeed.
    small = os.urandom(100_000)
    r = srv.request("PUT", sigv4.object_path(bucket, "fits"), body=small)
    assert r.status == 200, r
    r = srv.request("GET", sigv4.object_path(bucket, "fits"))
    assert r.status == 200 and hashlib.md5(r.body).digest() == hashlib.md5(small).digest()
    srv.stop_and_fsck()
