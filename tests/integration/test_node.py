"""`cairn node`: the shard API (docs/shard-api.md) on real processes.

Requests are signed here the way the gateway signs them (src/data/remote.c):
a Signer is one gateway session (a random id and a counter), signing for one
node's id; a PUT's shard bytes are followed by their Poly1305 tag, computed
by the pure-Python poly1305() below, so the tests also check that the node
agrees with an implementation that is not OpenSSL's.  Attacks are written
as an attacker would run them: capture the bytes of a signed request
(Signer.build), then send them again, altered or not, with send_raw.
"""
import hashlib
import hmac
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import CAIRN_BIN, free_port, wait_until

SECRET = "node-test-secret-0123456789"
NAME = "0123456789abcdef0123456789abcdef.3"
TAG_LEN = 16
WINDOW = 4096       # sequence numbers a node remembers per session
SESSIONS = 1024     # sessions a node remembers


def now_ms():
    return int(time.time() * 1000)


def poly1305(key, msg):
    """RFC 8439 Poly1305, as the node and gateway compute it with OpenSSL."""
    r = int.from_bytes(key[:16], "little") & 0x0ffffffc0ffffffc0ffffffc0fffffff
    s = int.from_bytes(key[16:], "little")
    p, acc = (1 << 130) - 5, 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def body_tag(secret, sig, shard):
    key = hmac.new(secret.encode(), b"CAIRN-SHARD-2-BODY\n" + sig.encode(), hashlib.sha256).digest()
    return poly1305(key, shard)


class Signer:
    """One gateway session: signs requests for one node as remote.c does."""

    def __init__(self, node_id, secret=SECRET):
        self.node_id = node_id
        self.secret = secret
        self.session = os.urandom(16).hex()
        self.seq = 0

    def next_seq(self):
        self.seq += 1
        return self.seq

    def headers(self, method, target, length=None, date=None, seq=None):
        d = str(now_ms() if date is None else date)
        nonce = f"{self.session}.{self.next_seq() if seq is None else seq}"
        sts = "\n".join(["CAIRN-SHARD-2", self.node_id, method, target, d, nonce,
                         "" if length is None else str(length)])
        sig = hmac.new(self.secret.encode(), sts.encode(), hashlib.sha256).hexdigest()
        h = {"X-Cairn-Date": d, "X-Cairn-Nonce": nonce, "X-Cairn-Signature": sig}
        if length is not None:
            h["Content-Length"] = str(length)
        return h

    def build(self, method, target, shard=None, date=None, seq=None, extra=None):
        """The bytes of one signed request: a PUT carries shard and its tag."""
        body = b""
        length = None
        if shard is not None:
            length = len(shard) + TAG_LEN
        h = self.headers(method, target, length, date, seq)
        if shard is not None:
            body = shard + body_tag(self.secret, h["X-Cairn-Signature"], shard)
        h.update(extra or {})
        head = f"{method} {target} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        return head.encode() + body


def split_request(raw):
    """(head, body) of a request built by Signer.build."""
    i = raw.index(b"\r\n\r\n") + 4
    return raw[:i], raw[i:]


