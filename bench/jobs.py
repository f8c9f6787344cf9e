#!/usr/bin/python3
"""Durable job queue throughput: cairn's workers against a bare SQLite loop
doing the same statements on the same kind of database, in the same run.

For each run, N `test.noop` jobs (a handler that does nothing, so the figure
is the queue's own cost: one claim transaction and one finish transaction per
job, each synchronous=FULL) are enqueued with `cairn admin jobs enqueue
--count N` into a fresh data directory while no server runs; then
`cairn server` starts with job_workers=W and runs them.  Throughput is
(N - 1) / (last finished_ms - first finished_ms), from the jobs table itself,
so server start-up does not count.

The baseline enqueues N jobs the same way into another fresh directory and
runs them from Python's sqlite3 in one thread with the queue's own SQL (the
claim SELECT + UPDATE in one BEGIN IMMEDIATE transaction, then the finish
UPDATE), WAL and synchronous=FULL like cairn: the floor of what any queue
that keeps jobs durable in SQLite pays per job.

usage: jobs.py CAIRN_BIN N RUNS WORKERS WORKDIR
Prints one line per run and a summary:
  op=jobs n=.. workers=.. cairn_jobs_per_s=<median> (min..max) baseline_jobs_per_s=<median> (min..max) ratio=..x
"""
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request

NEXT = ("SELECT id FROM jobs WHERE ((state IN ('available', 'retryable') AND run_at_ms <= ?1)"
        " OR (state = 'running' AND lease_expires_ms < ?1)) ORDER BY priority DESC, run_at_ms, id LIMIT 1")
TAKE = ("UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2,"
        " lease_expires_ms = ?3 WHERE id = ?1")
GET = "SELECT id, kind, args, attempts, max_attempts FROM jobs WHERE id = ?1"
FINISH = ("UPDATE jobs SET state = 'completed', run_at_ms = ?3, last_error = '', lease_owner = '',"
          " lease_expires_ms = 0, finished_ms = ?3 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2")


def env_for(extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    e.update(extra)
    return e


def enqueue(cairn, data, n):
    os.makedirs(data, exist_ok=True)
    subprocess.run([cairn, "admin", "--data", data, "jobs", "enqueue", "test.noop", "--count", str(n)],
                   check=True, env=env_for({}), stdout=subprocess.DEVNULL, timeout=600)


def finished_span_ms(db, n):
    c = sqlite3.connect(db)
    try:
        row = c.execute("SELECT count(*), min(finished_ms), max(finished_ms) FROM jobs"
                        " WHERE kind = 'test.noop' AND state = 'completed'").fetchone()
    finally:
        c.close()
    if row[0] != n:
        raise RuntimeError(f"{row[0]} of {n} jobs completed")
    return row[2] - row[1]


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_cairn(cairn, workdir, n, workers):
    data = os.path.join(workdir, "cairn")
    shutil.rmtree(data, ignore_errors=True)
    enqueue(cairn, data, n)
    port = free_port()
    log = open(os.path.join(workdir, "server.log"), "wb")
    proc = subprocess.Popen([cairn, "server", "--listen", f"127.0.0.1:{port}", "--data", data],
                            env=env_for({"CAIRN_TEST_JOB_KINDS": "1", "CAIRN_JOB_WORKERS": str(workers),
                                         "CAIRN_SCRUB_INTERVAL": "0", "CAIRN_LOG_LEVEL": "warn",
                                         "CAIRN_ROOT_USER": "benchroot", "CAIRN_ROOT_PASSWORD": "benchroot-secret-123"}),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    want = f'cairn_jobs{{kind="test.noop",state="completed"}} {n}\n'
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"cairn server exited with {proc.returncode}; see {log.name}")
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                if want in text:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the jobs did not all complete within 600 s")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    span = finished_span_ms(os.path.join(data, "meta.db"), n)
    return (n - 1) * 1000.0 / max(span, 1)


def run_baseline(cairn, workdir, n):
    data = os.path.join(workdir, "baseline")
    shutil.rmtree(data, ignore_errors=True)
    enqueue(cairn, data, n)
    c = sqlite3.connect(os.path.join(data, "meta.db"), isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    done = 0
    while True:
        now = int(time.time() * 1000)
        c.execute("BEGIN IMMEDIATE")
        row = c.execute(NEXT, (now,)).fetchone()
        if row is None:
            c.execute("COMMIT")
            break
        c.execute(TAKE, (row[0], "baseline", now + 30000))
        c.execute(GET, (row[0],)).fetchone()
        c.execute("COMMIT")
        c.execute("BEGIN IMMEDIATE")
        c.execute(FINISH, (row[0], "baseline", int(time.time() * 1000)))
        c.execute("COMMIT")
        done += 1
    c.close()
    if done != n:
        raise RuntimeError(f"baseline ran {done} of {n} jobs")
    return (n - 1) * 1000.0 / max(finished_span_ms(os.path.join(data, "meta.db"), n), 1)


def main():
    cairn, n, runs, workers, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    os.makedirs(workdir, exist_ok=True)
    ours, base = [], []
    for i in range(runs):  # alternate, so drift in the machine hits both alike
        subprocess.run(["sync"])
        base.append(run_baseline(cairn, workdir, n))
        subprocess.run(["sync"])
        ours.append(run_cairn(cairn, workdir, n, workers))
        print(f"  run {i + 1}: cairn {ours[-1]:.0f} jobs/s, baseline {base[-1]:.0f} jobs/s", file=sys.stderr)
    mc, mb = statistics.median(ours), statistics.median(base)
    print(f"op=jobs n={n} workers={workers} cairn_jobs_per_s={mc:.0f} ({min(ours):.0f}..{max(ours):.0f}) "
          f"baseline_jobs_per_s={mb:.0f} ({min(base):.0f}..{max(base):.0f}) ratio={mc / mb:.2f}x")


if __name__ == "__main__":
    main()
