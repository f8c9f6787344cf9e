#!/usr/bin/python3
"""Bucket notifications under load (docs/notifications.md), against the
`cairn server`s that bench/notify.sh started: how many webhook deliveries a
second one server makes, what they cost its PUTs, and how long an event
takes to reach its webhook.

throughput  On each server (one per job_workers setting, side by side), N
            PUTs of small objects with cairn-loadgen (16 connections) to a
            bucket whose configuration sends every ObjectCreated event to
            the receiver below, and, in the same run, N PUTs to a bucket
            without a configuration (the baseline; which of the two goes
            first alternates by run; the "on" half waits for its last
            delivery before the other starts).  Figures: PUT/s on and off
            and their ratio; deliveries/s from the first delivery of the run
            to its last, and apart while the PUTs were going in and after
            them; the events' age at delivery (the backlog); the server's
            CPU, its job-worker threads' (and their CPU per delivery) and
            the receiver's over the run.  Every PUT's event must arrive:
            unique delivery ids == N, each for one of the run's keys, each
            signed right; repeats (at-least-once) are counted, not failures.
            500 PUTs to each bucket warm each server up first.
latency     On the first server, PUTs at a fixed RATE for SECONDS from a few
            boto3 threads (paced on one schedule, so one slow PUT does not
            slow the rate); for each delivery, the time its bytes reached
            the receiver minus the time in its sequencer ((µs << 8) |
            counter: taken just before the commit; one machine, one clock).
            p50 / p99 over the deliveries of a run.

The receiver is a process of its own: an asyncio HTTP/1.1 server that
keeps connections alive (libcurl, in the job workers, reuses them), answers
every POST 200 at once and keeps (receive time, delivery id, attempt,
bucket, key, sequencer, signature ok) for the controller.  Its CPU is
printed: above 85% of a core it, not the server, would limit the figures.

usage: notify.py CAIRN LOADGEN AK SK N RUNS RATE SECONDS NAME=URL,PID,DATA [NAME=URL,PID,DATA ...]
  (the first server also runs the latency part; NAME is how the report
  calls it, e.g. w2 for job_workers=2)

Per-run lines go to stderr, `*_summary key=value ...` lines to stdout (for
bench/notify.sh); exit 1 when a run is invalid (an event missing, a PUT
failed, a bad signature, a server died).
"""
import asyncio
import gc
import hashlib
import hmac
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import boto3
from botocore.config import Config

CLK_TCK = os.sysconf("SC_CLK_TCK")
SIZE = int(os.environ.get("NOTIFY_SIZE", "1024"))
CONC = int(os.environ.get("NOTIFY_CONC", "16"))
WRITERS = int(os.environ.get("NOTIFY_WRITERS", "4"))   # latency part: boto3 threads sharing one schedule
STALL_S = 30            # no new delivery for this long: the rest are missing
SATURATED_PCT = 85      # a receiver above this share of a core limits the figures
SECRET = b"notify-bench-secret"
TARGET = "benchhook"
ARN = f"arn:cairn:sqs::{TARGET}:webhook"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def self_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def stat_cpu_s(path):
    """utime + stime in seconds from a /proc .../stat file (fields 14, 15)."""
    with open(path) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def alive(pid):
    """False once the process is gone or a zombie (its parent, the shell, reaps it later)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def worker_cpu_s(pid):
    """CPU seconds of the server's job-worker threads, summed."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != "job-worker":
                    continue
            total += stat_cpu_s(f"/proc/{pid}/task/{tid}/stat")
        except FileNotFoundError:
            pass
    return total


