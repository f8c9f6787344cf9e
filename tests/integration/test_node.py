"""`cairn node`: the shard API (docs/shard-api.md) on real processes."""
import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import CAIRN_BIN, free_port, wait_until

SECRET = "node-test-secret-0123456789"
NAME = "0123456789abcdef0123456789abcdef.3"


class Node:
    def __init__(self, tmp_path, drives=2, env=None):
        self.port = free_port()
        self.drives = [str(tmp_path / f"drive{i}") for i in range(drives)]
        e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        e.update({"CAIRN_CLUSTER_SECRET": SECRET})
        e.update(env or {})
        self.log = open(tmp_path / "node.log", "w")
        self.proc = subprocess.Popen([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{self.port}",
                                      "--drives", ",".join(self.drives)],
                                     env=e, stdout=subprocess.PIPE, stderr=self.log, text=True)
        wait_until(self._live, 20, what="the node to answer /health/live")

    def _live(self):
        try:
            return self.request("GET", "/health/live", sign=False)[0] == 200
        except OSError:
            return False

    def request(self, method, path, body=None, headers=None, secret=SECRET, date=None, sign=True):
        h = dict(headers or {})
        if sign:
            d = str(int(time.time()) if date is None else date)
            h["X-Cairn-Date"] = d
            h["X-Cairn-Signature"] = hmac.new(secret.encode(), f"{method}\n{path}\n{d}".encode(),
                                              hashlib.sha256).hexdigest()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0
        self.log.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    if n.proc.poll() is None:
        n.stop()


def test_put_get_range_head_delete(node):
    body = os.urandom(300_000)
    assert node.request("PUT", f"/v1/shards/{NAME}", body=body)[0] == 201
    st, got, _ = node.request("GET", f"/v1/shards/{NAME}")
    assert st == 200 and got == body
    st, got, h = node.request("GET", f"/v1/shards/{NAME}", headers={"Range": "bytes=1000-1999"})
    assert st == 206 and got == body[1000:2000]
    assert h["Content-Range"] == f"bytes 1000-1999/{len(body)}"
    st, _, h = node.request("HEAD", f"/v1/shards/{NAME}")
    assert st == 200 and int(h["Content-Length"]) == len(body)
    assert node.request("DELETE", f"/v1/shards/{NAME}")[0] == 204
    assert node.request("GET", f"/v1/shards/{NAME}")[0] == 404
    assert node.request("DELETE", f"/v1/shards/{NAME}")[0] == 204  # idempotent


def test_shards_are_durable_files_named_by_shard(node):
    body = b"z" * 5000
    assert node.request("PUT", f"/v1/shards/{NAME}", body=body)[0] == 201
    found = [os.path.join(d, "objects", NAME[:2], NAME) for d in node.drives
             if os.path.exists(os.path.join(d, "objects", NAME[:2], NAME))]
    assert len(found) == 1 and open(found[0], "rb").read() == body
    for d in node.drives:
        assert os.listdir(os.path.join(d, "tmp")) == []


def test_replace_is_whole(node):
    assert node.request("PUT", f"/v1/shards/{NAME}", body=b"a" * 10)[0] == 201
    assert node.request("PUT", f"/v1/shards/{NAME}", body=b"b" * 20)[0] == 201
    assert node.request("GET", f"/v1/shards/{NAME}")[1] == b"b" * 20


def test_authentication(node):
    assert node.request("GET", "/v1/info", secret="not-the-secret-at-all")[0] == 401
    assert node.request("GET", "/v1/info", date=int(time.time()) - 1000)[0] == 401
    assert node.request("GET", "/v1/info", date=int(time.time()) + 1000)[0] == 401
    assert node.request("GET", "/v1/info", sign=False)[0] == 401
    assert node.request("PUT", f"/v1/shards/{NAME}", body=b"x", sign=False)[0] == 401
    assert node.request("GET", f"/v1/shards/{NAME}")[0] == 404  # nothing was stored


def test_info_reports_drives(node):
    st, body, _ = node.request("GET", "/v1/info")
    doc = json.loads(body)
    assert st == 200 and len(doc["drives"]) == 2
    assert doc["node_id"] == doc["drives"][0]["id"]
    assert all(d["free_bytes"] > 0 and d["total_bytes"] >= d["free_bytes"] for d in doc["drives"])


