#!/usr/bin/python3
"""Streams one large PutObject to a running cairn and reports the server's
memory: RSS before, peak RSS (VmHWM) after, and the growth.  Memory per request
must be bounded by the configuration, never by the object size.

usage: put_rss.py URL PID ACCESS_KEY SECRET BUCKET SIZE_BYTES
Prints: op=put_rss size=.. seconds=.. mbps=.. rss_before_mib=.. peak_rss_mib=.. growth_mib=..
"""
import http.client
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import sigv4  # noqa: E402


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found")


def main():
    url, pid, ak, sk, bucket, size = sys.argv[1:7]
    pid, size = int(pid), int(size)
    u = urllib.parse.urlparse(url)
    host = u.netloc
    path = sigv4.object_path(bucket, "put-rss-object")
    headers, _sig, _date = sigv4.sign_request("PUT", path, {}, {"Host": host, "Content-Length": str(size)},
                                              ak, sk, "UNSIGNED-PAYLOAD")
    rss_before = status_kib(pid, "VmRSS")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    chunk = os.urandom(1 << 20)
    sent = 0
    t0 = time.monotonic()
    while sent < size:
        n = min(len(chunk), size - sent)
        conn.send(chunk[:n] if n < len(chunk) else chunk)
        sent += n
    resp = conn.getresponse()
    body = resp.read()
    secs = time.monotonic() - t0
    if resp.status != 200:
        print(f"op=put_rss errors=1 status={resp.status} body={body[:200]!r}")
        return 1
    peak = status_kib(pid, "VmHWM")
    print(f"op=put_rss size={size} errors=0 seconds={secs:.2f} mbps={size / secs / 1e6:.1f} "
          f"rss_before_mib={rss_before / 1024:.1f} peak_rss_mib={peak / 1024:.1f} "
          f"growth_mib={(peak - rss_before) / 1024:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
