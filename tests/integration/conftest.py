"""Fixtures for the cairn integration and end-to-end tests.

Every test drives a real `cairn server` process on a random loopback port with
its own temporary data directory.  One server is shared by the whole session
(`server`, with root credentials from `root_creds`); tests that restart, kill
or reconfigure a server ask for `make_server`, which starts fresh ones and
stops them at the end of the test.  Both kinds write the server's stderr (JSON
log lines) and stdout to files in the temporary directory; on a failure the
tail of those logs is attached to the pytest report.

Helpers here, used by several modules:
  CairnServer.client()   a boto3 client (path style, us-east-1, no retries)
  CairnServer.request()  a raw HTTP request signed with SigV4 (see sigv4.py),
                         or anonymous, returning a small Response object
  CairnServer.admin()    runs `cairn admin --data DIR ...` and parses its output
  CairnServer.stop_and_fsck()
                         the end of a fault test: waits for this start's
                         orphan collection pass and for pending heals, stops
                         the server (SIGTERM) and asserts `cairn admin fsck`
                         finds nothing (CairnServer.fsck_json() for tests that
                         leave damage on purpose and assert what fsck reports)
  assert_fsck_clean()    `cairn admin fsck --json` on a stopped service's data
                         directory must exit 0; the problems are the message
  unique_bucket()        a fresh, valid bucket name
  redis_server           (fixture) a real redis-server on a free port, nothing
                         persisted; .url for CAIRN_REDIS_URL, .stop()/.start()

The binary is $CAIRN_BIN, default <repo>/build/cairn.  Variables named CAIRN_*
in the caller's environment are not passed to servers (the Makefile sets
CAIRN_BIN, which a server must not see as configuration).

Metadata backend: `--metadata=sqlite` (the default) or `--metadata=postgres`
(or CAIRN_TEST_METADATA=postgres).  On PostgreSQL the session starts one
server from Debian's binaries (scripts/pg-test.sh start; or uses the one
CAIRN_TEST_POSTGRES_URL names), builds a template database by running
`cairn migrate up` once, and gives every CairnServer its own clone
(CREATE DATABASE ... TEMPLATE ...) through CAIRN_METADATA_URL, which its
admin, fsck and migrate runs get too.  A test's clones are dropped after
it; the session server's at the end.  A clone still there at the end of the
session (a process that kept it open, a drop that failed) fails the
session.  Tests that are about the SQLite file itself are marked
`@pytest.mark.sqlite_only("reason")` and skipped on PostgreSQL.
"""

import collections
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import sigv4

REPO = Path(__file__).resolve().parents[2]
METADATA_CHOICES = ("sqlite", "postgres")
# The backend of this session (pytest_configure sets it from --metadata).
METADATA = os.environ.get("CAIRN_TEST_METADATA", "sqlite")
CAIRN_BIN = os.environ.get("CAIRN_BIN", str(REPO / "build" / "cairn"))
REGION = "us-east-1"
READY_DEADLINE = 20.0
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
DEFAULT_TEST_DEADLINE = 180


# ---- small utilities -----------------------------------------------------


_recent_ports = collections.deque(maxlen=2048)


def free_port():
    """A port nothing listens on, and not one handed out recently: the
    kernel may give a closed test socket's port to the next bind, and
    servers made together (a cluster's six nodes) are only started later,
    so two of them could otherwise get the same one."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _recent_ports:
            _recent_ports.append(port)
            return port
    raise AssertionError("no fresh port in 100 tries")


def unique_bucket(prefix="b"):
    """A valid, unused bucket name (lowercase, <= 63 chars)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"[:63]


def unique_name(prefix="u"):
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def random_secret():
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(40))


def random_access_key():
    alphabet = string.ascii_uppercase + string.digits
    return "ROOT" + "".join(secrets.choice(alphabet) for _ in range(16))


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def wait_until(predicate, deadline_s, interval=0.05, what="condition"):
    """Polls predicate until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(interval)


def strip_ns(tag):
    return tag.split("}", 1)[1] if "}" in tag else tag


def xml_find(elem, path):
    """ElementTree find that ignores the S3 namespace: path like 'Contents/Key'."""
    node = elem
    for part in path.split("/"):
        found = None
        for child in node:
            if strip_ns(child.tag) == part:
                found = child
                break
        if found is None:
            return None
        node = found
    return node


def xml_findall(elem, name):
    return [c for c in elem if strip_ns(c.tag) == name]


def xml_text(elem, path, default=None):
    node = xml_find(elem, path)
    if node is None:
        return default
    return node.text if node.text is not None else ""


def leftover_tmp_files(data_dir):
    """Regular files under data_dir with 'tmp' in their relative path."""
    out = []
    for root, _dirs, files in os.walk(data_dir):
        rel_root = os.path.relpath(root, data_dir)
        for f in files:
            rel = os.path.normpath(os.path.join(rel_root, f))
            if "tmp" in rel.lower():
                out.append(rel)
    return sorted(out)


# ---- the metadata backend: SQLite files, or clones of a PostgreSQL template ----------------


def _pg_bin():
    """Debian's newest PostgreSQL binaries (as scripts/pg-test.sh picks them)."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


