"""Several gateways over one PostgreSQL database and one set of storage nodes.

Every test builds its own cluster (make_pair): six `cairn node`s, a real
redis-server (conftest's redis_server; CAIRN_REDIS_URL is passed once the
gateway has that option), one PostgreSQL database (a clone of the session's
template) and two `cairn gateway`s, A and B, on that database and those
nodes, with the same root user and master key: what an operator runs behind
a load balancer (docs/deploy.md).  The tests then check what issue 9 asks
of several gateways, through the S3 API and the job table:

  - any gateway serves any request, multipart uploads included;
  - kill -9 of one gateway under a load of PUTs whose clients retry on the
    other loses nothing that was acknowledged;
  - 32 writers over both gateways to one key: the last commit wins and no
    shard is left behind;
  - periodic jobs, scrub passes and rebalancing run once across the
    gateways (one unique key per period; the "scrub" and "membership"
    leases), and a lease moves when its holder is killed with -9;
  - a job enqueued anywhere starts at once on another gateway (LISTEN/NOTIFY),
    also after the listener's connection was cut, with a poll interval of
    ten minutes.

Tests that kill something end with `cairn admin fsck` clean over the
database and the nodes, with both gateways stopped, and a ledger check.
Waiting is by polling with deadlines.  The gateways' leases last 1.5 s
(CAIRN_LEADER_LEASE_MS) and their heartbeat is 300 ms, so takeovers take
seconds; the start-up orphan pass of a gateway on a shared database waits
twice a shard call's and a commit's timeouts (decision 0013): 22 s here.
"""

import concurrent.futures
import http.client
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest

import sigv4
from conftest import (CAIRN_BIN, CairnServer, _started_servers, fsck_report, md5_hex, metadata_env, pg_cluster,
                      server_env, unique_bucket, wait_until)
from test_cluster import SECRET, Gateway, Node, get, payload, put

pytestmark = pytest.mark.postgres_only("gateways share a PostgreSQL database; a SQLite database is one process's")

KiB = 1024
MiB = 1024 * KiB
NNODES = 6
MASTER_KEY = "5a" * 32
ROOT = ("GWROOT0123456789ABCD", "gateways-root-secret-0123456789abcdefgh")
LEASE_MS = 1500
ORPHAN_PASS_DEADLINE = 120      # the start-up pass waits 22 s first, on a machine shared with other runs


def known_option(key):
    """Whether this cairn has config option key (`cairn config describe`)."""
    out = subprocess.run([CAIRN_BIN, "config", "describe"], capture_output=True, text=True, timeout=30,
                         env=server_env(), stdin=subprocess.DEVNULL).stdout
    return f"| `{key}` |" in out


class Gw(Gateway):
    """One `cairn gateway` of the pair: the shared root user, master key,
    database and nodes; its own data directory (and so its own lease holder
    name) and port.  `cairn admin` runs on its data directory with the same
    configuration, master key included."""

    def __init__(self, workdir, nodes, env, name):
        CairnServer.__init__(self, workdir, env=env, root=ROOT, name=name,
                             args=["--nodes", ",".join(n.url for n in nodes)])

    def cli_env(self, extra=None):
        return server_env({**self.extra_env, **(extra or {})})


    def metric(self, name):
        return self.metrics().get(name, 0)

    def leads(self, role):
        return self.metric(f'cairn_leader{{role="{role}"}}') == 1

    def log_count(self, msg, current=False):
        text = self.current_log() if current else self.log_text()
        return text.count(f'"msg":"{msg}"')


class Pair:
    def __init__(self, nodes, spares, gws, db):
        self.nodes = nodes
        self.spares = spares
        self.a, self.b = gws
        self.db = db

    @property
    def gws(self):
        return [self.a, self.b]

    def sql(self, statement):
        """One statement on the gateways' database; its rows as lists of fields."""
        out = pg_cluster().sql(statement, db=self.db).stdout
        return [line.split("|") for line in out.splitlines() if line]

    def shard_files(self):
        """Every committed shard file on every node: [(node, name)]."""
        out = []
        for n in self.nodes + self.spares:
            for vid, shards in n.shard_files().items():
                out += [(n.name, f"{vid}.{i}") for i in shards]
        return out

    def wait_startup_orphan_passes(self, starts, deadline=ORPHAN_PASS_DEADLINE):
        """Waits until the start-up orphan runs of `starts` gateway starts
        have all completed (any gateway's worker may run any of them)."""
        def done():
            rows = self.sql("SELECT state FROM jobs WHERE kind = 'collect_orphans' AND args LIKE '%min_age_ms%'")
            return len(rows) >= starts and all(r == ["completed"] for r in rows)
        wait_until(done, deadline, interval=0.2, what=f"the start-up orphan passes of {starts} gateway starts")

    def stop_and_fsck(self):
        """Stops both gateways (SIGTERM, exit 0) and asserts fsck over the
        database and the nodes is clean, orphans included."""
        for gw in self.gws:
            if gw.alive():
                code = gw.stop()
                assert code == 0, f"{gw.name} exited {code} on SIGTERM\n{gw.log_tail()}"
        code, doc = self.a.fsck_json()
        assert code == 0 and doc["ok"] and not doc["check"]["problems"], "fsck: " + fsck_report(code, doc)
        return doc