def test_bad_names_are_refused(node):
    for bad in ["../../etc/passwd", "0123.1", NAME + "7", NAME.upper(), "0123456789abcdef0123456789abcdef.16"]:
        st = node.request("PUT", f"/v1/shards/{bad}", body=b"x")[0]
        assert st in (400, 404), (bad, st)


def test_cut_short_upload_leaves_nothing(node):
    d = str(int(time.time()))
    path = f"/v1/shards/{NAME}"
    sig = hmac.new(SECRET.encode(), f"PUT\n{path}\n{d}".encode(), hashlib.sha256).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
    c.putrequest("PUT", path)
    c.putheader("Content-Length", "1000000")
    c.putheader("X-Cairn-Date", d)
    c.putheader("X-Cairn-Signature", sig)
    c.endheaders()
    c.send(b"x" * 1000)
    wait_until(lambda: any(os.listdir(os.path.join(dd, "tmp")) for dd in node.drives), 10,
               what="the temp shard to appear")
    c.close()
    wait_until(lambda: not any(os.listdir(os.path.join(dd, "tmp")) for dd in node.drives), 10,
               what="the temp shard to be removed")
    assert node.request("GET", path)[0] == 404


def test_node_needs_a_cluster_secret(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    cp = subprocess.run([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{free_port()}", "--drives",
                         str(tmp_path / "d")], env=e, capture_output=True, text=True, timeout=20)
    assert cp.returncode == 2 and "cluster_secret" in cp.stderr


def list_all(node, limit):
    names, after, pages = [], "", 0
    while True:
        st, body, h = node.request("GET", f"/v1/shards?limit={limit}&after={after}")
        assert st == 200, body
        assert h["Content-Type"] == "application/json"
        doc = json.loads(body)
        pages += 1
        names += [e["name"] for e in doc["shards"]]
        assert all(isinstance(e["age_s"], int) and e["age_s"] >= 0 for e in doc["shards"])
        if not doc["truncated"]:
            return names, pages
        assert len(doc["shards"]) == limit
        after = doc["shards"][-1]["name"]


def test_listing_pages_through_every_shard_in_name_order(node):
    import random
    rnd = random.Random(7)
    want = {"%032x.%d" % (rnd.getrandbits(128), rnd.randrange(16)) for _ in range(57)}
    # 23 in one fan-out directory, so pages start in the middle of one.
    want |= {"aa%030x.%d" % (rnd.getrandbits(120), rnd.randrange(16)) for _ in range(23)}
    want = sorted(want)
    for name in want:
        assert node.request("PUT", f"/v1/shards/{name}", body=b"s")[0] == 201
    # The same name on the second drive too (a drive added later, a copy left
    # by a move): listed once.
    dup = want[10]
    other = [d for d in node.drives if not os.path.exists(os.path.join(d, "objects", dup[:2], dup))][0]
    os.makedirs(os.path.join(other, "objects", dup[:2]), exist_ok=True)
    open(os.path.join(other, "objects", dup[:2], dup), "wb").write(b"s")
    # Files that are not shards are never listed.
    open(os.path.join(node.drives[0], "objects", dup[:2], "junk"), "wb").write(b"x")
    names, pages = list_all(node, 10)
    assert names == want and pages == 8
    assert list_all(node, 1000) == (want, 1)
    st, body, _ = node.request("GET", f"/v1/shards?after={want[-1]}")
    assert st == 200 and json.loads(body) == {"shards": [], "truncated": False}
    # Ages come from the files' mtimes.
    old = os.path.join([d for d in node.drives if os.path.exists(os.path.join(d, "objects", want[3][:2], want[3]))][0],
                       "objects", want[3][:2], want[3])
    os.utime(old, (time.time() - 5000, time.time() - 5000))
    st, body, _ = node.request("GET", "/v1/shards?limit=5")
    ages = {e["name"]: e["age_s"] for e in json.loads(body)["shards"]}
    assert 4990 <= ages[want[3]] <= 5100 and ages[want[0]] < 100


def test_listing_refuses_bad_queries_and_unsigned_calls(node):
    for q in ["after=../../etc", "limit=0", "limit=-3", "limit=x", "bogus=1", "after", "limit=99999999999999999999"]:
        assert node.request("GET", f"/v1/shards?{q}")[0] == 400, q
    assert node.request("GET", "/v1/shards", sign=False)[0] == 401
    assert node.request("GET", "/v1/shards?limit=5000")[0] == 200  # capped, not refused
