"""The distributed data plane on real processes: six `cairn node`s, one `cairn gateway`.

Every test builds its own cluster (make_cluster): six storage nodes, each with
one drive directory, on random loopback ports, and a gateway over them with
4+2 erasure coding, a 4 KiB shard block (so a few hundred KiB make many
stripes) and a 1 s shard timeout (CAIRN_SHARD_TIMEOUT_MS), so a dead or hung
node costs about a second per call.  The tests then do to the nodes what
happens to machines, kill -9, SIGSTOP, a flipped bit on disk, a full disk,
a restart, and check what a user sees through the gateway's S3 API: acknowledged
bytes always read back exactly, failed writes never become visible, and
operations finish within a few shard timeouts.

What a node keeps is part of the contract (docs/shard-api.md, src/data/data.h):
shard i of a version is <drive>/objects/<first 2 hex>/<version_id>.<i>, laid
out per stripe as [crc32c LE (4 bytes) | block].  With six nodes every object
has one shard on every node, so tests find an object's version id by diffing
the shard files on the nodes before and after its PUT.  Objects of at most
16 KiB stay inline in the gateway's metadata, so tests use larger ones.

Async effects (healing, counters, temp-file cleanup) are awaited by polling
with deadlines, never by sleeping.  Every process a test starts is killed and
waited for in the fixture's teardown, stopped nodes get SIGCONT first, and a
tmpfs mounted for a node is unmounted after that node is dead.

Tests that kill, stop or damage something end with `cairn admin fsck` over
the gateway's metadata and the six nodes (fsck_after_outage): every node
running again, the gateway restarted so that its start's orphan collection
takes what failed writes left behind, then stopped.  The store must be
clean, or hold exactly the damage the test leaves on purpose: shards missing
on a node that was down (or full) when they were written, repairable from
parity, and then repaired by fsck --repair.
"""

import concurrent.futures
import http.client
import math
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import sigv4
from conftest import (CAIRN_BIN, CairnServer, _started_servers, free_port, fsck_report, md5_hex, open_put,
                      random_access_key, random_secret, server_env, unique_bucket, wait_until)

KiB = 1024
MiB = 1024 * KiB
SECRET = "cluster-test-secret-0123456789abcdef"
NNODES = 6
K, M = 4, 2                     # the default geometry for six nodes
BLOCK = 4 * KiB                 # CAIRN_EC_BLOCK_SIZE
STRIPE = K * BLOCK
CRC_LEN = 4
INLINE_MAX = 16 * KiB           # objects up to this have no shards
SHARD_TIMEOUT_MS = 1000
SHARD_TIMEOUT = SHARD_TIMEOUT_MS / 1000
HEAL_DEADLINE = 20
SHARD_NAME = re.compile(r"^([0-9a-f]{32})\.(\d+)$")


def payload(size, seed):
    return random.Random(seed).randbytes(size)


# ---- storage nodes -----------------------------------------------------------------------------


class Node:
    """One `cairn node` process with one drive; keeps its port and drive across
    restarts.  Has name and log_tail so conftest's failure report shows its log."""

    def __init__(self, workdir, index):
        self.index = index
        self.name = f"node{index}"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.drive = self.workdir / "drive"
        self.port = free_port()
        self.proc = None
        self.starts = 0
        self.log_paths = []
        self.stopped = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        if not os.access(CAIRN_BIN, os.X_OK):
            pytest.fail(f"cairn binary not found or not executable: {CAIRN_BIN}")
        self.starts += 1
        log = self.workdir / f"{self.name}-{self.starts}.log"
        self.log_paths.append(log)
        for attempt in range(5):
            cmd = [CAIRN_BIN, "node", "--listen", f"127.0.0.1:{self.port}", "--drives", str(self.drive)]
            with open(log, "wb") as f:
                self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=server_env({"CAIRN_CLUSTER_SECRET": SECRET}), cwd=self.workdir)
            try:
                wait_until(self._live, 20, what=f"{self.name} to answer /health/live")
                return self
            except AssertionError:
                # Its port, chosen when the node was made, was taken meanwhile
                # (servers of the other test passes run beside this one): on
                # its first start, before anyone knows its URL, it takes another.
                if self.starts > 1 or self.proc.poll() is None or "Address already in use" not in log.read_text():
                    raise
                self.port = free_port()
        raise AssertionError(f"{self.name} found no free port")

    def _live(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode} before becoming live\n"
                                 + self.log_tail())
        # Its own listening line first: another process on the port it wanted
        # would otherwise answer for it.
        if b"listening on" not in self.log_paths[-1].read_bytes():
            return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/health/live")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """kill -9, as a crashed machine; waits for the process to be gone."""
        if self.alive():
            if self.stopped:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.stopped = False
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def sigstop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        if self.stopped and self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def log_tail(self, n=40):
        text = "".join(p.read_text(errors="replace") for p in self.log_paths if p.exists())
        lines = text.splitlines()[-n:]
        return f"--- {self.name} log (last {len(lines)} lines) ---\n" + "\n".join(lines)

    def shard_files(self):
        """{version_id: {shard index: Path}} on this node's drive."""
        out = {}
        objects = self.drive / "objects"
        if not objects.is_dir():
            return out
        for sub in objects.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                m = SHARD_NAME.match(f.name)
                assert m, f"unexpected file in {self.name}'s objects/: {f}"
                assert sub.name == m.group(1)[:2], f"shard in the wrong fan-out directory: {f}"
                out.setdefault(m.group(1), {})[int(m.group(2))] = f
        return out

    def tmp_files(self):
        t = self.drive / "tmp"
        return sorted(str(p) for p in t.iterdir()) if t.is_dir() else []

    def drive_id(self):
        return (self.drive / "drive-id").read_text().strip()


