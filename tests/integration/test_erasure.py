"""The erasure-coded data plane across several drives, seen from outside.

Every test starts its own `cairn server --drives D0,D1,...` (fresh temporary
directories, a 4 KiB shard block so a few hundred KiB make many stripes) and
checks what a user or an operator can observe: the bytes GET returns, status
codes and error messages, the /metrics counters, and the files on the drives.

The drive layout is part of the contract (src/data/data.h): each drive holds
`drive-id`, `tmp/` and `objects/<first 2 hex of version>/<version>.<shard>`,
and a shard file is, per stripe, 4 bytes of CRC-32C (little endian) followed
by the block.  Tests find an object's version id by diffing the shard files
on the drives before and after its PUT, then delete, truncate or flip bytes
in those files to simulate lost and rotten drives.  Shard i < k holds data,
i >= k parity.

Healing runs on a background thread, so tests wait for its effects (restored
files, counters) by polling with deadlines of seconds, never by sleeping.

Tests that lose, rot or wipe shards, or crash the server, end with `cairn
admin fsck` on the stopped server: clean once healing is done, or, where
the damage is beyond repair by design, exactly the problems it must report.
"""

import concurrent.futures
import hashlib
import http.client
import os
import random
import re
import shutil

import pytest

import sigv4
from conftest import fsck_report, md5_hex, open_put, run_fsck, unique_bucket, wait_until, xml_text

KiB = 1024
MiB = 1024 * KiB
BLOCK = 4 * KiB            # CAIRN_EC_BLOCK_SIZE in these tests
K, M = 4, 2                # the default geometry for six drives
STRIPE = K * BLOCK         # object bytes per stripe
INLINE_MAX = 16 * KiB      # default inline_max_size: up to this, no shards
CRC_LEN = 4
HEAL_DEADLINE = 15


# ---- CRC-32C (Castagnoli), to check the on-disk format independently ---------------------


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def test_crc32c_reference_value():
    # the check value of CRC-32C: guards the helper the format test relies on
    assert crc32c(b"123456789") == 0xE3069283


# ---- servers with several drives --------------------------------------------------------------


def drive_dirs(tmp_path, n):
    return [tmp_path / "drives" / f"d{i}" for i in range(n)]


def drives_arg(drives):
    return ["--drives", ",".join(str(d) for d in drives)]


def stop_expecting_fsck(srv, expected, repairable=False):
    """Stops srv if it runs (after its start's orphan collection); fsck
    must report exactly the expected problems: a set of (kind, version_id,
    shard index or None), each with the given repairable flag."""
    if srv.alive():
        srv.wait_orphan_pass()
        assert srv.stop() == 0
    code, doc = srv.fsck_json()
    found = [(p["kind"], p.get("version_id"), p.get("shard")) for p in doc["check"]["problems"]]
    assert code == 1 and sorted(found, key=str) == sorted(expected, key=str), \
        f"fsck, want exactly {sorted(expected, key=str)}: " + fsck_report(code, doc)
    assert all(p["repairable"] == repairable for p in doc["check"]["problems"]), fsck_report(code, doc)
    return doc


def start_ec(make_server, tmp_path, n=6, env=None, start=True):
    """A server erasure-coding across n fresh drive directories."""
    drives = drive_dirs(tmp_path, n)
    full_env = {"CAIRN_EC_BLOCK_SIZE": "4KiB"}
    full_env.update(env or {})
    srv = make_server(env=full_env, args=drives_arg(drives), start=start)
    return srv, drives


def new_bucket(srv):
    name = unique_bucket("ec")
    srv.client().create_bucket(Bucket=name)
    return name


def put(srv, bucket, key, data):
    r = srv.request("PUT", sigv4.object_path(bucket, key), body=data)
    assert r.status == 200, r
    assert r.header("ETag") == f'"{md5_hex(data)}"', r.headers
    return r


def get(srv, bucket, key, rng=None):
    headers = {"Range": rng} if rng else None
    return srv.request("GET", sigv4.object_path(bucket, key), headers=headers)


def assert_reads_back(srv, bucket, key, data):
    r = get(srv, bucket, key)
    assert r.status == 200, r
    assert len(r.body) == len(data), f"{key}: got {len(r.body)} bytes, want {len(data)}"
    assert r.body == data, f"{key}: bytes differ from what was PUT"


def payload(size, seed):
    """Deterministic bytes that differ at every offset of the object."""
    return random.Random(seed).randbytes(size)


# ---- what is on the drives -------------------------------------------------------------------------


SHARD_NAME = re.compile(r"^([0-9a-f]{8,32})\.(\d+)$")


