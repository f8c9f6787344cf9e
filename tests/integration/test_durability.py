"""Durability and robustness under failure: kill -9 during an upload,
concurrent overwrites seen by readers, clients that disconnect or stall
mid-request, graceful shutdown with an upload in flight, and memory that
stays bounded while a 1 GiB object streams through.

Every test that injects a fault ends as the fault suite's runs do: each
acknowledged write reads back byte-identical, then, after the start's orphan
collection, the server is stopped and `cairn admin fsck` must find nothing
(CairnServer.stop_and_fsck).

Uploads that must be interrupted are sent by hand over a raw socket (see
conftest.open_put): a signed PUT head with UNSIGNED-PAYLOAD, then as much of
the body as the test wants.
"""

import hashlib
import http.client
import os
import signal
import socket
import threading
import time

import pytest
from botocore.exceptions import ClientError

import sigv4
from conftest import (leftover_tmp_files, md5_hex, open_put, read_socket_response, unique_bucket,
                      wait_closed, wait_tmp_clean, wait_until)

MiB = 1024 * 1024


def assert_absent(s3, bucket, key):
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key=key)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ---- crash during upload -------------------------------------------------------------------


@pytest.mark.deadline(120)
def test_kill_9_during_large_put(make_server):
    srv = make_server()
    s3 = srv.client()
    name = unique_bucket("crash")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="committed", Body=b"acknowledged before the crash")

    sock = open_put(srv, name, "partial", 256 * MiB)
    block = os.urandom(256 * 1024)
    for _ in range(64):                      # 16 MiB of the 256 MiB
        sock.sendall(block)
    # the upload is being written to a temporary file when the crash comes
    wait_until(lambda: leftover_tmp_files(srv.data_dir), 10, what="the upload's temporary file")
    srv.kill()
    sock.close()

    srv.start()
    s3 = srv.client()
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=name, Key="partial")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", [])]
    assert keys == ["committed"]
    assert s3.get_object(Bucket=name, Key="committed")["Body"].read() == \
        b"acknowledged before the crash"
    wait_tmp_clean(srv)
    # the server works normally afterwards
    s3.put_object(Bucket=name, Key="after", Body=b"ok")
    assert s3.get_object(Bucket=name, Key="after")["Body"].read() == b"ok"
    srv.stop_and_fsck()


@pytest.mark.deadline(120)
def test_kill_9_after_acknowledged_puts_keeps_them(make_server):
    srv = make_server()
    s3 = srv.client()
    name = unique_bucket("ack")
    s3.create_bucket(Bucket=name)
    bodies = {f"k{i}": os.urandom(size) for i, size in enumerate([0, 100, 16384, 16385, 3 * MiB])}
    for k, v in bodies.items():
        s3.put_object(Bucket=name, Key=k, Body=v)
    s3.delete_object(Bucket=name, Key="k1")
    srv.kill()
    srv.start()
    s3 = srv.client()
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"])
    assert listed == sorted(k for k in bodies if k != "k1")
    for k in listed:
        assert s3.get_object(Bucket=name, Key=k)["Body"].read() == bodies[k]
    srv.stop_and_fsck()


# ---- concurrent overwrite --------------------------------------------------------------------


