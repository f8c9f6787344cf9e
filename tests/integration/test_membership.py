"""Node membership: add a node (rebalance moves about 1/N of the shards),
drain a node (all its shards move away), remove it only when empty."""
import glob
import hashlib
import http.client
import os
import signal
import subprocess

import pytest

import sigv4
from conftest import CAIRN_BIN, free_port, metadata_env, unique_bucket, wait_until

SECRET = "membership-secret-0123456789"
AK, SK = "memberroot", "memberroot-secret-123"


def base_env(extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    e["CAIRN_CLUSTER_SECRET"] = SECRET
    e.update(extra or {})
    return e


def live(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/health/live")
        return c.getresponse().status == 200
    except OSError:
        return False


class Cluster:
    def __init__(self, tmp_path, nodes=6):
        self.tmp = tmp_path
        self.meta_env = metadata_env()  # the gateway's database: a PostgreSQL clone, or gw/meta.db
        self.procs = []
        self.node_ports = []
        for i in range(nodes + 1):  # one spare, started but not configured
            self.start_node(i)
        self.port = free_port()
        self.urls = ",".join(f"http://127.0.0.1:{p}" for p in self.node_ports[:nodes])
        self.gw_log = open(tmp_path / "gw.log", "a")
        self.start_gateway()

    def start_gateway(self):
        self.gw = subprocess.Popen([CAIRN_BIN, "gateway", "--listen", f"127.0.0.1:{self.port}",
                                    "--data", str(self.tmp / "gw"), "--nodes", self.urls],
                                   env=base_env({**self.meta_env, "CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK,
                                                 "CAIRN_EC_BLOCK_SIZE": "4KiB", "CAIRN_SCRUB_INTERVAL": "0",
                                                 "CAIRN_SHARD_TIMEOUT_MS": "1000"}),
                                   stdout=subprocess.DEVNULL, stderr=self.gw_log)
        self.procs.append(self.gw)
        wait_until(lambda: live(self.port), 20, what="the gateway")

    def stop_gateway(self):
        self.gw.send_signal(signal.SIGTERM)
        assert self.gw.wait(30) == 0

    def start_node(self, i):
        port = free_port()
        log = open(self.tmp / f"node{i}.log", "w")
        p = subprocess.Popen([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{port}", "--drives",
                              str(self.tmp / f"node{i}")], env=base_env(), stdout=subprocess.DEVNULL, stderr=log)
        self.procs.append(p)
        self.node_ports.append(port)
        wait_until(lambda: live(port), 20, what=f"node {i}")

    def shards(self, i):
        return len(glob.glob(str(self.tmp / f"node{i}" / "objects" / "*" / "*")))

    def admin(self, *args, check=True):
        cp = subprocess.run([CAIRN_BIN, "admin", "--data", str(self.tmp / "gw"), *args],
                            env=base_env(self.meta_env), capture_output=True, text=True, timeout=30)
        if check:
            assert cp.returncode == 0, cp.stderr
        return cp

    def request(self, method, path, body=b"", headers=None):
        headers, _sig, _date = sigv4.sign_request(method, path, {}, {"Host": f"127.0.0.1:{self.port}", **(headers or {})},
                                                  AK, SK, hashlib.sha256(body).hexdigest())
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()

    def passes(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith("cairn_rebalance_passes_total "):
                return int(line.split()[1])
        return 0

    def add_and_rebalance(self, url):
        before = self.passes()
        self.admin("node", "add", url)
        # The next heartbeat sees the change and runs a whole pass.
        wait_until(lambda: self.passes() > before, 30, what="a rebalance pass after adding the node")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def put_objects(c, n=30):
    bucket = unique_bucket()
    assert c.request("PUT", sigv4.object_path(bucket))[0] == 200
    objs = {}
    for i in range(n):
        body = os.urandom(20_000 + 137 * i)
        assert c.request("PUT", sigv4.object_path(bucket, f"o{i}"), body)[0] == 200
        objs[f"o{i}"] = body
    return bucket, objs


def all_read_back(c, bucket, objs):
    for k, v in objs.items():
        st, body = c.request("GET", sigv4.object_path(bucket, k))
        assert st == 200 and body == v, k


def test_adding_a_node_moves_about_one_nth_of_the_shards(cluster):
    bucket, objs = put_objects(cluster)
    total = 6 * len(objs)
    assert sum(cluster.shards(i) for i in range(6)) == total and cluster.shards(6) == 0
    cluster.add_and_rebalance(f"http://127.0.0.1:{cluster.node_ports[6]}")
    assert sum(cluster.shards(i) for i in range(7)) == total, "a moved shard was left behind"
    moved = cluster.shards(6) / total
    # Rendezvous hashing: each shard moves with probability 1/7 (~14%).
    assert 0.04 < moved < 0.30, moved
    all_read_back(cluster, bucket, objs)


def test_drain_moves_every_shard_then_remove(cluster):
    bucket, objs = put_objects(cluster)
    # 4+2 needs six nodes: to drain one of six, a seventh must join first.
    cluster.add_and_rebalance(f"http://127.0.0.1:{cluster.node_ports[6]}")
    listing = cluster.admin("node", "list").stdout.split("\n")
    first = listing[0].split()[0]
    assert "objects=" in listing[0]
    cp = cluster.admin("node", "remove", first, check=False)
    assert cp.returncode == 1 and "drain it first" in cp.stderr
    cluster.admin("node", "drain", first)
    node_index = next(i for i in range(6) if f"127.0.0.1:{cluster.node_ports[i]}" in listing[0])
    wait_until(lambda: cluster.shards(node_index) == 0, 30, what="the drained node to be emptied")
    assert sum(cluster.shards(i) for i in range(7)) == 6 * len(objs)
    all_read_back(cluster, bucket, objs)
    assert "objects=0" in cluster.admin("node", "list").stdout.split("\n")[0]
    cluster.admin("node", "remove", first)
    assert " removed " in cluster.admin("node", "list").stdout.split("\n")[0]
    # New writes avoid the drained node.
    assert cluster.request("PUT", sigv4.object_path(bucket, "after"), os.urandom(50_000))[0] == 200
    assert cluster.shards(node_index) == 0


def test_admin_node_add_refuses_a_node_that_does_not_answer(cluster):
    cp = cluster.admin("node", "add", f"http://127.0.0.1:{free_port()}", check=False)
    assert cp.returncode == 1 and "did not answer" in cp.stderr


def test_gateway_starts_with_a_node_down(cluster):
    bucket, objs = put_objects(cluster, n=10)
    cluster.stop_gateway()
    victim = cluster.procs[2]           # node 2, configured
    victim.kill()
    victim.wait()
    cluster.start_gateway()             # must start: the registry knows node 2's id
    all_read_back(cluster, bucket, objs)
    body = os.urandom(80_000)
    assert cluster.request("PUT", sigv4.object_path(bucket, "while-down"), body)[0] == 200
    assert cluster.request("GET", sigv4.object_path(bucket, "while-down")) == (200, body)
    assert cluster.shards(2) == 10      # nothing new went to the dead node
    # The node comes back on the same port and drive: the heartbeat sees it,
    # and new writes use it again.
    port = cluster.node_ports[2]
    log = open(cluster.tmp / "node2-again.log", "w")
    cluster.procs.append(subprocess.Popen([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{port}", "--drives",
                                           str(cluster.tmp / "node2")], env=base_env(),
                                          stdout=subprocess.DEVNULL, stderr=log))
    wait_until(lambda: live(port), 20, what="node 2 to come back")

    def used_again():
        for i in range(20):
            assert cluster.request("PUT", sigv4.object_path(bucket, f"back{i}"), os.urandom(30_000))[0] == 200
        return cluster.shards(2) > 10
    wait_until(used_again, 20, what="new writes to land on the returned node")


def test_fsck_and_a_restart_see_the_shards_of_an_added_node(cluster):
    """A node added with `admin node add` is in the registry, not in the
    configuration: fsck, and a gateway before its first heartbeat, must
    still open it, or every shard moved onto it looks lost."""
    bucket, objs = put_objects(cluster, n=12)
    cluster.add_and_rebalance(f"http://127.0.0.1:{cluster.node_ports[6]}")
    assert cluster.shards(6) > 0
    cluster.stop_gateway()
    cp = cluster.admin("--nodes", cluster.urls, "fsck", "--json", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr[-1000:]
    # Killing the other nodes' worth of parity: with two configured nodes
    # down, every read needs the added node's shards from the first request.
    for i in (0, 1):
        cluster.procs[i].kill()
        cluster.procs[i].wait()
    cluster.start_gateway()
    all_read_back(cluster, bucket, objs)