def shard_files(drives):
    """{version_id: {shard index: Path}} for every shard file on the drives."""
    out = {}
    for d in drives:
        objects = d / "objects"
        if not objects.is_dir():
            continue
        for sub in objects.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                m = SHARD_NAME.match(f.name)
                assert m, f"unexpected file in a drive's objects/: {f}"
                assert sub.name == m.group(1)[:2], f"shard in the wrong fan-out directory: {f}"
                idx = int(m.group(2))
                assert idx not in out.setdefault(m.group(1), {}), f"shard {idx} twice: {f}"
                out[m.group(1)][idx] = f
    return out


def tmp_files(drives):
    out = []
    for d in drives:
        t = d / "tmp"
        if t.is_dir():
            out.extend(str(p) for p in t.iterdir())
    return sorted(out)


def drive_of(path, drives):
    for d in drives:
        if d in path.parents:
            return d
    raise AssertionError(f"{path} is on none of the drives")


def put_ec(srv, drives, bucket, key, data):
    """PUTs an object that must be erasure-coded; returns (version_id, {idx: Path})."""
    before = shard_files(drives)
    put(srv, bucket, key, data)
    after = shard_files(drives)
    new = [v for v in after if v not in before]
    assert len(new) == 1, f"expected one new version's shards, found {new}"
    return new[0], after[new[0]]


def geometry(size, k, block):
    """(stripes, last block length) as the format defines them."""
    stripe = k * block
    n = (size + stripe - 1) // stripe
    if n == 0:
        return 0, 0
    rem = size - (n - 1) * stripe
    return n, (rem + k - 1) // k


def shard_file_size(size, k, block):
    n, last = geometry(size, k, block)
    return 0 if n == 0 else (n - 1) * (CRC_LEN + block) + CRC_LEN + last


def block_offset(stripe):
    """Where block `stripe` (its CRC) starts in a shard file."""
    return stripe * (CRC_LEN + BLOCK)


# ---- metrics ----------------------------------------------------------------------------------------


def metrics(srv):
    return srv.data_metrics()


def wait_metric(srv, name, at_least, deadline=HEAL_DEADLINE):
    return wait_until(lambda: metrics(srv)[name] >= at_least and metrics(srv), deadline,
                      what=f"cairn_data_{name}_total >= {at_least} (now {metrics(srv)[name]})")


def wait_healed(paths_and_originals, deadline=HEAL_DEADLINE):
    """Waits until every path holds exactly its saved original bytes."""
    def restored():
        return all(p.is_file() and p.read_bytes() == orig for p, orig in paths_and_originals)
    wait_until(restored, deadline, interval=0.05,
               what="healing to rewrite " + ", ".join(str(p) for p, _ in paths_and_originals))


# ---- 1. round trips, ranges and the on-disk layout -----------------------------------------------


ROUND_TRIP_SIZES = [0, 1, INLINE_MAX, INLINE_MAX + 1, STRIPE * 2 - 1, STRIPE * 2, STRIPE * 2 + 1,
                    STRIPE + BLOCK + 1, 3 * MiB + 123]