def metric(url, name):
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def quantile(sorted_vals, q):
    """Nearest-rank quantile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(q * len(sorted_vals) + 0.999999) - 1))
    return sorted_vals[k]


def median(vals):
    v = sorted(x for x in vals if x == x)    # without NaN (a figure a run could not have)
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def mmm(key, vals, fmt):
    """'KEY=median KEY_min=.. KEY_max=..', each formatted with fmt."""
    vals = [x for x in vals if x == x]
    lo, hi = min(vals, default=float("nan")), max(vals, default=float("nan"))
    return f"{key}={fmt % median(vals)} {key}_min={fmt % lo} {key}_max={fmt % hi}"


# ---- the receiver ------------------------------------------------------------------------


class Hook(asyncio.Protocol):
    """One keep-alive connection from a job worker: requests parsed as they
    complete (Content-Length bodies; libcurl sends no Expect and no chunks
    here), each answered 200 before the next is read."""

    def __init__(self, rec):
        self.rec = rec
        self.buf = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.rec.connections += 1

    def data_received(self, data):
        now = time.time()      # one stamp per read: these bytes arrived together
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            hdrs = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            if "transfer-encoding" in hdrs or "expect" in hdrs:
                self.rec.error(f"unsupported request framing: {hdrs}")
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.transport.close()
                return
            n = int(hdrs.get("content-length", "0"))
            if len(buf) < end + 4 + n:
                return
            body = bytes(buf[end + 4:end + 4 + n])
            del buf[:end + 4 + n]
            self.rec.add(now, lines[0], hdrs, body)
            self.transport.write(OK)


class Recorder:
    def __init__(self):
        self.recs = []          # (recv s, path, delivery id, attempt, bucket, key, sequencer µs, signature ok)
        self.ids = set()        # (path, delivery id): ids are per server
        self.errors, self.first_errors = 0, []
        self.connections = 0

    def error(self, msg):
        self.errors += 1
        if len(self.first_errors) < 3:
            self.first_errors.append(msg[:300])

    def add(self, now, request_line, hdrs, body):
        parts = request_line.split()
        path = parts[1] if len(parts) > 1 else "?"
        did, attempt = hdrs.get("x-cairn-delivery", ""), int(hdrs.get("x-cairn-attempt", "0") or 0)
        sig = hdrs.get("x-cairn-signature", "")
        sig_ok = hmac.compare_digest(sig, "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest())
        try:
            records = json.loads(body)["Records"]
        except (ValueError, KeyError, TypeError) as e:
            self.error(f"{path} delivery {did}: body not an S3 event message ({e}): {body[:200]!r}")
            return
        if len(records) != 1:
            self.error(f"{path} delivery {did}: {len(records)} records in one message")
        for r in records:
            s3 = r.get("s3", {})
            obj = s3.get("object", {})
            try:
                seq_us = int(obj.get("sequencer", ""), 16) >> 8
            except ValueError:
                self.error(f"{path} delivery {did}: sequencer {obj.get('sequencer')!r}")
                seq_us = 0
            self.recs.append((now, path, did, attempt, s3.get("bucket", {}).get("name", ""),
                              urllib.parse.unquote_plus(obj.get("key", "")), seq_us, sig_ok))
            self.ids.add((path, did))


def receiver_main(conn):
    # The collector would walk every kept record again and again as they
    # pile up (tens of thousands): pauses charged to the server.
    gc.disable()
    asyncio.run(receiver(conn))


async def receiver(conn):
    """Serves the webhook and answers the controller over conn:
    ("count",) -> (records, unique ids); ("dump", since) -> (records since,
    errors, first errors, connections); ("cpu",) -> own CPU s; ("stop",)."""
    loop = asyncio.get_running_loop()
    rec = Recorder()
    server = await loop.create_server(lambda: Hook(rec), "127.0.0.1", 0, backlog=256)
    conn.send(("port", server.sockets[0].getsockname()[1]))
    done = loop.create_future()

    def on_command():
        cmd = conn.recv()
        if cmd[0] == "count":
            conn.send((len(rec.recs), len(rec.ids)))
        elif cmd[0] == "dump":
            conn.send((rec.recs[cmd[1]:], rec.errors, rec.first_errors, rec.connections))
        elif cmd[0] == "cpu":
            conn.send(self_cpu_s())
        elif not done.done():
            done.set_result(None)

    loop.add_reader(conn.fileno(), on_command)
    await done
    server.close()


class Receiver:
    """The controller's handle on the receiver process."""

    def __init__(self):
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.Process(target=receiver_main, args=(child,), daemon=True)
        self.proc.start()
        _, self.port = self.conn.recv()

    def ask(self, *cmd):
        self.conn.send(cmd)
        return self.conn.recv()

    def stop(self):
        self.conn.send(("stop",))
        self.proc.join(5)


