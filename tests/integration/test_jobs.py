"""The durable job queue: exactly-once completion across workers, retries with
backoff ending in discarded, leases that bring back a crashed run, cancel and
retry from the admin CLI, and the expiry of abandoned multipart uploads."""
import glob
import json
import os
import re
import subprocess
import time
import urllib.request

import sigv4
from conftest import CAIRN_BIN, unique_bucket, wait_until


def admin(srv, *args, check=True):
    cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(srv.data_dir), *args], env=srv.cli_env(),
                        capture_output=True, text=True, timeout=120)
    if check:
        assert cp.returncode == 0, cp.stderr
    return cp


def job_line(srv, job_id):
    return admin(srv, "jobs", "show", str(job_id)).stdout.split("\n")[0]


def lines(path):
    return open(path).read().split("\n")[:-1] if os.path.exists(path) else []


def metric_text(srv):
    return urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=10).read().decode()


TEST_ENV = {"CAIRN_TEST_JOB_KINDS": "1", "CAIRN_SCRUB_INTERVAL": "0"}


def test_thousand_jobs_over_four_workers_complete_exactly_once(make_server, tmp_path):
    srv = make_server(env={**TEST_ENV, "CAIRN_JOB_WORKERS": "4"})
    record = str(tmp_path / "record.txt")
    admin(srv, "jobs", "enqueue", "test.record", json.dumps({"file": record}), "--count", "1000")
    wait_until(lambda: sum(1 for l in lines(record) if l.startswith("done ")) >= 1000, 120,
               what="1000 jobs to complete")
    done = [l.split()[1] for l in lines(record) if l.startswith("done ")]
    assert len(done) == 1000 and len(set(done)) == 1000
    listing = admin(srv, "jobs", "list", "--state", "completed", "--kind", "test.record").stdout
    assert len(listing.strip().split("\n")) == 1000
    assert re.search(r'^cairn_jobs\{kind="test.record",state="completed"\} 1000$', metric_text(srv), re.M)


def test_failing_job_backs_off_then_is_discarded_and_can_be_retried(make_server, tmp_path):
    srv = make_server(env={**TEST_ENV, "CAIRN_JOB_BACKOFF_BASE_MS": "200", "CAIRN_JOB_BACKOFF_MAX_MS": "400"})
    attempts = str(tmp_path / "attempts.txt")
    job_id = admin(srv, "jobs", "enqueue", "test.fail", json.dumps({"file": attempts}),
                   "--max-attempts", "3").stdout.strip()
    wait_until(lambda: " discarded " in job_line(srv, job_id), 30, what="the job to be discarded")
    line = job_line(srv, job_id)
    assert "attempts=3/3" in line and "test.fail always fails (attempt 3)" in line, line
    times = [int(l.split()[2]) for l in lines(attempts)]
    assert len(times) == 3
    # Full jitter: the delay before attempt n+1 is at most base * 2^(n-1), capped;
    # workers poll every 250 ms, so allow for that and scheduling.
    assert times[1] - times[0] <= 200 + 1500
    assert times[2] - times[1] <= 400 + 1500
    # retry brings it back with its attempts reset; it fails three more times.
    admin(srv, "jobs", "retry", job_id)
    wait_until(lambda: len(lines(attempts)) == 6 and " discarded " in job_line(srv, job_id), 30,
               what="the retried job to be discarded again")
    cp = admin(srv, "jobs", "cancel", job_id, check=False)
    assert cp.returncode == 1 and "cannot be cancelled" in cp.stderr