@pytest.mark.deadline(180)
def test_concurrent_overwrite_readers_see_whole_versions(server, s3, bucket):
    versions = [b"A" * 8000, b"B" * 300_000, os.urandom(2 * MiB + 1), b"D" * 16385]
    by_md5 = {md5_hex(v): v for v in versions}
    s3.put_object(Bucket=bucket, Key="hot", Body=versions[0])
    stop = threading.Event()
    problems = []
    counts = {"reads": 0, "ranges": 0, "writes": 0}
    lock = threading.Lock()

    def guarded(fn):
        def run(*args):
            try:
                fn(*args)
            except Exception as e:  # reported through `problems`
                problems.append(f"{fn.__name__}: {e!r}")
        return run

    @guarded
    def writer(offset):
        for i in range(12):
            v = versions[(i + offset) % len(versions)]
            etag = s3.put_object(Bucket=bucket, Key="hot", Body=v)["ETag"]
            if etag != f'"{md5_hex(v)}"':
                problems.append(f"PUT returned ETag {etag} for {md5_hex(v)}")
            with lock:
                counts["writes"] += 1

    @guarded
    def reader():
        while not stop.is_set():
            got = s3.get_object(Bucket=bucket, Key="hot")
            data = got["Body"].read()
            m = md5_hex(data)
            if m not in by_md5:
                problems.append(f"GET returned {len(data)} bytes matching no version")
            elif got["ETag"] != f'"{m}"':
                problems.append(f"GET body {m} came with ETag {got['ETag']}")
            elif got["ContentLength"] != len(data):
                problems.append("Content-Length does not match body")
            with lock:
                counts["reads"] += 1

    @guarded
    def range_reader():
        while not stop.is_set():
            got = s3.get_object(Bucket=bucket, Key="hot", Range="bytes=7990-8009")
            data = got["Body"].read()
            etag = got["ETag"].strip('"')
            full = by_md5.get(etag)
            if full is None:
                problems.append(f"range GET ETag {etag} matches no version")
            elif data != full[7990:8010]:
                problems.append(f"range bytes do not belong to version {etag}")
            with lock:
                counts["ranges"] += 1

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 2)]
    readers = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=range_reader)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join(150)
    stop.set()
    for t in readers:
        t.join(30)
    assert not problems, problems[:5]
    assert counts["writes"] == 24
    assert counts["reads"] > 0 and counts["ranges"] > 0
    final = s3.get_object(Bucket=bucket, Key="hot")
    assert md5_hex(final["Body"].read()) in by_md5


# ---- clients that go away or stall ------------------------------------------------------------------


@pytest.mark.deadline(60)
def test_client_disconnect_mid_put(make_server):
    srv = make_server()
    s3 = srv.client()
    name = unique_bucket("disc")
    s3.create_bucket(Bucket=name)
    sock = open_put(srv, name, "cut", 8 * MiB)
    sock.sendall(os.urandom(3 * MiB))
    wait_until(lambda: leftover_tmp_files(srv.data_dir), 10, what="the upload's temporary file")
    sock.close()
    assert_absent(s3, name, "cut")
    wait_tmp_clean(srv)
    # the same key uploads fine afterwards
    s3.put_object(Bucket=name, Key="cut", Body=b"complete")
    assert s3.get_object(Bucket=name, Key="cut")["Body"].read() == b"complete"
    srv.stop_and_fsck()


@pytest.mark.deadline(60)
def test_client_disconnect_mid_overwrite_keeps_old(make_server):
    # A server of its own (not the shared one): it is stopped for fsck.
    server = make_server()
    s3 = server.client()
    bucket = unique_bucket("overw")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="stay", Body=b"old and complete")
    sock = open_put(server, bucket, "stay", 4 * MiB)
    sock.sendall(os.urandom(MiB))
    sock.close()
    # The server has given the upload up (its request line is logged)...
    wait_until(lambda: [r for r in server.log_records() if r.get("msg") == "request" and r.get("method") == "PUT"
                        and r.get("path") == f"/{bucket}/stay" and r.get("status") != "200"], 15,
               what="the cut upload's request log line")
    # ...and it never replaced the old version.
    assert s3.get_object(Bucket=bucket, Key="stay")["Body"].read() == b"old and complete"
    wait_tmp_clean(server)
    server.stop_and_fsck()


@pytest.mark.deadline(90)
def test_stalled_upload_is_cut(make_server):
    srv = make_server(env={"CAIRN_CONNECTION_TIMEOUT": "2"})
    s3 = srv.client()
    name = unique_bucket("stall")
    s3.create_bucket(Bucket=name)
    sock = open_put(srv, name, "stalled", MiB)
    sock.sendall(b"x" * 1000)
    waited, received = wait_closed(sock, 20)
    sock.close()
    assert waited >= 1.0, f"cut after {waited:.2f}s: sooner than the idle timeout"
    if received:
        assert received.startswith(b"HTTP/1.1 4"), received[:200]
    assert_absent(s3, name, "stalled")
    wait_tmp_clean(srv)
    srv.stop_and_fsck()