# ---- the servers -------------------------------------------------------------------------


class Server:
    def __init__(self, name, spec, cairn, ak, sk):
        self.name = name
        self.url, pid, self.data = spec.split(",", 2)
        self.pid = int(pid)
        self.cairn, self.ak, self.sk = cairn, ak, sk
        self.s3 = s3_client(self.url, ak, sk)
        self.died = False

    def alive(self):
        if not self.died and not alive(self.pid):
            self.died = True
            log(f"notify bench: the {self.name} server (pid {self.pid}) died")
        return not self.died

    def setup(self, hook_url, notified, plain):
        """The webhook target (cairn admin, on the running server's data
        dir), a bucket with a rule to it and buckets without."""
        out = subprocess.run([self.cairn, "admin", "--data", self.data, "notify", "target", "add", TARGET, hook_url,
                              "--secret", SECRET.decode()], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name}: notify target add failed ({out.returncode}): {out.stderr.strip()}")
        for b in notified + plain:
            try:
                self.s3.create_bucket(Bucket=b)
            except self.s3.exceptions.BucketAlreadyOwnedByYou:
                pass
        config = {"QueueConfigurations": [{"Id": "bench", "QueueArn": ARN, "Events": ["s3:ObjectCreated:*"]}]}
        for b in notified:
            # The gateway reads targets through a one-second cache: a target
            # added a moment ago may not be seen yet.
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.s3.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration=config)
                    break
                except self.s3.exceptions.ClientError as e:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name}: PutBucketNotificationConfiguration {b}: {e}") from e
                    time.sleep(0.2)
            got = self.s3.get_bucket_notification_configuration(Bucket=b).get("QueueConfigurations", [])
            if [q.get("QueueArn") for q in got] != [ARN]:
                raise RuntimeError(f"{self.name}: configuration of {b} reads back as {got}")


def s3_client(url, ak, sk):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                      max_pool_connections=WRITERS + 2))


def loadgen(lg, srv, bucket, prefix, n):
    """One cairn-loadgen PUT run; returns ({field: value}, ok)."""
    cmd = [lg, "--url", srv.url, "--access-key", srv.ak, "--secret-key", srv.sk, "--op", "put", "--size", str(SIZE),
           "--concurrency", str(CONC), "--requests", str(n), "--bucket", bucket, "--prefix", prefix]
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    ok = out.returncode == 0 and f.get("errors") == "0" and f.get("requests") == str(n)
    if not ok:
        log(f"notify bench: loadgen on {srv.name} {bucket}/{prefix} failed (exit {out.returncode}): "
            f"{line or 'no output'} {out.stderr.strip()[:300]}")
    return f, ok


def wait_delivered(rec, srv, base_unique, n):
    """Polls the receiver until n more unique deliveries arrived, the server
    died, or none came for STALL_S.  Returns the time it stopped waiting."""
    last, last_t = -1, time.monotonic()
    while True:
        _, uniq = rec.ask("count")
        got = uniq - base_unique
        if got >= n or not srv.alive():
            return time.time()
        if got != last:
            last, last_t = got, time.monotonic()
        elif time.monotonic() - last_t > STALL_S:
            log(f"notify bench: {srv.name}: {got} of {n} deliveries, none for {STALL_S} s: giving up on the rest")
            return time.time()
        time.sleep(0.05)


