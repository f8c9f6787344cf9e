"""Rate limiting (docs/rate-limiting.md): token buckets per access key, per
client address (X-Forwarded-For only through trusted proxies) and per
bucket, for requests and for body bytes, and the cap on requests in flight.

A request over a limit gets 503 SlowDown with a Retry-After that is long
enough; other keys, addresses and buckets are not affected; bytes are
slowed to their rate, never refused mid-flow; health checks and metrics
are exempt.  Raw requests (no SDK retries) so each answer is seen."""
import hashlib
import socket
import subprocess
import threading
import time

import pytest

import sigv4
from conftest import CAIRN_BIN, server_env, unique_bucket, wait_until

MIB = 1024 * 1024


def burst(srv, n, path, creds=None, headers=None):
    """n GETs of path (a bucket: its location, a small answer with a body)."""
    return [srv.request("GET", path, query={"location": ""}, creds=creds, headers=headers) for _ in range(n)]


def slowdowns(rs):
    return [r for r in rs if r.status == 503]


def assert_slowdown(r):
    assert r.status == 503 and r.error_code == "SlowDown", r
    ra = int(r.header("Retry-After"))
    assert 1 <= ra <= 2, ra
    return ra


def metric(srv, name, limiter):
    r = srv.request("GET", "/metrics", anonymous=True)
    for line in r.body.decode().splitlines():
        if line.startswith(f'{name}{{limiter="{limiter}"}}'):
            return float(line.split()[-1])
    return None


def test_a_key_over_its_limit_is_slowed_down_and_another_key_is_not(make_server):
    srv = make_server(env={"CAIRN_RATELIMIT_KEY_OPS_PER_S": "5", "CAIRN_RATELIMIT_BURST_S": "1"})
    alice, bob = srv.create_user(), srv.create_user()
    bk = unique_bucket("rlk")
    assert srv.request("PUT", f"/{bk}", creds=alice.creds).status == 200
    rs = burst(srv, 15, f"/{bk}", creds=alice.creds)
    limited = slowdowns(rs)
    assert len(limited) >= 5, [r.status for r in rs]
    assert all(r.status in (200, 503) for r in rs)
    ra = assert_slowdown(limited[0])
    # bob, at the same moment, is not affected
    assert srv.request("GET", "/", creds=bob.creds).status == 200
    # the Retry-After it named is long enough
    time.sleep(ra)
    assert srv.request("HEAD", f"/{bk}", creds=alice.creds).status == 200
    assert metric(srv, "cairn_ratelimit_limited_total", "key") >= len(limited)
    # the operator endpoints are exempt
    assert [srv.request("GET", "/health/live", anonymous=True).status for _ in range(20)] == [200] * 20
    assert srv.request("GET", "/metrics", anonymous=True).status == 200
    assert "rate limited" in srv.log_text() and "limiter" in srv.log_text()


def test_client_addresses_and_trusted_proxies(make_server):
    srv = make_server(env={"CAIRN_RATELIMIT_IP_OPS_PER_S": "3", "CAIRN_RATELIMIT_TRUSTED_PROXIES": "127.0.0.1/32, ::1"})
    bk = unique_bucket("rlip")
    srv.client().create_bucket(Bucket=bk)
    time.sleep(1.1)  # the create's own address budget refills (a positive check follows)
    one = {"X-Forwarded-For": "203.0.113.5"}
    rs = burst(srv, 8, f"/{bk}", headers=one)
    assert len(slowdowns(rs)) >= 4, [r.status for r in rs]
    assert_slowdown(slowdowns(rs)[0])
    # another client behind the same proxy has its own budget
    two = {"X-Forwarded-For": "198.51.100.7, 203.0.113.6"}
    assert srv.request("HEAD", f"/{bk}", headers=two).status == 200
    # a client cannot claim another address through the proxy: the proxy
    # appends the real one, which is what counts
    spoof = {"X-Forwarded-For": "198.51.100.99, 203.0.113.5"}
    assert_slowdown(burst(srv, 1, f"/{bk}", headers=spoof)[0])


def test_forwarded_for_is_ignored_from_untrusted_peers(make_server):
    srv = make_server(env={"CAIRN_RATELIMIT_IP_OPS_PER_S": "3"})
    bk = unique_bucket("rlun")
    srv.client().create_bucket(Bucket=bk)
    time.sleep(1.1)
    rs = [burst(srv, 1, f"/{bk}", headers={"X-Forwarded-For": f"203.0.113.{i}"})[0] for i in range(8)]
    assert len(slowdowns(rs)) >= 4, "every request counts against the peer, whatever it claims"