PG_BIN = _pg_bin()


def postgres():
    """True when this session runs its servers on PostgreSQL."""
    return METADATA == "postgres"


class PgCluster:
    """The session's PostgreSQL server, its template database and the clones
    made from it.  Every statement goes through psql (Debian's client)."""

    def __init__(self, tmpdir):
        self.tmpdir = Path(tmpdir)
        self.own_dir = None
        url = os.environ.get("CAIRN_TEST_POSTGRES_URL")
        if not url:
            cp = subprocess.run(["bash", str(REPO / "scripts" / "pg-test.sh"), "start"], capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL)
            if cp.returncode != 0:
                raise RuntimeError(f"scripts/pg-test.sh start failed: {cp.stderr}")
            self.own_dir = cp.stdout.strip()
            url = subprocess.run(["bash", str(REPO / "scripts" / "pg-test.sh"), "url", self.own_dir],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert url.startswith("postgres://") and url.rsplit("/", 1)[1], url
        self.base = url.rsplit("/", 1)[0]   # postgres://user@host:port
        self.prefix = f"cairn_it_{os.getpid()}_"
        self.template = self.prefix + "template"
        self.counter = 0
        self.sql(f"DROP DATABASE IF EXISTS {self.template}")
        self.sql(f"CREATE DATABASE {self.template}")
        # The schema, once: every clone starts migrated, as a server finds a
        # database an operator migrated before the first start.
        cp = subprocess.run([CAIRN_BIN, "migrate", "--data", str(self.tmpdir / "template-data"),
                             "--metadata-url", self.url(self.template), "up"],
                            capture_output=True, text=True, timeout=120, env=server_env(), stdin=subprocess.DEVNULL)
        if cp.returncode != 0:
            raise RuntimeError(f"cairn migrate up on the template failed: {cp.stdout}{cp.stderr}")

    def url(self, db):
        return f"{self.base}/{db}"

    def sql(self, statement, db="postgres", check=True):
        """Runs one statement with psql; returns its unaligned output."""
        cp = subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                             "-d", self.url(db), "-c", statement],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if check and cp.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {cp.stderr.strip()}")
        return cp

    def clone(self):
        """A new database cloned from the template; returns its name."""
        self.counter += 1
        name = f"{self.prefix}{self.counter}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return name

    def drop(self, name):
        """Drops a clone; False (and the clone stays, a leak) when a process
        still has it open after PostgreSQL's own 5 s wait."""
        return self.sql(f"DROP DATABASE IF EXISTS {name}", check=False).returncode == 0

    def clones(self):
        out = self.sql(f"SELECT datname FROM pg_database WHERE datname LIKE '{self.prefix}%' "
                       f"AND datname <> '{self.template}' ORDER BY datname").stdout
        return [line for line in out.split() if line]

    def close(self):
        """Drops whatever is left (forcibly) and stops a server we started."""
        for name in self.clones() + [self.template]:
            self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)
        if self.own_dir:
            subprocess.run(["bash", str(REPO / "scripts" / "pg-test.sh"), "stop", self.own_dir],
                           capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


_pg = None                # the session's PgCluster, made on first use
_test_clones = []         # clones made during the current test, dropped after it
_session_clones = []      # clones of session-scoped servers, dropped at the end
_leaked = []              # clones a drop failed on


def pg_cluster():
    global _pg
    if _pg is None:
        import tempfile
        _pg = PgCluster(tempfile.mkdtemp(prefix="cairn-it-pg-"))
    return _pg


def metadata_env(session=False):
    """The environment that points one service at its own metadata: {} on
    SQLite (the data directory's meta.db), else CAIRN_METADATA_URL of a new
    clone, dropped after the test (or the session)."""
    if not postgres():
        return {}
    name = pg_cluster().clone()
    (_session_clones if session else _test_clones).append(name)
    return {"CAIRN_METADATA_URL": pg_cluster().url(name)}


def drop_test_clones():
    """Drops the current test's clones; one that cannot go is a leak."""
    while _test_clones:
        name = _test_clones.pop()
        if not pg_cluster().drop(name):
            _leaked.append(name)


def server_env(extra=None):
    """The environment for a cairn process: ours minus CAIRN_*, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update(extra or {})
    return env


# ---- fsck: the oracle at the end of every fault test ------------------------------------


def run_fsck(data_dir, env=None, extra_args=(), repair=False, timeout=120):
    """Runs `cairn admin --data DIR [extra_args] fsck --json [--repair]` with
    the service's own configuration: env its CAIRN_* variables (drives,
    nodes, CAIRN_CLUSTER_SECRET), extra_args its --drives / --nodes.  The
    service must be stopped (fsck refuses to run beside it).  Returns
    (exit code, the JSON document or None, CompletedProcess)."""
    cmd = [CAIRN_BIN, "admin", "--data", str(data_dir)] + [str(a) for a in extra_args] + ["fsck", "--json"]
    if repair:
        cmd.append("--repair")
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=server_env(env),
                        stdin=subprocess.DEVNULL)
    doc = None
    if cp.stdout.strip().startswith("{"):
        try:
            doc = json.loads(cp.stdout)
        except ValueError:
            pass
    return cp.returncode, doc, cp


def fsck_report(code, doc, cp=None):
    """What fsck said, for an assertion message."""
    if doc is None:
        return f"exit {code}, no JSON\nstdout: {cp.stdout[-3000:]}\nstderr: {cp.stderr[-3000:]}" if cp else \
            f"exit {code}, no JSON"
    check = doc.get("check", {})
    return (f"exit {code}: {check.get('problems_found')} problem(s) in {check.get('placements')} placements, "
            f"{check.get('shards')} shards\n" + json.dumps(check.get("problems", []), indent=1)[:6000]
            + (f"\nstderr: {cp.stderr[-2000:]}" if cp is not None and cp.stderr.strip() else ""))


def assert_fsck_clean(data_dir, env=None, extra_args=()):
    """`cairn admin fsck` finds metadata and bytes in agreement (exit 0, no
    problems, orphans included); otherwise fails with its problems.  Returns
    the JSON document."""
    code, doc, cp = run_fsck(data_dir, env, extra_args)
    assert code == 0 and doc is not None and doc.get("ok") and not doc["check"]["problems"], \
        f"fsck of {data_dir} found problems: " + fsck_report(code, doc, cp)
    return doc


# ---- raw responses ---------------------------------------------------------


class Response:
    """What a raw request got back: status, headers (case-insensitive), body."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def xml(self):
        return ET.fromstring(self.body)

    @property
    def error_code(self):
        if not self.body:
            return None
        try:
            return xml_text(self.xml(), "Code")
        except ET.ParseError:
            return None

    def __repr__(self):
        return f"<Response {self.status} {self.reason} body={self.body[:300]!r}>"


