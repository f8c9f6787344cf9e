"""End-to-end with real S3 command-line clients against the shared server:
AWS CLI v2 (Debian's /usr/bin/aws) and, when installed, an AWS CLI v1 found
elsewhere on PATH; s3cmd; rclone.  Each client is configured only through
environment variables and a temporary config file, with HOME pointing at a
temporary directory so no personal configuration leaks in.

Multipart upload is not implemented yet, so every client is told to use
single PUTs: aws `multipart_threshold = 5GB`, s3cmd `--disable-multipart`,
rclone `--s3-upload-cutoff 5G`.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import unique_bucket, which_all

MiB = 1024 * 1024


def clean_env(tmp, extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "CAIRN_", "RCLONE_", "S3CMD"))}
    env["HOME"] = str(tmp)
    env.update(extra or {})
    return env


def run(cmd, env, timeout=180, cwd=None):
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                        timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    if cp.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {cp.returncode}\n"
                             f"stdout:\n{cp.stdout[-3000:]}\nstderr:\n{cp.stderr[-3000:]}")
    return cp


def make_tree(root):
    files = {
        "a.txt": b"hello from cairn\n",
        "empty": b"",
        "sub/b.bin": os.urandom(100 * 1024),
        "sub/deeper/c d.txt": b"spaces in the name\n",
        "ünï/ç.txt": "unicode ✓\n".encode(),
        "sub/edge-16384": os.urandom(16384),
        "mid.bin": os.urandom(3 * MiB + 7),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def read_tree(root):
    out = {}
    for p in Path(root).rglob("*"):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def cli_user(server):
    return server.create_user()


# ---- AWS CLI -------------------------------------------------------------------------------


def aws_clis():
    """(id, path) of every distinct AWS CLI: Debian's v2 and any v1 elsewhere."""
    found, seen = [], set()
    candidates = ["/usr/bin/aws"] + which_all("aws")
    for path in candidates:
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        try:
            ver = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout + ""
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ver.startswith("aws-cli/2."):
            found.append(("aws-v2", path))
        elif ver.startswith("aws-cli/1."):
            found.append(("aws-v1", path))
    return found


_aws_clis = None


def aws_cli_path(flavour):
    """Path of the AWS CLI of that flavour, or None; found once, on first use."""
    global _aws_clis
    if _aws_clis is None:
        _aws_clis = dict(aws_clis())
    return _aws_clis.get(flavour)


@pytest.fixture
def aws(server, cli_user, tmp_path, request):
    flavour = request.param
    path = aws_cli_path(flavour)
    if path is None:
        why = ("Debian's awscli (/usr/bin/aws) is not installed" if flavour == "aws-v2"
               else "no AWS CLI v1 found on PATH besides /usr/bin/aws")
        print(f"skipping {flavour}: {why}")
        pytest.skip(why)
    cfg = tmp_path / "aws-config"
    cfg.write_text("[default]\nregion = us-east-1\noutput = json\n"
                   "s3 =\n    addressing_style = path\n    multipart_threshold = 5GB\n"
                   "    multipart_chunksize = 5GB\n    max_concurrent_requests = 4\n")
    env = clean_env(tmp_path, {
        "AWS_CONFIG_FILE": str(cfg),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_ACCESS_KEY_ID": cli_user.access_key,
        "AWS_SECRET_ACCESS_KEY": cli_user.secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })

    def call(*args, timeout=180):
        return run([path, "--endpoint-url", server.endpoint, *args], env, timeout=timeout)

    return call