def test_a_bucket_over_its_limit_and_another_bucket(make_server):
    srv = make_server(env={"CAIRN_RATELIMIT_BUCKET_OPS_PER_S": "4"})
    s3 = srv.client()
    hot, cold = unique_bucket("hot"), unique_bucket("cold")
    s3.create_bucket(Bucket=hot)
    s3.create_bucket(Bucket=cold)
    rs = burst(srv, 12, f"/{hot}")
    assert len(slowdowns(rs)) >= 6
    assert srv.request("HEAD", f"/{cold}").status == 200
    assert srv.request("GET", "/").status == 200, "ListBuckets names no bucket"


def test_bytes_are_slowed_to_their_rate_never_refused_mid_flow(make_server):
    srv = make_server(env={"CAIRN_RATELIMIT_KEY_BYTES_PER_S": "1MiB", "CAIRN_RATELIMIT_BURST_S": "1"})
    s3 = srv.client()
    bk = unique_bucket("rlb")
    s3.create_bucket(Bucket=bk)
    body = hashlib.sha256(b"x").digest() * (3 * MIB // 32)
    t0 = time.monotonic()
    r = srv.request("PUT", sigv4.object_path(bk, "big"), body=body)
    put_s = time.monotonic() - t0
    assert r.status == 200, r
    # 3 MiB at 1 MiB/s with a 1 MiB burst: about 2 s, less the last piece
    # charged when the request ends (bytes are charged in 256 KiB pieces):
    # at least 1.75 s.  A lower bound only: the rate is a ceiling, a slow
    # machine may take longer; without the limit this takes a few ms.
    assert put_s >= 1.5, put_s
    wait_until(lambda: srv.request("HEAD", sigv4.object_path(bk, "big")).status == 200, 10,
               what="the key's byte debt to be paid")
    t0 = time.monotonic()
    r = srv.request("GET", sigv4.object_path(bk, "big"))
    get_s = time.monotonic() - t0
    assert r.status == 200 and r.body == body
    assert get_s >= 1.5, get_s
    assert metric(srv, "cairn_ratelimit_bytes_total", "key") >= 6 * MIB
    assert metric(srv, "cairn_ratelimit_throttled_seconds_total", "key") > 2


def test_a_new_request_is_refused_while_its_key_owes_bytes(make_server):
    srv = make_server(env={"CAIRN_RATELIMIT_KEY_BYTES_PER_S": "256KiB"})
    s3 = srv.client()
    bk = unique_bucket("rld")
    s3.create_bucket(Bucket=bk)
    body = b"d" * (2 * MIB)
    done = []
    t = threading.Thread(target=lambda: done.append(srv.request("PUT", sigv4.object_path(bk, "slow"), body=body)))
    t.start()
    try:
        wait_until(lambda: (metric(srv, "cairn_ratelimit_throttled_seconds_total", "key") or 0) > 0, 20,
                   what="the upload to be slowed")
        r = burst(srv, 1, f"/{bk}")[0]
        assert r.status == 503, "the key is in debt while its upload drains"
        assert_slowdown(r)
    finally:
        t.join(60)
    assert done and done[0].status == 200
    assert srv.request("GET", sigv4.object_path(bk, "slow")).status in (200, 503)


def test_requests_in_flight_are_capped(make_server):
    srv = make_server(env={"CAIRN_MAX_REQUESTS_IN_FLIGHT": "2"})
    s3 = srv.client()
    bk = unique_bucket("rlf")
    s3.create_bucket(Bucket=bk)
    # two uploads hold their slots: heads sent, bodies not finished
    held = []
    for i in range(2):
        path = sigv4.object_path(bk, f"held{i}")
        headers = {"Host": srv.host, "Content-Length": "10", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
        headers, _, _ = sigv4.sign_request("PUT", path, None, headers, srv.root[0], srv.root[1], "UNSIGNED-PAYLOAD")
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall((f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) +
                      "\r\n12345").encode())
        held.append(sock)
    wait_until(lambda: metric_gauge(srv) == 2, 10, what="both uploads to hold a slot")
    assert_slowdown(burst(srv, 1, f"/{bk}")[0])
    assert srv.request("GET", "/health/ready", anonymous=True).status == 200
    for sock in held:
        sock.sendall(b"67890")
        assert b"200 OK" in sock.recv(4096)
        sock.close()
    wait_until(lambda: metric_gauge(srv) == 0, 10, what="the slots to be given back")
    assert srv.request("HEAD", f"/{bk}").status == 200
    assert s3.get_object(Bucket=bk, Key="held0")["Body"].read() == b"1234567890"


def metric_gauge(srv):
    r = srv.request("GET", "/metrics", anonymous=True)
    for line in r.body.decode().splitlines():
        if line.startswith("cairn_requests_admitted_in_flight "):
            return int(line.split()[-1])
    return None


def test_no_limits_means_no_limiter_metrics_and_no_refusals(server):
    rs = burst(server, 50, "/")
    assert not slowdowns(rs)
    assert "cairn_ratelimit_" not in server.request("GET", "/metrics", anonymous=True).body.decode()


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-an-address", "10.0.0.1/", "::1/129"])
def test_trusted_proxies_are_validated(tmp_path, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"ratelimit_trusted_proxies: \"{value}\"\n")
    cp = subprocess.run([CAIRN_BIN, "config", "check", str(cfg)], capture_output=True, text=True, timeout=30,
                        env=server_env(), stdin=subprocess.DEVNULL)
    assert cp.returncode == 2 and "ratelimit_trusted_proxies" in cp.stderr, cp.stderr


# ---- overrides: cairn admin limits -------------------------------------------------------------


def limits(srv, *args, check=True):
    return srv.admin("limits", *args, check=check)


def test_overrides_of_a_key_and_a_bucket_apply_within_a_second(make_server):
    srv = make_server(env={"CAIRN_RATELIMIT_KEY_OPS_PER_S": "3"})
    alice, bob = srv.create_user(), srv.create_user()
    bk = unique_bucket("rlo")
    assert srv.request("PUT", f"/{bk}", creds=alice.creds).status == 200
    # the default: 3 a second for every key
    cp = limits(srv, "get", "--key", bob.access_key)
    assert cp.stdout == f"scope=key name={bob.access_key} source=default\n"
    # bob gets 50 a second, alice keeps 3
    cp = limits(srv, "set", "--key", bob.access_key, "--ops", "50")
    assert cp.stdout.startswith(f"scope=key name={bob.access_key} ops_per_s=50 bytes_per_s=0 source=override")
    time.sleep(1.1)  # the next request after a second reads the overrides (then a positive check)
    srv.request("GET", "/", creds=bob.creds)
    rs = burst(srv, 20, f"/{bk}", creds=alice.creds)
    assert slowdowns(rs), "alice is still held to 3"
    ok = [srv.request("GET", "/", creds=bob.creds).status for _ in range(20)]
    assert ok.count(200) == 20, ok
    # an override of 0 lifts the limit
    limits(srv, "set", "--key", alice.access_key, "--ops", "0")
    time.sleep(1.1)
    srv.request("GET", "/", creds=alice.creds)
    assert all(r.status == 200 for r in burst(srv, 30, f"/{bk}", creds=alice.creds))
    # a bucket's override
    limits(srv, "set", "--bucket", bk, "--ops", "2")
    out = limits(srv, "list").stdout.splitlines()
    assert sorted(out) == sorted([
        f"scope=bucket name={bk} ops_per_s=2 bytes_per_s=0 source=override",
        f"scope=key name={alice.access_key} ops_per_s=0 bytes_per_s=0 source=override",
        f"scope=key name={bob.access_key} ops_per_s=50 bytes_per_s=0 source=override"]), out
    time.sleep(1.1)
    srv.request("GET", "/", creds=alice.creds)
    rs = burst(srv, 10, f"/{bk}", creds=alice.creds)
    assert slowdowns(rs) and slowdowns(rs)[0].error_code == "SlowDown"
    # remove: the defaults apply again
    assert limits(srv, "remove", "--key", bob.access_key).returncode == 0
    cp = limits(srv, "remove", "--key", bob.access_key, check=False)
    assert cp.returncode == 1 and "no override" in cp.stderr


def test_a_deleted_buckets_override_does_not_reach_its_successor(make_server):
    srv = make_server()
    s3 = srv.client()
    bk = unique_bucket("rlsucc")
    s3.create_bucket(Bucket=bk)
    limits(srv, "set", "--bucket", bk, "--ops", "1")
    s3.delete_bucket(Bucket=bk)
    s3.create_bucket(Bucket=bk)
    assert limits(srv, "list").stdout == ""
    cp = limits(srv, "get", "--bucket", bk)
    assert "source=default" in cp.stdout


@pytest.mark.parametrize("args,err", [
    (["set", "--key", "AK", "--ops", "-1"], "--ops wants"),
    (["set", "--key", "AK", "--bytes", "lots"], "--bytes wants"),
    (["set", "--bucket", "no-such-bucket-here", "--ops", "1"], "no bucket"),
    (["set", "--ip", "1.2.3.4"], "usage"),
    (["get"], "usage"),
])
def test_limits_usage_errors(make_server, args, err):
    srv = make_server()
    cp = limits(srv, *args, check=False)
    assert cp.returncode in (1, 2) and err in cp.stderr, cp.stderr
    assert limits(srv, "list").stdout == ""
