#!/usr/bin/python3
"""The live event stream under load (issue 11's benchmark), against a
`cairn server` that bench/events.sh started.

latency   SOCKETS WebSockets on one bucket, in PROCS receiver processes
          (asyncio), while this process PUTs 100-byte objects at a fixed RATE
          for SECONDS.  A socket stamps each message with time.time() when
          its bytes reach the process; minus the commit time in the
          message's sequencer ((commit µs << 8) | counter) that is the
          publish-to-receive latency.  p50/p99 over every (socket, message)
          pair of a run; every socket must get every PUT's event, once (one
          missing makes the run invalid).  The receivers' CPU is printed
          beside the figures: a saturated client adds its own queueing.
capacity  Sockets opened in STEPS (1000,2000,...) until a step fails or the
          list ends.  At each step: the server's RSS, RSS per socket over its
          RSS with none open, cairn_events_sockets, its idle CPU over 5 s and
          its threads (libmicrohttpd's request threads, "MHD-connection",
          apart: a socket must not keep one); then one PUT that every socket must receive (the
          sockets are alive, not just counted).

The client.  By default a minimal RFC 6455 client on asyncio.Protocol
(RawWS below: handshake, text frames, pongs, close).  python3-websockets
(EVENTS_CLIENT=websockets) costs about 40 µs of client CPU per message on
the 2-CPU reference box, against about 10 µs here, and the events of one PUT
reach all 300 sockets as one burst that a single-threaded client works
through in turn: with websockets the last socket of a burst waits ~12 ms
for the client alone, so the figure measured the client, not the server.

usage: events.py latency  URL PID ACCESS_KEY SECRET SOCKETS RATE SECONDS RUNS PROCS
       events.py capacity URL PID ACCESS_KEY SECRET STEPS(comma-separated)

Per-run lines go to stderr, `*_summary key=value ...` lines to stdout (for
bench/events.sh); exit 1 when a run is invalid (a socket refused or
dropped, an event missing or twice, a PUT failed).
"""
import asyncio
import base64
import gc
import hashlib
import multiprocessing
import os
import resource
import sys
import time
import urllib.parse
import urllib.request

import boto3
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = b"e" * 100
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SATURATED_PCT = 85      # a receiver process above this share of a core is the bottleneck
CLIENT = os.environ.get("EVENTS_CLIENT", "raw")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- the server, seen from outside --------------------------------------------------


def raise_nofile():
    """One fd per socket: the soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def s3_client(url, ak, sk):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def make_bucket(s3, bucket):
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def ws_url(url, ak, sk, bucket):
    """A presigned GET /events/ws?bucket=B (docs/events.md); one URL serves every socket."""
    req = AWSRequest("GET", f"{url}/events/ws?bucket={bucket}")
    S3SigV4QueryAuth(Credentials(ak, sk), "s3", "us-east-1", expires=3600).add_auth(req)
    return req.url.replace("http://", "ws://", 1)


def proc_status(pid, field):
    """A field of /proc/PID/status as an int (VmRSS in KiB, Threads)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def proc_threads(pid):
    """(OS threads, of them libmicrohttpd's per-connection request threads)."""
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # a thread that just ended
            pass
    return len(names), names.count("MHD-connection")


def proc_cpu_s(pid):
    """utime + stime of a process in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def self_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def histogram(text, name):
    """{le: cumulative count} of a Prometheus histogram."""
    out = {}
    prefix = name + '_bucket{le="'
    for line in text.splitlines():
        if line.startswith(prefix):
            le = line[len(prefix):line.index('"', len(prefix))]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.split()[1])
    return out


def hist_quantile(before, after, q):
    """The bucket bound under which fraction q of the observations made
    between two scrapes fell (a figure "<= bound"); nan without any."""
    les = sorted(after)
    if not les:
        return float("nan")
    total = after[les[-1]] - before.get(les[-1], 0)
    if total <= 0:
        return float("nan")
    for le in les:
        if after[le] - before.get(le, 0) >= q * total:
            return le
    return les[-1]


def quantile(sorted_vals, q):
    """Nearest-rank quantile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(q * len(sorted_vals) + 0.999999) - 1))
    return sorted_vals[k]


def median(vals):
    v = sorted(vals)
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def parse_event(msg):
    """(key, commit time in s) of a status message (str or bytes), found by
    string search: a JSON parse per message would cost the receiver more
    than the rest of its work.  (None, None) for any other message."""
    if isinstance(msg, str):
        msg = msg.encode()
    i = msg.find(b'"key":"')
    j = msg.find(b'"sequencer":"')
    if i < 0 or j < 0:
        return None, None
    i += 7
    j += 13
    return msg[i:msg.index(b'"', i)].decode(), (int(msg[j:j + 16], 16) >> 8) / 1e6


# ---- the clients ---------------------------------------------------------------------