@pytest.fixture
def make_pair(tmp_path, redis_server):
    """Factory: make_pair(env=None, start_b=True, spares=0) starts six nodes
    (and spares more, not configured), then gateways A and B on one new
    database; env adds CAIRN_* settings to both."""
    made = []

    def factory(env=None, start_b=True, spares=0):
        nodes = [Node(tmp_path / f"node{i}", i) for i in range(NNODES + spares)]
        _started_servers.extend(nodes)
        for n in nodes:
            n.start()
        meta = metadata_env()
        common = {**meta, "CAIRN_CLUSTER_SECRET": SECRET, "CAIRN_MASTER_KEY": MASTER_KEY,
                  "CAIRN_SHARD_TIMEOUT_MS": "2000", "CAIRN_EC_BLOCK_SIZE": "4KiB", "CAIRN_SCRUB_INTERVAL": "0",
                  "CAIRN_LEADER_LEASE_MS": str(LEASE_MS), "CAIRN_NODE_HEARTBEAT_MS": "300",
                  "CAIRN_JOB_LEASE_MS": "5000", "CAIRN_TEST_JOB_KINDS": "1"}
        if known_option("redis_url"):
            common["CAIRN_REDIS_URL"] = redis_server.url
        common.update(env or {})
        gws = [Gw(tmp_path / f"gw-{x}", nodes[:NNODES], common, f"gw-{x}") for x in ("a", "b")]
        pair = Pair(nodes[:NNODES], nodes[NNODES:], gws, meta["CAIRN_METADATA_URL"].rsplit("/", 1)[1])
        made.append(pair)
        for gw in gws:
            _started_servers.append(gw)
        pair.a.start()
        if start_b:
            pair.b.start()
        return pair

    yield factory
    problems = []
    for pair in made:
        for gw in pair.gws:
            if gw.alive():
                gw.proc.send_signal(signal.SIGCONT)
                try:
                    code = gw.stop()
                    if code != 0:
                        problems.append(f"{gw.name} exited {code} on SIGTERM\n{gw.log_tail()}")
                except AssertionError as e:
                    problems.append(str(e))
                finally:
                    gw.kill()
        for n in pair.nodes + pair.spares:
            n.kill9()
    if problems:
        pytest.fail("\n".join(problems))


def new_bucket(gw):
    name = unique_bucket("gw")
    r = gw.request("PUT", sigv4.object_path(name))
    assert r.status == 200, r
    return name


def assert_body(gw, bucket, key, data):
    r = get(gw, bucket, key)
    assert r.status == 200, f"{gw.name} GET {key}: {r}"
    assert r.body == data, f"{gw.name} GET {key}: {len(r.body)} bytes, not the {len(data)} PUT"


# ---- any gateway serves any request -------------------------------------------------------------


