#!/usr/bin/python3
"""Multipart transfers against a running cairn (issue 4's benchmark): upload and
download MB/s of one object at 4 and 16 parallel parts (boto3's transfer
manager, 8 MiB parts), and the server's RSS before and peak during a large
multipart upload.

usage: multipart.py URL PID ACCESS_KEY SECRET SIZE_BYTES RSS_SIZE_BYTES
"""
import os
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


class Zeros:
    """A readable, seekable stream of n pseudo-random-ish bytes, not held in memory."""

    def __init__(self, n):
        self.n, self.pos = n, 0
        self.block = os.urandom(1 << 20)

    def read(self, k=-1):
        if k is None or k < 0:
            k = self.n - self.pos
        k = min(k, self.n - self.pos)
        out = (self.block * (k // len(self.block) + 1))[:k] if k > len(self.block) else self.block[:k]
        self.pos += k
        return out

    def seek(self, off, whence=0):
        self.pos = off if whence == 0 else self.pos + off if whence == 1 else self.n + off
        return self.pos

    def tell(self):
        return self.pos


class Sink:
    def __init__(self):
        self.n = 0

    def write(self, b):
        self.n += len(b)
        return len(b)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    url, pid, ak, sk, size, rss_size = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))
    try:
        s3.create_bucket(Bucket="mpbench")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for conc in (4, 16):
        tc = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=conc)
        t0 = time.monotonic()
        s3.upload_fileobj(Zeros(size), "mpbench", f"obj{conc}", Config=tc)
        up = size / (time.monotonic() - t0) / 1e6
        sink = Sink()
        t0 = time.monotonic()
        s3.download_fileobj("mpbench", f"obj{conc}", sink, Config=tc)
        down = size / (time.monotonic() - t0) / 1e6
        ok = sink.n == size
        print(f"op=multipart size={size} parallel_parts={conc} upload_mbps={up:.1f} download_mbps={down:.1f} "
              f"errors={0 if ok else 1}")
    before = status_kib(pid, "VmRSS")
    tc = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    t0 = time.monotonic()
    s3.upload_fileobj(Zeros(rss_size), "mpbench", "rss", Config=tc)
    secs = time.monotonic() - t0
    peak = status_kib(pid, "VmHWM")
    print(f"op=multipart_rss size={rss_size} seconds={secs:.1f} mbps={rss_size / secs / 1e6:.1f} "
          f"rss_before_mib={before / 1024:.1f} peak_rss_mib={peak / 1024:.1f} growth_mib={(peak - before) / 1024:.1f}")


if __name__ == "__main__":
    main()