class Gateway(CairnServer):
    """`cairn gateway --nodes ...`: conftest's CairnServer runs `cairn server`,
    so only the command line differs."""

    def __init__(self, workdir, nodes, env):
        super().__init__(workdir, env=env, root=(random_access_key(), random_secret()), name="gateway",
                         args=["--nodes", ",".join(n.url for n in nodes)])

    def spawn(self, port=None):
        self.port = port or free_port()
        self.starts += 1
        self.spawned_ms = int(time.time() * 1000)
        err = self.workdir / f"{self.name}-{self.starts}.stderr.log"
        out = self.workdir / f"{self.name}-{self.starts}.stdout.log"
        self.stderr_paths.append(err)
        self.stdout_paths.append(out)
        cmd = [CAIRN_BIN, "gateway", "--listen", f"127.0.0.1:{self.port}",
               "--data", str(self.data_dir)] + self.extra_args
        with open(err, "wb") as ferr, open(out, "wb") as fout:
            self.proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, stdin=subprocess.DEVNULL,
                                         env=self.env(), cwd=self.workdir)
        self._clients = {}
        return self.proc


class Cluster:
    def __init__(self, nodes):
        self.nodes = nodes
        self.gateway = None

    def shard_map(self):
        """{version_id: {shard index: (node, Path)}} across every node's drive."""
        out = {}
        for n in self.nodes:
            for vid, shards in n.shard_files().items():
                for idx, p in shards.items():
                    assert idx not in out.setdefault(vid, {}), f"shard {vid}.{idx} on two nodes"
                    out[vid][idx] = (n, p)
        return out

    def put_new_version(self, bucket, key, data):
        """PUTs an erasure-coded object (nothing else may write meanwhile);
        returns (version_id, {index: (node, Path)})."""
        before = self.shard_map()
        r = put(self.gateway, bucket, key, data)
        assert r.status == 200, r
        after = self.shard_map()
        new = [v for v in after if v not in before]
        assert len(new) == 1, f"expected the shards of one new version, found {new}"
        return new[0], after[new[0]]

    def assert_processes_alive(self, except_nodes=()):
        assert self.gateway.alive(), f"the gateway died (exit {self.gateway.proc.returncode})\n" \
                                     + self.gateway.log_tail()
        for n in self.nodes:
            if n not in except_nodes:
                assert n.alive(), f"{n.name} died (exit {n.proc.returncode})\n" + n.log_tail()