def test_lease_brings_back_a_job_whose_server_was_killed(make_server, tmp_path):
    env = {**TEST_ENV, "CAIRN_JOB_LEASE_MS": "1500"}
    srv = make_server(env=env)
    record = str(tmp_path / "record.txt")
    job_id = admin(srv, "jobs", "enqueue", "test.record", json.dumps({"file": record, "sleep_ms": 4000})).stdout.strip()
    wait_until(lambda: f"start {job_id}" in lines(record), 20, what="the job to start")
    srv.kill()
    assert f"done {job_id}" not in lines(record)
    srv.start()
    wait_until(lambda: f"done {job_id}" in lines(record), 40, what="the job to run again and complete")
    wait_until(lambda: " completed " in job_line(srv, job_id), 10, what="the job to be recorded complete")
    assert lines(record).count(f"done {job_id}") == 1          # completed once in effect
    assert lines(record).count(f"start {job_id}") == 2         # started twice: the crashed run and the rerun
    assert "attempts=2/" in job_line(srv, job_id)


def test_cancelled_job_never_runs(make_server, tmp_path):
    srv = make_server(env=TEST_ENV, start=False)
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    record = str(tmp_path / "record.txt")
    job_id = admin(srv, "jobs", "enqueue", "test.record", json.dumps({"file": record})).stdout.strip()
    other = admin(srv, "jobs", "enqueue", "test.record", json.dumps({"file": record})).stdout.strip()
    admin(srv, "jobs", "cancel", job_id)
    srv.start()
    wait_until(lambda: f"done {other}" in lines(record), 20, what="the other job to run")
    assert not any(job_id == l.split()[1] for l in lines(record))
    assert " cancelled " in job_line(srv, job_id)


def test_abandoned_uploads_expire_and_active_ones_stay(make_server):
    srv = make_server(env={"CAIRN_MULTIPART_EXPIRY": "3", "CAIRN_JOB_PERIOD_S": "1", "CAIRN_SCRUB_INTERVAL": "0"})
    bucket = unique_bucket()
    assert srv.request("PUT", sigv4.object_path(bucket)).status == 200
    r = srv.request("POST", sigv4.object_path(bucket, "old"), query={"uploads": ""})
    upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1).decode()
    r = srv.request("PUT", sigv4.object_path(bucket, "old"), query={"partNumber": "1", "uploadId": upload_id},
                    body=os.urandom(100_000))
    assert r.status == 200
    shard_glob = str(srv.data_dir / "drives" / "d0" / "objects" / "*" / "*")
    assert len(glob.glob(shard_glob)) == 1

    def listed():
        return srv.request("GET", sigv4.object_path(bucket), query={"uploads": ""}).body
    wait_until(lambda: upload_id.encode() not in listed(), 30, what="the abandoned upload to be aborted")
    assert glob.glob(shard_glob) == []                      # its part's bytes went with it
    r = srv.request("POST", sigv4.object_path(bucket, "young"), query={"uploads": ""})
    young = re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1)
    assert young in listed()                                 # a fresh upload is not touched


def test_collect_orphans_removes_only_old_unreferenced_shards(make_server):
    srv = make_server(env={"CAIRN_SCRUB_INTERVAL": "0"})
    bucket = unique_bucket()
    assert srv.request("PUT", sigv4.object_path(bucket)).status == 200
    body = os.urandom(100_000)
    assert srv.request("PUT", sigv4.object_path(bucket, "kept"), body=body).status == 200
    r = srv.request("POST", sigv4.object_path(bucket, "mp"), query={"uploads": ""})
    upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", r.body).group(1).decode()
    part = os.urandom(60_000)
    r = srv.request("PUT", sigv4.object_path(bucket, "mp"), query={"partNumber": "1", "uploadId": upload_id}, body=part)
    assert r.status == 200
    objects = srv.data_dir / "drives" / "d0" / "objects"
    referenced = sorted(glob.glob(str(objects / "*" / "*")))
    assert len(referenced) == 2
    # Two shards nobody references: one two hours old (garbage), one new (it
    # could be a write about to commit: the grace period protects it).
    old = objects / "aa" / ("aa" + "1" * 30 + ".0")
    new = objects / "bb" / ("bb" + "2" * 30 + ".0")
    for p in (old, new):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"stray")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    for p in referenced:                      # old referenced shards must survive too
        os.utime(p, (two_hours_ago, two_hours_ago))
    job_id = admin(srv, "jobs", "enqueue", "collect_orphans", json.dumps({"grace_s": 3600})).stdout.strip()
    wait_until(lambda: " completed " in job_line(srv, job_id), 30, what="the collect_orphans job")
    assert not old.exists()
    assert new.exists()
    assert sorted(glob.glob(str(objects / "*" / "*"))) == sorted(referenced + [str(new)])
    assert srv.request("GET", sigv4.object_path(bucket, "kept")).body == body
    etag = r.header("ETag")
    done = srv.request("POST", sigv4.object_path(bucket, "mp"), query={"uploadId": upload_id},
                       body=f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>"
                            f"</CompleteMultipartUpload>".encode())
    assert done.status == 200, done
    assert srv.request("GET", sigv4.object_path(bucket, "mp")).body == part


