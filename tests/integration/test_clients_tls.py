"""The real clients over HTTPS (docs/deploy.md, "TLS"): the AWS CLI, boto3,
rclone and s3cmd against `cairn server` serving TLS with a certificate from
a CA made here, each told to trust that CA (and so to verify the server's
certificate and name): make a bucket, upload, list, download byte-exact,
delete."""
import os
import shutil
import signal
import subprocess

import boto3
import pytest
from botocore.config import Config

from conftest import CAIRN_BIN, free_port, unique_bucket, wait_until
from test_clients import clean_env, run
from test_tls import AK, SK, env, https_live, make_ca

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls-clients")
    ca = make_ca(tmp / "pki", "cairn-clients")
    port = free_port()
    srv = subprocess.Popen([CAIRN_BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", str(tmp / "d")],
                           env=env({"CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK,
                                    "CAIRN_TLS_CERT": str(ca / "node.pem"), "CAIRN_TLS_KEY": str(ca / "node.key")}),
                           stdout=subprocess.DEVNULL, stderr=open(tmp / "srv.log", "w"))
    wait_until(lambda: https_live(port, str(ca / "ca.pem")), 20, what="the HTTPS server")
    yield f"https://127.0.0.1:{port}", port, ca / "ca.pem"
    srv.send_signal(signal.SIGTERM)
    assert srv.wait(20) == 0


def payload(tmp_path, name, size):
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


def aws_cli(tls_server, tmp_path):
    """(run, base argv, env): the AWS CLI told to trust the test CA."""
    endpoint, _port, ca = tls_server
    if not os.path.exists("/usr/bin/aws"):
        pytest.skip("Debian's awscli (/usr/bin/aws) is not installed")
    cfg = tmp_path / "aws-config"
    cfg.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    e = clean_env(tmp_path, {"AWS_CONFIG_FILE": str(cfg), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                             "AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK, "AWS_DEFAULT_REGION": "us-east-1",
                             "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": ""})
    base = ["/usr/bin/aws", "--endpoint-url", endpoint, "--ca-bundle", ca]
    return (lambda *a: run([*base, *a], e)), base, e


def rclone(tls_server, tmp_path, extra_conf=""):
    """rclone with a remote "cairn:" that trusts the test CA."""
    endpoint, _port, ca = tls_server
    exe = shutil.which("rclone")
    if exe is None:
        pytest.skip("rclone is not installed (Debian package rclone)")
    cfg = tmp_path / "rclone.conf"
    cfg.write_text("[cairn]\ntype = s3\nprovider = Other\nenv_auth = false\n"
                   f"access_key_id = {AK}\nsecret_access_key = {SK}\nendpoint = {endpoint}\n"
                   "region = us-east-1\nforce_path_style = true\n" + extra_conf)
    return lambda *a: run([exe, "--config", cfg, "--ca-cert", ca, "--retries", "1", "--low-level-retries", "1", *a],
                          clean_env(tmp_path))


def s3cmd_of(tls_server, tmp_path):
    """s3cmd configured for the server, checking its certificate and name."""
    _endpoint, port, ca = tls_server
    exe = shutil.which("s3cmd")
    if exe is None:
        pytest.skip("s3cmd is not installed (Debian package s3cmd)")
    cfg = tmp_path / "s3cfg"
    cfg.write_text("[default]\n"
                   f"access_key = {AK}\nsecret_key = {SK}\n"
                   f"host_base = 127.0.0.1:{port}\nhost_bucket = 127.0.0.1:{port}\n"
                   "bucket_location = us-east-1\nuse_https = True\nsignature_v2 = False\n"
                   f"check_ssl_certificate = True\ncheck_ssl_hostname = True\nca_certs_file = {ca}\n")
    return lambda *a: run([exe, "-c", cfg, "--no-progress", *a], clean_env(tmp_path))


def test_boto3_over_https(tls_server, tmp_path):
    endpoint, _port, ca = tls_server
    s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                        aws_access_key_id=AK, aws_secret_access_key=SK, verify=str(ca),
                                        config=Config(s3={"addressing_style": "path"}))
    b = unique_bucket("tlsboto")
    s3.create_bucket(Bucket=b)
    data = os.urandom(3 * MiB + 5)
    s3.put_object(Bucket=b, Key="k", Body=data)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == data
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["k"]
    s3.delete_object(Bucket=b, Key="k")
    s3.delete_bucket(Bucket=b)
    # a client that does not trust the CA refuses the server
    untrusting = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                                aws_access_key_id=AK, aws_secret_access_key=SK)
    with pytest.raises(Exception) as e:
        untrusting.list_buckets()
    assert "SSL" in type(e.value).__name__ or "certificate" in str(e.value).lower()


def test_aws_cli_over_https(tls_server, tmp_path):
    aws, _base, _env = aws_cli(tls_server, tmp_path)
    b = unique_bucket("tlsaws")
    aws("s3", "mb", f"s3://{b}")
    src = payload(tmp_path, "up.bin", 2 * MiB + 1)
    aws("s3", "cp", src, f"s3://{b}/up.bin")
    assert "up.bin" in aws("s3", "ls", f"s3://{b}/").stdout
    aws("s3", "cp", f"s3://{b}/up.bin", tmp_path / "down.bin")
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()
    aws("s3", "rb", f"s3://{b}", "--force")


