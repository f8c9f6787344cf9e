"""Races that only a paused thread makes certain: the fault build's pause
points (pause=NAME:MS) hold one request right before its metadata commit
while another request runs to its end.  Each test ends as the fault loops
do: a restart, the ledger, no temp file, and fsck."""
import hashlib
import os
import threading

import pytest

from cairn_harness import unique_bucket, wait_until
from faultlib import FaultStore, Ledger

PAUSE_MS = 3000


@pytest.fixture
def store(tmp_path):
    s = FaultStore(tmp_path).start()
    yield s
    if s.srv.proc and s.srv.proc.poll() is None:
        s.srv.kill()


def paused(store, point):
    """Arms a pause at point; returns a function that waits until a request
    is held there, then disarms, so only that one request pauses."""
    mark = store.arm(f"pause={point}:{PAUSE_MS}\n")

    def wait_held():
        wait_until(lambda: any("fault point: pausing" in l for l in store.log_lines()[mark:]), 20,
                   what=f"a request to pause at {point}")
        store.arm("")
    return wait_held


def in_thread(fn):
    out = {}

    def run():
        try:
            out["result"] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, out


def etag_of(body):
    return '"' + hashlib.md5(body).hexdigest() + '"'


def complete_xml(parts):
    items = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag_of(b)}</ETag></Part>" for n, b in parts)
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>".encode()


def getter(store, bucket):
    def get(key):
        r = store.srv.request("GET", f"/{bucket}/{key}")
        assert r.status in (200, 404), r
        return r.body if r.status == 200 else None
    return get


def part_etags(store, bucket, key, uid):
    parts = store.srv.client().list_parts(Bucket=bucket, Key=key, UploadId=uid).get("Parts", [])
    return {p["PartNumber"]: p["ETag"] for p in parts}


@pytest.mark.deadline(120)
def test_complete_racing_a_part_reupload_never_acknowledges_lost_bytes(store):
    """Complete reads the parts, then a re-upload of part 1 replaces it (and
    removes the old bytes) before complete commits.  Complete must not
    commit a reference to the removed bytes: it sees the change in its
    transaction and answers InvalidPart (the ETag asked for is gone)."""
    b = unique_bucket()
    c = store.srv.client()
    c.create_bucket(Bucket=b)
    p1, p2, p1_again = os.urandom(5 * 1024 * 1024), os.urandom(70_000), os.urandom(5 * 1024 * 1024)
    uid = c.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
    c.upload_part(Bucket=b, Key="k", UploadId=uid, PartNumber=1, Body=p1)
    c.upload_part(Bucket=b, Key="k", UploadId=uid, PartNumber=2, Body=p2)

    wait_held = paused(store, "complete.before_commit")
    t, out = in_thread(lambda: store.srv.request("POST", "/%s/k" % b, query={"uploadId": uid},
                                                 body=complete_xml([(1, p1), (2, p2)]), timeout=60))
    wait_held()
    c.upload_part(Bucket=b, Key="k", UploadId=uid, PartNumber=1, Body=p1_again)
    t.join(60)
    r = out.get("result")
    assert r is not None, out
    ledger = Ledger()
    if r.status == 200:          # only if the object really is p1 + p2
        ledger.acknowledged("k", p1 + p2)
    else:
        assert (r.status, r.error_code) == (400, "InvalidPart"), r
        ledger.uncertain("k", p1 + p2)
        # The upload is intact: completing with the part as it now is works.
        r2 = store.srv.request("POST", "/%s/k" % b, query={"uploadId": uid},
                               body=complete_xml([(1, p1_again), (2, p2)]))
        assert r2.status == 200, r2
        ledger.acknowledged("k", p1_again + p2)
    store.after_run(lambda: ledger.check(getter(store, b)))