def check(recs, srv, bucket, keys):
    """Sorts a run's records out: {delivered (unique ids of this run's keys),
    duplicates (+ late: repeats of an earlier run's), missing, stray (for
    another bucket or server: a failure), bad_sig, retried, key_repeats (two
    delivery ids for one key: a failure), firsts (receive time, sequencer
    µs) of each unique delivery}."""
    path = f"/hook/{srv.name}"
    want = set(keys)
    first = {}                  # delivery id -> (recv, seq, key)
    dup = stray = late = bad_sig = retried = 0
    for now, p, did, attempt, b, key, seq, sig_ok in recs:
        if p != path or b != bucket:
            stray += 1          # another server's, or a bucket without this rule
            continue
        if key not in want:
            late += 1           # a repeat of an earlier run's event
            continue
        bad_sig += not sig_ok
        retried += attempt > 1
        if did in first:
            dup += 1
        else:
            first[did] = (now, seq, key)
    seen = {}
    for did, (_, _, key) in first.items():
        seen[key] = seen.get(key, 0) + 1
    return {"delivered": len(first), "duplicates": dup + late, "missing": len(want - seen.keys()), "stray": stray,
            "bad_sig": bad_sig, "retried": retried, "key_repeats": sum(c - 1 for c in seen.values()),
            "firsts": sorted((t, s) for t, s, _ in first.values())}


# ---- throughput ----------------------------------------------------------------------------


def throughput_run(rec, srv, lg, run, n, off_first):
    """One run on one server: N PUTs with notifications, N without (order by
    off_first).  Returns its figures (None for an invalid run)."""
    prefix = f"r{run}/"
    res = {}

    def off():
        os.sync()
        f, ok = loadgen(lg, srv, "plain", prefix, n)
        res["off_rps"] = float(f.get("rps", "nan"))
        return ok

    def on():
        os.sync()
        nrec, nuniq = rec.ask("count")
        failed0 = metric(srv.url, "cairn_notify_failed_total")
        s0, w0, r0, t0 = stat_cpu_s(f"/proc/{srv.pid}/stat"), worker_cpu_s(srv.pid), rec.ask("cpu"), time.time()
        f, ok = loadgen(lg, srv, "notified", prefix, n)
        t_puts = time.time()
        t_end = wait_delivered(rec, srv, nuniq, n)
        if not srv.alive():
            return False
        s1, w1, r1 = stat_cpu_s(f"/proc/{srv.pid}/stat"), worker_cpu_s(srv.pid), rec.ask("cpu")
        recs, errors, first_errors, conns = rec.ask("dump", nrec)
        c = check(recs, srv, "notified", [f"{prefix}{i:010d}" for i in range(n)])
        firsts = c["firsts"]
        span = firsts[-1][0] - firsts[0][0] if len(firsts) > 1 else float("nan")
        wall = t_end - t0
        age = sorted(t - s / 1e6 for t, s in firsts)
        during = [t for t, _ in firsts if t <= t_puts]
        after = [t for t, _ in firsts if t > t_puts]
        res.update(on_rps=float(f.get("rps", "nan")), dps=(len(firsts) - 1) / span if span > 0 else float("nan"),
                   during_pct=100 * len(during) / n,
                   # The rate while the PUTs compete for the database, and
                   # after, when the workers have it alone.
                   dps_during=len(during) / (t_puts - during[0]) if len(during) > 1 else float("nan"),
                   dps_after=len(after) / (after[-1] - t_puts) if after else float("nan"),
                   drain_s=(firsts[-1][0] - t_puts) if firsts else float("nan"),
                   server_cpu=100 * (s1 - s0) / wall, worker_cpu=100 * (w1 - w0) / wall,
                   worker_us=1e6 * (w1 - w0) / max(1, len(firsts)),
                   receiver_cpu=100 * (r1 - r0) / wall, age_p50=quantile(age, 0.5) * 1e3,
                   age_p99=quantile(age, 0.99) * 1e3,
                   failed=metric(srv.url, "cairn_notify_failed_total") - failed0, **c)
        if errors:
            log(f"notify bench: receiver errors {errors}, e.g. {first_errors[0]}")
        good = (ok and c["delivered"] == n and c["missing"] == 0 and c["stray"] == 0 and c["bad_sig"] == 0
                and c["key_repeats"] == 0 and errors == 0)
        log(f"  throughput run={run} server={srv.name} on: puts={f.get('requests')} put_rps={res['on_rps']:.0f} "
            f"put_p50_ms={f.get('p50_ms')} put_p99_ms={f.get('p99_ms')} delivered={c['delivered']}/{n} "
            f"missing={c['missing']} duplicates={c['duplicates']} stray={c['stray']} bad_sig={c['bad_sig']} "
            f"retried={c['retried']} failed_attempts={res['failed']:.0f} deliveries_s={res['dps']:.0f} "
            f"during_puts_pct={res['during_pct']:.0f} deliveries_s_during={res['dps_during']:.0f} "
            f"deliveries_s_after={res['dps_after']:.0f} drain_s={res['drain_s']:.2f} "
            f"age_p50_ms={res['age_p50']:.0f} age_p99_ms={res['age_p99']:.0f} "
            f"server_cpu_pct={res['server_cpu']:.0f} worker_cpu_pct={res['worker_cpu']:.0f} "
            f"worker_cpu_us_per_delivery={res['worker_us']:.0f} "
            f"receiver_cpu_pct={res['receiver_cpu']:.0f} receiver_connections_so_far={conns}"
            f"{' RECEIVER-SATURATED' if res['receiver_cpu'] >= SATURATED_PCT else ''}{'' if good else ' INVALID'}")
        return good

    ok = (off() and on()) if off_first else (on() and off())
    if "off_rps" in res:
        log(f"  throughput run={run} server={srv.name} off: put_rps={res['off_rps']:.0f}")
    return res if ok and srv.alive() else None


