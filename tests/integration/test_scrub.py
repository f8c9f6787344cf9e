"""The background scrubber: it finds corruption nobody has read yet and heals it.

Both tests damage a shard on purpose; once it is healed the store is whole
again, which `cairn admin fsck` confirms with the server stopped."""
import glob
import hashlib
import os
import re
import urllib.request

import sigv4
from conftest import unique_bucket, wait_until


def metric(srv, name):
    body = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{name} (\d+)", body, re.M)
    return int(m.group(1)) if m else 0


def shard_files(srv_dirs, version_glob="*"):
    out = []
    for d in srv_dirs:
        out += glob.glob(os.path.join(d, "objects", "*", version_glob))
    return sorted(out)


def test_scrubber_repairs_unread_corruption(make_server, tmp_path):
    drives = [str(tmp_path / f"d{i}") for i in range(6)]
    srv = make_server(env={"CAIRN_DRIVES": ",".join(drives), "CAIRN_EC_BLOCK_SIZE": "4KiB",
                           "CAIRN_SCRUB_INTERVAL": "1", "CAIRN_SCRUB_RATE": "0"})
    bucket = unique_bucket()
    assert srv.request("PUT", sigv4.object_path(bucket)).status == 200
    body = os.urandom(200_000)
    assert srv.request("PUT", sigv4.object_path(bucket, "scrubbed"), body=body).status == 200
    files = shard_files(drives)
    assert len(files) == 6, files
    victim = files[0]
    original = open(victim, "rb").read()
    damaged = bytearray(original)
    damaged[4 + 100] ^= 0xFF          # inside the first block, past its CRC
    with open(victim, "wb") as f:
        f.write(damaged)
    before = metric(srv, "cairn_scrub_repaired_shards_total")
    # Nobody reads the object: only the scrubber can notice.
    # The file is renamed into place inside the heal; the counter follows it.
    wait_until(lambda: open(victim, "rb").read() == original
               and metric(srv, "cairn_scrub_repaired_shards_total") >= before + 1, 30,
               what="the scrubber to restore the corrupted shard and count it")
    assert metric(srv, "cairn_scrub_objects_total") >= 1
    r = srv.request("GET", sigv4.object_path(bucket, "scrubbed"))
    assert r.status == 200 and hashlib.md5(r.body).digest() == hashlib.md5(body).digest()
    srv.stop_and_fsck()


def test_scrubber_off_leaves_damage_for_readers(make_server, tmp_path):
    # scrub_interval 0 turns it off: the damage stays until a read finds it.
    drives = [str(tmp_path / f"d{i}") for i in range(3)]
    srv = make_server(env={"CAIRN_DRIVES": ",".join(drives), "CAIRN_EC_BLOCK_SIZE": "4KiB",
                           "CAIRN_SCRUB_INTERVAL": "0"})
    bucket = unique_bucket()
    assert srv.request("PUT", sigv4.object_path(bucket)).status == 200
    body = os.urandom(50_000)
    assert srv.request("PUT", sigv4.object_path(bucket, "k"), body=body).status == 200
    victim = shard_files(drives)[0]
    os.remove(victim)
    assert metric(srv, "cairn_scrub_objects_total") == 0
    assert not os.path.exists(victim)
    r = srv.request("GET", sigv4.object_path(bucket, "k"))
    assert r.status == 200 and r.body == body
    wait_until(lambda: os.path.exists(victim), 20, what="the heal queued by the read")
    srv.stop_and_fsck()