def read_response(resp, method):
    body = b"" if method == "HEAD" else resp.read()
    return Response(resp.status, resp.reason, resp.headers, body)


# ---- the server process ----------------------------------------------------


# What a `cairn admin|migrate` run shares with the service whose store it works on.
CLI_SHARED_ENV = ("CAIRN_METADATA_URL", "CAIRN_AUDIT_METADATA_URL", "CAIRN_REDIS_URL", "CAIRN_MASTER_KEY",
                  "CAIRN_MASTER_KEY_FILE")


class CairnServer:
    """One cairn server process and its data directory (kept across restarts)."""

    SUBCOMMAND = "server"  # AuditServer: "audit-server"

    def __init__(self, workdir, env=None, root=None, name="server", args=None, session=False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.name = name
        self.extra_env = dict(env or {})
        self.extra_args = list(args or [])
        # Its own metadata (a PostgreSQL clone), unless the test chose one.
        if "CAIRN_METADATA_URL" not in self.extra_env and "--metadata-url" not in self.extra_args:
            self.extra_env.update(metadata_env(session=session))
        self.root = root  # (access key, secret) or None: the server generates them
        self.proc = None
        self.port = None
        self.starts = 0
        self.stderr_paths = []
        self.stdout_paths = []
        self._clients = {}

    # -- lifecycle --

    def env(self):
        extra = dict(self.extra_env)
        if self.root:
            extra["CAIRN_ROOT_USER"] = self.root[0]
            extra["CAIRN_ROOT_PASSWORD"] = self.root[1]
        return server_env(extra)

    def spawn(self, port=None):
        """Starts the process without waiting for readiness."""
        self.port = port or free_port()
        self.starts += 1
        self.spawned_ms = int(time.time() * 1000)   # before the process reads its clock
        err = self.workdir / f"{self.name}-{self.starts}.stderr.log"
        out = self.workdir / f"{self.name}-{self.starts}.stdout.log"
        self.stderr_paths.append(err)
        self.stdout_paths.append(out)
        cmd = [CAIRN_BIN, self.SUBCOMMAND, "--listen", f"127.0.0.1:{self.port}",
               "--data", str(self.data_dir)] + self.extra_args
        with open(err, "wb") as ferr, open(out, "wb") as fout:
            self.proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, stdin=subprocess.DEVNULL,
                                         env=self.env(), cwd=self.workdir)
        self._clients = {}
        return self.proc

    def start(self, port=None):
        if not os.access(CAIRN_BIN, os.X_OK):
            pytest.fail(f"cairn binary not found or not executable: {CAIRN_BIN} "
                        "(build it with `make build` or set CAIRN_BIN)")
        self.spawn(port)
        self.wait_ready()
        return self

    def wait_ready(self, deadline=READY_DEADLINE):
        end = time.monotonic() + deadline
        last = None
        while time.monotonic() < end:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"cairn server exited with {code} before becoming live\n"
                                     + self.log_tail())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health/live")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    return
                last = resp.status
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(f"cairn server not live within {deadline}s (last: {last})\n"
                             + self.log_tail())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"cairn did not exit within {timeout}s of SIGTERM")
        self.check_sanitizers()
        return self.proc.returncode

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer")

    def check_sanitizers(self):
        """Under make test-asan / test-tsan the server reports memory and thread
        errors on stderr; any such report fails the test that stopped it."""
        text = self.log_text()
        for mark in self.SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                raise AssertionError(f"sanitizer report in {self.name}'s log:\n{text[max(0, i - 200):i + 3000]}")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    # -- logs --

    def log_text(self):
        return "".join(p.read_text(errors="replace") for p in self.stderr_paths if p.exists())

    def stdout_text(self, start_index=-1):
        p = self.stdout_paths[start_index]
        return p.read_text(errors="replace") if p.exists() else ""

    def log_records(self):
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()[-n:]
        return f"--- {self.name} stderr (last {len(lines)} lines) ---\n" + "\n".join(lines)

    # -- clients --

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def client(self, access_key=None, secret=None, **s3_config):
        """A boto3 S3 client; defaults to the root credentials."""
        if access_key is None:
            access_key, secret = self.root
        cfg_key = (access_key, secret, tuple(sorted(s3_config.items())))
        if cfg_key not in self._clients:
            s3cfg = {"addressing_style": "path"}
            s3cfg.update(s3_config)
            self._clients[cfg_key] = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, region_name=REGION,
                aws_access_key_id=access_key, aws_secret_access_key=secret,
                config=Config(s3=s3cfg, retries={"max_attempts": 1, "mode": "standard"},
                              connect_timeout=10, read_timeout=120,
                              max_pool_connections=32, signature_version="s3v4"))
        return self._clients[cfg_key]

    def anonymous_client(self):
        from botocore import UNSIGNED
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                          retries={"max_attempts": 1, "mode": "standard"}))

    def request(self, method, path, query=None, headers=None, body=b"", creds=None,
                anonymous=False, payload_hash=None, date=None, host=None, timeout=60):
        """Sends one raw request.  Signed with SigV4 header auth (root unless
        creds=(ak, sk)) unless anonymous.  payload_hash defaults to the SHA-256
        of body.  Returns a Response."""
        headers = dict(headers or {})
        headers.setdefault("Host", host or self.host)
        if isinstance(body, str):
            body = body.encode()
        if not anonymous:
            ak, sk = creds or self.root
            if payload_hash is None:
                payload_hash = hashlib.sha256(body).hexdigest()
            headers, _sig, _date = sigv4.sign_request(method, path, query, headers, ak, sk,
                                                      payload_hash, date=date)
        q = sigv4.wire_query(query)
        url = path + ("?" + q if q else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, url, body=body if body or method in ("PUT", "POST") else None,
                         headers=headers)
            return read_response(conn.getresponse(), method)
        finally:
            conn.close()

    def get_url(self, method, url_path_and_query, headers=None, body=None, timeout=60):
        """Sends a request to an already built path?query (presigned URLs)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, url_path_and_query, body=body, headers=headers or {})
            return read_response(conn.getresponse(), method)
        finally:
            conn.close()

    # -- fsck --

    ORPHAN_PASS = "orphan collection pass"

    def current_log(self):
        """The stderr of the current (latest) start only."""
        p = self.stderr_paths[-1] if self.stderr_paths else None
        return p.read_text(errors="replace") if p and p.exists() else ""

    def wait_orphan_pass(self, deadline=30):
        """Waits for the orphan collection a start runs (asynchronously) to
        finish a pass: what a crash left before this start is gone after it.
        The pass's line names the start it is for (started_ms): a periodic
        pass, or (on PostgreSQL, where a start's pass waits) an earlier
        start's pass, does not count."""
        def done():
            for line in self.current_log().splitlines():
                if self.ORPHAN_PASS not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("msg") == self.ORPHAN_PASS and int(rec.get("started_ms", 0)) >= self.spawned_ms:
                    return True
            return False
        wait_until(done, deadline, interval=0.1, what=f"{self.name}'s start-up orphan collection pass")

    def jobs(self, *args):
        """`admin jobs list [args]` as lists of fields (id, kind, state, ...)."""
        cp = self.admin("jobs", "list", *args)
        return [line.split() for line in cp.stdout.splitlines() if line.strip()]

    def wait_jobs_idle(self, kind=None, deadline=30):
        """Waits until no job (of kind) is available, running or retryable:
        heals queued by degraded reads are done."""
        args = ("--kind", kind) if kind else ()

        def busy():
            return [j for j in self.jobs(*args) if j[2] in ("available", "running", "retryable")]
        wait_until(lambda: not busy(), deadline, interval=0.1,
                   what=f"{self.name}'s job queue to go idle: {busy()}")

    def fsck_args(self):
        """The command-line options of this service that configure the store
        (--drives, --nodes), which fsck must be given as well."""
        return list(self.extra_args)

    def fsck_json(self, repair=False):
        """fsck of this (stopped) service's store: (exit code, JSON document),
        for tests that assert which problems a deliberate damage leaves."""
        assert not self.alive(), "fsck refuses to run beside the server: stop it first"
        code, doc, cp = run_fsck(self.data_dir, self.extra_env, self.fsck_args(), repair=repair)
        assert code in (0, 1) and doc is not None, fsck_report(code, doc, cp)
        return code, doc

    def fsck(self):
        """Asserts fsck of this (stopped) service's store is clean.  Stops
        nothing itself."""
        assert not self.alive(), "fsck refuses to run beside the server: stop it first"
        return assert_fsck_clean(self.data_dir, self.extra_env, self.fsck_args())

    def stop_and_fsck(self, heals=True):
        """The end of a fault test: waits for the current start's orphan
        collection pass (and, with heals, for queued heal jobs), stops the
        server with SIGTERM (exit 0) and asserts fsck is clean.  A read
        hands the heal it queues to the job queue from a background thread:
        a test that damaged shards waits for the heal's effect (the files
        back) first, or the job may not be listed yet."""
        self.wait_orphan_pass()
        if heals:
            self.wait_jobs_idle(kind="heal")
        code = self.stop()
        assert code == 0, f"{self.name} exited {code} on SIGTERM\n{self.log_tail()}"
        return self.fsck()

    # -- admin CLI --

    def metrics(self):
        """{'name{labels}': value} of every sample GET /metrics answers."""
        r = self.get_url("GET", "/metrics", timeout=10)
        text = r.body.decode()
        assert r.status == 200, text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def data_metrics(self):
        """The data plane's counters, by short name (corrupt_blocks, ...)."""
        out = {k[len("cairn_data_"):].removesuffix("_total"): v for k, v in self.metrics().items()
               if k.startswith("cairn_data_")}
        for name in ("corrupt_blocks", "missing_shards", "degraded_reads", "healed_shards", "heal_failures"):
            assert name in out, f"/metrics lacks cairn_data_{name}_total"
        return out

    def admin(self, *args, check=True, timeout=60):
        """Runs `cairn admin --data DIR args...`; returns CompletedProcess with
        .fields: the `name: value` lines of stdout as a dict."""
        cmd = [CAIRN_BIN, "admin", "--data", str(self.data_dir)] + [str(a) for a in args]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env=self.cli_env(), stdin=subprocess.DEVNULL)
        if check and cp.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {cp.returncode}\n"
                                 f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        fields = {}
        for line in cp.stdout.splitlines():
            if ": " in line:
                k, v = line.split(": ", 1)
                fields[k.strip()] = v.strip()
        cp.fields = fields
        return cp

    def metadata_db(self):
        """The PostgreSQL database this service's metadata is in (None on SQLite)."""
        url = self.extra_env.get("CAIRN_METADATA_URL", "")
        return url.rsplit("/", 1)[1].split("?")[0] if url.startswith("postgres") else None

    def meta_env(self):
        """{"CAIRN_METADATA_URL": ...} when this service's metadata is named
        by URL (a PostgreSQL clone), else {}, and the Redis and master key it
        was given: what a CLI run on its store needs besides --data (an admin
        command's writes invalidate the gateways' caches through that Redis)."""
        return {k: v for k, v in self.extra_env.items() if k in CLI_SHARED_ENV}

    def database_sockets(self):
        """Inodes of the process's TCP connections to its PostgreSQL server
        (the pool's, which come and go as it grows and shrinks): tests that
        count a server's sockets leave them out.  Empty on SQLite."""
        url = self.extra_env.get("CAIRN_METADATA_URL", "")
        m = re.match(r"postgres(?:ql)?://[^/]*:(\d+)/", url)
        if not m or self.proc is None:
            return set()
        port = int(m.group(1))
        out = set()
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{self.proc.pid}/net/{table}") as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port:
                    out.add(cols[9])
        return out

    def cli_env(self, extra=None):
        """The environment of a `cairn admin|migrate` run on this service's
        store: no CAIRN_* of ours, its metadata URL (PostgreSQL), extra."""
        return server_env({**self.meta_env(), **(extra or {})})

    def create_user(self, name=None):
        name = name or unique_name()
        cp = self.admin("user", "create", name)
        assert cp.fields.get("user") == name, cp.stdout
        return User(name, cp.fields["access_key_id"], cp.fields["secret_access_key"])

    def pid_rss_kib(self):
        return proc_status_kib(self.proc.pid, "VmRSS")


