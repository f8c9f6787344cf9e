"""`cairn admin fsck [--repair] [--json]`: metadata and the bytes on the
drives agree, and what fsck finds it reports (exit 1), repairs when it can
(--repair: heal from parity, remove orphans, abort ownerless uploads, delete
ownerless rows) and then checks again.  It refuses to run beside the server,
whose uploads in flight would look like orphans."""
import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess

import pytest

from conftest import CAIRN_BIN, pg_cluster, postgres, server_env, unique_bucket

BLOCK = "4KiB"


def drive_env(tmp_path, n=6):
    return {"CAIRN_DRIVES": ",".join(str(tmp_path / f"d{i}") for i in range(n)), "CAIRN_EC_BLOCK_SIZE": BLOCK,
            "CAIRN_SCRUB_INTERVAL": "0"}


def fsck(srv, *args, env=None):
    cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(srv.data_dir), "fsck", *args], capture_output=True,
                        text=True, timeout=120, env=server_env(env or srv.extra_env), stdin=subprocess.DEVNULL)
    return cp


def fsck_json(srv, *args):
    cp = fsck(srv, "--json", *args)
    assert cp.returncode in (0, 1), cp.stderr
    doc = json.loads(cp.stdout)
    return cp.returncode, doc


def kinds(doc, section="check"):
    return sorted(p["kind"] for p in doc[section]["problems"])


def shards(tmp_path, version=None):
    return sorted(glob.glob(str(tmp_path / "d*" / "objects" / "*" / ((version + ".*") if version else "*"))))