@pytest.fixture
def make_cluster(tmp_path):
    """Factory: make_cluster(tmpfs_node=None, tmpfs_size="3m", gateway_env=None)
    starts six nodes and a gateway (gateway_env: extra CAIRN_* for it).  With tmpfs_node=i, node i's drive is a fresh tmpfs of that
    size (the test is skipped when it cannot be mounted)."""
    made, mounts = [], []

    def factory(tmpfs_node=None, tmpfs_size="3m", gateway_env=None):
        nodes = [Node(tmp_path / f"node{i}", i) for i in range(NNODES)]
        cl = Cluster(nodes)
        made.append(cl)
        _started_servers.extend(nodes)
        if tmpfs_node is not None:
            d = nodes[tmpfs_node].drive
            d.mkdir(parents=True, exist_ok=True)
            cp = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_size}", "tmpfs", str(d)],
                                capture_output=True, text=True, timeout=30)
            if cp.returncode != 0:
                pytest.skip("the full-disk test needs to mount a tmpfs (root / CAP_SYS_ADMIN); "
                            f"mount failed: {cp.stderr.strip() or cp.returncode}")
            mounts.append(d)
        for n in nodes:
            n.start()
        cl.gateway = Gateway(tmp_path / "gateway", nodes, {
            "CAIRN_CLUSTER_SECRET": SECRET,
            "CAIRN_SHARD_TIMEOUT_MS": str(SHARD_TIMEOUT_MS),
            "CAIRN_EC_BLOCK_SIZE": "4KiB",
            # On PostgreSQL a start's orphan pass waits 2 x (shard timeout +
            # these + 2 s) (decision 0013): 12 s a restart here instead of 20.
            "CAIRN_DB_ACQUIRE_TIMEOUT_MS": "1000",
            "CAIRN_DB_STATEMENT_TIMEOUT_MS": "2000",
            **(gateway_env or {}),
        })
        _started_servers.append(cl.gateway)
        cl.gateway.start()
        return cl

    yield factory
    problems = []
    for cl in made:
        for n in cl.nodes:  # a stopped node would hold up the gateway's shutdown
            n.sigcont()
        if cl.gateway is not None and cl.gateway.proc is not None:
            try:
                code = cl.gateway.stop()
                if code != 0:
                    problems.append(f"the gateway exited {code} on SIGTERM\n{cl.gateway.log_tail()}")
            except AssertionError as e:
                problems.append(str(e))
            finally:
                cl.gateway.kill()
        for n in cl.nodes:
            n.kill9()
    for d in mounts:
        if subprocess.run(["umount", str(d)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)
    if problems:
        pytest.fail("\n".join(problems))


# ---- S3 through the gateway ------------------------------------------------------------------------


def new_bucket(gw):
    name = unique_bucket("cl")
    r = gw.request("PUT", sigv4.object_path(name))
    assert r.status == 200, r
    return name


def put(gw, bucket, key, data, timeout=60):
    return gw.request("PUT", sigv4.object_path(bucket, key), body=data, timeout=timeout)


def get(gw, bucket, key, timeout=60):
    return gw.request("GET", sigv4.object_path(bucket, key), timeout=timeout)


def put_ok(gw, bucket, key, data):
    r = put(gw, bucket, key, data)
    assert r.status == 200, f"PUT {key} ({len(data)} bytes): {r}"
    assert r.header("ETag") == f'"{md5_hex(data)}"', r.headers
    return r


def assert_reads_back(gw, bucket, key, data):
    r = get(gw, bucket, key)
    assert r.status == 200, f"GET {key}: {r}"
    assert len(r.body) == len(data), f"{key}: got {len(r.body)} bytes, want {len(data)}"
    assert r.body == data, f"{key}: bytes differ from what was PUT"


def metrics(gw):
    return gw.data_metrics()


def wait_metric(gw, name, at_least, deadline=HEAL_DEADLINE):
    wait_until(lambda: metrics(gw)[name] >= at_least, deadline,
               what=f"cairn_data_{name}_total >= {at_least}")


# ---- fsck after an outage ----------------------------------------------------------------------------------


def fsck_after_outage(cl, restart_gateway=True):
    """Brings every node back (a stopped one continued, a dead one started on
    its port and drive), restarts the gateway (restart_gateway) so that its
    start's orphan collection removes what was written before it and is
    referenced by nothing, waits for that pass, stops the gateway and runs
    fsck over its metadata and the nodes.  Returns (exit code, JSON)."""
    for n in cl.nodes:
        n.sigcont()
        if not n.alive():
            n.start()
    gw = cl.gateway
    if restart_gateway:
        assert gw.stop() == 0, gw.log_tail()
        gw.start()
    gw.wait_orphan_pass()
    assert gw.stop() == 0, gw.log_tail()
    return gw.fsck_json()


def assert_only_missing_on(cl, code, doc, nodes, versions=None):
    """fsck found nothing but shards missing on nodes' drives (of versions,
    if given), each repairable from parity; then fsck --repair rebuilds them
    and its second check finds the store whole."""
    drives = {n.drive_id(): n.name for n in nodes}
    bad = [p for p in doc["check"]["problems"]
           if not (p["kind"] == "missing_shard" and p["repairable"] and p.get("drive") in drives
                   and (versions is None or p.get("version_id") in versions))]
    assert code in (0, 1) and not bad, \
        f"fsck, want only repairable shards missing on {sorted(drives.values())}: " + fsck_report(code, doc)
    if code == 1:
        rcode, rdoc = cl.gateway.fsck_json(repair=True)
        assert rcode == 0 and rdoc["after_repair"]["ok"], "fsck --repair: " + fsck_report(rcode, rdoc)
    return doc["check"]["problems"]


# ---- 1. a stream of PUTs and GETs while two nodes die ------------------------------------------------


class Stream:
    """A few threads doing PUTs (new keys and overwrites) and GETs.  Each thread
    owns its keys, so the latest acknowledged version of a key is well defined.
    Every PUT outcome is logged with its start and end time."""

    MIN_SIZE, MAX_SIZE = 20_000, 3_000_000

    def __init__(self, gw, bucket, nthreads=3):
        self.gw = gw
        self.bucket = bucket
        self.nthreads = nthreads
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.puts = []      # dicts: key, md5, size, start, end, status, code, error
        self.gets = []      # dicts: key, start, end, ok, detail
        self.expected = {}  # key -> md5 of its latest acknowledged PUT, or None

    def size(self, rnd):
        return int(math.exp(rnd.uniform(math.log(self.MIN_SIZE), math.log(self.MAX_SIZE))))

    def worker(self, t):
        rnd = random.Random(1000 + t)
        own = []
        n = 0
        while not self.stop.is_set():
            n += 1
            acked = [k for k in own if self.expected[k] is not None]
            if acked and rnd.random() < 0.4:
                self.do_get(rnd.choice(acked))
            else:
                key = rnd.choice(own) if own and rnd.random() < 0.3 else f"t{t}/obj{n}"
                if key not in own:
                    own.append(key)
                    with self.lock:
                        self.expected[key] = None
                self.do_put(key, rnd.randbytes(self.size(rnd)))

    def do_put(self, key, data):
        rec = {"key": key, "md5": md5_hex(data), "size": len(data), "status": None, "code": None,
               "error": None, "start": time.monotonic()}
        try:
            r = put(self.gw, self.bucket, key, data)
            rec["status"], rec["code"] = r.status, r.error_code
            if r.status == 200 and r.header("ETag") != f'"{rec["md5"]}"':
                rec["error"] = f"acknowledged with ETag {r.header('ETag')}, want {rec['md5']}"
        except (OSError, http.client.HTTPException) as e:
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["status"] = type(e).__name__
        rec["end"] = time.monotonic()
        with self.lock:
            self.puts.append(rec)
            if rec["status"] == 200 and rec["error"] is None:
                self.expected[key] = rec["md5"]

    def do_get(self, key):
        want = self.expected[key]
        rec = {"key": key, "start": time.monotonic(), "ok": False, "detail": None}
        try:
            r = get(self.gw, self.bucket, key)
            if r.status != 200:
                rec["detail"] = repr(r)
            elif md5_hex(r.body) != want:
                rec["detail"] = f"{len(r.body)} bytes with md5 {md5_hex(r.body)}, want {want}"
            else:
                rec["ok"] = True
        except (OSError, http.client.HTTPException) as e:
            rec["detail"] = f"{type(e).__name__}: {e}"
        rec["end"] = time.monotonic()
        with self.lock:
            self.gets.append(rec)

    def count(self, after, kind):
        with self.lock:
            if kind == "acked":
                return sum(1 for p in self.puts if p["start"] > after and p["status"] == 200)
            if kind == "failed":
                return sum(1 for p in self.puts if p["start"] > after and p["status"] != 200)
            return sum(1 for g in self.gets if g["start"] > after)


@pytest.mark.deadline(120)
def test_acknowledged_puts_survive_two_nodes_killed_mid_stream(make_cluster):
    cl = make_cluster()
    gw = cl.gateway
    b = new_bucket(gw)
    st = Stream(gw, b, nthreads=4)
    victims = [cl.nodes[1], cl.nodes[4]]
    pool = concurrent.futures.ThreadPoolExecutor(st.nthreads)
    futures = [pool.submit(st.worker, t) for t in range(st.nthreads)]
    t0 = time.monotonic()
    try:
        wait_until(lambda: st.count(t0, "acked") >= 20 and st.count(t0, "gets") >= 10, 40,
                   what="PUTs and GETs with all nodes up")
        kill1 = time.monotonic()
        victims[0].kill9()
        after1 = time.monotonic()
        wait_until(lambda: st.count(after1, "acked") >= 30 and st.count(after1, "gets") >= 15, 40,
                   what="PUTs and GETs with one node down")
        kill2 = time.monotonic()
        victims[1].kill9()
        after2 = time.monotonic()
        wait_until(lambda: st.count(after2, "failed") >= 10 and st.count(after2, "gets") >= 15, 40,
                   what="PUTs and GETs with two nodes down")
    finally:
        st.stop.set()
        for f in futures:
            f.result(timeout=120)
        pool.shutdown()

    problems = []
    for p in st.puts:
        what = f"PUT {p['key']} ({p['size']} bytes, {p['start'] - t0:.2f}-{p['end'] - t0:.2f}s)"
        if p["error"]:
            problems.append(f"{what}: got no S3 answer ({p['error']})")
        elif p["end"] < kill2 and p["status"] != 200:
            problems.append(f"{what} failed with {p['status']} {p['code']} while at most one node was down")
        elif p["start"] > after2 and not (500 <= p["status"] < 600 and p["code"]):
            problems.append(f"{what} with two nodes down answered {p['status']} {p['code']}, "
                            "want a 5xx S3 error")
        elif p["status"] != 200 and not (500 <= p["status"] < 600 and p["code"]):
            problems.append(f"{what} answered {p['status']} {p['code']}")
    for g in st.gets:
        if not g["ok"]:
            problems.append(f"GET {g['key']} during the stream ({g['start'] - t0:.2f}s; kills at "
                            f"{kill1 - t0:.2f}s, {kill2 - t0:.2f}s): {g['detail']}")

    # with two nodes down, every key shows its latest acknowledged bytes, and
    # keys whose PUTs all failed do not exist
    for key, want in sorted(st.expected.items()):
        r = get(gw, b, key)
        if want is None:
            if r.status != 404:
                problems.append(f"{key}: no PUT was acknowledged but GET answers {r.status} "
                                f"({len(r.body)} bytes)")
            h = gw.request("HEAD", sigv4.object_path(b, key))
            if h.status != 404:
                problems.append(f"{key}: no PUT was acknowledged but HEAD answers {h.status}")
        elif r.status != 200:
            problems.append(f"{key}: acknowledged object does not read back with two nodes down: {r}")
        elif md5_hex(r.body) != want:
            failed = [p["md5"] for p in st.puts if p["key"] == key and p["status"] != 200]
            problems.append(f"{key}: reads back md5 {md5_hex(r.body)} ({len(r.body)} bytes), want the "
                            f"acknowledged {want}" + (" — it is a FAILED PUT's body" if md5_hex(r.body)
                                                      in failed else ""))
    acked = sum(1 for p in st.puts if p["status"] == 200)
    failed = sum(1 for p in st.puts if p["status"] != 200)
    in_flight = [sum(1 for r in st.puts + st.gets if r["start"] < t < r["end"]) for t in (kill1, kill2)]
    summary = (f"{len(st.puts)} PUTs ({acked} acknowledged, {failed} failed), {len(st.gets)} GETs, "
               f"{len(st.expected)} keys; nodes killed at {kill1 - t0:.2f}s and {kill2 - t0:.2f}s "
               f"with {in_flight} operations in flight")
    assert not problems, summary + "\n" + "\n".join(problems[:40])
    assert acked >= 50 and failed >= 10, summary
    cl.assert_processes_alive(except_nodes=victims)
    # With the nodes back: the shards of what was written while they were
    # down are missing on them, and that is all (no trace of a failed PUT).
    code, doc = fsck_after_outage(cl)
    assert_only_missing_on(cl, code, doc, victims)


@pytest.mark.deadline(60)
def test_put_without_write_quorum_answers_a_5xx_and_stays_invisible(make_cluster):
    """The stream above can race; this is the same contract made deterministic:
    with two of six nodes down a PUT must get a 5xx S3 error (not a broken
    connection), whatever the body size, and nothing becomes visible."""
    cl = make_cluster()
    gw = cl.gateway
    b = new_bucket(gw)
    cl.nodes[0].kill9()
    big = payload(8 * MiB, 1)
    one_down, _ = cl.put_new_version(b, "one-down", big)  # quorum (5 of 6) holds
    cl.nodes[5].kill9()
    outcomes = {}
    for size in (100_000, 3 * MiB, 8 * MiB):
        key = f"two-down-{size}"
        try:
            r = put(gw, b, key, big[:size])
            outcomes[size] = (r.status, r.error_code)
        except (OSError, http.client.HTTPException) as e:
            outcomes[size] = f"no S3 answer: {type(e).__name__}: {e}"
        h = gw.request("HEAD", sigv4.object_path(b, key))
        assert h.status == 404, f"{key}: a failed PUT is visible: HEAD {h.status}"
    bad = {s: o for s, o in outcomes.items() if not (isinstance(o, tuple) and 500 <= o[0] < 600 and o[1])}
    assert not bad, f"PUTs with two of six nodes down, by body size: {outcomes}; want a 5xx S3 error each"
    assert_reads_back(gw, b, "one-down", big)
    cl.assert_processes_alive(except_nodes=(cl.nodes[0], cl.nodes[5]))
    # fsck: "one-down" lacks its shard on node 0 (unless the heal its
    # degraded read queued has run since node 0 came back), and the refused
    # PUTs left nothing on the four nodes that took their shards
    code, doc = fsck_after_outage(cl)
    assert_only_missing_on(cl, code, doc, [cl.nodes[0]], versions={one_down})


# ---- 2. a hung node -------------------------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_a_hung_node_costs_at_most_a_few_shard_timeouts(make_cluster):
    cl = make_cluster()
    gw = cl.gateway
    b = new_bucket(gw)
    limit = 4 * SHARD_TIMEOUT  # per operation: one timeout on the hung node, plus slack
    objects = {}
    for i, size in enumerate([40_000, 700_000, 2 * MiB + 5]):
        objects[f"before{i}"] = payload(size, i)
        put_ok(gw, b, f"before{i}", objects[f"before{i}"])
    hung = cl.nodes[2]
    before_hang = set(cl.shard_map())
    hung.sigstop()
    slow = []
    try:
        def timed(what, fn):
            t = time.monotonic()
            fn()
            took = time.monotonic() - t
            if took > limit:
                slow.append(f"{what} took {took:.2f}s (limit {limit:.1f}s)")

        for i, size in enumerate([60_000, 1 * MiB + 7, 3 * MiB]):
            key, data = f"during{i}", payload(size, 100 + i)
            timed(f"PUT {key} ({size} bytes)", lambda: put_ok(gw, b, key, data))
            objects[key] = data
        for key, data in objects.items():
            timed(f"GET {key} ({len(data)} bytes)", lambda: assert_reads_back(gw, b, key, data))
        # the gateway notices a hung node from its side only through timeouts;
        # a second round must not get slower (no piling up behind the node)
        for key, data in list(objects.items())[:2]:
            timed(f"second GET {key}", lambda: assert_reads_back(gw, b, key, data))
        assert hung.alive(), "the SIGSTOPped node vanished"
    finally:
        hung.sigcont()
    assert not slow, "operations too slow with one node hung:\n" + "\n".join(slow)
    # once it runs again, everything still reads, and new writes use it
    for key, data in objects.items():
        assert_reads_back(gw, b, key, data)
    vid, shards = cl.put_new_version(b, "after", payload(300_000, 7))
    assert sorted(shards) == list(range(K + M)) and any(n is hung for n, _ in shards.values()), shards
    cl.assert_processes_alive()
    # fsck: at most the shards of the writes made while it hung are missing
    # on it (healing may have rewritten them since), nothing else
    during = set(cl.shard_map()) - before_hang - {vid}
    assert len(during) == 3, during
    code, doc = fsck_after_outage(cl, restart_gateway=False)
    assert_only_missing_on(cl, code, doc, [hung], versions=during)


# ---- 3. a flipped byte on a node's disk ------------------------------------------------------------------------


@pytest.mark.deadline(60)
def test_flipped_byte_in_a_shard_is_detected_and_healed(make_cluster):
    cl = make_cluster()
    gw = cl.gateway
    b = new_bucket(gw)
    data = payload(20 * STRIPE + 123, 3)
    vid, shards = cl.put_new_version(b, "rot", data)
    assert sorted(shards) == list(range(K + M)), shards
    assert len({n.index for n, _ in shards.values()}) == NNODES, "expected one shard per node"
    node, path = shards[0]
    original = path.read_bytes()
    raw = bytearray(original)
    raw[CRC_LEN + 100] ^= 0x5A  # inside the data of the first block, not its CRC
    path.write_bytes(bytes(raw))
    m0 = metrics(gw)

    assert_reads_back(gw, b, "rot", data)
    wait_metric(gw, "corrupt_blocks", m0["corrupt_blocks"] + 1)
    wait_until(lambda: path.is_file() and path.read_bytes() == original, HEAL_DEADLINE,
               what=f"healing to rewrite {path} on {node.name}")
    wait_metric(gw, "healed_shards", m0["healed_shards"] + 1)
    assert metrics(gw)["heal_failures"] == m0["heal_failures"]
    assert node.tmp_files() == []
    # healed, it reads clean: no new corruption is counted
    m1 = metrics(gw)
    assert_reads_back(gw, b, "rot", data)
    assert metrics(gw)["corrupt_blocks"] == m1["corrupt_blocks"]
    cl.assert_processes_alive()
    gw.stop_and_fsck()


# ---- 4. one node's disk fills up -------------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_full_disk_on_one_node_keeps_writes_going_at_quorum(make_cluster):
    full_idx = 5
    cl = make_cluster(tmpfs_node=full_idx, tmpfs_size="3m")
    gw = cl.gateway
    full = cl.nodes[full_idx]
    b = new_bucket(gw)
    size = 600_000  # about 150 KB per shard: the 3 MiB tmpfs fills after ~20 objects
    written = {}
    missing_on_full = []
    for i in range(45):
        key = f"fill{i:02d}"
        data = payload(size + i, 500 + i)
        vid, shards = cl.put_new_version(b, key, data)
        written[key] = data
        assert len(shards) >= K + 1, f"{key}: acknowledged with only {sorted(shards)} shards"
        if full_idx not in {n.index for n, _ in shards.values()}:
            missing_on_full.append(key)
        if len(missing_on_full) >= 4:
            break
    assert len(missing_on_full) >= 4, (f"the tmpfs never filled up ({len(written)} objects of ~{size} bytes; "
                                       f"df: {os.statvfs(full.drive).f_bavail} blocks free)")
    for key, data in written.items():
        assert_reads_back(gw, b, key, data)
    # Heals of the shards the full node missed write through its tmp/ while
    # they run: every node's tmp/ must come to hold nothing, not at once.
    wait_until(lambda: all(n.tmp_files() == [] for n in cl.nodes), 20,
               what="every node's tmp/ to hold no partial shards (" +
                    ", ".join(f"{n.name}: {n.tmp_files()}" for n in cl.nodes if n.tmp_files()) + ")")
    cl.assert_processes_alive()
    # fsck: a shard is missing on the full node for each object it had no
    # room for, and nothing else is wrong: no partial shard, no orphan
    code, doc = fsck_after_outage(cl, restart_gateway=False)
    lacking = {v for v, shards in cl.shard_map().items() if full not in {n for n, _ in shards.values()}}
    found = [p["version_id"] for p in doc["check"]["problems"]
             if p["kind"] == "missing_shard" and p["repairable"] and p.get("drive") == full.drive_id()]
    assert code == 1 and len(found) == len(doc["check"]["problems"]) and sorted(found) == sorted(lacking), \
        f"fsck, want a missing shard on {full.name} for each of {sorted(lacking)}: " + fsck_report(code, doc)


# ---- 5. many clients at once ---------------------------------------------------------------------------------------


@pytest.mark.deadline(120)
def test_fifty_concurrent_uploads_and_a_hundred_concurrent_downloads(make_cluster):
    cl = make_cluster()
    gw = cl.gateway
    b = new_bucket(gw)
    sizes = [1_000, INLINE_MAX, INLINE_MAX + 1, 20_000, 100_000, 333_333, 700_000, 1 * MiB, 2 * MiB + 3]
    objects = {f"c{i:02d}": payload(sizes[i % len(sizes)] + i, 900 + i) for i in range(50)}
    start = threading.Barrier(50)

    def upload(key):
        start.wait(timeout=30)
        r = put(gw, b, key, objects[key], timeout=90)
        return key, r.status, r.header("ETag"), repr(r) if r.status != 200 else ""

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(upload, objects))
    bad = [(k, s, e, d) for k, s, e, d in results if s != 200 or e != f'"{md5_hex(objects[k])}"']
    assert not bad, f"{len(bad)} of 50 concurrent uploads failed: {bad[:5]}"

    keys = list(objects) * 2
    random.Random(5).shuffle(keys)
    start2 = threading.Barrier(100)

    def download(key):
        start2.wait(timeout=30)
        r = get(gw, b, key, timeout=90)
        return key, r.status, md5_hex(r.body) if r.status == 200 else repr(r)

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        results = list(pool.map(download, keys))
    bad = [(k, s, got) for k, s, got in results if s != 200 or got != md5_hex(objects[k])]
    assert not bad, f"{len(bad)} of 100 concurrent downloads failed or returned wrong bytes: {bad[:5]}"
    m = metrics(gw)
    assert m["corrupt_blocks"] == 0, m
    cl.assert_processes_alive()