@pytest.mark.deadline(240)
def test_any_gateway_serves_any_request(make_pair):
    pair = make_pair()
    a, b = pair.a, pair.b
    bucket = new_bucket(a)
    assert b.request("HEAD", sigv4.object_path(bucket)).status == 200
    small, large = payload(1 * KiB, 1), payload(200 * KiB, 2)
    for key, data in (("small", small), ("large", large)):
        assert put(a, bucket, key, data).status == 200
        assert_body(b, bucket, key, data)
        head = b.request("HEAD", sigv4.object_path(bucket, key))
        assert head.status == 200 and head.header("ETag") == f'"{md5_hex(data)}"', head
    listing = b.client().list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listing["Contents"]] == ["large", "small"]
    # Read-after-write across gateways: an overwrite on B is what A reads next.
    newer = payload(150 * KiB, 3)
    assert put(b, bucket, "large", newer).status == 200
    assert_body(a, bucket, "large", newer)
    assert b.request("DELETE", sigv4.object_path(bucket, "small")).status == 204
    gone = get(a, bucket, "small")
    assert gone.status == 404 and gone.error_code == "NoSuchKey", gone

    # A multipart upload begun on A, a part through each, completed on B.
    ca, cb = a.client(), b.client()
    upload = ca.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    assert [u["UploadId"] for u in cb.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    p1, p2 = payload(5 * MiB, 4), payload(300 * KiB, 5)
    e1 = ca.upload_part(Bucket=bucket, Key="mp", PartNumber=1, UploadId=upload, Body=p1)["ETag"]
    e2 = cb.upload_part(Bucket=bucket, Key="mp", PartNumber=2, UploadId=upload, Body=p2)["ETag"]
    assert [p["PartNumber"] for p in cb.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["Parts"]] == [1, 2]
    cb.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert_body(a, bucket, "mp", p1 + p2)
    assert ca.get_object(Bucket=bucket, Key="mp", Range="bytes=5242870-5242889")["Body"].read() == \
        (p1 + p2)[5242870:5242890]

    # Emptied through A, the bucket is deleted through B and gone for A.
    for key in ("large", "mp"):
        assert a.request("DELETE", sigv4.object_path(bucket, key)).status == 204
    assert b.request("DELETE", sigv4.object_path(bucket)).status == 204
    assert a.request("HEAD", sigv4.object_path(bucket)).status == 404
    wait_until(lambda: not pair.shard_files(), 30, what=f"every shard removed: {pair.shard_files()[:6]}")
    pair.stop_and_fsck()


# ---- kill -9 of one gateway under load ------------------------------------------------------------


class Load:
    """Threads PUTting (new keys and overwrites) through their own gateway,
    half of them A's, half B's; a PUT that fails (an error, a 5xx, a
    connection refused or cut) is retried on the other gateway, then on its
    own again, up to four tries.  The ledger keeps per key the md5 of its
    latest acknowledged PUT and of the PUTs after it that were never
    acknowledged (any of which may have committed)."""

    MIN_SIZE, MAX_SIZE = 20 * KiB, 600 * KiB

    def __init__(self, gws, bucket, nthreads=6):
        self.gws = gws
        self.bucket = bucket
        self.nthreads = nthreads
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ledger = {}    # key -> {"acked": md5 or None, "later": set of md5}
        self.acks = []      # (monotonic time, gateway name)
        self.unacked = []   # PUTs that failed on every try: (key, what happened)

    def worker(self, t):
        rnd = random.Random(7000 + t)
        own = []
        n = 0
        while not self.stop.is_set():
            n += 1
            key = rnd.choice(own) if own and rnd.random() < 0.3 else f"t{t}/o{n}"
            if key not in own:
                own.append(key)
                with self.lock:
                    self.ledger[key] = {"acked": None, "later": set()}
            size = int(rnd.uniform(self.MIN_SIZE, self.MAX_SIZE))
            self.put(t, key, rnd.randbytes(size))

    def put(self, t, key, data):
        md5 = md5_hex(data)
        last = None
        for attempt in range(4):
            gw = self.gws[(t + attempt) % 2]
            try:
                r = put(gw, self.bucket, key, data, timeout=30)
                if r.status == 200 and r.header("ETag") == f'"{md5}"':
                    with self.lock:
                        self.ledger[key] = {"acked": md5, "later": set()}
                        self.acks.append((time.monotonic(), gw.name))
                    return
                last = f"{gw.name}: {r.status} {r.error_code}"
            except (OSError, http.client.HTTPException) as e:
                last = f"{gw.name}: {type(e).__name__}: {e}"
            time.sleep(0.1 * (attempt + 1))  # a client's backoff between retries
        with self.lock:
            self.ledger[key]["later"].add(md5)
            self.unacked.append((key, last))

    def acked_since(self, t0, name=None):
        with self.lock:
            return sum(1 for t, g in self.acks if t > t0 and (name is None or g == name))

    def check(self, gw):
        """Every key reads back as its latest acknowledged PUT, or as one
        written after it that was never acknowledged."""
        with self.lock:
            ledger = {k: (v["acked"], set(v["later"])) for k, v in self.ledger.items()}
        for key, (acked, later) in ledger.items():
            r = get(gw, self.bucket, key)
            if acked is None and not later:
                continue  # the thread stopped before its first try
            if r.status == 404 and acked is None:
                continue  # never acknowledged, and never committed
            assert r.status == 200, f"{gw.name} GET {key}: {r}"
            got = md5_hex(r.body)
            assert got == acked or got in later, \
                f"{gw.name} GET {key}: md5 {got}, want the acknowledged {acked} (or a later {sorted(later)})"
        return len(ledger)


@pytest.mark.deadline(420)
def test_kill_9_of_a_gateway_under_load_loses_nothing_acknowledged(make_pair):
    pair = make_pair()
    a, b = pair.a, pair.b
    bucket = new_bucket(a)
    load = Load(pair.gws, bucket)
    pool = concurrent.futures.ThreadPoolExecutor(load.nthreads)
    futures = [pool.submit(load.worker, t) for t in range(load.nthreads)]
    try:
        t0 = time.monotonic()
        wait_until(lambda: load.acked_since(t0, "gw-a") >= 10 and load.acked_since(t0, "gw-b") >= 10, 90,
                   interval=0.1, what="PUTs acknowledged by both gateways")
        a.kill()            # kill -9, mid-stream: some PUTs are cut
        killed = time.monotonic()
        wait_until(lambda: load.acked_since(killed) >= 20, 90, interval=0.1,
                   what="PUTs acknowledged by B after A died")
    finally:
        load.stop.set()
        for f in futures:
            f.result(timeout=120)
        pool.shutdown()
    assert load.acked_since(killed, "gw-a") == 0
    assert not load.unacked, f"PUTs that no gateway acknowledged in four tries: {load.unacked[:5]}"
    keys = load.check(b)
    assert keys >= 20

    # A comes back; its start's orphan pass takes what its death left on the
    # nodes (shards written, never committed), once they are older than any
    # commit B could still be waiting for.
    a.start()
    pair.wait_startup_orphan_passes(3)
    load.check(a)
    a.wait_jobs_idle()
    pair.stop_and_fsck()


# ---- concurrent writers to one key --------------------------------------------------------------


WRITERS = 32
PUTS_EACH = 3


@pytest.mark.deadline(300)
def test_32_writers_over_two_gateways_to_one_key_the_last_commit_wins(make_pair):
    pair = make_pair()
    bucket = new_bucket(pair.a)
    start = threading.Barrier(WRITERS)
    records = []
    lock = threading.Lock()

    def writer(t):
        gw = pair.gws[t % 2]
        start.wait()
        for i in range(PUTS_EACH):
            data = payload(24 * KiB + 97 * t + i, 1000 * t + i)   # erasure-coded, every body different
            t_start = time.monotonic()
            r = put(gw, bucket, "contended", data, timeout=60)
            rec = {"writer": t, "gw": gw.name, "md5": md5_hex(data), "start": t_start, "end": time.monotonic(),
                   "status": r.status, "etag": r.header("ETag"), "error": r.error_code}
            with lock:
                records.append(rec)

    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        for f in [pool.submit(writer, t) for t in range(WRITERS)]:
            f.result(timeout=240)
    bad = [r for r in records if r["status"] != 200 or r["etag"] != f'"{r["md5"]}"']
    assert not bad, f"{len(bad)} PUTs not acknowledged as sent: {bad[:3]}"
    assert len(records) == WRITERS * PUTS_EACH

    final = {gw.name: md5_hex(get(gw, bucket, "contended").body) for gw in pair.gws}
    assert final["gw-a"] == final["gw-b"], final
    winner = [r for r in records if r["md5"] == final["gw-a"]]
    assert len(winner) == 1, f"the object is none of the acknowledged bodies: {final}"
    # The last commit: no acknowledged PUT began after the winner's answer
    # (it would have committed after it and replaced it).
    later = [r for r in records if r["start"] > winner[0]["end"]]
    assert not later, f"PUTs that began after the winner was acknowledged, yet lost: {later[:3]}"

    # Every version the winner displaced had its shards removed by the writer
    # that displaced it: the nodes hold one version's six shards.
    def one_version():
        files = pair.shard_files()
        return len(files) == NNODES and len({name.split(".")[0] for _, name in files}) == 1
    wait_until(one_version, 30, what=f"one version's shards on the nodes, not {len(pair.shard_files())}")
    # The job queue's garbage collection then finds nothing to take.
    job = pair.a.admin("jobs", "enqueue", "collect_orphans", '{"grace_s": 0}').stdout.strip()
    wait_until(lambda: " completed " in pair.a.admin("jobs", "show", job).stdout, 60,
               what="the collect_orphans run")
    assert one_version()
    doc = pair.stop_and_fsck()
    assert doc["check"]["orphans"] == 0 and doc["check"]["placements"] == 1, doc["check"]


# ---- work done once for all ---------------------------------------------------------------------------


def leader(pair, role):
    """The one gateway that holds role's lease (asserting there is one)."""
    holders = [gw for gw in pair.gws if gw.alive() and gw.leads(role)]
    assert len(holders) == 1, f"{role}: {[gw.name for gw in holders]} lead"
    return holders[0]


@pytest.mark.deadline(300)
def test_periodic_jobs_scrubbing_and_rebalancing_run_once_across_gateways(make_pair):
    pair = make_pair(env={"CAIRN_JOB_PERIOD_S": "1", "CAIRN_SCRUB_INTERVAL": "1", "CAIRN_SCRUB_RATE": "0"},
                     spares=1)
    bucket = new_bucket(pair.a)
    objs = {f"o{i}": payload(30 * KiB + i, 50 + i) for i in range(12)}
    for i, (key, data) in enumerate(objs.items()):
        assert put(pair.gws[i % 2], bucket, key, data).status == 200

    # Periodic jobs: one per period, each run once, whichever gateway ran it.
    def periods():
        rows = pair.sql("SELECT unique_key, state, attempts FROM jobs WHERE kind = 'prune_jobs'")
        return rows if len(rows) >= 5 else None
    rows = wait_until(periods, 60, interval=0.2, what="five periods of prune_jobs")
    numbers = [int(k.rsplit(":", 1)[1]) for k, _, _ in rows]
    assert len(numbers) == len(set(numbers)) and max(numbers) - min(numbers) + 1 >= len(numbers), numbers
    done = [r for r in rows if r[1] == "completed"]
    assert done and all(r[2] == "1" for r in done), rows

    # Scrubbing: passes on the holder of the scrub lease, none on the other.
    scrubber = leader(pair, "scrub")
    other = pair.b if scrubber is pair.a else pair.a
    # Counted from now: a pass that began while the PUTs ran saw only some.
    p0, o0 = scrubber.metric("cairn_scrub_passes_total"), scrubber.metric("cairn_scrub_objects_total")
    wait_until(lambda: scrubber.metric("cairn_scrub_passes_total") >= p0 + 4, 60, what="four more scrub passes")
    assert other.metric("cairn_scrub_passes_total") == 0 and not other.leads("scrub")
    assert scrubber.metric("cairn_scrub_objects_total") - o0 >= 3 * len(objs)

    # Rebalancing: a pass when the lease was taken, and one after a node
    # joins, on the membership lease's holder only.
    mover = leader(pair, "membership")
    still = pair.b if mover is pair.a else pair.a
    wait_until(lambda: mover.log_count("rebalance pass done") >= 1, 30, what="the first holder's pass")
    before = mover.metric("cairn_rebalance_passes_total")
    spare = pair.spares[0]
    mover.admin("node", "add", spare.url)
    wait_until(lambda: mover.metric("cairn_rebalance_passes_total") > before and spare.shard_files(), 60,
               what="a rebalance pass moving shards onto the added node")
    assert still.log_count("rebalance pass done") == 0 and still.metric("cairn_rebalance_passes_total") == 0
    assert not still.leads("membership")
    total = sum(len(s) for n in pair.nodes + pair.spares for s in n.shard_files().values())
    assert total == NNODES * len(objs), f"{total} shards for {len(objs)} objects"
    for i, (key, data) in enumerate(objs.items()):
        assert_body(pair.gws[i % 2], bucket, key, data)
    pair.stop_and_fsck()


@pytest.mark.deadline(300)
def test_a_lease_moves_when_its_holder_is_killed(make_pair):
    pair = make_pair(env={"CAIRN_SCRUB_INTERVAL": "1"}, start_b=False)
    a, b = pair.a, pair.b
    bucket = new_bucket(a)
    assert put(a, bucket, "o", payload(40 * KiB, 9)).status == 200
    wait_until(lambda: a.leads("scrub") and a.leads("membership"), 20, what="A to take both leases")
    b.start()
    # B's first try, before it serves, found A's leases renewed.
    assert not b.leads("scrub") and not b.leads("membership")
    holders = dict(pair.sql("SELECT name, holder FROM leases ORDER BY name"))
    assert set(holders) == {"membership", "scrub"} and all(h.endswith(os.path.realpath(a.data_dir)) for h in holders.values())

    a.kill()
    wait_until(lambda: b.leads("scrub") and b.leads("membership"), 30, what="B to take both leases over")
    assert b.log_text().count("lease taken: this gateway does the work for all") == 2
    wait_until(lambda: b.log_count("rebalance pass done") >= 1, 30, what="B's pass on taking the lease")
    wait_until(lambda: b.metric("cairn_scrub_passes_total") >= 1, 30, what="B's scrub pass")
    holders = dict(pair.sql("SELECT name, holder FROM leases ORDER BY name"))
    assert all(h.endswith(os.path.realpath(b.data_dir)) for h in holders.values()), holders

    # A comes back and finds them held; B stops and gives them back at once.
    a.start()
    assert not a.leads("scrub") and not a.leads("membership")
    assert b.stop() == 0
    wait_until(lambda: a.leads("scrub") and a.leads("membership"), 30, what="A to take the released leases")
    assert_body(a, bucket, "o", payload(40 * KiB, 9))
    pair.stop_and_fsck()


# ---- LISTEN/NOTIFY ------------------------------------------------------------------------------------


@pytest.mark.deadline(300)
def test_a_job_enqueued_anywhere_starts_at_once_on_another_gateway(make_pair, tmp_path):
    pair = make_pair(env={"CAIRN_JOB_POLL_MS": "600000"})     # ten minutes between polls
    a, b = pair.a, pair.b
    for gw in pair.gws:
        wait_until(lambda: gw.log_count("job listener listening: workers wake on every enqueue") == 1, 20,
                   what=f"{gw.name}'s job listener")

    def runs_on(runner, frozen, n):
        """Enqueues a job with `cairn admin` while frozen is stopped; runner
        must run it within seconds, not at its next poll ten minutes away."""
        record = tmp_path / f"record-{n}.txt"
        frozen.proc.send_signal(signal.SIGSTOP)
        try:
            job = runner.admin("jobs", "enqueue", "test.record", f'{{"file": "{record}"}}').stdout.strip()
            wait_until(lambda: record.exists() and f"done {job}\n" in record.read_text(), 30,
                       what=f"{runner.name} to run job {job}")
        finally:
            frozen.proc.send_signal(signal.SIGCONT)
        assert " completed " in runner.admin("jobs", "show", job).stdout

    runs_on(b, a, 1)
    runs_on(a, b, 2)
    assert all(gw.metric("cairn_jobs_notifications_total") >= 1 for gw in pair.gws)

    # Cut both listeners' connections while the database refuses new ones:
    # each keeps trying (with backoff) and reconnects once it may, and
    # notifications wake its workers again.
    pg_cluster().sql(f"ALTER DATABASE {pair.db} ALLOW_CONNECTIONS false")
    try:
        cut = pg_cluster().sql(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                               f" WHERE datname = '{pair.db}' AND application_name = 'cairn-listener'").stdout
        assert cut.strip() == "2", cut
        for gw in pair.gws:
            wait_until(lambda: gw.log_count("job listener lost its connection; workers poll until it is back") == 1
                       and gw.log_count("meta: job listener cannot connect to postgres") >= 2, 30,
                       what=f"{gw.name}'s listener to fail to reconnect, twice")
    finally:
        pg_cluster().sql(f"ALTER DATABASE {pair.db} ALLOW_CONNECTIONS true")
    for gw in pair.gws:
        wait_until(lambda: gw.log_count("job listener reconnected: workers wake on every enqueue again") == 1, 30,
                   what=f"{gw.name}'s listener to reconnect")
        assert gw.metric("cairn_jobs_listener_losses_total") == 1
    runs_on(b, a, 3)
    runs_on(a, b, 4)
    pair.stop_and_fsck()


# ---- the start-up orphan pass on a shared database ---------------------------------------------


@pytest.mark.deadline(180)
def test_a_starting_gateways_orphan_pass_spares_shards_younger_than_its_minimum_age(make_pair):
    """A gateway on a shared database asks its start-up orphan pass to wait
    and to take only shards at least 2 x (shard, acquire and statement
    timeouts + 2 s) old: a younger unreferenced shard written before the
    start may be another gateway's upload waiting for its commit."""
    pair = make_pair()
    starts = pair.sql("SELECT args, run_at_ms FROM jobs WHERE kind = 'collect_orphans'"
                      " AND args LIKE '%min_age_ms%' ORDER BY id")
    assert len(starts) == 2, starts                 # one per gateway start
    want = 2 * (2000 + 2000 + 5000 + 2000)          # CAIRN_SHARD_TIMEOUT_MS, the db_* defaults, the margin
    for args, run_at in starts:
        a = json.loads(args)
        assert a["min_age_ms"] == want and int(run_at) == a["started_ms"] + want, (args, run_at)

    node = pair.nodes[0]

    def stray(name, age_s):
        p = node.drive / "objects" / name[:2] / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"stray")
        os.utime(p, (time.time() - age_s, time.time() - age_s))
        return p

    old = stray("aa" + "1" * 30 + ".0", 7200)
    young = stray("bb" + "2" * 30 + ".0", 120)      # before a start a minute ago, younger than ten minutes
    started = int(time.time() * 1000) - 60_000
    job = pair.a.admin("jobs", "enqueue", "collect_orphans",
                       json.dumps({"started_ms": started, "min_age_ms": 600_000})).stdout.strip()
    wait_until(lambda: " completed " in pair.a.admin("jobs", "show", job).stdout, 60,
               what="the collect_orphans run")
    assert not old.exists() and young.exists()
    # Without the minimum age the same start takes it.
    job = pair.a.admin("jobs", "enqueue", "collect_orphans", json.dumps({"started_ms": started})).stdout.strip()
    wait_until(lambda: " completed " in pair.a.admin("jobs", "show", job).stdout, 60,
               what="the collect_orphans run")
    assert not young.exists()
    pair.stop_and_fsck()