@pytest.mark.deadline(90)
def test_stalled_request_head_is_cut(make_server):
    srv = make_server(env={"CAIRN_CONNECTION_TIMEOUT": "2"})
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
    waited, _ = wait_closed(sock, 20)
    sock.close()
    assert waited >= 1.0
    # an idle keep-alive connection is closed too
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = read_socket_response(sock, "GET")
    assert resp.status == 200
    waited, _ = wait_closed(sock, 20)
    sock.close()
    assert srv.alive()
    srv.stop_and_fsck()


@pytest.mark.deadline(90)
def test_slow_but_steady_upload_is_not_cut(make_server):
    srv = make_server(env={"CAIRN_CONNECTION_TIMEOUT": "2"})
    s3 = srv.client()
    name = unique_bucket("steady")
    s3.create_bucket(Bucket=name)
    pieces = [os.urandom(1024) for _ in range(10)]
    body = b"".join(pieces)
    sock = open_put(srv, name, "steady", len(body))
    for p in pieces:                 # 5 s in total, never idle for 2 s
        sock.sendall(p)
        time.sleep(0.5)
    sock.settimeout(20)
    r = read_socket_response(sock)
    sock.close()
    assert r.status == 200, r
    assert s3.get_object(Bucket=name, Key="steady")["Body"].read() == body


# ---- graceful shutdown ---------------------------------------------------------------------------


@pytest.mark.deadline(120)
def test_sigterm_lets_inflight_upload_finish(make_server):
    srv = make_server(env={"CAIRN_SHUTDOWN_TIMEOUT": "30"})
    s3 = srv.client()
    name = unique_bucket("term")
    s3.create_bucket(Bucket=name)
    total = 48 * MiB
    block = os.urandom(MiB)
    body_md5 = hashlib.md5(block * 48).hexdigest()
    sock = open_put(srv, name, "inflight", total, timeout=60)
    for _ in range(8):
        sock.sendall(block)
    srv.proc.send_signal(signal.SIGTERM)
    for _ in range(40):
        sock.sendall(block)
        time.sleep(0.02)
    r = read_socket_response(sock)
    sock.close()
    assert r.status == 200, r
    assert r.header("ETag") == f'"{body_md5}"'
    code = srv.proc.wait(40)
    assert code == 0, f"exit code {code} after SIGTERM\n{srv.log_tail()}"
    srv.start()
    got = srv.client().get_object(Bucket=name, Key="inflight")
    assert got["ContentLength"] == total
    assert md5_hex(got["Body"].read()) == body_md5
    srv.stop_and_fsck()


@pytest.mark.deadline(90)
def test_sigterm_with_stalled_upload_respects_shutdown_timeout(make_server):
    """A client that never finishes cannot hold the shutdown past its deadline;
    its partial upload is not committed."""
    srv = make_server(env={"CAIRN_SHUTDOWN_TIMEOUT": "2"})
    s3 = srv.client()
    name = unique_bucket("stuck")
    s3.create_bucket(Bucket=name)
    sock = open_put(srv, name, "never-finished", 8 * MiB)
    sock.sendall(os.urandom(MiB))
    wait_until(lambda: leftover_tmp_files(srv.data_dir), 10, what="the upload's temporary file")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        srv.proc.wait(30)
    except Exception:
        raise AssertionError("server still running 30 s after SIGTERM with a 2 s shutdown timeout")
    finally:
        sock.close()
    assert time.monotonic() - t0 < 30
    srv.start()
    assert_absent(srv.client(), name, "never-finished")
    wait_tmp_clean(srv)
    srv.stop_and_fsck()


@pytest.mark.deadline(60)
def test_sigterm_when_idle_exits_promptly(make_server):
    srv = make_server()
    srv.client().list_buckets()
    t0 = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - t0 < 20


# ---- bounded memory ------------------------------------------------------------------------------


def rss_sampler(srv, stop, out):
    while not stop.is_set():
        try:
            out.append(srv.pid_rss_kib())
        except (OSError, AssertionError):
            return
        time.sleep(0.05)