# ---- 6. a node comes back ---------------------------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_a_restarted_node_is_used_again(make_cluster):
    cl = make_cluster()
    gw = cl.gateway
    b = new_bucket(gw)
    node = cl.nodes[3]
    objects = {"before": payload(200_000, 1)}
    put_ok(gw, b, "before", objects["before"])

    node.kill9()
    down = {}
    for i, size in enumerate([50_000, 400_000, 1 * MiB]):
        key = f"down{i}"
        objects[key] = payload(size, 10 + i)
        vid, shards = cl.put_new_version(b, key, objects[key])
        assert node.index not in {n.index for n, _ in shards.values()}
        assert len(shards) == K + M - 1, f"{key}: {sorted(shards)}"
        down[key] = vid
    for key, data in objects.items():
        assert_reads_back(gw, b, key, data)

    node.start()  # same port, same drive
    up = {}
    for i, size in enumerate([60_000, 500_000, 1 * MiB + 1]):
        key = f"up{i}"
        objects[key] = payload(size, 20 + i)
        vid, shards = cl.put_new_version(b, key, objects[key])
        assert sorted(shards) == list(range(K + M)), f"{key}: {sorted(shards)}"
        assert node.index in {n.index for n, _ in shards.values()}, f"{key}: no shard on the restarted node"
        up[key] = vid
    for key, data in objects.items():
        assert_reads_back(gw, b, key, data)
    # the reads above were degraded for the objects written while it was down:
    # healing puts their missing shards on the restarted node
    wait_until(lambda: set(down.values()) <= set(node.shard_files()), HEAL_DEADLINE,
               what="healing to write the missing shards onto the restarted node")

    # with two other nodes gone, reads need the restarted node's shards
    for other in (cl.nodes[0], cl.nodes[1]):
        other.kill9()
    for key, data in objects.items():
        assert_reads_back(gw, b, key, data)
    cl.assert_processes_alive(except_nodes=(cl.nodes[0], cl.nodes[1]))
    # nothing was written while nodes 0 and 1 were down: with them back the
    # store is whole (the shards written during node 3's outage were healed)
    code, doc = fsck_after_outage(cl)
    assert code == 0 and doc["ok"], fsck_report(code, doc)