class AuditServer(CairnServer):
    """`cairn audit-server` (the audit store alone) with the same harness."""

    SUBCOMMAND = "audit-server"


class User:
    def __init__(self, name, access_key, secret):
        self.name = name
        self.access_key = access_key
        self.secret = secret

    @property
    def creds(self):
        return (self.access_key, self.secret)


# ---- Redis ----------------------------------------------------------------------------


REDIS_BIN = "/usr/bin/redis-server"


class RedisServer:
    """A real redis-server from Debian's binary, in a temporary directory, on a
    free loopback port, keeping nothing on disk (--save "", --appendonly no).
    stop() and start() keep its port, so a test can take Redis away from a
    running service and give it back.  `url` is what CAIRN_REDIS_URL takes."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.name = "redis"
        self.proc = None
        self.starts = 0
        self.log_paths = []

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.starts += 1
        log = self.workdir / f"redis-{self.starts}.log"
        self.log_paths.append(log)
        cmd = [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir), "--daemonize", "no"]
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir)
        wait_until(self.ping, 20, what=f"redis-server on port {self.port} to answer PING")
        return self

    def ping(self):
        """True when the server answers PING with PONG."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}\n" + self.log_tail())
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n=40):
        text = "".join(p.read_text(errors="replace") for p in self.log_paths if p.exists())
        lines = text.splitlines()[-n:]
        return f"--- redis log (last {len(lines)} lines) ---\n" + "\n".join(lines)