@pytest.fixture
def store(make_server, tmp_path):
    """A stopped server whose six drives hold an inline object, a plain one, a
    multipart object and an upload in progress."""
    srv = make_server(env=drive_env(tmp_path))
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="small", Body=b"tiny")
    big = os.urandom(100_000)
    s3.put_object(Bucket=b, Key="big", Body=big)
    uid = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    p1 = os.urandom(5 * 1024 * 1024)
    e = s3.upload_part(Bucket=b, Key="mp", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
    live = s3.create_multipart_upload(Bucket=b, Key="live")["UploadId"]
    s3.upload_part(Bucket=b, Key="live", UploadId=live, PartNumber=1, Body=os.urandom(20_000))
    assert srv.stop() == 0
    srv.bucket, srv.big, srv.p1 = b, big, p1
    return srv


def version_of(srv, key):
    if postgres():
        return pg_cluster().sql(f"SELECT version_id FROM objects WHERE key = convert_to('{key}', 'UTF8')",
                                db=srv.metadata_db()).stdout.strip()
    db = sqlite3.connect(str(srv.data_dir / "meta.db"))
    try:
        return db.execute("SELECT version_id FROM objects WHERE key = ?", (key,)).fetchone()[0]
    finally:
        db.close()


def test_a_healthy_store_is_consistent(store, tmp_path):
    cp = fsck(store)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "3 placements, 18 shards: consistent" in cp.stdout
    code, doc = fsck_json(store)
    assert code == 0 and doc["ok"] and doc["check"]["problems"] == []


def test_each_run_records_its_audit_event(store, tmp_path):
    """fsck opens the store itself, and still leaves an admin:Fsck event, as
    every admin command does (docs/audit.md); --json output stays JSON."""
    assert fsck(store).returncode == 0
    code, _ = fsck_json(store, "--repair")
    assert code == 0
    lines = store.admin("audit", "query", "--action", "admin:Fsck").stdout.splitlines()
    evs = [json.loads(x) for x in lines]
    assert len(evs) == 2, lines
    assert all(e["principal"] == "admin" and e["source_address"] == "local" and e["status"] == 200
               and e["outcome"] == "success" for e in evs), evs
    # An event it cannot record is said on stderr; the exit code still
    # says whether the store is consistent.
    bad = tmp_path / "not-a-database"
    bad.mkdir()
    cp = fsck(store, env={**store.extra_env, "CAIRN_AUDIT_METADATA_URL": f"sqlite://{bad}"})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "cannot open the audit database" in cp.stderr, cp.stderr


def test_refuses_to_run_beside_the_server(make_server, tmp_path):
    srv = make_server(env=drive_env(tmp_path))
    cp = fsck(srv)
    assert cp.returncode == 1 and "in use by another cairn process" in cp.stderr, cp.stderr


def test_damage_within_parity_is_reported_then_healed(store, tmp_path):
    v = version_of(store, "big")
    files = shards(tmp_path, v)
    assert len(files) == 6
    os.remove(files[0])                                   # missing
    with open(files[1], "r+b") as f:                      # corrupt
        f.seek(10)
        f.write(b"\xff\x00\xff")
    original = {f: open(f, "rb").read() for f in files[1:]}
    code, doc = fsck_json(store)
    assert code == 1 and not doc["ok"]
    assert kinds(doc) == ["corrupt_shard", "missing_shard"]
    assert all(p["repairable"] and p["version_id"] == v for p in doc["check"]["problems"])
    code, doc = fsck_json(store, "--repair")
    assert code == 0 and doc["ok"] and doc["after_repair"]["ok"], doc
    assert os.path.exists(files[0])
    store.start()
    assert store.client().get_object(Bucket=store.bucket, Key="big")["Body"].read() == store.big


def test_a_shard_of_the_wrong_length_is_damage(store, tmp_path):
    files = shards(tmp_path, version_of(store, "big"))
    with open(files[2], "ab") as f:
        f.write(b"trailing garbage")
    with open(files[3], "r+b") as f:
        f.truncate(100)
    code, doc = fsck_json(store)
    assert code == 1 and kinds(doc) == ["corrupt_shard", "corrupt_shard"]
    assert fsck(store, "--repair").returncode == 0
    assert fsck(store).returncode == 0


def test_more_than_parity_lost_is_reported_and_not_repairable(store, tmp_path):
    files = shards(tmp_path, version_of(store, "big"))
    for f in files[:3]:
        os.remove(f)
    code, doc = fsck_json(store, "--repair")
    assert code == 1 and not doc["ok"]
    assert "lost_version" in kinds(doc, "after_repair")
    assert not any(p["repairable"] for p in doc["after_repair"]["problems"] if p["kind"] == "lost_version")


def test_orphans_and_stale_copies_are_removed(store, tmp_path):
    v = version_of(store, "big")
    files = shards(tmp_path, v)
    # A shard file nothing references, and a copy of a live shard on a drive
    # the layout does not name (what a failed move leaves behind).
    fan = tmp_path / "d0" / "objects" / "ab"
    fan.mkdir(exist_ok=True)
    shutil.copy(files[0], fan / ("ab" * 16 + ".1"))
    idx = int(files[0].rsplit(".", 1)[1])
    other = next(d for d in range(6) if not files[0].startswith(str(tmp_path / f"d{d}") + "/"))
    stale = tmp_path / f"d{other}" / "objects" / v[:2] / f"{v}.{idx}"
    assert not stale.exists()  # each of the six drives holds one shard of v, another index
    shutil.copy(files[0], stale)
    code, doc = fsck_json(store)
    assert code == 1 and kinds(doc) == ["orphan_shard", "orphan_shard"], doc
    assert fsck(store, "--repair").returncode == 0
    assert not (fan / ("ab" * 16 + ".1")).exists()
    assert not stale.exists()
    assert all(os.path.exists(f) for f in files)
    store.start()
    assert store.client().get_object(Bucket=store.bucket, Key="big")["Body"].read() == store.big


def test_the_server_removes_stale_copies_at_start(store, tmp_path):
    """What fsck --repair removes, the orphan collection a start runs removes
    too: a copy of a live version's shard on a drive its layout does not
    name (a rebalance that moved a shard but could not remove the old one)."""
    from conftest import wait_until
    v = version_of(store, "big")
    files = shards(tmp_path, v)
    idx = int(files[0].rsplit(".", 1)[1])
    other = next(d for d in range(6) if not files[0].startswith(str(tmp_path / f"d{d}") + "/"))
    stale = tmp_path / f"d{other}" / "objects" / v[:2] / f"{v}.{idx}"
    shutil.copy(files[0], stale)
    store.start()
    wait_until(lambda: not stale.exists(), 30, what="the stale copy to be collected")
    assert all(os.path.exists(f) for f in files)
    assert store.client().get_object(Bucket=store.bucket, Key="big")["Body"].read() == store.big
    assert store.stop() == 0
    code, doc = fsck_json(store)
    assert code == 0, doc


def test_temp_files_of_interrupted_uploads_are_removed(store, tmp_path):
    (tmp_path / "d3" / "tmp" / "0123456789abcdef").write_bytes(b"half an upload")
    code, doc = fsck_json(store)
    assert code == 0 and doc["temp_files_removed"] == 1
    assert os.listdir(tmp_path / "d3" / "tmp") == []


@pytest.mark.sqlite_only("writes contradictory rows into meta.db with sqlite3 (test_meta checks meta_check on both backends)")
def test_metadata_contradictions(store, tmp_path):
    db = sqlite3.connect(str(store.data_dir / "meta.db"))
    big_v = version_of(store, "big")
    layout = db.execute("SELECT layout FROM objects WHERE key = 'big'").fetchone()[0]
    with db:
        # An upload whose bucket is gone, with a part that has real shards.
        db.execute("INSERT INTO uploads(upload_id, bucket, key, owner_id, initiated_ms, headers_json, bucket_id)"
                   " VALUES ('orphan-upload', 'gone', 'k', 1, 0, '{}', 999)")
        db.execute("INSERT INTO upload_parts VALUES ('orphan-upload', 1, ?, 100000, 'e', ?, 0, '')", ("f" * 32, layout))
        db.execute("INSERT INTO upload_parts VALUES ('no-such-upload', 1, ?, 1, 'e', ?, 0, '')", ("e" * 32, layout))
        # A part row reusing the live object's version id.
        db.execute("INSERT INTO upload_parts VALUES ('no-such-upload', 2, ?, 1, 'e', ?, 0, '')", (big_v, layout))
        db.execute("INSERT INTO object_parts VALUES (?, 1, 0, 1, 'e', ?, ?, '')", ("d" * 32, "c" * 32, layout))
        db.execute("INSERT INTO object_data VALUES (?, x'00')", ("b" * 32,))
        # What nothing can repair: an inline object without its bytes, an
        # object in no bucket, a multipart object whose parts do not add up.
        db.execute("DELETE FROM object_data WHERE version_id = (SELECT version_id FROM objects WHERE key = 'small')")
        db.execute("INSERT INTO objects(bucket, key, version_id, size, etag, mtime_ms, owner_id, storage,"
                   " headers_json, layout) VALUES ('nobucket', 'k', ?, 1, 'e', 0, 1, 1, '{}', ?)", ("a" * 32, layout))
        db.execute("UPDATE objects SET size = size + 1 WHERE key = 'mp'")
    db.close()
    code, doc = fsck_json(store)
    assert code == 1
    found = kinds(doc)
    for k in ("upload_without_bucket", "parts_without_upload", "parts_without_object", "data_without_object",
              "inline_without_data", "object_without_bucket", "multipart_mismatch", "duplicate_version"):
        assert k in found, (k, found)
    code, doc = fsck_json(store, "--repair")
    assert code == 1  # some of it is beyond repair
    left = kinds(doc, "after_repair")
    for k in ("upload_without_bucket", "parts_without_upload", "parts_without_object", "data_without_object"):
        assert k not in left, (k, left)
    for k in ("inline_without_data", "object_without_bucket", "multipart_mismatch"):
        assert k in left, (k, left)
    assert big_v  # the real object was never touched
    store.start()
    assert store.client().get_object(Bucket=store.bucket, Key="big")["Body"].read() == store.big


def test_usage(store):
    cp = fsck(store, "--bogus")
    assert cp.returncode == 2 and "usage" in cp.stderr


@pytest.mark.sqlite_only("writes contradictory rows into meta.db with sqlite3 (test_meta checks meta_check on both backends)")
def test_the_text_report_names_each_problem(store, tmp_path):
    """Without --json, one line per problem: its kind, the version, the drive
    and the shard where they apply, and whether --repair can fix it."""
    v = version_of(store, "big")
    files = shards(tmp_path, v)
    os.remove(files[0])
    idx = int(files[0].rsplit(".", 1)[1])
    orphan = tmp_path / "d0" / "objects" / "ab" / ("ab" * 16 + ".3")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"nothing references this")
    db = sqlite3.connect(str(store.data_dir / "meta.db"))
    with db:
        db.execute("INSERT INTO uploads(upload_id, bucket, key, owner_id, initiated_ms, headers_json, bucket_id)"
                   " VALUES ('ownerless', 'gone', 'k', 1, 0, '{}', 999999)")
    db.close()
    cp = fsck(store)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    lines = cp.stdout.splitlines()
    problems = sorted(line for line in lines if line.startswith("problem: "))
    assert len(problems) == 3, cp.stdout
    assert re.fullmatch(f"problem: missing_shard version {v} drive [0-9a-f]{{16}} "
                        f"\\(object {store.bucket}/big, shard {idx}\\) \\[repairable\\]", problems[0]), problems
    assert re.fullmatch("problem: orphan_shard version " + "ab" * 16 + " drive [0-9a-f]{16} \\(shard 3\\) \\[repairable\\]",
                        problems[1]), problems
    assert problems[2] == "problem: upload_without_bucket (ownerless) [repairable]", problems
    assert "3 problem(s), 3 repairable" in cp.stdout
    cp = fsck(store, "--repair")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "fsck: repaired 3" in cp.stdout
    assert "after repair: 3 placements, 18 shards: consistent" in cp.stdout
    assert not orphan.exists() and os.path.exists(files[0])


def test_past_a_thousand_problems_each_is_counted_and_repaired(store, tmp_path):
    """The report lists the first 1000 problems; the count and the repair
    cover all of them."""
    fan = tmp_path / "d1" / "objects" / "cd"
    fan.mkdir(exist_ok=True)
    for i in range(1003):
        (fan / f"cd{i:030x}.0").write_bytes(b"x")
    code, doc = fsck_json(store)
    assert code == 1
    assert doc["check"]["problems_found"] == 1003 and doc["check"]["orphans"] == 1003, doc["check"]["problems_found"]
    assert len(doc["check"]["problems"]) == 1000
    code, doc = fsck_json(store, "--repair")
    assert code == 0 and doc["after_repair"]["ok"], doc["after_repair"]
    assert doc["repaired"] == 1003
    assert not any(fan.iterdir())