def send_raw(port, raw, close_after=False):
    """Sends request bytes as they are; returns (status, body), or None when
    the node closed without answering (close_after: we hang up after sending)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(raw)
        if close_after:
            return None
        resp = http.client.HTTPResponse(s, method=raw.split(b" ", 1)[0].decode())
        resp.begin()
        return resp.status, resp.read()


class Node:
    def __init__(self, tmp_path, drives=2, env=None):
        self.port = free_port()
        self.tmp_path = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.drives = [str(tmp_path / f"drive{i}") for i in range(drives)]
        e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        e.update({"CAIRN_CLUSTER_SECRET": SECRET})
        e.update(env or {})
        self.env = e
        self.starts = 0
        self.start()

    def start(self):
        self.starts += 1
        self.log = open(self.tmp_path / f"node-{self.starts}.log", "w")
        self.proc = subprocess.Popen([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{self.port}",
                                      "--drives", ",".join(self.drives)],
                                     env=self.env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        wait_until(self._live, 20, what="the node to answer /health/live")
        self.id = self.request("GET", "/health/live", sign=False)[2]["X-Cairn-Node-Id"]
        self.signer = Signer(self.id)

    def _live(self):
        try:
            return self.request("GET", "/health/live", sign=False)[0] == 200
        except OSError:
            return False

    def request(self, method, path, body=None, headers=None, secret=SECRET, date=None, sign=True):
        """One request; signed by this node's Signer (or for another secret),
        a PUT's body followed by its tag."""
        h = dict(headers or {})
        if sign:
            signer = self.signer if secret == SECRET else Signer(self.id, secret)
            length = None if body is None else len(body) + (TAG_LEN if method == "PUT" else 0)
            h.update(signer.headers(method, path, length, date))
            if method == "PUT" and body is not None:
                body = body + body_tag(secret, h["X-Cairn-Signature"], body)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())

    def send(self, raw):
        return send_raw(self.port, raw)

    def tmp_files(self):
        return [f for d in self.drives for f in os.listdir(os.path.join(d, "tmp"))]

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        assert self.proc.wait(20) == (0 if sig == signal.SIGTERM else -sig)
        self.log.close()

    def restart(self, sig=signal.SIGTERM):
        """Stops and starts the node on the same port and drives; the Signer
        (the gateway's session) is kept, as a gateway keeps it."""
        signer = self.signer
        self.stop(sig)
        self.start()
        self.signer = signer


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
    assert node.request("GET", "/v1/info", date=now_ms() - 301_000)[0] == 401
    assert node.request("GET", "/v1/info", date=now_ms() + 301_000)[0] == 401
    assert node.request("GET", "/v1/info", date=int(time.time()))[0] == 401  # seconds, not ms
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
    path = f"/v1/shards/{NAME}"
    h = node.signer.headers("PUT", path, 1_000_000 + TAG_LEN)
    c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
    c.putrequest("PUT", path)
    for k, v in h.items():
        c.putheader(k, v)
    c.endheaders()
    c.send(b"x" * 1000)
    wait_until(lambda: node.tmp_files(), 10, what="the temp shard to appear")
    c.close()
    wait_until(lambda: not node.tmp_files(), 10, what="the temp shard to be removed")
    assert node.request("GET", path)[0] == 404