@pytest.mark.deadline(120)
def test_overlapping_uploads_of_one_part_the_last_to_commit_wins(store):
    """Two uploads of part 1 overlap: the first is held before its commit
    while the second commits.  The first then commits last and wins: the
    part listing, the completed object and the bytes on disk all agree, and
    the loser's shards are removed."""
    b = unique_bucket()
    c = store.srv.client()
    c.create_bucket(Bucket=b)
    first, second, p2 = os.urandom(5 * 1024 * 1024), os.urandom(5 * 1024 * 1024), os.urandom(70_000)
    uid = c.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
    c.upload_part(Bucket=b, Key="k", UploadId=uid, PartNumber=2, Body=p2)

    wait_held = paused(store, "part.before_commit")
    t, out = in_thread(lambda: store.srv.request("PUT", "/%s/k" % b, query={"partNumber": "1", "uploadId": uid},
                                                 body=first, timeout=60))
    wait_held()
    r_second = store.srv.request("PUT", "/%s/k" % b, query={"partNumber": "1", "uploadId": uid}, body=second)
    assert r_second.status == 200, r_second
    assert part_etags(store, b, "k", uid)[1] == etag_of(second)
    t.join(60)
    r_first = out.get("result")
    assert r_first is not None and r_first.status == 200, out
    assert part_etags(store, b, "k", uid)[1] == etag_of(first), "the upload that committed last must win"
    # Completing with the loser's ETag is refused; with the winner's it works.
    r = store.srv.request("POST", "/%s/k" % b, query={"uploadId": uid}, body=complete_xml([(1, second), (2, p2)]))
    assert (r.status, r.error_code) == (400, "InvalidPart"), r
    r = store.srv.request("POST", "/%s/k" % b, query={"uploadId": uid}, body=complete_xml([(1, first), (2, p2)]))
    assert r.status == 200, r
    ledger = Ledger()
    ledger.acknowledged("k", first + p2)
    store.after_run(lambda: ledger.check(getter(store, b)))


@pytest.mark.deadline(120)
def test_heals_queued_by_reads_survive_a_graceful_shutdown(store):
    """Degraded reads queue heals in memory; a thread hands them to the
    durable job queue.  A SIGTERM while heals wait there must hand them all
    over before the process exits: the shutdown used to withdraw the queue
    first, so the waiting heals ran inline, delaying the exit, or were
    dropped when the store closed first.  After the restart every lost shard
    comes back, each through its own heal job, without a scrub (off here)."""
    import glob
    import sqlite3
    b = unique_bucket()
    c = store.srv.client()
    c.create_bucket(Bucket=b)
    bodies = {f"o{i}": os.urandom(300_000) for i in range(3)}
    for k, v in bodies.items():
        c.put_object(Bucket=b, Key=k, Body=v)
    db = sqlite3.connect(str(store.srv.data_dir / "meta.db"))
    versions = [db.execute("SELECT version_id FROM objects WHERE key = ?", (k,)).fetchone()[0] for k in bodies]
    db.close()
    lost = []
    for v in versions:
        shard = sorted(glob.glob(str(store.tmp / "d*" / "objects" / v[:2] / f"{v}.*")))[0]
        os.remove(shard)
        lost.append(shard)
    # Every heal is held a while in the handing-over thread, so at the
    # SIGTERM the first is in its hands and the others still queue.
    mark = store.arm("pause=heal.before_sink:1500\n")
    for k, v in bodies.items():
        assert c.get_object(Bucket=b, Key=k)["Body"].read() == v
    wait_until(lambda: any("fault point: pausing" in l for l in store.log_lines()[mark:]), 20,
               what="the first heal to be held")
    assert store.stop_or_reap() == 0
    store.start()
    wait_until(lambda: all(os.path.exists(p) for p in lost), 30,
               what=f"the lost shards to be healed: {[p for p in lost if not os.path.exists(p)]}")
    store.jobs_idle()
    heals = [j for j in store.jobs() if j[1] == "heal"]
    assert len(heals) == 3 and all(j[2] == "completed" for j in heals), heals
    ledger = Ledger()
    for k, v in bodies.items():
        ledger.acknowledged(k, v)
    store.after_run(lambda: ledger.check(getter(store, b)))