def warm_up(rec, srv, lg, n):
    """Connections, caches, the target's first connection: n PUTs to each
    bucket, their deliveries awaited, nothing recorded."""
    _, nuniq = rec.ask("count")
    _, ok = loadgen(lg, srv, "notified", "warm/", n)
    wait_delivered(rec, srv, nuniq, n)
    return loadgen(lg, srv, "plain", "warm/", n)[1] and ok


def throughput(rec, servers, lg, n, runs):
    results = {s.name: [] for s in servers}
    invalid = 0
    for srv in servers:
        if not warm_up(rec, srv, lg, min(n, 500)):
            invalid += 1
    for run in range(1, runs + 1):
        order = servers[(run - 1) % len(servers):] + servers[:(run - 1) % len(servers)]
        for srv in order:
            if srv.died:
                continue
            r = throughput_run(rec, srv, lg, run, n, off_first=run % 2 == 0)
            if r is None:
                invalid += 1
            else:
                results[srv.name].append(r)
    for srv in servers:
        rs = results[srv.name]
        v = lambda k: [r[k] for r in rs]  # noqa: E731
        ratio = median(v("on_rps")) / median(v("off_rps")) if rs else float("nan")
        print(f"throughput_summary server={srv.name} runs={runs} valid_runs={len(rs)} n={n} "
              f"{mmm('on_rps', v('on_rps'), '%.0f')} {mmm('off_rps', v('off_rps'), '%.0f')} ratio={ratio:.2f} "
              f"{mmm('dps', v('dps'), '%.0f')} "
              f"delivered_min={min(v('delivered'), default=0)} duplicates={sum(v('duplicates'))} "
              f"retried={sum(v('retried'))} failed_attempts={sum(v('failed')):.0f} "
              f"during_pct={median(v('during_pct')):.0f} dps_during={median(v('dps_during')):.0f} "
              f"dps_after={median(v('dps_after')):.0f} drain_s={median(v('drain_s')):.2f} "
              f"age_p50_ms={median(v('age_p50')):.0f} age_p99_ms={median(v('age_p99')):.0f} "
              f"server_cpu_pct={median(v('server_cpu')):.0f} worker_cpu_pct={median(v('worker_cpu')):.0f} "
              f"receiver_cpu_pct={median(v('receiver_cpu')):.0f} worker_us={median(v('worker_us')):.0f} "
              f"receiver_saturated={sum(x >= SATURATED_PCT for x in v('receiver_cpu'))} died={int(srv.died)}",
              flush=True)
    return 1 if invalid or any(s.died for s in servers) else 0


# ---- latency -------------------------------------------------------------------------------


