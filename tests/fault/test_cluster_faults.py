"""The fault loop over a gateway and storage nodes: a PUT with every
shard-API send and receive failed (or the gateway crashing there) in turn,
and a rebalance pass with every call of it failed or crashed.  The nodes
run the ordinary code; only the gateway is armed.  See faultlib.py."""
import glob
import os
import re
import signal
import subprocess
import urllib.request

import pytest

from cairn_harness import CAIRN_BIN, free_port, leftover_tmp_files, server_env, unique_bucket, wait_until
from faultlib import QUIET, Ledger, errno_for, response_is_clean

SECRET = "fault-cluster-secret-0123456789"
AK, SK = "faultroot", "faultroot-secret-123"


class FaultCluster:
    """Seven nodes (six configured, one spare) and a gateway of the fault
    build; the gateway restarts between runs, the nodes stay."""

    def __init__(self, tmp, heartbeat_ms=100):
        self.tmp = tmp
        self.spec_file = tmp / "fault.spec"
        self.spec_file.write_text("")
        self.nodes, self.node_ports = [], []
        for i in range(7):
            port = free_port()
            log = open(tmp / f"node{i}.log", "a")
            p = subprocess.Popen([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{port}", "--drives", str(tmp / f"n{i}")],
                                 env=server_env({"CAIRN_CLUSTER_SECRET": SECRET}), stdout=subprocess.DEVNULL,
                                 stderr=log)
            self.nodes.append(p)
            self.node_ports.append(port)
        for port in self.node_ports:
            wait_until(lambda p=port: self._live(p), 20, what="a node")
        self.port = free_port()
        self.urls = ",".join(f"http://127.0.0.1:{p}" for p in self.node_ports[:6])
        self.spare = f"http://127.0.0.1:{self.node_ports[6]}"
        self.env = dict(QUIET, CAIRN_CLUSTER_SECRET=SECRET, CAIRN_NODES=self.urls, CAIRN_EC_BLOCK_SIZE="4KiB",
                        CAIRN_NODE_HEARTBEAT_MS=str(heartbeat_ms), CAIRN_SHARD_TIMEOUT_MS="2000",
                        CAIRN_INLINE_MAX_SIZE="0")
        self.gw = None
        self.clients = {}
        self.log_path = tmp / "gateway.log"
        self.start()

    @staticmethod
    def _live(port):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2).status == 200
        except OSError:
            return False

    # -- the gateway --

    def start(self):
        env = dict(self.env, CAIRN_ROOT_USER=AK, CAIRN_ROOT_PASSWORD=SK, CAIRN_TEST_FAULT_FILE=str(self.spec_file))
        with open(self.log_path, "ab") as log:
            self.gw = subprocess.Popen([CAIRN_BIN, "gateway", "--listen", f"127.0.0.1:{self.port}", "--data",
                                        str(self.tmp / "gw")], env=server_env(env), stdout=subprocess.DEVNULL,
                                       stderr=log)
        wait_until(lambda: self._live(self.port), 20, what="the gateway")
        self.jobs_idle()

    def stop_or_reap(self):
        if self.gw.poll() is None:
            self.gw.send_signal(signal.SIGTERM)
            self.gw.wait(30)

    def log_lines(self):
        return self.log_path.read_text(errors="replace").splitlines()

    def arm(self, spec):
        """Arms the gateway; returns the log position from which an
        injection belongs to this run (the arming itself included)."""
        lines = self.log_lines()
        before = sum(1 for l in lines if "fault injection armed" in l)
        self.spec_file.write_text(spec)
        self.gw.send_signal(signal.SIGUSR1)
        wait_until(lambda: sum(1 for l in self.log_lines() if "fault injection armed" in l) > before, 10,
                   what="the gateway to arm")
        return len(lines)

    def reached(self, mark):
        return any("fault injected" in l for l in self.log_lines()[mark:])

    def admin(self, *args):
        cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(self.tmp / "gw"), *args], capture_output=True, text=True,
                            timeout=60, env=server_env(dict(self.env)))
        assert cp.returncode == 0, cp.stderr
        return cp.stdout

    def jobs_idle(self):
        def idle():
            rows = [l.split() for l in self.admin("jobs", "list").splitlines() if l.strip()]
            return not [r for r in rows if r[2] in ("available", "running", "retryable")]
        wait_until(idle, 60, interval=0.1, what="the gateway's jobs to finish")

    def passes(self):
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10).read().decode()
        except OSError:
            return None
        m = re.search(r"^cairn_rebalance_passes_total (\d+)", body, re.M)
        return int(m.group(1)) if m else 0

    def pass_after(self, change=None):
        """Makes a change to the registry (or none: the pass every start
        runs) and waits for the rebalance pass it causes to end, or the
        gateway to die."""
        before = 0 if change is None else (self.passes() or 0)
        if change:
            change()
        wait_until(lambda: self.gw.poll() is not None or (self.passes() or 0) >= before + 1, 60, interval=0.05,
                   what="a whole rebalance pass")

    def s3(self, retries=1):
        """A client kept for the cluster's life (making one costs more than
        a run): retries=1 for the operation under test, so no failure is
        retried away, more for the reads that check it."""
        if retries not in self.clients:
            import boto3
            from botocore.config import Config
            self.clients[retries] = boto3.session.Session().client(
                "s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1", aws_access_key_id=AK,
                aws_secret_access_key=SK, config=Config(s3={"addressing_style": "path"},
                                                        retries={"max_attempts": retries}, read_timeout=60))
        return self.clients[retries]

    def fsck(self):
        cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(self.tmp / "gw"), "fsck", "--json"],
                            capture_output=True, text=True, timeout=120, env=server_env(dict(self.env)))
        assert cp.returncode == 0, f"fsck found problems:\n{cp.stdout}\n{cp.stderr[-1500:]}"

    def node_tmp_files(self):
        return [f for i in range(7) for f in glob.glob(str(self.tmp / f"n{i}" / "tmp" / "*"))]

    def after_run(self, verify):
        self.stop_or_reap()
        self.start()
        self.pass_after()  # every start runs a pass: an interrupted move is finished
        wait_until(lambda: not self.node_tmp_files() and not leftover_tmp_files(self.tmp / "gw"), 15,
                   what="temp files on the nodes to go")
        verify()
        self.jobs_idle()
        self.stop_or_reap()
        self.fsck()
        self.start()
        # Its start pass too: a setup's pass_after that began while it ran
        # would take its end for the end of the pass the setup caused.
        self.pass_after()

    def close(self):
        for p in [self.gw] + self.nodes:
            if p and p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def cluster(tmp_path):
    c = FaultCluster(tmp_path)
    yield c
    c.close()


