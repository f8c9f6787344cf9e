"""The live event stream: GET /events/ws (docs/events.md).

Real servers, a real redis-server where the bus is Redis, and two kinds of
client: python3-websockets (a real WebSocket implementation: the happy
paths, filters, shutdown, Redis) and RawWS below, a socket speaking the
protocol by hand, for what a well-behaved library will not do (never
answer a ping, never read, send malformed or oversized frames or bad
UTF-8).  Every wait is a deadline with polling; "nothing else arrived" is
checked with a marker event sent after the ones that must not arrive:
the stream is ordered, so the marker arriving first proves they did not.
"""

import asyncio
import base64
import json
import os
import re
import signal
import socket
import struct
import threading
import time
import urllib.parse

import pytest
import websockets

import sigv4
from conftest import md5_hex, unique_bucket, wait_until
from test_gateways import make_pair  # noqa: F401  (the fixture)

WS_PATH = "/events/ws"


def ws_query(srv, creds=None, **params):
    """A presigned query for the stream (creds default to root)."""
    ak, sk = creds or srv.root
    extra = [(k, v) for k, v in params.items() if v is not None]
    return sigv4.presign("GET", srv.host, WS_PATH, ak, sk, extra_query=extra)


def ws_url(srv, creds=None, **params):
    return f"ws://{srv.host}{WS_PATH}?{ws_query(srv, creds, **params)}"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def recv_json(ws, timeout=20):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def record(msg):
    assert msg["type"] == "status", msg
    return msg["data"]["Records"][0]


def status_of_upgrade(srv, query, headers=None):
    """Sends an upgrade request by hand; returns (status, headers, body)."""
    key = base64.b64encode(os.urandom(16)).decode()
    h = {"Host": srv.host, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
         "Sec-WebSocket-Version": "13"}
    h.update(headers or {})
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        req = f"GET {WS_PATH}{'?' + query if query else ''} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in h.items() if v is not None) + "\r\n"
        s.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        if status != 101:
            n = int(hdrs.get("content-length", "0"))
            while len(body) < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        return status, hdrs, body.decode(errors="replace")
    finally:
        s.close()