def test_rclone_over_https(tls_server, tmp_path):
    rc = rclone(tls_server, tmp_path)
    b = unique_bucket("tlsrclone")
    rc("mkdir", f"cairn:{b}")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(MiB + 3))
    (src / "b.txt").write_bytes(b"rclone over tls\n")
    rc("copy", src, f"cairn:{b}/dir")
    dst = tmp_path / "dst"
    rc("copy", f"cairn:{b}/dir", dst)
    assert (dst / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert (dst / "b.txt").read_bytes() == b"rclone over tls\n"
    rc("purge", f"cairn:{b}")


def test_s3cmd_over_https(tls_server, tmp_path):
    s3cmd = s3cmd_of(tls_server, tmp_path)
    b = unique_bucket("tlss3cmd")
    s3cmd("mb", f"s3://{b}")
    src = payload(tmp_path, "up.bin", MiB + 9)
    s3cmd("put", "--disable-multipart", src, f"s3://{b}/up.bin")
    s3cmd("get", f"s3://{b}/up.bin", tmp_path / "down.bin")
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()
    assert "up.bin" in s3cmd("ls", f"s3://{b}/").stdout
    s3cmd("del", f"s3://{b}/up.bin")
    s3cmd("rb", f"s3://{b}")


# ---- encryption at rest through the real clients (docs/encryption.md) ------------------------------

def test_aws_cli_sse_c_and_sse_s3_over_https(tls_server, tmp_path):
    # 9 MiB crosses the CLI's 8 MiB multipart threshold: the SSE-C key goes
    # with the upload's creation and every part.
    aws, base, e = aws_cli(tls_server, tmp_path)
    b = unique_bucket("tlsawssse")
    aws("s3", "mb", f"s3://{b}")
    key = tmp_path / "key.bin"
    key.write_bytes(os.urandom(32))
    src = payload(tmp_path, "big.bin", 9 * MiB + 7)
    aws("s3", "cp", src, f"s3://{b}/big.bin", "--sse-c", "AES256", "--sse-c-key", f"fileb://{key}")
    aws("s3", "cp", f"s3://{b}/big.bin", tmp_path / "down.bin", "--sse-c", "AES256", "--sse-c-key", f"fileb://{key}")
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()
    # without the key the download fails and writes nothing usable
    cp = subprocess.run([str(x) for x in (*base, "s3", "cp", f"s3://{b}/big.bin", tmp_path / "nokey.bin")],
                        capture_output=True, text=True, env=e, timeout=120, stdin=subprocess.DEVNULL)
    assert cp.returncode != 0 and "400" in cp.stderr, cp.stderr
    # SSE-S3: the key is cairn's, the header comes back on HEAD
    small = payload(tmp_path, "small.bin", 100 * 1024)
    aws("s3", "cp", small, f"s3://{b}/small.bin", "--sse", "AES256")
    head = aws("s3api", "head-object", "--bucket", b, "--key", "small.bin").stdout
    assert '"ServerSideEncryption": "AES256"' in head, head
    aws("s3", "cp", f"s3://{b}/small.bin", tmp_path / "small.down")
    assert (tmp_path / "small.down").read_bytes() == small.read_bytes()
    aws("s3", "rb", f"s3://{b}", "--force")


def test_rclone_sse_c_over_https(tls_server, tmp_path):
    endpoint, _port, ca = tls_server
    rc = rclone(tls_server, tmp_path,
                "sse_customer_algorithm = AES256\nsse_customer_key = 0123456789abcdef0123456789abcdef\n")
    b = unique_bucket("tlsrclonesse")
    rc("mkdir", f"cairn:{b}")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(6 * MiB + 3))   # rclone's multipart cutoff is 200 MiB: one PUT
    (src / "b.txt").write_bytes(b"rclone sse-c\n")
    rc("copy", src, f"cairn:{b}/dir")
    dst = tmp_path / "dst"
    rc("copy", f"cairn:{b}/dir", dst)
    assert (dst / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert (dst / "b.txt").read_bytes() == b"rclone sse-c\n"
    # the stored object is SSE-C: a plain GET is refused
    s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                        aws_access_key_id=AK, aws_secret_access_key=SK, verify=str(ca),
                                        config=Config(s3={"addressing_style": "path"}))
    with pytest.raises(Exception) as e:
        s3.get_object(Bucket=b, Key="dir/b.txt")
    assert "InvalidRequest" in str(e.value)
    rc("purge", f"cairn:{b}")


def test_s3cmd_sse_s3_over_https(tls_server, tmp_path):
    s3cmd = s3cmd_of(tls_server, tmp_path)
    b = unique_bucket("tlss3cmdsse")
    s3cmd("mb", f"s3://{b}")
    src = payload(tmp_path, "up.bin", 7 * MiB + 9)   # s3cmd's multipart chunks are 15 MiB: one PUT
    s3cmd("put", "--server-side-encryption", src, f"s3://{b}/up.bin")
    info = s3cmd("info", f"s3://{b}/up.bin").stdout
    assert "AES256" in info, info
    s3cmd("get", f"s3://{b}/up.bin", tmp_path / "down.bin")
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()
    s3cmd("del", f"s3://{b}/up.bin")
    s3cmd("rb", f"s3://{b}")