@pytest.fixture
def quiet_cluster(tmp_path):
    """Heartbeats only at start: nothing but the run's own requests talks to
    the nodes, so the nth call is the same call in every run."""
    c = FaultCluster(tmp_path, heartbeat_ms=600000)
    yield c
    c.close()


def loop(c, sites, action, op, verify, setup=None, window=None, limit=300):
    for n in range(1, limit + 1):
        ctx = setup(n) if setup else None
        spec = f"sites={sites}\nnth={n}\nerrno={errno_for(n)}\naction={action}\n" + (f"window={window}\n" if window else "")
        mark = c.arm(spec)
        op(n, ctx)
        hit = c.reached(mark)
        c.after_run(verify)
        if not hit:
            print(f"\n{c.tmp.name}: {n - 1} runs reached their fault ({sites}, {action})")
            return n - 1
    raise AssertionError("never ran out of calls")


def getter(c, bucket):
    def get(key):
        s3 = c.s3(retries=3)
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
    return get


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_put_over_nodes(quiet_cluster, action):
    c = quiet_cluster
    b = unique_bucket()
    c.s3().create_bucket(Bucket=b)
    ledger = Ledger()

    def op(n, _ctx):
        key, body = f"k{n}", os.urandom(40_000)
        try:
            c.s3().put_object(Bucket=b, Key=key, Body=body)
            ledger.acknowledged(key, body)
        except Exception:  # a clean S3 error or a connection the crash cut
            ledger.uncertain(key, body)

    runs = loop(c, "net.*,meta.*", action, op, lambda: ledger.check(getter(c, b)))
    assert runs >= 15, runs


@pytest.mark.deadline(1200)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_rebalance_onto_a_new_node(cluster, action):
    """Each run starts with the spare node drained and empty, then adds it:
    the pass moves about a seventh of the shards onto it, every call of
    which is failed or crashed in turn."""
    c = cluster
    b = unique_bucket()
    s3 = c.s3()
    s3.create_bucket(Bucket=b)
    ledger = Ledger()
    for i in range(6):
        body = os.urandom(9_000 + i)
        s3.put_object(Bucket=b, Key=f"o{i}", Body=body)
        ledger.acknowledged(f"o{i}", body)
    spare_id = None

    def setup(n):
        nonlocal spare_id
        if spare_id is None:
            c.pass_after(lambda: c.admin("node", "add", c.spare))
            spare_id = [l.split()[0] for l in c.admin("node", "list").splitlines() if c.spare in l][0]
        c.pass_after(lambda: c.admin("node", "drain", spare_id))
        assert not glob.glob(str(c.tmp / "n6" / "objects" / "*" / "*")), "the drain left shards on the spare"

    def op(n, _ctx):
        # Active again: the pass this causes moves shards onto it.
        c.pass_after(lambda: c.admin("node", "add", c.spare))

    runs = loop(c, "net.*,meta.*", action, op, lambda: ledger.check(getter(c, b)), setup=setup, window="rebalance")
    assert runs >= 5, runs