def paced_puts(srv, bucket, prefix, rate, seconds):
    """rate × seconds PUTs of SIZE bytes from WRITERS threads taking PUT i
    at t0 + i / rate.  Returns (keys written, errors, achieved rate)."""
    total = int(rate * seconds)
    body = b"n" * SIZE
    lock = threading.Lock()
    state = {"next": 0, "errors": 0}
    keys = []
    t0 = time.monotonic() + 0.05

    def writer():
        s3 = s3_client(srv.url, srv.ak, srv.sk)
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= total:
                return
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            key = f"{prefix}{i:06d}"
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=body)
                with lock:
                    keys.append(key)
            except Exception as e:  # noqa: BLE001 - a failed PUT is counted, not fatal
                with lock:
                    state["errors"] += 1
                log(f"notify bench: PUT {key} failed: {e}")

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return keys, state["errors"], len(keys) / (time.monotonic() - t0)


def latency(rec, srv, rate, seconds, runs):
    p50s, p99s, maxs, received, invalid, dups, rates = [], [], [], [], 0, 0, []
    expected = int(rate * seconds)
    for run in range(1, runs + 1):
        if not srv.alive():
            invalid += 1
            break
        nrec, nuniq = rec.ask("count")
        prefix = f"lat{run}/"
        keys, put_errors, achieved = paced_puts(srv, "latency", prefix, rate, seconds)
        wait_delivered(rec, srv, nuniq, len(keys))
        recs, errors, first_errors, _ = rec.ask("dump", nrec)
        c = check(recs, srv, "latency", keys)
        lat = sorted((t - s / 1e6) * 1e3 for t, s in c["firsts"])
        ok = (put_errors == 0 and len(keys) == expected and c["delivered"] == len(keys) and c["missing"] == 0
              and c["stray"] == 0 and c["bad_sig"] == 0 and c["key_repeats"] == 0 and errors == 0 and srv.alive())
        p50, p99 = quantile(lat, 0.5), quantile(lat, 0.99)
        received.append(c["delivered"])
        dups += c["duplicates"]
        if ok:
            p50s.append(p50)
            p99s.append(p99)
            maxs.append(lat[-1])
            rates.append(achieved)
        else:
            invalid += 1
        log(f"  latency run={run} server={srv.name} puts={len(keys)}/{expected} put_errors={put_errors} "
            f"put_rate={achieved:.0f} delivered={c['delivered']} missing={c['missing']} duplicates={c['duplicates']} "
            f"stray={c['stray']} bad_sig={c['bad_sig']} retried={c['retried']} "
            f"p50_ms={p50:.1f} p99_ms={p99:.1f} min_ms={lat[0] if lat else float('nan'):.1f} "
            f"max_ms={lat[-1] if lat else float('nan'):.1f}{'' if ok else ' INVALID'}")
        if errors:
            log(f"notify bench: receiver errors {errors}, e.g. {first_errors[0]}")
    print(f"latency_summary server={srv.name} runs={runs} valid_runs={len(p50s)} rate={rate:g} seconds={seconds:g} "
          f"expected={expected} received_min={min(received, default=0)} duplicates={dups} "
          f"put_rate={median(rates):.0f} {mmm('p50_ms', p50s, '%.1f')} {mmm('p99_ms', p99s, '%.1f')} max_ms={max(maxs, default=float('nan')):.1f}",
          flush=True)
    return 1 if invalid else 0


def main():
    if len(sys.argv) < 10:
        log(__doc__)
        return 2
    cairn, lg, ak, sk = sys.argv[1:5]
    n, runs, rate, seconds = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
    servers = [Server(name, spec, cairn, ak, sk) for name, spec in (a.split("=", 1) for a in sys.argv[9:])]
    rec = Receiver()
    rc = 0
    try:
        for srv in servers:
            srv.setup(f"http://127.0.0.1:{rec.port}/hook/{srv.name}", ["notified", "latency"], ["plain"])
        rc |= throughput(rec, servers, lg, n, runs)
        if servers[0].alive():
            rc |= latency(rec, servers[0], rate, seconds, runs)
        else:
            rc = 1
        # A bucket without a configuration must never have notified, even
        # after its last run was checked.
        recs = rec.ask("dump", 0)[0]
        plain = sum(b == "plain" for _, _, _, _, b, _, _, _ in recs)
        if plain:
            log(f"notify bench: {plain} deliveries for the bucket without a configuration")
            rc = 1
    finally:
        rec.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