@pytest.mark.parametrize("aws", ["aws-v2", "aws-v1"], indirect=True)
@pytest.mark.deadline(300)
def test_aws_cli_end_to_end(aws, server, cli_user, tmp_path):
    name = unique_bucket("awscli")
    aws("s3", "mb", f"s3://{name}")
    assert name in aws("s3", "ls").stdout

    # small and 20 MiB files, up and down
    small = tmp_path / "small.txt"
    small.write_bytes(b"small file contents\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MiB))
    aws("s3", "cp", small, f"s3://{name}/files/small.txt")
    aws("s3", "cp", big, f"s3://{name}/files/big.bin")
    down = tmp_path / "down"
    down.mkdir()
    aws("s3", "cp", f"s3://{name}/files/small.txt", down / "small.txt")
    aws("s3", "cp", f"s3://{name}/files/big.bin", down / "big.bin")
    assert (down / "small.txt").read_bytes() == small.read_bytes()
    assert (down / "big.bin").read_bytes() == big.read_bytes()

    listing = aws("s3", "ls", f"s3://{name}/files/").stdout
    assert "small.txt" in listing and "big.bin" in listing
    assert str(20 * MiB) in listing

    head = json.loads(aws("s3api", "head-object", "--bucket", name, "--key", "files/big.bin").stdout)
    assert head["ContentLength"] == 20 * MiB
    assert head["ETag"] == '"' + hashlib.md5(big.read_bytes()).hexdigest() + '"'

    # sync a tree up, then down into an empty directory
    src = tmp_path / "tree"
    files = make_tree(src)
    out = aws("s3", "sync", src, f"s3://{name}/tree").stdout
    assert out.count("upload:") == len(files), out
    again = aws("s3", "sync", src, f"s3://{name}/tree").stdout
    assert "upload:" not in again, f"a second sync uploaded again:\n{again}"
    dst = tmp_path / "tree-down"
    aws("s3", "sync", f"s3://{name}/tree", dst)
    assert read_tree(dst) == files

    rec = aws("s3", "ls", "--recursive", f"s3://{name}/").stdout
    assert "tree/ünï/ç.txt" in rec and "tree/sub/deeper/c d.txt" in rec

    aws("s3", "rm", "--recursive", f"s3://{name}/")
    assert aws("s3", "ls", "--recursive", f"s3://{name}/").stdout.strip() == ""
    aws("s3", "rb", f"s3://{name}")
    assert name not in aws("s3", "ls").stdout


# ---- s3cmd -------------------------------------------------------------------------------


@pytest.fixture
def s3cmd(server, cli_user, tmp_path):
    exe = shutil.which("s3cmd")
    if exe is None:
        print("skipping s3cmd: not installed (Debian package s3cmd)")
        pytest.skip("s3cmd is not installed (Debian package s3cmd)")
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {cli_user.access_key}\n"
        f"secret_key = {cli_user.secret}\n"
        f"host_base = {server.host}\n"
        f"host_bucket = {server.host}\n"
        "bucket_location = us-east-1\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "check_ssl_certificate = False\n"
        "guess_mime_type = True\n")
    env = clean_env(tmp_path)

    def call(*args):
        return run([exe, "-c", cfg, "--no-progress", *args], env)

    return call


@pytest.mark.deadline(240)
def test_s3cmd_end_to_end(s3cmd, server, tmp_path):
    name = unique_bucket("s3cmd")
    s3cmd("mb", f"s3://{name}")
    assert f"s3://{name}" in s3cmd("ls").stdout
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(5 * MiB + 3))
    txt = tmp_path / "note with space.txt"
    txt.write_bytes(b"s3cmd text\n")
    s3cmd("put", "--disable-multipart", src, f"s3://{name}/dir/up.bin")
    s3cmd("put", "--disable-multipart", txt, f"s3://{name}/dir/note with space.txt")
    out = tmp_path / "got.bin"
    s3cmd("get", f"s3://{name}/dir/up.bin", out)
    assert out.read_bytes() == src.read_bytes()
    out2 = tmp_path / "got.txt"
    s3cmd("get", f"s3://{name}/dir/note with space.txt", out2)
    assert out2.read_bytes() == b"s3cmd text\n"
    listing = s3cmd("ls", f"s3://{name}/dir/").stdout
    assert "up.bin" in listing and "note with space.txt" in listing
    assert "DIR" in s3cmd("ls", f"s3://{name}/").stdout
    s3cmd("del", f"s3://{name}/dir/up.bin")
    s3cmd("del", f"s3://{name}/dir/note with space.txt")
    assert s3cmd("ls", f"s3://{name}/dir/").stdout.strip() == ""
    s3cmd("rb", f"s3://{name}")