def test_orphaned_shards_on_storage_nodes_are_collected(make_cluster):
    """collect_orphans pages through every node's shard listing: old shards no
    metadata references go, young ones and referenced ones stay; a node that
    cannot be listed leaves the job retryable with that error, the others
    collected."""
    cl = make_cluster()
    gw = cl.gateway
    # The start's own pass first (on PostgreSQL it waits, decision 0013):
    # the strays below predate the start, and it would take the young one.
    gw.wait_orphan_pass()
    bucket = new_bucket(gw)
    data = payload(100 * KiB, 41)
    vid, shards = cl.put_new_version(bucket, "kept", data)

    def stray(node, name, age_s):
        p = node.drive / "objects" / name[:2] / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"stray")
        os.utime(p, (time.time() - age_s, time.time() - age_s))
        return p

    old = [stray(cl.nodes[i], "%02x%s.%d" % (0x10 + i, "7" * 30, i), 7200) for i in range(3)]
    young = stray(cl.nodes[3], "ee" + "8" * 30 + ".2", 10)
    for _, p in shards.values():          # the object's own shards are old too
        os.utime(p, (time.time() - 7200, time.time() - 7200))

    def run_collect():
        job = gw.admin("jobs", "enqueue", "collect_orphans", '{"grace_s": 3600}').stdout.strip()

        def state():
            line = gw.admin("jobs", "show", job).stdout
            return line if re.search(r" (completed|retryable|discarded) ", line.split("\n")[0]) else None
        return wait_until(state, 30, what="the collect_orphans job to finish a run")

    out = run_collect()
    assert " completed " in out.split("\n")[0], out
    assert not any(p.exists() for p in old)
    assert young.exists()
    assert all(p.exists() for _, p in shards.values())
    assert_reads_back(gw, bucket, "kept", data)

    # One node down: the others are still collected, the job says why it must run again.
    again = stray(cl.nodes[0], "ab" + "9" * 30 + ".0", 7200)
    cl.nodes[5].kill9()
    out = run_collect()
    assert " retryable " in out.split("\n")[0], out
    assert "could not be listed" in out, out
    assert not again.exists()
    assert young.exists()
    assert_reads_back(gw, bucket, "kept", data)
    # fsck (node 5 back; no gateway restart, whose pass would take the young
    # stray): the young stray is the one shard nothing references
    code, doc = fsck_after_outage(cl, restart_gateway=False)
    found = [(p["kind"], p.get("version_id"), p.get("shard"), p.get("drive")) for p in doc["check"]["problems"]]
    assert code == 1 and found == [("orphan_shard", "ee" + "8" * 30, 2, cl.nodes[3].drive_id())], \
        fsck_report(code, doc)
    rcode, rdoc = gw.fsck_json(repair=True)
    assert rcode == 0 and rdoc["after_repair"]["ok"] and not young.exists(), fsck_report(rcode, rdoc)