@pytest.mark.deadline(420)
def test_1gib_put_and_get_keep_rss_bounded(make_server):
    srv = make_server()
    s3 = srv.client()
    name = unique_bucket("rss")
    s3.create_bucket(Bucket=name)
    # warm up every code path once, then take the baseline
    warm = os.urandom(4 * MiB)
    s3.put_object(Bucket=name, Key="warm", Body=warm)
    assert s3.get_object(Bucket=name, Key="warm")["Body"].read() == warm
    baseline = srv.pid_rss_kib()

    n_blocks = 1024
    base = os.urandom(MiB)

    def block(i):
        return i.to_bytes(8, "big") + base[8:]

    md5 = hashlib.md5()

    def body():
        for i in range(n_blocks):
            b = block(i)
            md5.update(b)
            yield b

    samples = []
    stop = threading.Event()
    sampler = threading.Thread(target=rss_sampler, args=(srv, stop, samples), daemon=True)
    sampler.start()
    path = sigv4.object_path(name, "gig")
    headers, _, _ = sigv4.sign_request("PUT", path, None,
                                       {"Host": srv.host, "Content-Length": str(n_blocks * MiB)},
                                       *srv.root, sigv4.UNSIGNED_PAYLOAD)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
    conn.request("PUT", path, body=body(), headers=headers)
    resp = conn.getresponse()
    resp_body = resp.read()
    conn.close()
    put_peak = max(samples) if samples else 0
    assert resp.status == 200, resp_body
    assert resp.headers["ETag"] == f'"{md5.hexdigest()}"'

    samples.clear()
    got = s3.get_object(Bucket=name, Key="gig")
    h = hashlib.md5()
    n = 0
    for chunk in got["Body"].iter_chunks(MiB):
        h.update(chunk)
        n += len(chunk)
    get_peak = max(samples) if samples else 0
    stop.set()
    sampler.join(5)
    assert n == n_blocks * MiB
    assert h.hexdigest() == md5.hexdigest()
    limit = baseline + 64 * 1024
    assert put_peak <= limit, f"RSS during PUT {put_peak} KiB > baseline {baseline} KiB + 64 MiB"
    assert get_peak <= limit, f"RSS during GET {get_peak} KiB > baseline {baseline} KiB + 64 MiB"
    # a range deep inside the object
    r = s3.get_object(Bucket=name, Key="gig", Range=f"bytes={700 * MiB}-{700 * MiB + 99}")
    assert r["Body"].read() == block(700)[:100]
    s3.delete_object(Bucket=name, Key="gig")


# ---- one process per data directory and per drive ------------------------------------------------


def test_second_server_on_a_data_dir_refuses_and_leaves_the_first_alone(make_server):
    """Each start empties the drives' temp directories: a second process on
    the same data directory would delete the first one's uploads in flight.
    It must refuse to start instead, naming the reason."""
    import subprocess
    from conftest import CAIRN_BIN, free_port, open_put, read_socket_response, server_env
    first = make_server()
    b = unique_bucket()
    assert first.request("PUT", f"/{b}").status == 200
    body = os.urandom(3 * 1024 * 1024)
    sock = open_put(first, b, "in-flight", len(body))
    sock.sendall(body[:1024 * 1024])
    wait_until(lambda: leftover_tmp_files(first.data_dir), 10, what="the upload's temp file")
    tmp_before = leftover_tmp_files(first.data_dir)
    env = first.env()
    cp = subprocess.run([CAIRN_BIN, "server", "--listen", f"127.0.0.1:{free_port()}", "--data", str(first.data_dir)],
                        env=env, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 1, cp
    assert "in use by another cairn process" in cp.stderr and str(first.proc.pid) in cp.stderr, cp.stderr
    assert leftover_tmp_files(first.data_dir) == tmp_before, "the refused start touched the temp files"
    sock.sendall(body[1024 * 1024:])
    r = read_socket_response(sock)
    sock.close()
    assert r.status == 200, r
    assert first.request("GET", f"/{b}/in-flight").body == body
    first.stop_and_fsck()


def test_second_server_on_the_same_drives_refuses(make_server, tmp_path):
    import subprocess
    from conftest import CAIRN_BIN, free_port
    drives = ",".join(str(tmp_path / f"d{i}") for i in range(3))
    first = make_server(env={"CAIRN_DRIVES": drives})
    other = tmp_path / "other-data"
    cp = subprocess.run([CAIRN_BIN, "server", "--listen", f"127.0.0.1:{free_port()}", "--data", str(other)],
                        env=first.env() | {"CAIRN_DRIVES": drives}, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 1, cp
    assert "in use by another process" in cp.stderr, cp.stderr
    assert first.request("GET", "/health/ready").status == 200
