"""The loop every fault test runs: for n = 1, 2, ... make the nth I/O call of
an operation fail (or crash the server right before it), then check what a
user can see and what fsck sees, until a run no longer reaches call n.

After each run:
  - the client got a clean S3 error (XML with a Code) or success, or lost
    the connection to a crash;
  - every acknowledged write reads back byte-identical, and an operation that
    failed left either its old state or its whole new state, never a part;
  - after the next start, no temp file remains, the jobs that start runs
    (orphan collection, the trash, retried heals) finish, and
    `cairn admin fsck` exits 0 (orphans included).
The ledger holds, per key, the set of contents a reader may see (None:
absent); a read narrows it to what it saw.
"""
import json
import os
import signal
import subprocess
import time

from cairn_harness import (CAIRN_BIN, CairnServer, leftover_tmp_files, random_access_key, random_secret,
                           server_env, unique_bucket, wait_until)

QUIET = {
    "CAIRN_SCRUB_INTERVAL": "0",          # no background verification
    "CAIRN_JOB_LEASE_MS": "1500",         # a crashed job runs again soon after the restart
    "CAIRN_JOB_BACKOFF_BASE_MS": "50",
    "CAIRN_JOB_BACKOFF_MAX_MS": "300",
}


def errno_for(n):
    """Alternate the two failures a disk gives: EIO and a full disk."""
    return "ENOSPC" if n % 2 == 0 else "EIO"


class Ledger:
    def __init__(self):
        self.may = {}     # key -> set of bytes|None

    def acknowledged(self, key, body):
        self.may[key] = {body}

    def uncertain(self, key, body):
        self.may.setdefault(key, {None}).add(body)

    def record(self, key, body, r, ok_status):
        """body is what key holds after an answer r of ok_status; after any
        other answer (or none: the server died) it may hold either."""
        if r is not None and r.status == ok_status:
            self.acknowledged(key, body)
        else:
            self.uncertain(key, body)

    def check(self, s3_get, keys=None):
        for key in keys or list(self.may):
            got = s3_get(key)
            assert got in self.may[key], (f"{key}: read {None if got is None else len(got)} bytes, "
                                          f"allowed {[None if b is None else len(b) for b in self.may[key]]}")
            self.may[key] = {got}


class FaultStore:
    """A server of the fault build on six local drives, restarted clean
    between runs; fault specs go through a file and SIGUSR1."""

    def __init__(self, tmp_path, env=None, drives=6):
        self.tmp = tmp_path
        self.spec_file = tmp_path / "fault.spec"
        self.spec_file.write_text("")
        e = dict(QUIET)
        if drives:
            e["CAIRN_DRIVES"] = ",".join(str(tmp_path / f"d{i}") for i in range(drives))
        e["CAIRN_EC_BLOCK_SIZE"] = "64KiB"
        e["CAIRN_TEST_FAULT_FILE"] = str(self.spec_file)
        e.update(env or {})
        self.srv = CairnServer(tmp_path / "srv", env=e, root=(random_access_key(), random_secret()), name="faulty")
        self.runs = 0

    # -- lifecycle --

    def start(self):
        self.srv.start()
        self.jobs_idle()
        return self

    def stop_or_reap(self):
        """Stops a live server; reaps one that a crash point aborted."""
        p = self.srv.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError("server did not stop on SIGTERM")
        self.srv.check_sanitizers()
        return p.returncode

    # -- faults --

    def log_lines(self):
        return self.srv.log_text().splitlines()

    def arm(self, spec):
        """Arms the spec in the running server; returns the log position from
        which an injection belongs to this run (the arming included)."""
        lines = self.log_lines()
        before = sum(1 for l in lines if "fault injection armed" in l)
        self.spec_file.write_text(spec)
        self.srv.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: sum(1 for l in self.log_lines() if "fault injection armed" in l) > before, 60,
                   what="the server to arm the fault spec")
        return len(lines)

    def reached(self, mark):
        return any("fault injected" in l for l in self.log_lines()[mark:])

    # -- checks --

    def jobs(self):
        cp = self.srv.admin("jobs", "list", check=True)
        return [line.split() for line in cp.stdout.splitlines() if line.strip()]

    def jobs_idle(self, deadline=60):
        """Waits until no job is pending or running (startup jobs, heals)."""
        def idle():
            return not [j for j in self.jobs() if j[2] in ("available", "running", "retryable")]
        wait_until(idle, deadline, interval=0.1, what=f"the job queue to go idle: {self.jobs()}")

    def fsck(self):
        cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(self.srv.data_dir), "fsck", "--json"],
                            capture_output=True, text=True, timeout=120,
                            env=server_env({k: v for k, v in self.srv.extra_env.items()
                                            if k != "CAIRN_TEST_FAULT_FILE"}))
        doc = json.loads(cp.stdout) if cp.stdout.strip().startswith("{") else None
        assert cp.returncode == 0 and doc and doc["ok"], f"fsck found problems:\n{cp.stdout}\n{cp.stderr[-2000:]}"

    def after_run(self, verify):
        """The checks after a run: restart clean, no temp files, jobs done,
        the user's view (verify), then fsck with the server stopped."""
        self.stop_or_reap()
        self.start()
        wait_until(lambda: not leftover_tmp_files(self.srv.data_dir), 15, interval=0.1,
                   what=f"temp files to be removed: {leftover_tmp_files(self.srv.data_dir)}")
        verify()
        self.jobs_idle()
        assert self.srv.stop() == 0
        self.fsck()
        self.start()


def response_is_clean(r):
    """A run's answer: None (the connection died with the server), success,
    or an S3 error document."""
    if r is None or r.status < 300:
        return True
    return r.status >= 400 and r.error_code is not None


def loop_over_calls(store, sites, action, op, verify, limit=400, window=None, setup=None, window_scope="process"):
    """Runs op(n) for n = 1.. with the nth call of sites failing (or the
    server aborting right before it), then the checks of after_run with
    verify.  setup(n), if given, runs first with nothing armed (what the
    operation needs: an object to delete, an upload to complete); op issues
    the operation's requests and updates the ledger.  Stops after the first
    run that did not reach call n (the operation makes fewer calls).
    window (a point pair) counts only the calls between them; with
    window_scope="thread", only those of the thread that opened it (one S3
    request's, not a job worker's or the audit shipper's meanwhile).
    Returns how many runs reached their fault."""
    reached = 0
    for n in range(1, limit + 1):
        ctx = setup(n) if setup else None
        spec = f"sites={sites}\nnth={n}\nerrno={errno_for(n)}\naction={action}\n"
        if window:
            spec += f"window={window}\nwindow_scope={window_scope}\n"
        mark = store.arm(spec)
        op(n, ctx)
        hit = store.reached(mark)
        store.after_run(verify)
        if not hit:
            print(f"\n{store.tmp.name}: {reached} runs reached their fault ({sites}, {spec.split('action=')[1].split()[0]})")
            return reached
        reached += 1
    raise AssertionError(f"the operation still reached call {limit}: a loop that never ends?")