class RawWS(asyncio.Protocol):
    """A WebSocket client socket, receive side only: the upgrade (checking
    Sec-WebSocket-Accept), unfragmented text frames (each one's (key,
    latency) kept in .events, anything else in .other), pings answered with
    pongs, a close answered with a close.  Frames from the server are never
    masked; ours always are."""

    def __init__(self, path, host, opened):
        self.path, self.host, self.opened = path, host, opened
        self.key = base64.b64encode(os.urandom(16))
        self.buf = bytearray()
        self.upgraded = False
        self.closed = False
        self.events, self.other = [], []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        % (self.path.encode(), self.host.encode(), self.key))

    def connection_lost(self, exc):
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the upgrade: {exc}"))

    def data_received(self, data):
        now = time.time()      # one stamp per read: these bytes all arrived together
        buf = self.buf
        buf += data
        if not self.upgraded and not self.handshake():
            return
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, ln, h = buf[pos], buf[pos + 1] & 0x7F, 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, h = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, h = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if n - pos < h + ln:
                break
            payload = bytes(buf[pos + h:pos + h + ln])
            pos += h + ln
            op = b0 & 0x0F
            if op == 0x1 and b0 & 0x80:
                key, commit = parse_event(payload)
                if key is None:
                    self.other.append(payload)
                else:
                    self.events.append((key, now - commit))
            elif op == 0x9:
                self.send(0xA, payload)
            elif op == 0x8:
                self.send(0x8, payload[:2])
                self.transport.close()
                self.closed = True
            elif op != 0xA:
                self.other.append(b"unexpected frame opcode %d" % op)
        if pos:
            del buf[:pos]

    def handshake(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        want = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest()).decode()
        hdrs = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in head[1:] if ":" in ln)}
        if not head[0].startswith("HTTP/1.1 101") or hdrs.get("sec-websocket-accept") != want:
            self.opened.set_exception(ConnectionError(f"upgrade refused: {head[0]}"))
            self.transport.close()
            return False
        self.upgraded = True
        self.opened.set_result(self)
        return True

    def send(self, op, payload):
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | op, 0x80 | len(payload)]) + mask + masked)

    async def close(self):
        if not self.closed:
            self.send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()
            self.closed = True


class LibWS:
    """The same interface over python3-websockets (EVENTS_CLIENT=websockets)."""

    def __init__(self, ws):
        self.ws = ws
        self.events, self.other = [], []
        self.task = asyncio.create_task(self.read())

    async def read(self):
        import websockets
        try:
            async for msg in self.ws:
                now = time.time()
                key, commit = parse_event(msg)
                if key is None:
                    self.other.append(msg)
                else:
                    self.events.append((key, now - commit))
        except websockets.ConnectionClosed:
            pass

    @property
    def closed(self):
        return self.ws.closed

    async def close(self):
        self.task.cancel()
        await self.ws.close()


async def open_one(url):
    if CLIENT == "websockets":
        import websockets
        ws = await websockets.connect(url, ping_interval=None, max_queue=None, compression=None,
                                      open_timeout=30, close_timeout=2)
        return LibWS(ws)
    u = urllib.parse.urlsplit(url)
    loop = asyncio.get_running_loop()
    opened = loop.create_future()
    await loop.create_connection(lambda: RawWS(f"{u.path}?{u.query}", u.netloc, opened), u.hostname, u.port)
    return await asyncio.wait_for(opened, 30)


async def open_many(url, n, parallel=32):
    """n sockets, at most `parallel` upgrades in flight.  Returns (sockets,
    errors): each refused or failed upgrade is one error string."""
    sem = asyncio.Semaphore(parallel)
    socks, errors = [], []

    async def one():
        async with sem:
            try:
                socks.append(await open_one(url))
            except Exception as e:  # noqa: BLE001 - any failure is a socket not held
                errors.append(f"{type(e).__name__}: {e}")

    await asyncio.gather(*(one() for _ in range(n)))
    return socks, errors


async def close_all(socks):
    await asyncio.gather(*(s.close() for s in socks), return_exceptions=True)


# ---- latency ---------------------------------------------------------------------------


def receiver_main(conn, url, n):
    raise_nofile()
    # The collector would walk every stamped event again and again as they
    # pile up (90,000 a run): tens of ms of pause, charged to the server.
    # Nothing here makes cycles that must be freed before the process ends.
    gc.disable()
    asyncio.run(receiver(conn, url, n))