@pytest.mark.deadline(300)
def test_32_if_none_match_writers_over_two_gateways_have_exactly_one_winner(make_pair):
    """S3's conditional writes across gateways: 32 PUTs of one absent key
    with If-None-Match: *, half through each gateway, all released at once.
    Exactly one is acknowledged and it is what both gateways serve; every
    other writer gets 412 PreconditionFailed, and no loser's shards stay."""
    pair = make_pair()
    bucket = new_bucket(pair.a)
    for round_no in range(3):
        key = f"once-{round_no}"
        start = threading.Barrier(WRITERS)
        results = []
        lock = threading.Lock()

        def writer(t):
            gw = pair.gws[t % 2]
            data = payload(24 * KiB + 97 * t, 7000 * round_no + t)   # erasure-coded, every body different
            start.wait()
            r = gw.request("PUT", sigv4.object_path(bucket, key), body=data, headers={"If-None-Match": "*"},
                           timeout=60)
            with lock:
                results.append((r.status, r.error_code, md5_hex(data)))

        with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
            for f in [pool.submit(writer, t) for t in range(WRITERS)]:
                f.result(timeout=240)
        won = [md5 for status, _, md5 in results if status == 200]
        lost = [(status, code) for status, code, _ in results if status != 200]
        assert len(won) == 1, f"round {round_no}: {len(won)} writers won"
        assert lost == [(412, "PreconditionFailed")] * (WRITERS - 1), lost
        for gw in pair.gws:
            assert md5_hex(get(gw, bucket, key).body) == won[0], gw.name

    def three_versions():
        files = pair.shard_files()
        return len(files) == 3 * NNODES and len({name.split(".")[0] for _, name in files}) == 3
    wait_until(three_versions, 30, what=f"only the winners' shards on the nodes, not {len(pair.shard_files())}")
    doc = pair.stop_and_fsck()
    assert doc["check"]["orphans"] == 0 and doc["check"]["placements"] == 3, doc["check"]