def chunked_put(node, path, shard, tag=None, sign_as=None, cut=False, piece=1000):
    """A PUT of shard and its tag sent Transfer-Encoding: chunked, signed with
    "chunked" where the length goes (sign_as: another LENGTH to sign).
    Returns the status, or None when cut (no zero chunk; we hang up)."""
    d, nonce = str(now_ms()), f"{node.signer.session}.{node.signer.next_seq()}"
    sts = "\n".join(["CAIRN-SHARD-2", node.id, "PUT", path, d, nonce, "chunked" if sign_as is None else sign_as])
    sig = hmac.new(SECRET.encode(), sts.encode(), hashlib.sha256).hexdigest()
    body = shard + (tag if tag is not None else body_tag(SECRET, sig, shard))
    raw = (f"PUT {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\nX-Cairn-Date: {d}\r\n"
           f"X-Cairn-Nonce: {nonce}\r\nX-Cairn-Signature: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    for i in range(0, len(body), piece):
        c = body[i:i + piece]
        raw += b"%x\r\n" % len(c) + c + b"\r\n"
    if cut:
        with socket.create_connection(("127.0.0.1", node.port), timeout=20) as s:
            s.sendall(raw)
            wait_until(lambda: node.tmp_files(), 10, what="the cut-short upload's temp shard")
        return None
    return node.send(raw + b"0\r\n\r\n")[0]


def test_a_chunked_put_is_a_shard_only_when_whole_and_tagged(node):
    """A shard of unknown size comes chunked (docs/shard-api.md): the tag,
    checked here against the pure-Python Poly1305, is the last 16 bytes
    before the zero chunk; the framing is signed; a stream without its zero
    chunk leaves nothing."""
    path = f"/v1/shards/{NAME}"
    shard = os.urandom(100_000)
    for piece in (1, 15, 16, 17, 4096, 200_000):
        shard_piece = shard[:3000] if piece < 16 else shard
        assert chunked_put(node, path, shard_piece, piece=piece) == 201, piece
        st, got, _ = node.request("GET", path)
        assert st == 200 and got == shard_piece, piece
    other = os.urandom(50_000)
    assert chunked_put(node, path, other, tag=os.urandom(TAG_LEN)) == 401        # a wrong tag
    assert chunked_put(node, path, other, sign_as="") == 401                     # signed as no body
    assert chunked_put(node, path, other, sign_as=str(len(other) + TAG_LEN)) == 401  # signed with a length
    assert chunked_put(node, path, b"", tag=b"short") == 400                     # shorter than a tag
    assert chunked_put(node, path, other, cut=True) is None                      # no zero chunk
    wait_until(lambda: not node.tmp_files(), 10, what="the temp shard to be removed")
    assert node.request("GET", path)[1] == shard                                 # the last good one stays
    assert not node.tmp_files()


def test_node_needs_a_cluster_secret(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    cp = subprocess.run([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{free_port()}", "--drives",
                         str(tmp_path / "d")], env=e, capture_output=True, text=True, timeout=20)
    assert cp.returncode == 2 and "cluster_secret" in cp.stderr


def test_a_node_that_cannot_listen_exits_1_and_frees_its_drives(tmp_path):
    """The http service fails after the drives opened: the registry stops
    them (their lock is released: a node on the same drives starts)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    e["CAIRN_CLUSTER_SECRET"] = SECRET
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        cp = subprocess.run([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{port}", "--drives", str(tmp_path / "d")],
                            env=e, capture_output=True, text=True, timeout=30)
        assert cp.returncode == 1 and "cairn node:" in cp.stderr, cp.stderr
    finally:
        taken.close()
    p = subprocess.Popen([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{free_port()}", "--drives", str(tmp_path / "d")],
                         env=e, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "listening" in p.stdout.readline()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0


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


# ---- authentication: replays, body tags, other nodes, restarts ------------------------------


def shard_files(node, name=NAME):
    return [os.path.join(d, "objects", name[:2], name) for d in node.drives
            if os.path.exists(os.path.join(d, "objects", name[:2], name))]


def test_replayed_put_is_refused_with_other_bytes_and_with_the_same(node):
    path = f"/v1/shards/{NAME}"
    original = os.urandom(50_000)
    captured = node.signer.build("PUT", path, original)
    assert node.send(captured)[0] == 201
    head, body = split_request(captured)
    # The same head with other bytes of the same length (say, shard blocks
    # with their CRCs recomputed), the captured tag kept: the attacker cannot
    # make a new one.
    forged = bytes(b ^ 0x5A for b in original)
    assert node.send(head + forged + body[-TAG_LEN:])[0] == 401
    assert node.send(captured)[0] == 401                 # the identical request
    st, got, _ = node.request("GET", path)
    assert st == 200 and got == original
    assert not node.tmp_files()


def test_a_body_that_is_not_the_signed_one_never_becomes_a_shard(node):
    path = f"/v1/shards/{NAME}"
    shard = os.urandom(20_000)
    # Altered in flight, tag kept: refused once the body is in, nothing stored.
    head, body = split_request(node.signer.build("PUT", path, shard))
    assert node.send(head + b"\0" + body[1:])[0] == 401
    # A wrong tag.
    head, body = split_request(node.signer.build("PUT", path, shard))
    assert node.send(head + body[:-TAG_LEN] + os.urandom(TAG_LEN))[0] == 401
    # No tag at all: the shard alone under a correctly signed length (the
    # last 16 shard bytes are then read as the tag).
    h = node.signer.headers("PUT", path, len(shard))
    assert node.request("PUT", path, headers=h, body=shard, sign=False)[0] == 401
    # Shorter than a tag.
    h = node.signer.headers("PUT", path, 5)
    assert node.request("PUT", path, headers=h, body=b"12345", sign=False)[0] == 400
    # Cut short: the tag never arrives.  The connection stays open until the
    # node has the temp shard, so the wait below cannot pass before it began.
    head, body = split_request(node.signer.build("PUT", path, shard))
    with socket.create_connection(("127.0.0.1", node.port), timeout=20) as cut:
        cut.sendall(head + body[:-TAG_LEN])
        wait_until(lambda: node.tmp_files(), 10, what="the cut-short upload's temp shard")
    wait_until(lambda: not node.tmp_files(), 10, what="the temp shard to be removed")
    assert node.request("GET", path)[0] == 404
    assert shard_files(node) == []
    assert not node.tmp_files()
    # The node still takes a good one.
    assert node.request("PUT", path, body=shard)[0] == 201
    assert node.request("GET", path)[1] == shard


def test_replayed_get_head_delete_and_listing_are_refused(node):
    path = f"/v1/shards/{NAME}"
    assert node.request("PUT", path, body=b"first")[0] == 201
    get = node.signer.build("GET", path)
    assert node.send(get) == (200, b"first")
    assert node.send(get)[0] == 401
    stat = node.signer.build("HEAD", path)
    assert node.send(stat)[0] == 200
    assert node.send(stat)[0] == 401
    listing = node.signer.build("GET", "/v1/shards?limit=5")
    assert node.send(listing)[0] == 200
    assert node.send(listing)[0] == 401
    delete = node.signer.build("DELETE", path)
    assert node.send(delete)[0] == 204
    assert node.request("PUT", path, body=b"second")[0] == 201
    assert node.send(delete)[0] == 401                   # the new shard survives
    assert node.request("GET", path)[1] == b"second"


def test_requests_out_of_order_within_the_window_are_accepted(node):
    # Gateway threads sign at once and their requests race: any order goes.
    signed = [node.signer.build("GET", "/v1/info") for _ in range(64)]
    order = list(range(64))
    random.Random(3).shuffle(order)
    assert [node.send(signed[i])[0] for i in order] == [200] * 64
    assert [node.send(signed[i])[0] for i in order[:8]] == [401] * 8
    # Concurrently, on many connections.
    batch = [node.signer.build("GET", "/v1/info") for _ in range(48)]
    statuses = []
    threads = [threading.Thread(target=lambda r=r: statuses.append(node.send(r)[0])) for r in batch]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200] * 48
    # A number WINDOW or more behind the newest is refused even if never seen;
    # one just inside the window is still accepted.
    top = node.signer.seq + 2 * WINDOW
    assert node.send(node.signer.build("GET", "/v1/info", seq=top))[0] == 200
    assert node.send(node.signer.build("GET", "/v1/info", seq=top - WINDOW))[0] == 401
    assert node.send(node.signer.build("GET", "/v1/info", seq=top - WINDOW + 1))[0] == 200


def test_a_request_signed_for_one_node_is_refused_by_another(tmp_path):
    a, b = Node(tmp_path / "a"), Node(tmp_path / "b")
    try:
        path = f"/v1/shards/{NAME}"
        assert b.request("PUT", path, body=b"on b")[0] == 201
        # A DELETE captured on its way to a (say, the source of a drain)
        # replayed to b, which holds the shard now.
        delete = a.signer.build("DELETE", path)
        assert a.send(delete)[0] == 204
        assert b.send(delete)[0] == 401
        assert b.request("GET", path)[1] == b"on b"
        put = a.signer.build("PUT", path, b"for a")
        assert b.send(put)[0] == 401
        assert b.request("GET", path)[1] == b"on b"
    finally:
        a.stop()
        b.stop()


def test_requests_captured_before_a_restart_are_refused_after_it(node):
    path = f"/v1/shards/{NAME}"
    put = node.signer.build("PUT", path, b"before")
    get = node.signer.build("GET", path)
    assert node.send(put)[0] == 201 and node.send(get)[0] == 200
    unsent = node.signer.build("DELETE", path)           # signed, held back by the attacker
    node.restart()
    assert node.send(put)[0] == 401
    assert node.send(get)[0] == 401
    assert node.send(unsent)[0] == 401                   # dated before the node started
    # The gateway's session goes on, numbered and dated after the restart.
    assert node.request("GET", path)[1] == b"before"
    assert node.request("PUT", path, body=b"after")[0] == 201
    assert node.request("GET", path)[1] == b"after"


def test_a_crashed_node_remembers_dates_ahead_of_its_clock(node):
    # A gateway whose clock runs 30 s ahead of the node's: its requests are
    # dated after the node's next start, so the start time alone would not
    # refuse them; the newest date admitted, kept on the first drive, does.
    path = f"/v1/shards/{NAME}"
    ahead = now_ms() + 30_000
    put = node.signer.build("PUT", path, b"ahead", date=ahead)
    assert node.send(put)[0] == 201
    node.restart(signal.SIGKILL)
    assert node.send(put)[0] == 401
    fresh = Signer(node.id)                              # a session the node has not seen
    assert node.send(fresh.build("GET", path, date=ahead - 1000))[0] == 401
    # The shard acknowledged before the kill -9 is there, byte for byte.  (No
    # fsck here: a lone node has no metadata to check its shards against.)
    assert node.send(fresh.build("GET", path, date=ahead + 1000)) == (200, b"ahead")


def test_sessions_are_bounded_and_an_evicted_one_still_cannot_be_replayed(node):
    first = node.signer.build("GET", "/v1/info")
    assert node.send(first)[0] == 200
    # As many other sessions as the node remembers: the first one is the
    # least recently used and is forgotten.
    for _ in range(SESSIONS):
        assert node.send(Signer(node.id).build("GET", "/v1/info"))[0] == 200
    assert node.send(first)[0] == 401
    assert node.request("GET", "/v1/info")[0] == 200     # the session itself goes on
    assert node.proc.poll() is None


def test_second_node_on_the_same_drive_refuses_and_keeps_the_first_ones_uploads(node):
    """Opening a drive empties its tmp/: a second process on it would delete
    the first one's shards in flight, so it must not start."""
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=20)
    h = node.signer.headers("PUT", f"/v1/shards/{NAME}", 1000 + TAG_LEN, None)
    head = f"PUT /v1/shards/{NAME} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    sock.sendall(head.encode() + b"\r\n" + b"x" * 400)
    wait_until(lambda: node.tmp_files(), 10, what="the upload's temp file")
    before = node.tmp_files()
    cp = subprocess.run([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{free_port()}", "--drives", node.drives[1]],
                        env=node.env, capture_output=True, text=True, timeout=20)
    assert cp.returncode == 1, cp
    assert "in use by another process" in cp.stderr, cp.stderr
    assert node.tmp_files() == before
    sock.close()