@pytest.fixture
def redis_server(tmp_path):
    """A running RedisServer for this test (stopped after it)."""
    if not os.access(REDIS_BIN, os.X_OK):
        pytest.skip(f"{REDIS_BIN} is not installed (Debian package redis-server)")
    r = RedisServer(tmp_path / "redis")
    _started_servers.append(r)
    r.start()
    yield r
    r.stop()


# ---- fixtures ----------------------------------------------------------------

_started_servers = []  # every CairnServer of the current test, for failure reports


@pytest.fixture(scope="session")
def root_creds():
    return (random_access_key(), random_secret())


@pytest.fixture(scope="session")
def server(tmp_path_factory, root_creds):
    """The shared server.  Tests must use unique bucket names."""
    srv = CairnServer(tmp_path_factory.mktemp("session-server"), root=root_creds,
                      name="session", session=True)
    srv.start()
    yield srv
    code = srv.stop()
    while _session_clones:
        name = _session_clones.pop()
        if not pg_cluster().drop(name):
            _leaked.append(name)
    assert code == 0, f"session server exited {code} on SIGTERM\n{srv.log_tail()}"


@pytest.fixture(autouse=True)
def _session_server_guard(request):
    """After a test that used the shared server, fail it if the server died
    (and restart the server so the following tests can run)."""
    yield
    if "server" not in request.fixturenames:
        return
    srv = request.getfixturevalue("server")
    _started_servers.append(srv)
    if not srv.alive():
        code = srv.proc.returncode
        tail = srv.log_tail()
        srv.start()
        pytest.fail(f"the shared cairn server died during this test (exit {code})\n{tail}")