class RawWS:
    """A WebSocket client by hand over a plain socket."""

    def __init__(self, srv, query, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", srv.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {WS_PATH}?{query} HTTP/1.1\r\nHost: {srv.host}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "the server closed during the handshake"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_frame(self, opcode, payload=b"", fin=True, masked=True, rsv=0, length=None):
        b0 = (0x80 if fin else 0) | rsv | opcode
        n = len(payload) if length is None else length
        mask_bit = 0x80 if masked else 0
        if n < 126:
            head = struct.pack("!BB", b0, mask_bit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mask_bit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mask_bit | 127, n)
        if masked:
            key = os.urandom(4)
            head += key
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        self.sock.sendall(head + payload)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def recv_frame(self, timeout=20):
        """(opcode, payload) of the next server frame; EOFError at the end."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames are never masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def until_close(self, timeout=20):
        """Reads frames until the close frame; returns (code, reason, frames before it)."""
        before = []
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_frame(max(0.1, deadline - time.monotonic()))
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:].decode(), before
            before.append((op, payload))

    def close(self):
        self.sock.close()


def put(srv, bucket, key, body=b"x", creds=None):
    r = srv.client(*(creds or (None, None))).put_object(Bucket=bucket, Key=key, Body=body)
    return r["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]


# ---- the happy path --------------------------------------------------------------------------


def test_puts_copies_uploads_and_deletes_arrive_in_order_with_their_fields(server, s3, bucket):
    async def main():
        async with websockets.connect(ws_url(server, bucket=bucket)) as ws:
            rid_put = await asyncio.to_thread(put, server, bucket, "dir/a b+c.txt", b"hello")
            await asyncio.to_thread(s3.copy_object, Bucket=bucket, Key="copy",
                                    CopySource={"Bucket": bucket, "Key": "dir/a b+c.txt"})
            up = await asyncio.to_thread(s3.create_multipart_upload, Bucket=bucket, Key="mp")
            part = await asyncio.to_thread(s3.upload_part, Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                           PartNumber=1, Body=b"p" * 10)
            await asyncio.to_thread(s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
            d = await asyncio.to_thread(s3.delete_object, Bucket=bucket, Key="dir/a b+c.txt")
            got = [record(await recv_json(ws)) for _ in range(4)]
            return rid_put, d["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"], got

    rid_put, rid_del, got = run(main())
    assert [g["eventName"] for g in got] == ["ObjectCreated:Put", "ObjectCreated:Copy",
                                              "ObjectCreated:CompleteMultipartUpload", "ObjectRemoved:Delete"]
    keys = [urllib.parse.unquote_plus(g["s3"]["object"]["key"]) for g in got]
    assert keys == ["dir/a b+c.txt", "copy", "mp", "dir/a b+c.txt"]
    put_ev = got[0]
    assert put_ev["eventSource"] == "aws:s3" and put_ev["eventVersion"] == "2.1"
    assert put_ev["s3"]["bucket"]["name"] == bucket
    assert put_ev["s3"]["object"]["size"] == 5
    assert put_ev["s3"]["object"]["eTag"] == md5_hex(b"hello")
    assert put_ev["responseElements"]["x-amz-request-id"] == rid_put
    assert put_ev["userIdentity"]["principalId"] == server.root[0]
    assert put_ev["requestParameters"]["sourceIPAddress"] == "127.0.0.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", put_ev["eventTime"])
    assert got[3]["responseElements"]["x-amz-request-id"] == rid_del
    assert "size" not in got[3]["s3"]["object"]
    seqs = [int(g["s3"]["object"]["sequencer"], 16) for g in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_filters_by_bucket_prefix_and_event_type(server, s3):
    b1, b2 = unique_bucket(), unique_bucket()
    s3.create_bucket(Bucket=b1)
    s3.create_bucket(Bucket=b2)

    async def main():
        async with websockets.connect(ws_url(server, bucket=b1, prefix="logs/")) as by_prefix, \
                websockets.connect(ws_url(server, bucket=b1, events="s3:ObjectRemoved:*")) as removals, \
                websockets.connect(ws_url(server, bucket=b1, events="s3:ObjectCreated:Put,s3:ObjectCreated:Copy")) \
                as puts:
            for key in ("other/1", "logs/1"):
                await asyncio.to_thread(put, server, b1, key)
            await asyncio.to_thread(put, server, b2, "logs/elsewhere")
            await asyncio.to_thread(s3.delete_object, Bucket=b1, Key="other/1")
            await asyncio.to_thread(s3.delete_object, Bucket=b1, Key="logs/1")
            # markers: the last event each socket takes
            await asyncio.to_thread(put, server, b1, "logs/marker")
            await asyncio.to_thread(s3.delete_object, Bucket=b1, Key="logs/marker")

            async def until_marker(ws, name):
                seen = []
                while True:
                    r = record(await recv_json(ws))
                    seen.append((r["eventName"], urllib.parse.unquote_plus(r["s3"]["object"]["key"])))
                    if seen[-1] == (name, "logs/marker"):
                        return seen
            return (await until_marker(by_prefix, "ObjectRemoved:Delete"),
                    await until_marker(removals, "ObjectRemoved:Delete"),
                    await until_marker(puts, "ObjectCreated:Put"))

    prefix_seen, removal_seen, put_seen = run(main())
    assert prefix_seen == [("ObjectCreated:Put", "logs/1"), ("ObjectRemoved:Delete", "logs/1"),
                           ("ObjectCreated:Put", "logs/marker"), ("ObjectRemoved:Delete", "logs/marker")]
    assert removal_seen == [("ObjectRemoved:Delete", "other/1"), ("ObjectRemoved:Delete", "logs/1"),
                            ("ObjectRemoved:Delete", "logs/marker")]
    assert put_seen == [("ObjectCreated:Put", "other/1"), ("ObjectCreated:Put", "logs/1"),
                        ("ObjectCreated:Put", "logs/marker")]


def test_a_user_watches_its_own_bucket_and_events_of_others_never_reach_it(server, user):
    mine, theirs = unique_bucket(), unique_bucket()
    uc = server.client(*user.creds)
    uc.create_bucket(Bucket=mine)
    server.client().create_bucket(Bucket=theirs)
    status, _, body = status_of_upgrade(server, ws_query(server, user.creds, bucket=theirs))
    assert status == 403 and "<Code>AccessDenied</Code>" in body

    async def main():
        async with websockets.connect(ws_url(server, user.creds, bucket=mine)) as ws:
            await asyncio.to_thread(put, server, theirs, "secret")
            await asyncio.to_thread(put, server, mine, "own", b"1", user.creds)
            return record(await recv_json(ws))

    r = run(main())
    assert r["s3"]["bucket"]["name"] == mine and r["s3"]["object"]["key"] == "own"
    assert r["userIdentity"]["principalId"] == user.access_key


# ---- refusals before the upgrade ---------------------------------------------------------------


def test_refusals_are_s3_errors_before_the_upgrade(server, bucket, user):
    cases = [
        # (query, headers, status, code)
        ("bucket=" + bucket, None, 403, "AccessDenied"),                       # unsigned
        (ws_query(server, user.creds, bucket=bucket), None, 403, "AccessDenied"),  # not the user's bucket
        (ws_query(server, user.creds, channel="cluster"), None, 403, "AccessDenied"),  # cluster needs root
        (ws_query(server, ("AKIANOSUCHKEY0000000", "x" * 40), bucket=bucket), None, 403, "InvalidAccessKeyId"),
        (ws_query(server), None, 400, "InvalidArgument"),                      # neither bucket nor channel
        (ws_query(server, channel="everything"), None, 400, "InvalidArgument"),
        (ws_query(server, bucket=bucket, events="s3:ObjectCreated:Nope"), None, 400, "InvalidArgument"),
        (ws_query(server, bucket="no-such-bucket-" + bucket[-8:]), None, 404, "NoSuchBucket"),
        (ws_query(server, bucket=bucket), {"Sec-WebSocket-Version": "8"}, 426, "UpgradeRequired"),
        (ws_query(server, bucket=bucket), {"Sec-WebSocket-Key": "short"}, 400, "InvalidRequest"),
        (ws_query(server, bucket=bucket), {"Connection": "keep-alive"}, 400, "InvalidRequest"),
    ]
    for query, headers, status, code in cases:
        got, hdrs, body = status_of_upgrade(server, query, headers)
        assert (got, f"<Code>{code}</Code>" in body) == (status, True), (query, headers, got, body)
        assert hdrs.get("x-amz-request-id"), "a refusal carries its request id"
        if status == 426:
            assert hdrs.get("sec-websocket-version") == "13"
    # and the server is fine
    assert server.request("GET", "/health/live", anonymous=True).status == 200


def test_a_plain_get_of_events_ws_is_the_object_ws_of_bucket_events(make_server):
    srv = make_server()
    c = srv.client()
    c.create_bucket(Bucket="events")
    c.put_object(Bucket="events", Key="ws", Body=b"just an object")
    assert c.get_object(Bucket="events", Key="ws")["Body"].read() == b"just an object"


def test_origins_not_allowed_get_403_and_an_empty_list_warns(make_server):
    srv = make_server(env={"CAIRN_EVENTS_ALLOWED_ORIGINS": "https://console.example.com, http://localhost:3000"})
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    q = ws_query(srv, bucket=b)
    assert status_of_upgrade(srv, q, {"Origin": "https://evil.example.com"})[0] == 403
    assert status_of_upgrade(srv, q, {"Origin": "https://console.example.com"})[0] == 101
    assert status_of_upgrade(srv, q, {"Origin": "http://localhost:3000"})[0] == 101
    assert status_of_upgrade(srv, q)[0] == 101, "a client that is not a browser sends no Origin"
    assert srv.metrics()["cairn_events_insecure_origins"] == 0
    open_srv = make_server()
    assert open_srv.metrics()["cairn_events_insecure_origins"] == 1
    assert any("events_allowed_origins is empty" in r.get("msg", "") for r in open_srv.log_records())


def test_metrics_can_be_switched_off(make_server):
    srv = make_server(env={"CAIRN_METRICS_ENABLED": "false"})
    r = srv.request("GET", "/metrics", anonymous=True)
    assert r.status == 404, r.body
    srv.client().list_buckets()
    assert srv.request("GET", "/health/live", anonymous=True).status == 200


def test_events_off_answers_501(make_server):
    srv = make_server(env={"CAIRN_EVENTS_ENABLED": "false"})
    b = unique_bucket()
    srv.client().create_bucket(Bucket=b)
    status, _, body = status_of_upgrade(srv, ws_query(srv, bucket=b))
    assert status == 501 and "NotImplemented" in body


# ---- what clients do wrong ----------------------------------------------------------------------


def test_malformed_oversized_and_bad_utf8_frames_are_closed_with_their_codes(server, bucket):
    q = ws_query(server, bucket=bucket)
    cases = [
        (dict(opcode=0x1, payload=b"hi", masked=False), 1002),            # client frames must be masked
        (dict(opcode=0x1, payload=b"hi", rsv=0x40), 1002),                # a reserved bit
        (dict(opcode=0x3, payload=b""), 1002),                            # an unknown opcode
        (dict(opcode=0x9, payload=b"p", fin=False), 1002),                # a fragmented ping
        (dict(opcode=0x0, payload=b"x"), 1002),                           # a continuation of nothing
        (dict(opcode=0x1, payload=b"\xc0\xaf"), 1007),                    # overlong UTF-8
        (dict(opcode=0x1, payload=b"\xed\xa0\x80"), 1007),                # a surrogate
        (dict(opcode=0x2, payload=b"b" * (64 * 1024 + 1)), 1009),         # past the 64 KiB message limit
    ]
    for frame, code in cases:
        ws = RawWS(server, q)
        try:
            ws.send_frame(**frame)
            got, _reason, _ = ws.until_close()
            assert got == code, (frame.get("opcode"), got)
        finally:
            ws.close()
    # a well-formed text message and a ping are fine, and the ping is answered
    ws = RawWS(server, q)
    try:
        ws.send_frame(0x1, "héllo".encode())
        ws.send_frame(0x9, b"are you there")
        op, payload = ws.recv_frame()
        assert (op, payload) == (0xA, b"are you there")
        ws.send_frame(0x8, struct.pack("!H", 1000) + b"bye")
        code, _, _ = ws.until_close()
        assert code == 1000
    finally:
        ws.close()
    assert server.request("GET", "/health/live", anonymous=True).status == 200
    assert server.metrics()["cairn_events_protocol_errors_total"] >= len(cases)


def test_a_client_that_never_answers_pings_is_closed_after_the_pong_timeout(make_server):
    srv = make_server(env={"CAIRN_EVENTS_PING_INTERVAL": "200ms", "CAIRN_EVENTS_PONG_TIMEOUT": "800ms"})
    b = unique_bucket()
    srv.client().create_bucket(Bucket=b)
    mute = RawWS(srv, ws_query(srv, bucket=b))
    live = RawWS(srv, ws_query(srv, bucket=b))
    stop = threading.Event()
    answered = []

    def answer_pings():
        # the live client answers every ping, meanwhile
        while not stop.is_set():
            try:
                op, payload = live.recv_frame(timeout=0.5)
            except socket.timeout:
                continue
            except (EOFError, OSError):
                return
            if op == 0x9:
                live.send_frame(0xA, payload)
                answered.append(payload)

    t = threading.Thread(target=answer_pings)
    t.start()
    try:
        t0 = time.monotonic()
        code, reason, frames = mute.until_close(timeout=20)
        waited = time.monotonic() - t0
        pings = sum(1 for op, _ in frames if op == 0x9)
        assert code == 1011 and "pong" in reason, (code, reason)
        assert pings >= 2, "pings came every ping interval"
        assert waited >= 0.8, "not before the pong timeout"
        mute.close()
        # the live one answered its pings and stays, well past the timeout
        wait_until(lambda: len(answered) >= 10, 20, what="the live client answered pings past the pong timeout")
        wait_until(lambda: srv.metrics()["cairn_events_sockets"] == 1, 10, what="the mute socket gone")
        assert srv.metrics()["cairn_events_pings_unanswered_total"] == 1
    finally:
        stop.set()
        t.join()
        mute.close()
        live.close()


def test_a_stuck_client_is_dropped_as_a_slow_consumer_and_the_others_get_everything(make_server):
    srv = make_server(env={"CAIRN_EVENTS_SEND_QUEUE_BYTES": "16KiB", "CAIRN_EVENTS_PING_INTERVAL": "1h"})
    b = unique_bucket()
    c = srv.client()
    c.create_bucket(Bucket=b)
    stuck = RawWS(srv, ws_query(srv, bucket=b), rcvbuf=4096)   # never reads
    n = 400
    key_pad = "k" * 600

    async def main():
        async with websockets.connect(ws_url(srv, bucket=b), max_queue=None) as ws:
            lat = []

            async def reader():
                for _ in range(n):
                    r = record(await recv_json(ws, timeout=60))
                    lat.append(time.time() - int(r["s3"]["object"]["sequencer"], 16) / 2**8 / 1e6)
            task = asyncio.create_task(reader())
            for i in range(n):
                await asyncio.to_thread(put, srv, b, f"{key_pad}/{i}")
            await task
            return lat

    lat = run(main(), timeout=180)
    assert len(lat) == n
    lat.sort()
    print(f"latency of the reading client while another is stuck: p50 {lat[n // 2] * 1000:.1f} ms, "
          f"p99 {lat[int(n * 0.99)] * 1000:.1f} ms")
    assert srv.metrics()["cairn_events_slow_consumers_total"] == 1
    # the stuck socket is closed: reading it now ends (its hangup may or may not fit)
    stuck.sock.settimeout(20)
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:
            stuck.recv_frame()
    stuck.close()


def test_shutdown_hangs_up_every_socket(make_server):
    srv = make_server()
    b = unique_bucket()
    srv.client().create_bucket(Bucket=b)
    socks = [RawWS(srv, ws_query(srv, bucket=b)) for _ in range(3)]
    socks.append(RawWS(srv, ws_query(srv, channel="cluster")))
    wait_until(lambda: srv.metrics()["cairn_events_sockets"] == 4, 10, what="4 sockets open")
    srv.proc.send_signal(signal.SIGTERM)
    for ws in socks:
        code, reason, frames = ws.until_close()
        assert code == 1001, code
        hangups = [json.loads(p) for op, p in frames if op == 0x1]
        assert hangups == [{"type": "hangup", "reason": "server shutting down"}], frames
        ws.close()
    assert srv.proc.wait(30) == 0


# ---- Redis ---------------------------------------------------------------------------------------


def test_every_gateways_events_reach_every_gateways_sockets_through_redis(make_server, redis_server):
    env = {"CAIRN_REDIS_URL": redis_server.url}
    a, b = make_server(env=env), make_server(env=env)
    name = unique_bucket()
    for srv in (a, b):
        srv.client().create_bucket(Bucket=name)   # each its own database: the channel is the bucket's name

    async def main():
        async with websockets.connect(ws_url(a, bucket=name)) as on_a:
            wait_until(lambda: a.metrics()["cairn_events_bus_up"] == 1, 20, what="a subscribed")
            await asyncio.to_thread(put, b, name, "from-b")
            await asyncio.to_thread(put, a, name, "from-a")
            return [record(await recv_json(on_a))["s3"]["object"]["key"] for _ in range(2)]

    assert run(main()) == ["from-b", "from-a"]


def test_redis_restarted_during_streaming_with_jittered_capped_reconnects(make_server, redis_server):
    srv = make_server(env={"CAIRN_REDIS_URL": redis_server.url, "CAIRN_EVENTS_RETRY_MAX": "400ms",
                           "CAIRN_EVENTS_RETRY_ATTEMPTS": "1000", "CAIRN_EVENTS_REDIS_TIMEOUT": "300ms"})
    b = unique_bucket()
    srv.client().create_bucket(Bucket=b)
    wait_until(lambda: srv.metrics()["cairn_events_bus_up"] == 1, 20, what="subscribed")

    async def main():
        async with websockets.connect(ws_url(srv, bucket=b)) as ws:
            await asyncio.to_thread(put, srv, b, "before")
            first = record(await recv_json(ws))["s3"]["object"]["key"]
            await asyncio.to_thread(redis_server.stop)
            await asyncio.to_thread(wait_until, lambda: srv.metrics()["cairn_events_bus_up"] == 0, 20,
                                    what="the subscription lost")
            await asyncio.sleep(0)   # the socket stays open meanwhile
            await asyncio.to_thread(wait_until, lambda: len(reconnect_delays(srv)) >= 8, 30,
                                    what="several reconnect attempts")
            await asyncio.to_thread(redis_server.start)
            await asyncio.to_thread(wait_until, lambda: srv.metrics()["cairn_events_bus_up"] == 1, 30,
                                    what="subscribed again")
            await asyncio.to_thread(put, srv, b, "after")
            while True:
                key = record(await recv_json(ws))["s3"]["object"]["key"]
                if key == "after":
                    return first

    assert run(main(), timeout=120) == "before"
    delays = reconnect_delays(srv)
    assert all(0 <= d <= 400 for d in delays), delays
    assert len(set(delays)) > 1, f"the delays show jitter: {delays}"
    assert srv.metrics()["cairn_events_redis_reconnects_total"] >= 1


def reconnect_delays(srv):
    return [int(r["delay_ms"]) for r in srv.log_records() if r.get("msg") == "event stream: Redis reconnect scheduled"]


def test_when_redis_retries_run_out_sockets_get_a_hangup_and_new_ones_503(make_server, redis_server):
    srv = make_server(env={"CAIRN_REDIS_URL": redis_server.url, "CAIRN_EVENTS_RETRY_MAX": "100ms",
                           "CAIRN_EVENTS_RETRY_ATTEMPTS": "3", "CAIRN_EVENTS_REDIS_TIMEOUT": "300ms"})
    b = unique_bucket()
    srv.client().create_bucket(Bucket=b)
    wait_until(lambda: srv.metrics()["cairn_events_bus_up"] == 1, 20, what="subscribed")
    ws = RawWS(srv, ws_query(srv, bucket=b))
    redis_server.stop()
    code, reason, frames = ws.until_close(timeout=30)
    ws.close()
    assert code == 1011
    assert [json.loads(p) for op, p in frames if op == 0x1] == [{"type": "hangup", "reason": "the event bus lost Redis"}]
    status, hdrs, body = status_of_upgrade(srv, ws_query(srv, bucket=b))
    assert status == 503 and "ServiceUnavailable" in body and hdrs.get("retry-after")
    redis_server.start()
    wait_until(lambda: status_of_upgrade(srv, ws_query(srv, bucket=b))[0] == 101, 30,
               what="the stream open again once Redis is back")


# ---- the cluster channel -------------------------------------------------------------------------


def test_the_cluster_channel_carries_the_disk_full_state(make_server):
    srv = make_server(env={"CAIRN_MIN_FREE_DISK": "1000TiB", "CAIRN_HEALTH_MAX_AGE_MS": "0"})
    ws = RawWS(srv, ws_query(srv, channel="cluster"))
    try:
        srv.request("GET", "/health/ready", anonymous=True)
        op, payload = ws.recv_frame()
        while op == 0x9:
            op, payload = ws.recv_frame()
        msg = json.loads(payload)
        assert msg["type"] == "status" and msg["data"]["event"] == "disk:Full", msg
        assert int(msg["data"]["min_free_disk"]) == 1000 * 2**40
    finally:
        ws.close()


# ---- two gateways over PostgreSQL and Redis ------------------------------------------------------


@pytest.mark.postgres_only("two gateways share one PostgreSQL database")
def test_two_gateways_one_stream_and_node_down_on_the_cluster_channel(make_pair):
    pair = make_pair()
    a, b = pair.a, pair.b
    name = unique_bucket("ev")
    a.client().create_bucket(Bucket=name)
    for gw in (a, b):
        wait_until(lambda gw=gw: gw.metrics()["cairn_events_bus_up"] == 1, 20, what=f"{gw.name} subscribed")
    on_a = RawWS(a, ws_query(a, bucket=name))
    on_b = RawWS(b, ws_query(b, bucket=name))
    cluster = RawWS(b, ws_query(b, channel="cluster"))
    try:
        put(b, name, "via-b")
        put(a, name, "via-a")

        def keys(ws):
            out = []
            while len(out) < 2:
                op, payload = ws.recv_frame()
                if op == 0x1:
                    out.append(record(json.loads(payload))["s3"]["object"]["key"])
            return out
        # Redis orders the messages of a channel: both sockets see one order
        assert keys(on_a) == keys(on_b) == ["via-b", "via-a"]
        victim = pair.nodes[0]
        victim.kill9()
        while True:
            op, payload = cluster.recv_frame(timeout=30)
            if op != 0x1:
                continue
            data = json.loads(payload)["data"]
            if data["event"] == "node:Down":
                break
        assert data["url"] == victim.url and data["source"], data
    finally:
        for ws in (on_a, on_b, cluster):
            ws.close()


def test_the_stream_over_tls_and_its_hangup_at_shutdown(make_server, tmp_path):
    import ssl
    from test_tls import make_ca
    ca = make_ca(tmp_path / "pki", "events")
    srv = make_server(env={"CAIRN_TLS_CERT": str(ca / "node.pem"), "CAIRN_TLS_KEY": str(ca / "node.key")},
                      start=False)
    srv.spawn()
    ctx = ssl.create_default_context(cafile=str(ca / "ca.pem"))

    def live():
        import http.client
        try:
            c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=3)
            c.request("GET", "/health/live")
            return c.getresponse().status == 200
        except (OSError, ssl.SSLError):
            return False
    wait_until(live, 20, what="the TLS server")
    b = unique_bucket()
    import boto3
    from botocore.config import Config
    c = boto3.session.Session().client("s3", endpoint_url=f"https://127.0.0.1:{srv.port}", region_name="us-east-1",
                                       aws_access_key_id=srv.root[0], aws_secret_access_key=srv.root[1],
                                       verify=str(ca / "ca.pem"), config=Config(s3={"addressing_style": "path"}))
    c.create_bucket(Bucket=b)

    async def main():
        async with websockets.connect(f"wss://{srv.host}{WS_PATH}?{ws_query(srv, bucket=b)}", ssl=ctx) as ws:
            await asyncio.to_thread(c.put_object, Bucket=b, Key="over-tls", Body=b"x")
            key = record(await recv_json(ws))["s3"]["object"]["key"]
            srv.proc.send_signal(signal.SIGTERM)
            hangup = json.loads(await asyncio.wait_for(ws.recv(), 20))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
            return key, hangup, closed.value.code

    key, hangup, code = run(main())
    assert key == "over-tls"
    assert hangup == {"type": "hangup", "reason": "server shutting down"} and code == 1001
    assert srv.proc.wait(30) == 0


def test_sockets_are_bounded_by_events_max_sockets_not_connection_limit(make_server):
    srv = make_server(env={"CAIRN_EVENTS_MAX_SOCKETS": "6", "CAIRN_CONNECTION_LIMIT": "3"})
    b = unique_bucket()
    c = srv.client()
    c.create_bucket(Bucket=b)
    socks = [RawWS(srv, ws_query(srv, bucket=b)) for _ in range(6)]
    try:
        # six sockets, more than connection_limit: S3 requests are still served
        c.put_object(Bucket=b, Key="k", Body=b"v")
        assert c.get_object(Bucket=b, Key="k")["Body"].read() == b"v"
        status, hdrs, body = status_of_upgrade(srv, ws_query(srv, bucket=b))
        assert status == 503 and "SlowDown" in body and hdrs.get("retry-after") == "1", (status, body)
        socks.pop().close()
        wait_until(lambda: status_of_upgrade(srv, ws_query(srv, bucket=b))[0] == 101, 10,
                   what="a slot free again once a socket closed")
    finally:
        for ws in socks:
            ws.close()


def test_shutdown_with_redis_hung_does_not_wait_on_the_publish_queue(make_server, redis_server):
    """Redis stopped dead (SIGSTOP: connections open, nothing answers) with
    events queued to publish: each batch would cost events_redis_timeout.
    The server drops what is queued once stopping and exits promptly."""
    srv = make_server(env={"CAIRN_REDIS_URL": redis_server.url, "CAIRN_EVENTS_REDIS_TIMEOUT": "10s"})
    b = unique_bucket()
    c = srv.client()
    c.create_bucket(Bucket=b)
    wait_until(lambda: srv.metrics()["cairn_events_bus_up"] == 1, 20, what="subscribed")
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(1200):     # five publish batches and more
            c.put_object(Bucket=b, Key=f"k{i}", Body=b"x")
        t0 = time.monotonic()
        assert srv.stop(timeout=28) == 0
        print(f"stopped in {time.monotonic() - t0:.1f} s with Redis hung")
        assert any(r.get("msg", "").startswith("event stream: cannot publish to Redis") for r in srv.log_records())
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