@pytest.mark.deadline(120)
def test_gateway_killed_mid_upload_part_leaves_nothing_behind_on_the_nodes(make_cluster):
    """kill -9 of the gateway while a part streams to six nodes: the nodes drop
    the cut shard uploads' temp files, nothing partial is visible after the
    restart, and orphan collection finds nothing but referenced shards."""
    cl = make_cluster()
    gw = cl.gateway
    bucket = new_bucket(gw)
    kept = payload(200 * KiB, 51)
    kept_vid, _ = cl.put_new_version(bucket, "kept", kept)
    s3 = gw.client()
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    first = payload(5 * 1024 * KiB, 52)
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=first)["ETag"]
    referenced = set(cl.shard_map())
    assert kept_vid in referenced and len(referenced) == 2
    sock = open_put(gw, bucket, "mp", 8 * 1024 * KiB, query={"partNumber": "2", "uploadId": uid})
    sock.sendall(payload(3 * 1024 * KiB, 53))
    wait_until(lambda: any(n.tmp_files() for n in cl.nodes), 20, what="shard uploads to reach the nodes")
    gw.kill()
    sock.close()
    wait_until(lambda: not any(n.tmp_files() for n in cl.nodes), 20,
               what="the nodes to remove the cut shard uploads' temp files")
    gw.start()
    s3 = gw.client()
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(first))]
    assert gw.request("HEAD", sigv4.object_path(bucket, "mp")).status == 404
    job = gw.admin("jobs", "enqueue", "collect_orphans", '{"grace_s": 0}').stdout.strip()
    wait_until(lambda: " completed " in gw.admin("jobs", "show", job).stdout.split("\n")[0], 30,
               what="orphan collection")
    assert set(cl.shard_map()) == referenced
    last = b"the last part"
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=last)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert get(gw, bucket, "mp").body == first + last
    assert_reads_back(gw, bucket, "kept", kept)
    gw.stop_and_fsck()