@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(env={...}, root=(ak, sk) | None, args=[...], start=True)."""
    made = []
    counter = [0]

    def factory(env=None, root="default", args=None, start=True, workdir=None):
        counter[0] += 1
        if root == "default":
            root = (random_access_key(), random_secret())
        srv = CairnServer(workdir or tmp_path / f"srv{counter[0]}", env=env, root=root,
                          name=f"fresh{counter[0]}", args=args)
        made.append(srv)
        _started_servers.append(srv)
        if start:
            srv.start()
        return srv

    yield factory
    # Stopped as an operator would (SIGTERM): a shutdown that hangs, and
    # what sanitizers and coverage counters write at exit, are then part of
    # every test.  A server a test stopped with SIGSTOP is continued first.
    errors = []
    for srv in made:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.send_signal(signal.SIGCONT)
        try:
            srv.stop(timeout=30)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def make_audit_server(tmp_path):
    """Factory: make_audit_server(env={...}, start=True, port=None, fault=None)
    -> an AuditServer with its own root credentials.  Events in tests carry
    fixed times, which the default retention would delete: retention is off
    unless env sets it.  fault: a fault spec (the fault build's test mode),
    written to srv.fault_file, which SIGUSR1 re-reads.  Every one still up
    is stopped with SIGTERM at the end and must exit 0."""
    made = []

    def factory(env=None, start=True, port=None, fault=None):
        n = len(made) + 1
        env = {"CAIRN_AUDIT_RETENTION_DAYS": "0", **(env or {})}
        fault_file = None
        if fault is not None:
            fault_file = tmp_path / f"audit{n}-fault.spec"
            fault_file.write_text(fault)
            env.update({"CAIRN_TEST_FAULT": fault, "CAIRN_TEST_FAULT_FILE": str(fault_file)})
        srv = AuditServer(tmp_path / f"audit{n}", env=env, root=(random_access_key(), random_secret()),
                          name=f"audit{n}")
        srv.fault_file = fault_file
        made.append(srv)
        if start:
            srv.start(port)
        else:
            srv.port = port or free_port()
        return srv

    yield factory
    errors = []
    for srv in made:
        if srv.alive():
            code = srv.stop(timeout=30)
            if code != 0:
                errors.append(f"{srv.name} exited {code} on SIGTERM\n{srv.log_tail()}")
    assert not errors, "\n".join(errors)


@pytest.fixture
def s3(server):
    """boto3 client with root credentials on the shared server."""
    return server.client()


@pytest.fixture
def bucket(server, s3):
    """A new, empty bucket on the shared server, owned by root."""
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def user(server):
    """A new user (not root) on the shared server."""
    return server.create_user()


# ---- per-test deadline and failure reports ---------------------------------------


def pytest_addoption(parser):
    parser.addoption("--metadata", choices=METADATA_CHOICES, default=None,
                     help="metadata backend of the servers: sqlite (default, or CAIRN_TEST_METADATA) or postgres")


def pytest_configure(config):
    global METADATA
    config.addinivalue_line("markers", "deadline(seconds): per-test time limit (default 180 s)")
    config.addinivalue_line("markers", "sqlite_only(reason): about the SQLite file itself; skipped on PostgreSQL")
    config.addinivalue_line("markers", "postgres_only(reason): needs PostgreSQL; skipped on SQLite")
    # The fault suite (tests/fault) borrows this hook without the option: SQLite there.
    METADATA = config.getoption("--metadata", default=None) or os.environ.get("CAIRN_TEST_METADATA", "sqlite")
    if METADATA not in METADATA_CHOICES:
        raise pytest.UsageError(f"CAIRN_TEST_METADATA must be one of {METADATA_CHOICES}, not {METADATA!r}")


def pytest_report_header(config):
    return f"cairn metadata backend: {METADATA}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        only = item.get_closest_marker("sqlite_only" if postgres() else "postgres_only")
        if only:
            why = only.args[0] if only.args else only.kwargs.get("reason", "")
            assert why, f"{item.nodeid}: a backend-only marker must say why"
            item.add_marker(pytest.mark.skip(reason=f"{'SQLite' if postgres() else 'PostgreSQL'} only: {why}"))


@pytest.fixture(autouse=True)
def _metadata_clones():
    """Drops the clones the test's servers used, once its fixtures have
    stopped them (autouse: set up first, torn down last)."""
    yield
    if postgres():
        drop_test_clones()


def pytest_sessionfinish(session, exitstatus):
    """The end of a PostgreSQL session: every clone must be gone.  One left
    (a server that outlived its test, a drop that failed) fails the run."""
    global _pg
    if _pg is None:
        return
    left = sorted(set(_leaked + _pg.clones()))
    _pg.close()
    _pg = None
    if left:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        tr.write("\n")
        tr.write_sep("!", f"FAILED: metadata clones left behind (a process kept them open or a drop "
                          f"failed): {', '.join(left)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _deadline(request):
    """Fails a test that runs past its deadline instead of hanging the suite."""
    marker = request.node.get_closest_marker("deadline")
    seconds = int(marker.args[0]) if marker else DEFAULT_TEST_DEADLINE

    def on_alarm(_signum, _frame):
        raise TimeoutError(f"test exceeded its deadline of {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup":
        _started_servers.clear()
    if report.failed and report.when in ("call", "teardown"):
        seen = set()
        for srv in list(_started_servers):
            if id(srv) in seen:
                continue
            seen.add(id(srv))
            report.sections.append((f"cairn log: {srv.name}", srv.log_tail(30)))


# ---- helpers for raw streaming requests --------------------------------------------


def open_put(srv, bucket, key, content_length, extra_headers=None, creds=None, timeout=30, query=None,
             payload_hash=None):
    """Opens a socket and sends the head of a signed PUT (UNSIGNED-PAYLOAD
    unless payload_hash is given; query e.g. {"partNumber": 1, "uploadId": u});
    the caller sends the body.  Returns the connected socket."""
    path = sigv4.object_path(bucket, key)
    headers = {"Host": srv.host, "Content-Length": str(content_length)}
    headers.update(extra_headers or {})
    ak, sk = creds or srv.root
    headers, _sig, _date = sigv4.sign_request("PUT", path, query, headers, ak, sk,
                                              payload_hash or sigv4.UNSIGNED_PAYLOAD)
    target = path + ("?" + sigv4.wire_query(query) if query else "")
    head = f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    sock.sendall(head.encode() + b"\r\n")
    return sock


def read_socket_response(sock, method="PUT"):
    """Reads one HTTP response from a raw socket."""
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    return read_response(resp, method)


def which_all(name):
    """Every executable called name on PATH (like `which -a`), in order."""
    out = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK) and p not in out:
            out.append(p)
    return out


def wait_closed(sock, deadline):
    """Reads until the peer closes; returns (seconds waited, bytes received)."""
    start = time.monotonic()
    sock.settimeout(deadline)
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        except socket.timeout:
            raise AssertionError(f"connection still open after {deadline}s")
        if not data:
            break
        received += data
    return time.monotonic() - start, received


def wait_tmp_clean(srv, deadline=15):
    """Waits until no temporary file is left under the server's data dir."""
    wait_until(lambda: not leftover_tmp_files(srv.data_dir), deadline, interval=0.1,
               what=f"temporary files to be removed: {leftover_tmp_files(srv.data_dir)}")


def proc_status_kib(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def aws_cli_env(srv, home):
    """Environment for an AWS CLI talking to srv as root, with no config or
    credentials file of the machine's in the way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CAIRN_"))}
    env.update({
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(Path(home) / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(Path(home) / "no-credentials"),
        "AWS_ACCESS_KEY_ID": srv.root[0],
        "AWS_SECRET_ACCESS_KEY": srv.root[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })
    return env


_sanitizer = None


def sanitizer_of_build():
    """"asan" or "tsan" when CAIRN_BIN was built with that sanitizer, else
    None: their allocators (ASan's quarantine of freed memory, shadow memory)
    make the process's RSS a measure of the sanitizer, not of cairn."""
    global _sanitizer
    if _sanitizer is None:
        with open(CAIRN_BIN, "rb") as f:
            data = f.read()
        _sanitizer = "asan" if b"__asan_init" in data else "tsan" if b"__tsan_init" in data else ""
    return _sanitizer or None