# ---- rclone ------------------------------------------------------------------------------


@pytest.fixture
def rclone(server, cli_user, tmp_path):
    exe = shutil.which("rclone")
    if exe is None:
        print("skipping rclone: not installed (Debian package rclone)")
        pytest.skip("rclone is not installed (Debian package rclone)")
    cfg = tmp_path / "rclone.conf"
    cfg.write_text(
        "[cairn]\n"
        "type = s3\n"
        "provider = Other\n"
        "env_auth = false\n"
        f"access_key_id = {cli_user.access_key}\n"
        f"secret_access_key = {cli_user.secret}\n"
        f"endpoint = {server.endpoint}\n"
        "region = us-east-1\n"
        "force_path_style = true\n")
    env = clean_env(tmp_path)

    def call(*args):
        return run([exe, "--config", cfg, "--s3-upload-cutoff", "5G", "--retries", "1",
                    "--low-level-retries", "1", "--contimeout", "10s", "--timeout", "60s",
                    *args], env)

    return call


@pytest.mark.deadline(240)
def test_rclone_end_to_end(rclone, tmp_path):
    name = unique_bucket("rclone")
    rclone("mkdir", f"cairn:{name}")
    src = tmp_path / "tree"
    files = make_tree(src)
    rclone("copy", src, f"cairn:{name}/dir")
    ls = rclone("ls", f"cairn:{name}").stdout
    for rel, data in files.items():
        assert f"{len(data)} dir/{rel}" in " ".join(ls.split()), (rel, ls)
    entries = json.loads(rclone("lsjson", "-R", "--files-only", f"cairn:{name}/dir").stdout)
    assert {e["Path"]: e["Size"] for e in entries} == {k: len(v) for k, v in files.items()}
    rclone("check", src, f"cairn:{name}/dir")
    down = tmp_path / "down"
    rclone("copy", f"cairn:{name}/dir", down)
    assert read_tree(down) == files
    # a changed file is detected by check
    (src / "a.txt").write_bytes(b"changed locally\n")
    with pytest.raises(AssertionError):
        rclone("check", src, f"cairn:{name}/dir")
    rclone("delete", f"cairn:{name}/dir")
    assert rclone("ls", f"cairn:{name}").stdout.strip() == ""
    rclone("rmdir", f"cairn:{name}")


@pytest.mark.deadline(240)
def test_rclone_multipart_transfer(rclone, server, tmp_path):
    """rclone with 5 MiB parts, 4 at a time: a 23 MiB file goes up as a
    5-part multipart upload and comes back byte-identical."""
    name = unique_bucket("rclonemp")
    rclone("mkdir", f"cairn:{name}")
    src = tmp_path / "up"
    src.mkdir()
    data = os.urandom(23 * 1024 * 1024 + 4321)
    (src / "big.bin").write_bytes(data)
    mp = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--s3-upload-concurrency", "4"]
    rclone("copy", *mp, src, f"cairn:{name}")
    head = server.client().head_object(Bucket=name, Key="big.bin")
    parts = [data[i:i + 5 * 1024 * 1024] for i in range(0, len(data), 5 * 1024 * 1024)]
    want = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"
    assert head["ETag"] == f'"{want}"', head["ETag"]
    assert head["ContentLength"] == len(data)
    rclone("check", src, f"cairn:{name}")
    down = tmp_path / "down"
    rclone("copy", "--multi-thread-streams", "4", "--multi-thread-cutoff", "5M", f"cairn:{name}", down)
    assert (down / "big.bin").read_bytes() == data
    assert server.client().list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    rclone("purge", f"cairn:{name}")