# ---- rate limits shared through Redis ---------------------------------------------------------


def drive(gws, bucket, seconds):
    """Requests as fast as one client sends them, round robin over gws, for
    seconds: (admitted, elapsed between the first and the last)."""
    admitted, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        for gw in gws:
            r = gw.request("GET", f"/{bucket}", query={"location": ""})
            assert r.status in (200, 503), r
            if r.status == 503:
                assert r.error_code == "SlowDown" and int(r.header("Retry-After")) >= 1
            admitted += r.status == 200
    return admitted, time.monotonic() - t0


def test_rate_limits_are_shared_by_the_gateways_and_fall_back_to_a_share_without_redis(make_pair, redis_server):
    rate = 40
    pair = make_pair(env={"CAIRN_RATELIMIT_KEY_OPS_PER_S": str(rate), "CAIRN_RATELIMIT_BURST_S": "1",
                          "CAIRN_REDIS_BREAKER_MS": "500"})
    bucket = new_bucket(pair.a)
    time.sleep(1.1)  # the bucket's create spent from the burst: a full bucket to start from
    admitted, elapsed = drive(pair.gws, bucket, 4)
    expected = rate + rate * elapsed   # the burst, then the rate: for both gateways together
    assert abs(admitted - expected) <= 0.1 * expected, (admitted, expected, elapsed)
    assert pair.a.metric("cairn_ratelimit_shared") == 1
    assert pair.a.metric("cairn_ratelimit_gateways") == 2
    # Redis stopped: each gateway enforces its share (rate / 2) alone
    redis_server.stop()
    wait_until(lambda: (pair.a.request("GET", "/"), pair.a.metric("cairn_ratelimit_shared") == 0)[1], 20,
               what="gateway A to notice Redis is gone")
    time.sleep(1.1)
    admitted, elapsed = drive([pair.a], bucket, 3)
    share = rate / 2
    expected = share + share * elapsed
    assert abs(admitted - expected) <= 0.15 * expected, (admitted, expected, elapsed)
    assert pair.a.metric("cairn_ratelimit_fallback_total") > 0
    assert pair.a.log_count("redis failed: each gateway enforces its share of the rate limits alone") >= 1
    # Redis back: shared again, by itself
    redis_server.start()
    wait_until(lambda: (pair.a.request("GET", "/"), pair.a.metric("cairn_ratelimit_shared") == 1)[1], 30,
               what="gateway A to share the limits again")
    pair.stop_and_fsck()