def test_a_start_collects_the_shards_a_crash_left_before_it(make_server):
    """A crash between writing an object's shards and committing it leaves
    shards nothing references, younger than the hour-long grace period.  A
    start queues a collection of what was written before it began: those go
    at once, and a shard written after the start (a write in flight) stays."""
    srv = make_server(env={"CAIRN_SCRUB_INTERVAL": "0"})
    bucket = unique_bucket()
    assert srv.request("PUT", sigv4.object_path(bucket)).status == 200
    body = os.urandom(100_000)
    assert srv.request("PUT", sigv4.object_path(bucket, "kept"), body=body).status == 200
    assert srv.stop() == 0
    objects = srv.data_dir / "drives" / "d0" / "objects"
    kept = sorted(glob.glob(str(objects / "*" / "*")))
    crashed = objects / "cc" / ("cc" + "3" * 30 + ".0")       # written a moment ago, never committed
    crashed.parent.mkdir(exist_ok=True)
    crashed.write_bytes(b"a shard whose commit never happened")
    srv.start()
    in_flight = objects / "dd" / ("dd" + "4" * 30 + ".0")     # written after the start
    in_flight.parent.mkdir(exist_ok=True)
    in_flight.write_bytes(b"a shard about to be committed")
    srv.wait_orphan_pass()      # this start's pass: the first start's lines are in log_text() too
    assert not crashed.exists()
    assert in_flight.exists()
    assert sorted(glob.glob(str(objects / "*" / "*"))) == sorted(kept + [str(in_flight)])
    assert srv.request("GET", sigv4.object_path(bucket, "kept")).body == body


def test_delayed_job_waits_for_its_run_at(make_server, tmp_path):
    from datetime import datetime
    srv = make_server(env=TEST_ENV)
    record = str(tmp_path / "delayed.txt")
    job_id = admin(srv, "jobs", "enqueue", "test.record", json.dumps({"file": record}),
                   "--delay-ms", "4000").stdout.strip()
    out = admin(srv, "jobs", "show", job_id).stdout
    run_at = datetime.fromisoformat(re.search(r"run_at=(\S+)", out).group(1).replace("Z", "+00:00"))
    created = datetime.fromisoformat(re.search(r"created=(\S+)", out).group(1).replace("Z", "+00:00"))
    assert 3.9 <= (run_at - created).total_seconds() <= 4.5, out
    # Not due yet: a worker does not take it.  A job enqueued after it, due
    # now, completing shows the workers polled the queue meanwhile.
    marker = admin(srv, "jobs", "enqueue", "test.noop").stdout.strip()
    wait_until(lambda: " completed " in job_line(srv, marker), 30, what="a job due now")
    assert datetime.now(run_at.tzinfo) < run_at, "the machine was too slow to check before run_at"
    assert " available " in job_line(srv, job_id) and lines(record) == []
    wait_until(lambda: " completed " in job_line(srv, job_id), 30, what="the delayed job to run")
    assert lines(record) == [f"start {job_id}", f"done {job_id}"]
    for bad in ("-1", "soon"):
        cp = admin(srv, "jobs", "enqueue", "test.record", "{}", "--delay-ms", bad, check=False)
        assert cp.returncode == 2 and "--delay-ms" in cp.stderr


