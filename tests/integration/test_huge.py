"""A 5 GiB file through `aws s3 cp` (Debian's AWS CLI, which switches to
multipart above 8 MiB and downloads with parallel ranged GETs): it must come
back byte-identical while the gateway's resident memory grows by at most a
few tens of MiB, whatever the object's size.

CAIRN_HUGE_MIB shortens the file for local runs; `make test` uses the full
5120 MiB.  The RSS bound is asserted on normal builds only (see below)."""
import hashlib
import os
import subprocess

import pytest

from conftest import aws_cli_env, proc_status_kib, sanitizer_of_build, unique_bucket

MiB = 1024 * 1024
SIZE_MIB = int(os.environ.get("CAIRN_HUGE_MIB", "5120"))
RSS_GROWTH_LIMIT_MIB = 64


def write_file(path, size_mib):
    """size_mib MiB, every MiB different (a counter over a random block);
    returns its SHA-256."""
    base = bytearray(os.urandom(MiB))
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size_mib):
            base[0:8] = i.to_bytes(8, "big")
            h.update(base)
            f.write(base)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


@pytest.mark.deadline(1200)
def test_aws_cli_5gib_round_trip_with_bounded_gateway_memory(make_server, tmp_path):
    aws = "/usr/bin/aws"
    if not os.path.exists(aws):
        pytest.fail("Debian's awscli (/usr/bin/aws) is missing: scripts/install-deps.sh installs it")
    srv = make_server()
    s3 = srv.client()
    bucket = unique_bucket("huge")
    s3.create_bucket(Bucket=bucket)
    env = aws_cli_env(srv, tmp_path)

    def cli(*args):
        cp = subprocess.run([aws, "--endpoint-url", srv.endpoint, "--no-progress", *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=1000, stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, f"aws {' '.join(map(str, args))} exited {cp.returncode}\n" \
                                   f"stdout:\n{cp.stdout[-2000:]}\nstderr:\n{cp.stderr[-2000:]}"

    # Warm every path (multipart up, ranged parallel GETs down) before the baseline.
    warm = tmp_path / "warm.bin"
    write_file(warm, 24)
    cli("s3", "cp", warm, f"s3://{bucket}/warm.bin")
    cli("s3", "cp", f"s3://{bucket}/warm.bin", tmp_path / "warm-down.bin")
    baseline_kib = proc_status_kib(srv.proc.pid, "VmRSS")

    src = tmp_path / "huge.bin"
    want = write_file(src, SIZE_MIB)
    cli("s3", "cp", src, f"s3://{bucket}/huge.bin")
    src.unlink()                         # the disk holds one copy less
    head = s3.head_object(Bucket=bucket, Key="huge.bin")
    assert head["ContentLength"] == SIZE_MIB * MiB
    assert head["ETag"].endswith(f'-{-(-SIZE_MIB // 8)}"'), head["ETag"]   # 8 MiB parts
    dst = tmp_path / "huge-down.bin"
    cli("s3", "cp", f"s3://{bucket}/huge.bin", dst)
    assert dst.stat().st_size == SIZE_MIB * MiB
    got = sha256_file(dst)
    dst.unlink()
    assert got == want, "the downloaded file differs from the uploaded one"

    peak_kib = proc_status_kib(srv.proc.pid, "VmHWM")
    growth_mib = (peak_kib - baseline_kib) / 1024
    print(f"aws s3 cp {SIZE_MIB} MiB: gateway rss baseline {baseline_kib / 1024:.1f} MiB, "
          f"peak {peak_kib / 1024:.1f} MiB, growth {growth_mib:.1f} MiB")
    # Under make test-asan the transfer and its byte-identity are still checked
    # (with every access watched), but RSS there is ASan's: freed memory sits
    # in its quarantine (256 MiB by default).  `make test` asserts the bound.
    if sanitizer_of_build() is None:
        assert growth_mib <= RSS_GROWTH_LIMIT_MIB, \
            f"gateway RSS grew by {growth_mib:.1f} MiB moving a {SIZE_MIB} MiB object"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