# ---- encryption at rest across gateways (issue 13) ----------------------------------------------


@pytest.mark.deadline(240)
def test_encrypted_objects_across_gateways(make_pair):
    import hashlib
    import botocore
    pair = make_pair(env={"CAIRN_SSE_C_ALLOW_INSECURE": "true"})
    a, b = pair.a, pair.b
    ca, cb = a.client(), b.client()
    bucket = new_bucket(a)
    # The SSE-S3 key is made on first use: once, however many gateways race.
    def put_s3(c, i):
        c.put_object(Bucket=bucket, Key=f"race{i}", Body=payload(10 * KiB, i), ServerSideEncryption="AES256")
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: put_s3(ca if i % 2 else cb, i), range(16)))
    keys = json.loads(a.admin("kms", "key", "list", "--json").stdout)
    assert [k["id"] for k in keys] == ["cairn-sse-s3"], keys
    for i in range(16):
        assert (cb if i % 2 else ca).get_object(Bucket=bucket, Key=f"race{i}")["Body"].read() == payload(10 * KiB, i)
    # SSE-KMS by a bucket default set through A, written through A, read through B
    a.admin("kms", "key", "create", "--id", "gwkey")
    ca.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "gwkey"}}]})
    big = payload(300 * KiB, 7)
    wait_until(lambda: cb.put_object(Bucket=bucket, Key="big", Body=big).get("SSEKMSKeyId") == "gwkey", 10,
               what="B to see the bucket's default encryption")
    g = ca.get_object(Bucket=bucket, Key="big")
    assert g["SSEKMSKeyId"] == "gwkey" and g["Body"].read() == big
    # SSE-C multipart: begun on A, a part through each, completed on B
    key = hashlib.sha256(b"gw").digest()
    sc = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    up = ca.create_multipart_upload(Bucket=bucket, Key="mp", **sc)["UploadId"]
    p1, p2 = payload(5 * MiB, 8), payload(70 * KiB, 9)
    e1 = ca.upload_part(Bucket=bucket, Key="mp", PartNumber=1, UploadId=up, Body=p1, **sc)["ETag"]
    e2 = cb.upload_part(Bucket=bucket, Key="mp", PartNumber=2, UploadId=up, Body=p2, **sc)["ETag"]
    cb.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert ca.get_object(Bucket=bucket, Key="mp", **sc)["Body"].read() == p1 + p2
    # a key disabled through the CLI is refused by both gateways within the cache window
    a.admin("kms", "key", "disable", "gwkey")

    def refused(c):
        try:
            c.get_object(Bucket=bucket, Key="big")["Body"].read()
            return False
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"] == "KMS.DisabledException"
    wait_until(lambda: refused(ca) and refused(cb), 10, what="both gateways to refuse the disabled key")
    a.admin("kms", "key", "enable", "gwkey")
    wait_until(lambda: not refused(ca) and not refused(cb), 10, what="both gateways to take the key again")
    pair.stop_and_fsck()
