"""The metadata cache across gateways, on real processes: two `cairn gateway`s
on one PostgreSQL database and one redis-server (Debian's binary, a temp dir,
a random port), over six `cairn node`s.

The hard rule: read-after-write for every client across every gateway.  A
write acknowledged by gateway A is what gateway B answers to the next GET,
HEAD or LIST, every time, though B caches object heads, buckets and access
keys; a key revoked through A (or by `cairn admin`) is refused by B at once.
With Redis stopped both gateways go on serving, right, from the database,
/health/ready says "degraded" naming redis, and once Redis is back the cache
is used again without a restart.

On SQLite (one server) the same rule is held by test_auth's revocation test
and by every read-after-write in the suite, with the cache on by default.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (CAIRN_BIN, _started_servers, free_port, metadata_env, random_access_key, random_secret,
                      server_env, unique_bucket, wait_until)
from test_cluster import NNODES, SECRET, Gateway, Node

pytestmark = pytest.mark.postgres_only("gateways share metadata through PostgreSQL")

MASTER_KEY = "5a" * 32
ROUNDS = int(os.environ.get("CAIRN_TEST_CACHE_ROUNDS", "10000"))


class Redis:
    """A redis-server of our own: no persistence, loopback, a random port kept
    across restarts."""

    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_until(self.answers, 20, what="redis-server to answer PING")

    def answers(self):
        cp = subprocess.run(["redis-cli", "-p", str(self.port), "PING"], capture_output=True, text=True)
        return cp.stdout.strip() == "PONG"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), capture_output=True, text=True,
                              check=True).stdout


@pytest.fixture
def two_gateways(tmp_path, request):
    """(a, b, redis): two gateways on one PostgreSQL clone and one Redis."""
    redis = Redis(tmp_path / "redis")
    request.addfinalizer(redis.stop)  # also when a start below fails
    redis.start()
    nodes = [Node(tmp_path / f"node{i}", i) for i in range(NNODES)]
    _started_servers.extend(nodes)
    for n in nodes:
        n.start()
    env = {"CAIRN_CLUSTER_SECRET": SECRET, "CAIRN_MASTER_KEY": MASTER_KEY, "CAIRN_REDIS_URL": redis.url,
           "CAIRN_REDIS_TIMEOUT_MS": "200", "CAIRN_REDIS_BREAKER_MS": "200", **metadata_env()}
    root = (random_access_key(), random_secret())
    gws = []
    for name in ("a", "b"):
        g = Gateway(tmp_path / f"gateway-{name}", nodes, env)
        g.root = root
        g.name = f"gateway-{name}"
        _started_servers.append(g)
        g.start()
        gws.append(g)
    for g in gws:
        wait_until(lambda g=g: ready(g)[1].get("status") == "ok", 20, what=f"{g.name} ready with redis up")
    try:
        yield gws[0], gws[1], redis
        for g in gws:
            assert g.stop() == 0, g.log_tail()
    finally:
        for g in gws:
            g.kill()
        for n in nodes:
            n.sigcont()
            if n.proc and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()
        redis.stop()


def ready(g):
    r = g.get_url("GET", "/health/ready")
    import json
    return r.status, json.loads(r.body or b"{}")


def metric(g, name, labels=""):
    return g.metrics().get(name + labels)


def list_keys(g, bucket, prefix):
    r = g.request("GET", f"/{bucket}", query={"list-type": "2", "prefix": prefix})
    assert r.status == 200, r
    root = r.xml()
    return [c.find("{*}Key").text for c in root.findall("{*}Contents")]


@pytest.mark.deadline(900)   # 10,000 rounds of 3 requests: 1-2 min, several on a loaded machine
def test_read_after_write_across_two_gateways(two_gateways):
    a, b, _redis = two_gateways
    bucket = unique_bucket("raw")
    assert a.request("PUT", f"/{bucket}").status == 200
    key = "k"
    current = None
    for i in range(ROUNDS):
        # b reads first, so what it caches is what a is about to replace.
        b.request("HEAD" if i % 2 else "GET", f"/{bucket}/{key}")
        if i % 7 == 6:
            r = a.request("DELETE", f"/{bucket}/{key}")
            assert r.status == 204, r
            current = None
        else:
            current = f"v{i}".encode()
            r = a.request("PUT", f"/{bucket}/{key}", body=current)
            assert r.status == 200, r
        how = ("GET", "HEAD", "LIST")[i % 3]
        if how == "LIST":
            assert list_keys(b, bucket, key) == ([key] if current is not None else []), f"round {i}: stale LIST"
            continue
        r = b.request(how, f"/{bucket}/{key}")
        if current is None:
            assert r.status == 404, f"round {i}: {how} on b found a key a deleted: {r}"
        else:
            assert r.status == 200, f"round {i}: {r}"
            assert r.header("Content-Length") == str(len(current)), f"round {i}: stale {how} on b"
            if how == "GET":
                assert r.body == current, f"round {i}: b served {r.body!r} after a wrote {current!r}"
    hits = metric(b, "cairn_cache_hits_total", '{tier="l1"}')
    assert hits and hits > 0, "gateway b never used its cache: the test proved nothing"


def test_a_key_revoked_anywhere_is_refused_everywhere_at_once(two_gateways):
    a, b, redis = two_gateways
    user = f"u{random_access_key()[:8].lower()}"
    a.admin("user", "create", user, check=True)
    cp = a.admin("key", "create", user)
    ak, sk = cp.fields["access_key_id"], cp.fields["secret_access_key"]
    bucket = unique_bucket("rev")
    assert b.request("PUT", f"/{bucket}", creds=(ak, sk)).status == 200
    for _ in range(3):  # cached on b now
        assert b.request("GET", f"/{bucket}", creds=(ak, sk)).status == 200
    a.admin("key", "revoke", ak)  # `cairn admin` on the shared database
    r = b.request("GET", f"/{bucket}", creds=(ak, sk))
    assert r.status == 403 and r.error_code == "InvalidAccessKeyId", f"b still accepted a revoked key: {r}"
    # Secrets never reach Redis, not even sealed: no cached value of the key
    # (its generation counter, a number, may be there).
    values = [k for k in redis.cli("KEYS", "cairn:c:*").split() if ("k" + ak).encode().hex() in k]
    assert values == [], f"an access key's record was stored in redis: {values}"
    assert len(redis.cli("KEYS", "cairn:c:*").split()) > 0, "nothing in L2 at all: the check proves nothing"


def test_with_redis_stopped_the_gateways_serve_right_and_recover(two_gateways):
    a, b, redis = two_gateways
    bucket = unique_bucket("down")
    assert a.request("PUT", f"/{bucket}").status == 200
    assert a.request("PUT", f"/{bucket}/k", body=b"before").status == 200
    assert b.request("GET", f"/{bucket}/k").body == b"before"

    redis.stop()
    wait_until(lambda: ready(b)[1].get("status") == "degraded", 20, what="b to report degraded")
    status, doc = ready(b)
    assert status == 200 and doc["down"] == ["redis"], doc
    for i in range(20):
        body = f"down{i}".encode()
        assert a.request("PUT", f"/{bucket}/k", body=body).status == 200
        r = b.request("GET", f"/{bucket}/k")
        assert r.status == 200 and r.body == body, f"b served {r.body!r} with redis down"
    # The writer's invalidations failed, and its breaker stopped it from
    # waiting on Redis for each; the reader, without a lease, does not ask
    # Redis at all.
    assert metric(a, "cairn_cache_breaker_opens_total", '{tier="l2"}') >= 1
    assert metric(b, "cairn_cache_lease_held") == 0

    redis.start()
    wait_until(lambda: ready(a)[1].get("status") == "ok" and ready(b)[1].get("status") == "ok", 30,
               what="both gateways ready again with redis back")
    assert a.request("PUT", f"/{bucket}/k", body=b"after").status == 200
    hits = metric(b, "cairn_cache_hits_total", '{tier="l1"}')

    def cached_again():
        r = b.request("GET", f"/{bucket}/k")
        assert r.body == b"after", f"b served {r.body!r} after redis came back"
        return metric(b, "cairn_cache_hits_total", '{tier="l1"}') > hits
    wait_until(cached_again, 20, what="b to use its L1 again")
    assert metric(b, "cairn_cache_channel_up") == 1