def test_shutdown_lets_a_running_job_finish(make_server, tmp_path):
    srv = make_server(env=TEST_ENV)
    record = str(tmp_path / "finish.txt")
    job_id = admin(srv, "jobs", "enqueue", "test.record",
                   json.dumps({"file": record, "sleep_ms": 2500})).stdout.strip()
    wait_until(lambda: lines(record) == [f"start {job_id}"], 20, what="the job to start")
    assert srv.stop() == 0
    assert lines(record) == [f"start {job_id}", f"done {job_id}"]
    assert " completed attempts=1/5 " in job_line(srv, job_id)
    srv.start()
    # Nothing is left to run again: a job enqueued after the restart
    # completing shows the workers have been through the queue.
    marker = admin(srv, "jobs", "enqueue", "test.noop").stdout.strip()
    wait_until(lambda: " completed " in job_line(srv, marker), 30, what="a job after the restart")
    assert lines(record) == [f"start {job_id}", f"done {job_id}"]


def test_shutdown_releases_a_job_that_stops_early(make_server, tmp_path):
    """A handler that polls jobs_stopping gives its job back at shutdown: the
    attempt does not count, no lease has to expire, and the next start runs
    it to completion."""
    srv = make_server(env={**TEST_ENV, "CAIRN_JOB_LEASE_MS": "600000"})
    record = str(tmp_path / "release.txt")
    job_id = admin(srv, "jobs", "enqueue", "test.record",
                   json.dumps({"file": record, "sleep_ms": 3000, "interruptible": True})).stdout.strip()
    wait_until(lambda: lines(record) == [f"start {job_id}"], 20, what="the job to start")
    assert srv.stop() == 0
    assert " available attempts=0/5 " in job_line(srv, job_id), job_line(srv, job_id)
    assert "job released at shutdown" in srv.log_text()
    srv.start()
    # With a 10-minute lease, only the release lets it run again this soon.
    wait_until(lambda: " completed " in job_line(srv, job_id), 30, what="the released job to complete")
    assert lines(record) == [f"start {job_id}", f"start {job_id}", f"done {job_id}"]


def test_prune_jobs_deletes_finished_jobs_past_retention(make_server, tmp_path):
    srv = make_server(env={**TEST_ENV, "CAIRN_JOB_RETENTION_S": "1"})
    admin(srv, "jobs", "enqueue", "test.noop", "--count", "5")
    dead = admin(srv, "jobs", "enqueue", "test.fail", json.dumps({"file": str(tmp_path / "f.txt")}),
                 "--max-attempts", "1").stdout.strip()
    waiting = admin(srv, "jobs", "enqueue", "test.noop", "--delay-ms", "3600000").stdout.strip()
    wait_until(lambda: len(admin(srv, "jobs", "list", "--kind", "test.noop", "--state", "completed")
                           .stdout.strip().split("\n")) == 5, 30, what="the no-op jobs to complete")
    wait_until(lambda: " discarded " in job_line(srv, dead), 30, what="the failing job to be discarded")
    # Prune runs until the 1 s retention has passed for them all.
    prune = None

    def pruned():
        nonlocal prune
        prune = admin(srv, "jobs", "enqueue", "prune_jobs").stdout.strip()
        wait_until(lambda: admin(srv, "jobs", "show", prune, check=False).returncode != 0
                   or " completed " in job_line(srv, prune), 30, what="a prune job to finish")
        return admin(srv, "jobs", "list", "--kind", "test.noop", "--state", "completed").stdout.strip() == ""
    wait_until(pruned, 30, interval=0.3, what="the completed jobs to be pruned")
    assert " discarded " in job_line(srv, dead)       # dead letters are kept for 30 days
    assert " available " in job_line(srv, waiting)    # never pruned
    wait_until(lambda: admin(srv, "jobs", "show", prune, check=False).returncode != 0
               or " completed " in job_line(srv, prune), 30, what="the prune job to finish")