async def receiver(conn, url, n):
    """One receiver process: opens n sockets and says so; is told "start"
    (the writer begins) and then the keys that were PUT; waits for their
    stragglers and sends back its sockets' latencies and what was missing,
    extra or closed, and its CPU seconds over the writing."""
    loop = asyncio.get_running_loop()
    socks, errors = await open_many(url, n)
    conn.send(("ready", len(socks), errors[:3]))
    assert await loop.run_in_executor(None, conn.recv) == "start"
    cpu0, t0 = self_cpu_s(), time.monotonic()
    cmd, keys = await loop.run_in_executor(None, conn.recv)
    assert cmd == "stop"
    cpu_s, wall_s = self_cpu_s() - cpu0, time.monotonic() - t0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(len(s.events) < len(keys) for s in socks if not s.closed):
        await asyncio.sleep(0.05)
    want = set(keys)
    lat, missing, extra, closed, other = [], 0, 0, 0, []
    for s in socks:
        seen = set()
        for key, latency_s in s.events:
            if key in want and key not in seen:
                seen.add(key)
                lat.append(latency_s)
            else:
                extra += 1
        missing += len(want - seen)
        closed += s.closed
        other += s.other[:1]
    await close_all(socks)
    conn.send(("result", lat, missing, extra, closed, cpu_s, wall_s, [repr(o[:200]) for o in other[:3]]))


def latency(url, pid, ak, sk, sockets, rate, seconds, runs, procs):
    s3 = s3_client(url, ak, sk)
    bucket = "evlatency"
    make_bucket(s3, bucket)
    wurl = ws_url(url, ak, sk, bucket)
    hist = "cairn_events_publish_to_send_seconds"
    invalid, p50s, p99s, cpus, srv50s, srv99s, saturated, received = 0, [], [], [], [], [], 0, []
    for run in range(1, runs + 1):
        shares = [sockets // procs + (1 if i < sockets % procs else 0) for i in range(procs)]
        pipes, children = [], []
        for share in shares:
            parent, child = multiprocessing.Pipe()
            p = multiprocessing.Process(target=receiver_main, args=(child, wurl, share), daemon=True)
            p.start()
            pipes.append(parent)
            children.append(p)
        opened, errs = 0, []
        for c in pipes:
            _, n, e = c.recv()
            opened += n
            errs += e
        m0 = metrics(url)
        n_metric = metric(m0, "cairn_events_sockets")
        for c in pipes:
            c.send("start")
        keys, put_errors = [], 0
        srv0, me0, t0 = proc_cpu_s(pid), self_cpu_s(), time.monotonic()
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            key = f"r{run}-{i:06d}"
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=BODY)
                keys.append(key)
            except Exception as e:  # noqa: BLE001 - a failed PUT is counted, not fatal
                put_errors += 1
                log(f"events bench: PUT {key} failed: {e}")
        wall = time.monotonic() - t0
        srv_cpu, writer_cpu = proc_cpu_s(pid) - srv0, self_cpu_s() - me0
        for c in pipes:
            c.send(("stop", keys))
        lat, missing, extra, closed, client_cpu, other = [], 0, 0, 0, [], []
        for c in pipes:
            _, l, mi, ex, cl, cpu_s, wall_s, ot = c.recv()
            lat += l
            missing += mi
            extra += ex
            closed += cl
            client_cpu.append(100 * cpu_s / wall_s)
            other += ot
        for p in children:
            p.join(10)
        m1 = metrics(url)
        lat.sort()
        expected = sockets * len(keys)
        ok = (opened == sockets and put_errors == 0 and missing == 0 and extra == 0 and closed == 0
              and len(lat) == expected and keys)
        p50, p99 = quantile(lat, 0.50) * 1e3, quantile(lat, 0.99) * 1e3
        s50 = hist_quantile(histogram(m0, hist), histogram(m1, hist), 0.50) * 1e3
        s99 = hist_quantile(histogram(m0, hist), histogram(m1, hist), 0.99) * 1e3
        sat = max(client_cpu) >= SATURATED_PCT
        received.append(len(lat))
        saturated += sat
        if ok:
            p50s.append(p50)
            p99s.append(p99)
            cpus.append(sum(client_cpu))
            srv50s.append(s50)
            srv99s.append(s99)
        else:
            invalid += 1
        log(f"  latency run={run} client={CLIENT} sockets={opened}/{sockets} events_sockets={n_metric:.0f} "
            f"procs={procs} puts={len(keys)} put_errors={put_errors} put_rate={len(keys) / wall:.1f} "
            f"expected={expected} received={len(lat)} missing={missing} extra={extra} closed={closed} "
            f"p50_ms={p50:.2f} p99_ms={p99:.2f} max_ms={lat[-1] * 1e3 if lat else float('nan'):.2f} "
            f"server_p50_le_ms={s50:g} server_p99_le_ms={s99:g} "
            f"client_cpu_pct={'+'.join(f'{c:.0f}' for c in client_cpu)} writer_cpu_pct={100 * writer_cpu / wall:.0f} "
            f"server_cpu_pct={100 * srv_cpu / wall:.0f}{' CLIENT-SATURATED' if sat else ''}"
            f"{'' if ok else ' INVALID'}")
        if errs:
            log(f"events bench: {sockets - opened} sockets not opened, e.g.: {errs[0]}")
        if other:
            log(f"events bench: unexpected messages, e.g.: {other[0]}")
    print(f"latency_summary client={CLIENT} runs={runs} valid_runs={len(p50s)} sockets={sockets} rate={rate:g} "
          f"seconds={seconds:g} procs={procs} expected_per_run={sockets * int(rate * seconds)} "
          f"received_min={min(received, default=0)} "
          f"p50_ms={median(p50s):.2f} p50_min={min(p50s, default=float('nan')):.2f} "
          f"p50_max={max(p50s, default=float('nan')):.2f} p99_ms={median(p99s):.2f} "
          f"p99_min={min(p99s, default=float('nan')):.2f} p99_max={max(p99s, default=float('nan')):.2f} "
          f"client_cpu_pct={median(cpus):.0f} saturated_runs={saturated} "
          f"server_p50_le_ms={median(srv50s):g} server_p99_le_ms={median(srv99s):g}")
    return 1 if invalid else 0