@pytest.mark.deadline(120)
def test_heal_that_fails_while_its_node_is_down_is_retried_until_it_is_back(make_cluster):
    """Heals are durable jobs: a read that finds a shard missing on a dead node
    queues one, it fails and backs off while the node is down, and completes
    (rewriting the shard) once the node is back."""
    cl = make_cluster(gateway_env={"CAIRN_JOB_BACKOFF_BASE_MS": "300", "CAIRN_JOB_BACKOFF_MAX_MS": "1000",
                                   "CAIRN_SCRUB_INTERVAL": "0"})
    gw = cl.gateway
    bucket = new_bucket(gw)
    data = payload(100 * KiB, 61)
    vid, shards = cl.put_new_version(bucket, "obj", data)
    idx, (victim, path) = sorted(shards.items())[0]
    path.unlink()                       # the shard is lost with the node
    victim.kill9()
    assert_reads_back(gw, bucket, "obj", data)

    def heal_line(states):
        out = gw.admin("jobs", "list", "--kind", "heal").stdout.strip().split("\n")
        hits = [line for line in out if re.search(r" (%s) " % states, line)]
        return hits[0] if hits else None

    line = wait_until(lambda: heal_line("retryable|running"), 30, what="a heal job that fails while the node is down")
    job_id = line.split()[0]
    wait_until(lambda: re.search(r"attempts=([2-9]|10)/", gw.admin("jobs", "show", job_id).stdout), 30,
               what="the heal to be retried")
    show = gw.admin("jobs", "show", job_id).stdout
    assert "heal failed" in show and f'"version_id":"{vid}"' in show, show
    assert not path.exists()
    # More degraded reads meanwhile do not pile up more jobs for the version.
    for _ in range(3):
        assert_reads_back(gw, bucket, "obj", data)
    assert len([l for l in gw.admin("jobs", "list", "--kind", "heal").stdout.strip().split("\n") if l]) == 1
    victim.start()
    wait_until(lambda: " completed " in gw.admin("jobs", "show", job_id).stdout.split("\n")[0], 60,
               what="the heal to complete once the node is back")
    assert path.exists(), "the healed shard is back on its node"
    # The healed shard holds the right bytes: with two other nodes down (all
    # the loss 4+2 tolerates) the read needs it.
    others = [n for i, (n, _) in sorted(shards.items()) if i != idx][:2]
    for n in others:
        n.kill9()
    assert_reads_back(gw, bucket, "obj", data)
    for n in others:
        n.start()
    code, doc = fsck_after_outage(cl)
    assert code == 0 and doc["ok"], fsck_report(code, doc)


@pytest.mark.deadline(90)
def test_client_disconnect_mid_put_leaves_nothing_on_the_nodes(make_cluster):
    """A client that goes away mid-PutObject: the gateway aborts its six shard
    uploads, the nodes drop their temp files, no shard of the cut version is
    committed, and the key stays absent."""
    cl = make_cluster()
    gw = cl.gateway
    bucket = new_bucket(gw)
    before = set(cl.shard_map())
    sock = open_put(gw, bucket, "cut", 8 * 1024 * KiB)
    sock.sendall(payload(3 * 1024 * KiB, 71))
    wait_until(lambda: all(n.tmp_files() for n in cl.nodes), 20, what="shard uploads on every node")
    sock.close()
    wait_until(lambda: not any(n.tmp_files() for n in cl.nodes), 20,
               what="the nodes to drop the aborted shard uploads")
    assert set(cl.shard_map()) == before
    assert gw.request("HEAD", sigv4.object_path(bucket, "cut")).status == 404
    cl.assert_processes_alive()
    gw.stop_and_fsck()