@pytest.mark.deadline(60)
def test_round_trips_of_many_sizes_on_six_drives(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    for i, size in enumerate(ROUND_TRIP_SIZES):
        data = payload(size, i)
        put(srv, b, f"obj-{size}", data)
        assert_reads_back(srv, b, f"obj-{size}", data)
        h = srv.request("HEAD", sigv4.object_path(b, f"obj-{size}"))
        assert h.status == 200 and int(h.header("Content-Length")) == size, h
    # objects above inline_max_size, and only they, have shards
    assert len(shard_files(drives)) == sum(1 for s in ROUND_TRIP_SIZES if s > INLINE_MAX)
    assert tmp_files(drives) == []
    m = metrics(srv)
    assert m["degraded_reads"] == 0 and m["corrupt_blocks"] == 0 and m["missing_shards"] == 0, m


@pytest.mark.deadline(60)
def test_tiny_erasure_coded_objects_with_inline_storage_off(make_server, tmp_path):
    """inline_max_size 0 sends even a few bytes through the erasure code, where
    the last stripe's blocks are shorter than k bytes of padding."""
    srv, drives = start_ec(make_server, tmp_path, env={"CAIRN_INLINE_MAX_SIZE": "0"})
    b = new_bucket(srv)
    sizes = [1, 2, 3, 4, 5, 7, BLOCK - 1, BLOCK, BLOCK + 1, STRIPE - 1, STRIPE, STRIPE + 1]
    for size in sizes:
        data = payload(size, size)
        vid, shards = put_ec(srv, drives, b, f"t{size}", data)
        assert sorted(shards) == list(range(K + M)), shards
        for p in shards.values():
            assert p.stat().st_size == shard_file_size(size, K, BLOCK), (size, p)
        assert_reads_back(srv, b, f"t{size}", data)
    # a 5-byte object survives losing two shards, one of them a data shard
    vid, shards = put_ec(srv, drives, b, "five", b"abcde")
    lost = [(shards[i], shards[i].read_bytes()) for i in (0, K)]
    for p, _ in lost:
        p.unlink()
    assert_reads_back(srv, b, "five", b"abcde")
    wait_healed(lost)
    # the empty object needs no shards at all
    put(srv, b, "empty", b"")
    assert_reads_back(srv, b, "empty", b"")
    srv.stop_and_fsck()


@pytest.mark.deadline(60)
def test_ranges_across_block_and_stripe_boundaries(make_server, tmp_path):
    srv, _drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    size = 3 * MiB + 123
    data = payload(size, 7)
    put(srv, b, "big", data)
    ranges = [
        (0, 0), (BLOCK - 10, BLOCK + 10),                 # across a block boundary
        (STRIPE - 4, STRIPE + 4),                          # across a stripe boundary
        (STRIPE * 3 - 1, STRIPE * 3),                      # exactly the two bytes around one
        (STRIPE - 1, STRIPE * 5 + 7),                      # several whole stripes
        (STRIPE * 10, STRIPE * 11 - 1),                    # exactly one stripe
        (size - 1, size - 1),                              # the last byte (short last stripe)
        (size - STRIPE - 17, size - 1),
    ]
    for start, end in ranges:
        r = get(srv, b, "big", f"bytes={start}-{end}")
        assert r.status == 206, (start, end, r)
        assert r.header("Content-Range") == f"bytes {start}-{end}/{size}", r.headers
        assert r.body == data[start:end + 1], (start, end)
    r = get(srv, b, "big", "bytes=-5000")
    assert r.status == 206 and r.body == data[-5000:]
    r = get(srv, b, "big", f"bytes={size - STRIPE - 3}-")
    assert r.status == 206 and r.body == data[size - STRIPE - 3:]


@pytest.mark.deadline(60)
def test_shard_files_follow_the_documented_format(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    size = 5 * STRIPE + 2 * BLOCK + 3          # a short, padded last stripe
    data = payload(size, 11)
    vid, shards = put_ec(srv, drives, b, "fmt", data)
    assert sorted(shards) == list(range(K + M))
    # one shard per drive, on six distinct drives
    assert len({drive_of(p, drives) for p in shards.values()}) == K + M
    for d in drives:
        ident = (d / "drive-id").read_text().strip()
        assert re.fullmatch(r"[0-9a-f]{16}", ident), ident
        assert (d / "tmp").is_dir()
    assert len({(d / "drive-id").read_text() for d in drives}) == len(drives)
    # [crc32c le | block] per stripe; every CRC matches its block
    nstripes, last = geometry(size, K, BLOCK)
    blocks = {}
    for idx, p in shards.items():
        raw = p.read_bytes()
        assert len(raw) == shard_file_size(size, K, BLOCK), (idx, len(raw))
        blocks[idx] = []
        for s in range(nstripes):
            blen = last if s == nstripes - 1 else BLOCK
            off = block_offset(s)
            crc = int.from_bytes(raw[off:off + CRC_LEN], "little")
            blk = raw[off + CRC_LEN:off + CRC_LEN + blen]
            assert crc == crc32c(blk), f"shard {idx} stripe {s}: CRC does not match its block"
            blocks[idx].append(blk)
    # the data shards, interleaved stripe by stripe, are the object (plus zero padding)
    joined = b"".join(blocks[i][s] for s in range(nstripes) for i in range(K))
    assert joined[:size] == data
    assert joined[size:] == b"\0" * (len(joined) - size)


@pytest.mark.deadline(60)
def test_placement_uses_exactly_k_plus_m_of_eight_drives(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path, n=8)
    b = new_bucket(srv)
    used = set()
    for i in range(12):
        data = payload(STRIPE * 3 + i, 100 + i)
        _vid, shards = put_ec(srv, drives, b, f"p{i}", data)
        assert sorted(shards) == list(range(K + M)), shards
        ds = {drive_of(p, drives) for p in shards.values()}
        assert len(ds) == K + M, f"object p{i}: shards on {len(ds)} distinct drives"
        used |= ds
    # rendezvous placement spreads objects over every drive
    assert used == set(drives)
    for i in range(12):
        assert_reads_back(srv, b, f"p{i}", payload(STRIPE * 3 + i, 100 + i))


@pytest.mark.deadline(60)
@pytest.mark.parametrize("ndrives,env,k,m", [
    (1, {}, 1, 0), (2, {}, 1, 1), (3, {}, 2, 1), (4, {}, 2, 2), (5, {}, 3, 2), (6, {}, 4, 2),
    (6, {"CAIRN_EC_DATA": "2", "CAIRN_EC_PARITY": "1"}, 2, 1),
    (5, {"CAIRN_EC_DATA": "5", "CAIRN_EC_PARITY": "0"}, 5, 0),
])
def test_geometry_for_each_drive_count(make_server, tmp_path, ndrives, env, k, m):
    srv, drives = start_ec(make_server, tmp_path, n=ndrives, env=env)
    b = new_bucket(srv)
    size = 40000
    data = payload(size, ndrives)
    _vid, shards = put_ec(srv, drives, b, "g", data)
    assert sorted(shards) == list(range(k + m)), shards
    assert len({drive_of(p, drives) for p in shards.values()}) == k + m
    for p in shards.values():  # the file length reveals k
        assert p.stat().st_size == shard_file_size(size, k, BLOCK), p
    assert_reads_back(srv, b, "g", data)
    if m > 0:  # m shard files may go; the object still reads, and they are healed
        lost = [(shards[idx], shards[idx].read_bytes()) for idx in list(shards)[-m:]]
        for p, _ in lost:
            p.unlink()
        assert_reads_back(srv, b, "g", data)
        wait_healed(lost)
    srv.stop_and_fsck()


# ---- 2./3. missing and corrupt shards: rebuilt on read, then healed -----------------------------


@pytest.mark.deadline(60)
def test_missing_shards_are_rebuilt_and_healed(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    data = payload(50 * BLOCK + 123, 21)
    vid, shards = put_ec(srv, drives, b, "heal-me", data)
    saved = {i: p.read_bytes() for i, p in shards.items()}
    m0 = metrics(srv)

    # one data shard gone
    shards[0].unlink()
    assert_reads_back(srv, b, "heal-me", data)
    wait_metric(srv, "degraded_reads", m0["degraded_reads"] + 1)
    assert metrics(srv)["missing_shards"] >= m0["missing_shards"] + 1
    wait_healed([(shards[0], saved[0])])
    wait_metric(srv, "healed_shards", m0["healed_shards"] + 1)

    # then a data and a parity shard together (m = 2), read through a range too
    m1 = metrics(srv)
    shards[2].unlink()
    shards[K + 1].unlink()
    r = get(srv, b, "heal-me", f"bytes={STRIPE - 5}-{STRIPE * 3 + 5}")
    assert r.status == 206 and r.body == data[STRIPE - 5:STRIPE * 3 + 6], r
    assert_reads_back(srv, b, "heal-me", data)
    wait_metric(srv, "degraded_reads", m1["degraded_reads"] + 1)
    assert metrics(srv)["missing_shards"] >= m1["missing_shards"] + 2
    wait_healed([(shards[2], saved[2]), (shards[K + 1], saved[K + 1])])
    wait_metric(srv, "healed_shards", m1["healed_shards"] + 2)

    # two parity shards: GET never needs them, yet notices and heals them
    m2 = metrics(srv)
    shards[K].unlink()
    shards[K + 1].unlink()
    assert_reads_back(srv, b, "heal-me", data)
    wait_healed([(shards[K], saved[K]), (shards[K + 1], saved[K + 1])])
    wait_metric(srv, "healed_shards", m2["healed_shards"] + 2)

    # healed: every file as written, and a read is no longer degraded
    assert {i: p.read_bytes() for i, p in shards.items()} == saved
    m3 = metrics(srv)
    assert_reads_back(srv, b, "heal-me", data)
    m4 = metrics(srv)
    assert m4["degraded_reads"] == m3["degraded_reads"], (m3, m4)
    assert m4["missing_shards"] == m3["missing_shards"], (m3, m4)
    assert m4["heal_failures"] == 0, m4
    assert tmp_files(drives) == []
    srv.stop_and_fsck()


@pytest.mark.deadline(60)
def test_flipped_byte_is_detected_rebuilt_and_healed(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    data = payload(40 * BLOCK + 77, 31)
    vid, shards = put_ec(srv, drives, b, "rot", data)
    saved = {i: p.read_bytes() for i, p in shards.items()}
    m0 = metrics(srv)

    # flip one byte inside stripe 3's block (past the CRC) of data shard 1
    target = shards[1]
    pos = block_offset(3) + CRC_LEN + 100
    raw = bytearray(saved[1])
    raw[pos] ^= 0x5A
    target.write_bytes(bytes(raw))

    assert_reads_back(srv, b, "rot", data)
    m1 = wait_metric(srv, "degraded_reads", m0["degraded_reads"] + 1)
    assert m1["corrupt_blocks"] >= m0["corrupt_blocks"] + 1, (m0, m1)
    assert m1["missing_shards"] == m0["missing_shards"], (m0, m1)
    wait_healed([(target, saved[1])])
    wait_metric(srv, "healed_shards", m0["healed_shards"] + 1)
    # every shard file byte-identical to the original; reads clean again
    assert {i: p.read_bytes() for i, p in shards.items()} == saved
    m2 = metrics(srv)
    assert_reads_back(srv, b, "rot", data)
    m3 = metrics(srv)
    assert (m3["corrupt_blocks"], m3["degraded_reads"]) == (m2["corrupt_blocks"], m2["degraded_reads"])
    assert m3["heal_failures"] == 0
    srv.stop_and_fsck()


@pytest.mark.deadline(60)
def test_truncated_shard_is_rebuilt_and_healed(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    data = payload(30 * BLOCK + 5, 41)
    vid, shards = put_ec(srv, drives, b, "short", data)
    saved = {i: p.read_bytes() for i, p in shards.items()}
    m0 = metrics(srv)
    # shard 3 cut in the middle of a block, as after a torn write
    with open(shards[3], "r+b") as f:
        f.truncate(block_offset(4) + CRC_LEN + 17)
    assert_reads_back(srv, b, "short", data)
    wait_metric(srv, "corrupt_blocks", m0["corrupt_blocks"] + 1)
    wait_healed([(shards[3], saved[3])])
    assert metrics(srv)["heal_failures"] == 0
    srv.stop_and_fsck()


# ---- 4. more lost than parity can rebuild ------------------------------------------------------------


def assert_unreadable(srv, bucket, key, size):
    r = get(srv, bucket, key)
    assert r.status == 500, r
    assert r.error_code == "InternalError", r
    msg = xml_text(r.xml(), "Message") or ""
    assert f"{bucket}/{key}" in msg, f"the error message does not name the object: {msg!r}"
    # HEAD answers from metadata
    h = srv.request("HEAD", sigv4.object_path(bucket, key))
    assert h.status == 200 and int(h.header("Content-Length")) == size, h


@pytest.mark.deadline(60)
def test_three_lost_shards_answer_500_naming_the_object(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    key = "dir/lost object.bin"
    data = payload(20 * BLOCK + 9, 51)
    vid, shards = put_ec(srv, drives, b, key, data)
    m0 = metrics(srv)
    for i in (0, 3, K + 1):     # two data shards and one parity shard: 3 > m
        shards[i].unlink()
    assert_unreadable(srv, b, key, len(data))
    r = get(srv, b, key, "bytes=100-200")
    assert r.status == 500 and r.error_code == "InternalError", r
    # healing cannot help and says so
    wait_metric(srv, "heal_failures", m0["heal_failures"] + 1)
    assert not shards[0].exists()
    # the server still serves everything else
    put(srv, b, "other", data)
    assert_reads_back(srv, b, "other", data)
    # fsck: the three shards and the version are lost, nothing else is wrong
    stop_expecting_fsck(srv, {("missing_shard", vid, i) for i in (0, 3, K + 1)} | {("lost_version", vid, None)})


@pytest.mark.deadline(60)
def test_every_shard_lost_answers_500_not_404(make_server, tmp_path):
    """An object that is listed and HEADs fine but whose shards are all gone has
    lost data: GET must say so (500 naming it), not claim the key is absent."""
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    data = payload(10 * BLOCK, 52)
    vid, shards = put_ec(srv, drives, b, "all-gone", data)
    for p in shards.values():
        p.unlink()
    keys = [o["Key"] for o in srv.client().list_objects_v2(Bucket=b).get("Contents", [])]
    assert keys == ["all-gone"]
    assert_unreadable(srv, b, "all-gone", len(data))
    stop_expecting_fsck(srv, {("missing_shard", vid, i) for i in range(K + M)} | {("lost_version", vid, None)})


@pytest.mark.deadline(60)
def test_rot_past_parity_in_a_later_stripe_never_returns_wrong_bytes(make_server, tmp_path):
    """The first stripes are fine, so the 200 has gone out before the bad stripe
    is reached: the body must stop short, never carry rebuilt garbage."""
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    data = payload(64 * STRIPE, 53)            # 1 MiB, 64 stripes
    vid, shards = put_ec(srv, drives, b, "rotten", data)
    m0 = metrics(srv)
    bad_stripe = 40
    for i in (0, 1, K):                         # 3 > m blocks of the same stripe
        raw = bytearray(shards[i].read_bytes())
        raw[block_offset(bad_stripe) + CRC_LEN + 7] ^= 0xFF
        shards[i].write_bytes(bytes(raw))
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    path = sigv4.object_path(b, "rotten")
    headers, _s, _d = sigv4.sign_request("GET", path, None, {"Host": srv.host}, *srv.root,
                                         hashlib.sha256(b"").hexdigest())
    got = b""
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status == 200:
            try:
                while True:
                    chunk = resp.read(64 * KiB)
                    if not chunk:
                        break
                    got += chunk
            except (http.client.IncompleteRead, ConnectionError) as e:
                if isinstance(e, http.client.IncompleteRead):
                    got += e.partial
        else:  # answering an error up front would be fine too, if it is a 500
            assert resp.status == 500, resp.status
    finally:
        conn.close()
    assert len(got) < len(data), "a body with more than m rotten blocks per stripe came back whole"
    assert got == data[:len(got)], "the body carried wrong bytes"
    assert len(got) <= bad_stripe * STRIPE + STRIPE
    wait_metric(srv, "heal_failures", m0["heal_failures"] + 1)
    assert metrics(srv)["corrupt_blocks"] >= m0["corrupt_blocks"] + 3
    # fsck reads every block: the three rotten shards, the version lost
    stop_expecting_fsck(srv, {("corrupt_shard", vid, i) for i in (0, 1, K)} | {("lost_version", vid, None)})


# ---- 5. a whole drive lost while running -------------------------------------------------------------


@pytest.mark.deadline(60)
def test_whole_drive_removed_while_running(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    old = {f"old{i}": payload(s, 60 + i) for i, s in enumerate([100, 20000, 3 * STRIPE + 1, 300 * KiB])}
    for k, v in old.items():
        put(srv, b, k, v)
    lost = [(p, p.read_bytes()) for shards in shard_files(drives).values() for p in shards.values()
            if drive_of(p, drives) == drives[2]]
    assert len(lost) == 3
    shutil.rmtree(drives[2])
    # new writes succeed: k+1 = 5 shards make write quorum (a server may also
    # recreate the directory and write all six; either way at least five)
    new = {f"new{i}": payload(s, 70 + i) for i, s in enumerate([5, 17000, 5 * STRIPE + 3, 700 * KiB])}
    for k, v in new.items():
        before = shard_files(drives)
        put(srv, b, k, v)
        if len(v) > INLINE_MAX:
            after = shard_files(drives)
            vids = [x for x in after if x not in before]
            assert len(vids) == 1
            on = {drive_of(p, drives) for p in after[vids[0]].values()}
            assert len(on) >= K + 1, on
    for k, v in {**old, **new}.items():
        assert_reads_back(srv, b, k, v)
    r = get(srv, b, "old3", f"bytes={STRIPE - 1}-{STRIPE * 7}")
    assert r.status == 206 and r.body == old["old3"][STRIPE - 1:STRIPE * 7 + 1]
    assert srv.alive()
    # the degraded reads above queued heals: the removed drive gets its shards back
    wait_healed(lost)
    srv.stop_and_fsck()


@pytest.mark.deadline(60)
def test_two_drives_removed_breaks_write_quorum_cleanly(make_server, tmp_path):
    """With 4+2 a write needs k+1 = 5 shards: two unusable drives must refuse a
    large PUT (5xx, nothing visible, no temp files left) while small inline PUTs
    and reads of what was stored keep working.  A drive is made unusable by
    putting a regular file where its directory was (nothing can recreate it)."""
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    kept = payload(10 * STRIPE + 1, 65)
    kept_vid, kept_shards = put_ec(srv, drives, b, "kept", kept)
    for d in (drives[1], drives[4]):
        shutil.rmtree(d)
        d.write_bytes(b"this drive has failed\n")
    r = srv.request("PUT", sigv4.object_path(b, "refused"), body=payload(5 * STRIPE, 66))
    assert 500 <= r.status < 600, r
    assert r.error_code in ("InternalError", "InsufficientStorage", "ServiceUnavailable"), r
    assert srv.request("HEAD", sigv4.object_path(b, "refused")).status == 404
    assert tmp_files(drives) == [], "a refused PUT left temporary shards"
    vids = shard_files(drives)
    assert len(vids) == 1, f"a refused PUT left shard files: {vids}"
    put(srv, b, "small", b"inline still works")
    assert_reads_back(srv, b, "small", b"inline still works")
    assert_reads_back(srv, b, "kept", kept)
    # fsck opens the drives as a start would, and cannot while two are files
    srv.wait_orphan_pass()
    assert srv.stop() == 0
    code, doc, cp = run_fsck(srv.data_dir, srv.extra_env, srv.fsck_args())
    assert code == 1 and "cannot open the data drives" in cp.stderr, fsck_report(code, doc, cp)
    # Replaced by new, empty disks: the two shards of "kept" they held are
    # unreachable (their drive ids are gone), and nothing else is amiss: the
    # refused PUT left no shard anywhere.
    for d in (drives[1], drives[4]):
        d.unlink()
        d.mkdir()
    stop_expecting_fsck(srv, {("unreachable_shard", kept_vid, i) for i, p in kept_shards.items()
                              if drive_of(p, drives) in (drives[1], drives[4])})


@pytest.mark.deadline(60)
def test_drive_wiped_while_running_is_refilled_and_survives_restart(make_server, tmp_path):
    """A drive emptied under the running server (a replaced disk mounted at the
    same path): reads rebuild from parity and healing rewrites the lost shards;
    after a restart those shards must still be found, i.e. reads are clean."""
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    objs = {f"w{i}": payload(STRIPE * (3 + i) + i, 400 + i) for i in range(3)}
    for k, v in objs.items():
        put(srv, b, k, v)
    before = shard_files(drives)
    wiped = drives[3]
    lost = {p: p.read_bytes() for shards in before.values() for p in shards.values()
            if drive_of(p, drives) == wiped}
    assert len(lost) == 3
    shutil.rmtree(wiped)
    wiped.mkdir()
    for k, v in objs.items():
        assert_reads_back(srv, b, k, v)
    wait_healed(list(lost.items()))
    assert srv.stop() == 0
    srv.start()
    for k, v in objs.items():
        assert_reads_back(srv, b, k, v)
    m = metrics(srv)
    assert m["missing_shards"] == 0 and m["degraded_reads"] == 0, \
        f"shards healed onto the wiped drive are not found after a restart: {m}"
    srv.stop_and_fsck()


# ---- 6. placement is by drive id, not position ---------------------------------------------------------


@pytest.mark.deadline(60)
def test_restart_with_drives_in_another_order(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    objs = {f"o{i}": payload(s, 80 + i) for i, s in
            enumerate([10, 16385, STRIPE * 2 + 5, 200 * KiB, 1 * MiB + 1])}
    for k, v in objs.items():
        put(srv, b, k, v)
    ids = {d: (d / "drive-id").read_text() for d in drives}

    shuffled = [drives[i] for i in (3, 5, 0, 4, 1, 2)]
    assert srv.stop() == 0
    srv.extra_args = drives_arg(shuffled)
    srv.start()
    for k, v in objs.items():
        assert_reads_back(srv, b, k, v)
    m = metrics(srv)
    assert m["degraded_reads"] == 0 and m["missing_shards"] == 0, \
        f"reads after reordering the drives needed parity: {m}"
    assert {d: (d / "drive-id").read_text() for d in drives} == ids
    put(srv, b, "after", objs["o4"])
    assert_reads_back(srv, b, "after", objs["o4"])

    # reads use the placement recorded at write time even when the drive set
    # shrinks: with one drive left out, everything still reads (from parity)
    assert srv.stop() == 0
    srv.extra_args = drives_arg(list(reversed(shuffled[1:])))
    srv.start()
    for k, v in {**objs, "after": objs["o4"]}.items():
        assert_reads_back(srv, b, k, v)
    # fsck with the server's configuration: the left-out drive's shards are
    # unreachable (not missing, not repairable: the drive may come back)...
    left_out = shuffled[0]
    stop_expecting_fsck(srv, {("unreachable_shard", vid, i) for vid, shards in shard_files(drives).items()
                              for i, p in shards.items() if drive_of(p, drives) == left_out})
    # ...and with every drive back, in yet another order, the store is whole.
    srv.extra_args = drives_arg(list(reversed(drives)))
    srv.fsck()


# ---- 7. overwrite and delete remove the old shards ------------------------------------------------------


@pytest.mark.deadline(60)
def test_overwrite_and_delete_remove_old_shard_files(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    s3 = srv.client()
    b = new_bucket(srv)
    v1, _ = put_ec(srv, drives, b, "k", payload(100 * KiB, 90))
    v2, _ = put_ec(srv, drives, b, "k", payload(60 * KiB, 91))
    assert v1 != v2
    assert set(shard_files(drives)) == {v2}, "the replaced version's shards remain"
    put(srv, b, "k", b"small now")                 # replaced by an inline object
    assert shard_files(drives) == {}, "shards of a version replaced by an inline object remain"
    assert_reads_back(srv, b, "k", b"small now")

    v3, _ = put_ec(srv, drives, b, "k", payload(80 * KiB, 92))
    assert set(shard_files(drives)) == {v3}
    s3.delete_object(Bucket=b, Key="k")
    assert shard_files(drives) == {}, "a deleted object's shards remain"
    assert get(srv, b, "k").status == 404

    # DeleteObjects removes the shards of every key it deletes
    for i in range(3):
        put(srv, b, f"m{i}", payload(30 * KiB + i, 93 + i))
    assert len(shard_files(drives)) == 3
    s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": f"m{i}"} for i in range(3)]})
    assert shard_files(drives) == {}
    assert tmp_files(drives) == []


# ---- 8. crash in the middle of a PUT --------------------------------------------------------------------


@pytest.mark.deadline(60)
def test_kill_9_during_large_put_leaves_no_trace(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    kept = payload(100 * KiB, 99)
    kept_vid, _ = put_ec(srv, drives, b, "committed", kept)

    sock = open_put(srv, b, "partial", 64 * MiB)
    chunk = os.urandom(256 * KiB)
    for _ in range(16):                          # 4 MiB of the 64 MiB
        sock.sendall(chunk)
    wait_until(lambda: tmp_files(drives), 10, what="the upload's temporary shard files")
    srv.kill()
    sock.close()

    srv.start()                                  # drives are opened before it listens
    assert tmp_files(drives) == [], "temporary shards survived the restart"
    assert set(shard_files(drives)) == {kept_vid}, "shards of the interrupted upload remain"
    h = srv.request("HEAD", sigv4.object_path(b, "partial"))
    assert h.status == 404, h
    keys = [o["Key"] for o in srv.client().list_objects_v2(Bucket=b).get("Contents", [])]
    assert keys == ["committed"]
    assert_reads_back(srv, b, "committed", kept)
    put(srv, b, "after", kept)
    assert_reads_back(srv, b, "after", kept)
    srv.stop_and_fsck()


# ---- 9. configuration errors ---------------------------------------------------------------------------


def start_expecting_exit(srv, timeout=20):
    srv.spawn()
    try:
        code = srv.proc.wait(timeout)
    except Exception:
        srv.kill()
        raise AssertionError("the server kept running with an invalid drive configuration")
    return code, srv.log_text() + srv.stdout_text()


@pytest.mark.deadline(60)
def test_geometry_larger_than_the_drive_set_is_refused(make_server, tmp_path):
    srv, _ = start_ec(make_server, tmp_path, env={"CAIRN_EC_DATA": "5", "CAIRN_EC_PARITY": "2"},
                      start=False)
    code, text = start_expecting_exit(srv)
    assert code == 2, text
    assert "drive" in text.lower() and ("ec_data" in text or "exceeds" in text), text


@pytest.mark.deadline(60)
@pytest.mark.parametrize("spelling", ["same", "trailing-slash"])
def test_the_same_directory_twice_is_refused(make_server, tmp_path, spelling):
    drives = drive_dirs(tmp_path, 3)
    twice = str(drives[1]) + ("/" if spelling == "trailing-slash" else "")
    arg = ",".join([str(drives[0]), str(drives[1]), twice, str(drives[2])])
    srv = make_server(env={"CAIRN_EC_BLOCK_SIZE": "4KiB"}, args=["--drives", arg], start=False)
    code, text = start_expecting_exit(srv)
    assert code == 2, text
    assert "twice" in text or "same" in text, f"the message does not say what is wrong: {text}"


# ---- 10. concurrency -------------------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_concurrent_puts_and_gets_on_six_drives(make_server, tmp_path):
    srv, drives = start_ec(make_server, tmp_path)
    b = new_bucket(srv)
    sizes = [0, 1, 100, INLINE_MAX, INLINE_MAX + 1, STRIPE * 3 + 7, 200 * KiB + 3, 700 * KiB]
    existing = {f"e{i}": payload(sizes[i % len(sizes)] + i, 200 + i) for i in range(10)}
    for k, v in existing.items():
        put(srv, b, k, v)
    fresh = {f"n{i}": payload(sizes[i % len(sizes)] + 2 * i, 300 + i) for i in range(20)}

    def do_put(key):
        r = srv.request("PUT", sigv4.object_path(b, key), body=fresh[key])
        return ("put", key, r.status, r.header("ETag"))

    def do_get(key):
        r = get(srv, b, key)
        return ("get", key, r.status, md5_hex(r.body))

    jobs = [(do_put, k) for k in fresh] + [(do_get, f"e{i % 10}") for i in range(40)]
    random.Random(5).shuffle(jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda j: j[0](j[1]), jobs))
    for kind, key, status, digest in results:
        if kind == "put":
            assert status == 200 and digest == f'"{md5_hex(fresh[key])}"', (key, status, digest)
        else:
            assert status == 200 and digest == md5_hex(existing[key]), (key, status)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(lambda k: (k, md5_hex(get(srv, b, k).body)), list(fresh) * 2))
    for key, digest in got:
        assert digest == md5_hex(fresh[key]), key
    ec_objects = sum(1 for v in {**existing, **fresh}.values() if len(v) > INLINE_MAX)
    assert len(shard_files(drives)) == ec_objects
    assert tmp_files(drives) == []
    m = metrics(srv)
    assert m["degraded_reads"] == 0 and m["corrupt_blocks"] == 0, m