# ---- capacity --------------------------------------------------------------------------


async def capacity(url, pid, ak, sk, steps):
    nofile = raise_nofile()
    s3 = s3_client(url, ak, sk)
    bucket = "evcapacity"
    make_bucket(s3, bucket)
    wurl = ws_url(url, ak, sk, bucket)
    await asyncio.sleep(1)
    rss0, (threads0, req0) = proc_status(pid, "VmRSS"), proc_threads(pid)
    log(f"  capacity base: server rss_kib={rss0} threads={threads0} request_threads={req0}; "
        f"client nofile={nofile} client={CLIENT}")
    socks, held, rc = [], 0, 0
    rss = per_socket = idle_cpu = threads = req = float("nan")
    for target in steps:
        t0 = time.monotonic()
        new, errors = await open_many(wurl, target - len(socks), parallel=64)
        socks += new
        open_s = time.monotonic() - t0
        await asyncio.sleep(1)  # let the hub settle before reading its figures
        alive = sum(not s.closed for s in socks)
        n_metric = metric(metrics(url), "cairn_events_sockets")
        s_rss = proc_status(pid, "VmRSS")
        c0, w0 = proc_cpu_s(pid), time.monotonic()
        await asyncio.sleep(5)
        s_idle = 100 * (proc_cpu_s(pid) - c0) / (time.monotonic() - w0)
        # Counted after the quiet 5 s: the /metrics scrape's thread is gone.
        s_threads, s_req = proc_threads(pid)
        # Every open socket must still deliver: one PUT, every socket gets it.
        key = f"step-{target}"
        s3.put_object(Bucket=bucket, Key=key, Body=BODY)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(any(k == key for k, _ in s.events) for s in socks) < alive:
            await asyncio.sleep(0.1)
        delivered = sum(any(k == key for k, _ in s.events) for s in socks)
        ok = not errors and alive == target and n_metric == target and delivered == target
        s_per = (s_rss - rss0) / alive if alive else float("nan")
        log(f"  capacity step={target} opened={len(socks)} refused={len(errors)} alive={alive} open_s={open_s:.1f} "
            f"events_sockets={n_metric:.0f} rss_kib={s_rss} rss_per_socket_kib={s_per:.1f} threads={s_threads} request_threads={s_req} "
            f"idle_cpu_pct={s_idle:.2f} delivered={delivered}/{target} "
            f"client_rss_kib={proc_status(os.getpid(), 'VmRSS')}{'' if ok else ' FAILED'}")
        if errors:
            log(f"events bench: step {target}: {len(errors)} sockets refused, e.g.: {errors[0]}")
        if not ok:
            rc = 1
            break
        held, rss, per_socket, idle_cpu, threads, req = target, s_rss, s_per, s_idle, s_threads, s_req
    print(f"capacity_summary client={CLIENT} steps={','.join(map(str, steps))} held={held} "
          f"rss0_kib={rss0} rss_kib={rss} rss_per_socket_kib={per_socket:.1f} idle_cpu_pct={idle_cpu:.2f} "
          f"threads0={threads0} threads={threads} request_threads0={req0} request_threads={req}")
    await close_all(socks)
    return rc


def main():
    if len(sys.argv) < 7 or sys.argv[1] not in ("latency", "capacity"):
        log(__doc__)
        return 2
    mode, url, pid, ak, sk = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    if mode == "latency":
        sockets, rate, seconds, runs, procs = (int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8]),
                                               int(sys.argv[9]), int(sys.argv[10]))
        return latency(url, pid, ak, sk, sockets, rate, seconds, runs, procs)
    return asyncio.run(capacity(url, pid, ak, sk, [int(s) for s in sys.argv[6].split(",")]))


if __name__ == "__main__":
    sys.exit(main())
