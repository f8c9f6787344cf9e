"""TLS: storage nodes serving the shard API over HTTPS, gateways verifying
them against a CA, and the S3 API itself over HTTPS."""
import hashlib
import json
import http.client
import os
import signal
import ssl
import subprocess

import pytest

import sigv4
from conftest import CAIRN_BIN, free_port, unique_bucket, wait_until

SECRET = "tls-test-secret-0123456789"
AK, SK = "tlsroot", "tlsroot-secret-12345"


def make_ca(d, name):
    """A CA and a certificate it signs for 127.0.0.1 and localhost."""
    d.mkdir(exist_ok=True)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(d / "node.key"), "-out", str(d / "node.csr"))
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", str(d / "node.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "node.pem"))
    return d


def env(extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    e["CAIRN_CLUSTER_SECRET"] = SECRET
    e.update(extra or {})
    return e


def https_live(port, cafile):
    try:
        ctx = ssl.create_default_context(cafile=cafile)
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=3)
        c.request("GET", "/health/live")
        return c.getresponse().status == 200
    except (OSError, ssl.SSLError):
        return False


@pytest.fixture
def tls_nodes(tmp_path):
    ca = make_ca(tmp_path / "pki", "cairn-test")
    procs, ports = [], []
    for i in range(3):
        port = free_port()
        procs.append(subprocess.Popen(
            [CAIRN_BIN, "node", "--listen", f"127.0.0.1:{port}", "--drives", str(tmp_path / f"n{i}")],
            env=env({"CAIRN_TLS_CERT": str(ca / "node.pem"), "CAIRN_TLS_KEY": str(ca / "node.key")}),
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"n{i}.log", "w")))
        ports.append(port)
        wait_until(lambda p=port: https_live(p, str(ca / "ca.pem")), 20, what="a TLS node")
    yield ca, ports
    for p in procs:
        p.kill()
        p.wait()


def start_gateway(tmp_path, urls, extra):
    port = free_port()
    p = subprocess.Popen([CAIRN_BIN, "gateway", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "gw"),
                          "--nodes", urls],
                         env=env({"CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK, **extra}),
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gw.log", "a"))
    return p, port


def signed(port, method, path, body=b"", conn=None):
    headers, _s, _d = sigv4.sign_request(method, path, {}, {"Host": f"127.0.0.1:{port}"}, AK, SK,
                                         hashlib.sha256(body).hexdigest())
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    return r.status, r.read()


def gateway_live(port):
    try:
        return signed(port, "GET", "/health/live")[0] == 200
    except OSError:
        return False


def test_gateway_over_tls_nodes(tls_nodes, tmp_path):
    ca, ports = tls_nodes
    urls = ",".join(f"https://127.0.0.1:{p}" for p in ports)
    gw, port = start_gateway(tmp_path, urls, {"CAIRN_TLS_CA": str(ca / "ca.pem")})
    try:
        wait_until(lambda: gateway_live(port), 20, what="the gateway over TLS nodes")
        bucket = unique_bucket()
        assert signed(port, "PUT", sigv4.object_path(bucket))[0] == 200
        body = os.urandom(400_000)
        assert signed(port, "PUT", sigv4.object_path(bucket, "k"), body)[0] == 200
        assert signed(port, "GET", sigv4.object_path(bucket, "k")) == (200, body)
        shard_files = list(tmp_path.glob("n*/objects/*/*"))
        assert len(shard_files) == 3
    finally:
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(20) == 0


def test_gateway_refuses_nodes_it_cannot_verify(tls_nodes, tmp_path):
    _ca, ports = tls_nodes
    other = make_ca(tmp_path / "other-pki", "someone-else")
    urls = ",".join(f"https://127.0.0.1:{p}" for p in ports)
    gw, _port = start_gateway(tmp_path, urls, {"CAIRN_TLS_CA": str(other / "ca.pem")})
    assert gw.wait(30) == 1
    assert "did not answer /v1/info" in (tmp_path / "gw.log").read_text()
    # Plain HTTP to a TLS node is no node either.
    gw, _port = start_gateway(tmp_path, ",".join(f"http://127.0.0.1:{p}" for p in ports),
                              {"CAIRN_SHARD_TIMEOUT_MS": "1000"})
    assert gw.wait(30) == 1


def test_s3_api_over_https(tmp_path):
    ca = make_ca(tmp_path / "pki", "cairn-s3")
    port = free_port()
    srv = subprocess.Popen([CAIRN_BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d")],
                           env=env({"CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK,
                                    "CAIRN_TLS_CERT": str(ca / "node.pem"), "CAIRN_TLS_KEY": str(ca / "node.key")}),
                           stdout=subprocess.PIPE, stderr=open(tmp_path / "srv.log", "w"), text=True)
    try:
        wait_until(lambda: https_live(port, str(ca / "ca.pem")), 20, what="the HTTPS server")
        ctx = ssl.create_default_context(cafile=str(ca / "ca.pem"))
        conn = lambda: http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
        bucket = unique_bucket()
        assert signed(port, "PUT", sigv4.object_path(bucket), conn=conn())[0] == 200
        assert signed(port, "PUT", sigv4.object_path(bucket, "x"), b"over tls", conn=conn())[0] == 200
        assert signed(port, "GET", sigv4.object_path(bucket, "x"), conn=conn()) == (200, b"over tls")
        # aws:SecureTransport is true for every request over this listener:
        # a policy that denies requests without TLS denies nothing here.
        deny_plain = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": [f"arn:aws:s3:::{bucket}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]})
        path = sigv4.object_path(bucket)
        c = conn()
        h, _, _ = sigv4.sign_request("PUT", path, {"policy": ""}, {"Host": f"127.0.0.1:{port}"}, AK, SK,
                                     hashlib.sha256(deny_plain.encode()).hexdigest())
        c.request("PUT", path + "?policy=", body=deny_plain.encode(), headers=h)
        assert c.getresponse().status == 204
        assert signed(port, "GET", sigv4.object_path(bucket, "x"), conn=conn()) == (200, b"over tls")
        c = conn()
        c.request("GET", sigv4.object_path(bucket, "x"), headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"over tls"), "anonymous over TLS: the policy's Allow applies"
        # A client that does not trust the CA gets no answer.
        with pytest.raises(ssl.SSLError):
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(), timeout=5)
            c.request("GET", "/health/live")
            c.getresponse()
    finally:
        srv.send_signal(signal.SIGTERM)
        assert srv.wait(20) == 0
    assert "https://" in srv.stdout.read()


def test_tls_cert_without_key_is_a_config_error(tmp_path):
    cp = subprocess.run([CAIRN_BIN, "server", "--listen", f"127.0.0.1:{free_port()}", "--data", str(tmp_path / "d")],
                        env=env({"CAIRN_TLS_CERT": "/nonexistent.pem"}), capture_output=True, text=True, timeout=20)
    assert cp.returncode == 2 and "tls_key" in cp.stderr


def audit_events_over_https(port, cafile, correlation_id):
    host = f"127.0.0.1:{port}"
    q = sigv4.presign("GET", host, "/audit/v1/events", AK, SK, 300, extra_query={"correlation_id": correlation_id})
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=cafile), timeout=20)
    c.request("GET", "/audit/v1/events?" + q)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, body
    return json.loads(body)["events"]


def test_the_audit_shipper_verifies_an_https_store_against_tls_ca(tmp_path):
    """audit_url https:// with a private CA: tls_ca is what the shipper
    trusts (the system CAs do not know this one; the store is never sent a
    batch then, and the shipper counts its retries)."""
    ca = make_ca(tmp_path / "pki", "cairn-audit")
    cafile = str(ca / "ca.pem")
    aport = free_port()
    store = subprocess.Popen([CAIRN_BIN, "audit-server", "--listen", f"127.0.0.1:{aport}", "--data", str(tmp_path / "a")],
                             env=env({"CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK,
                                      "CAIRN_TLS_CERT": str(ca / "node.pem"), "CAIRN_TLS_KEY": str(ca / "node.key")}),
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "audit.log", "w"))
    servers = []
    try:
        wait_until(lambda: https_live(aport, cafile), 20, what="the HTTPS audit store")

        def gateway(name, extra):
            port = free_port()
            p = subprocess.Popen([CAIRN_BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / name)],
                                 env=env({"CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK,
                                          "CAIRN_AUDIT_URL": f"https://127.0.0.1:{aport}",
                                          "CAIRN_AUDIT_FLUSH_INTERVAL": "100", **extra}),
                                 stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "w"))
            servers.append(p)
            def live():
                try:
                    return signed(port, "GET", "/health/live")[0] == 200
                except OSError:
                    return False
            wait_until(live, 20, what=f"{name} up")
            return port

        def tagged(port, tag):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            c.request("GET", "/", headers={"X-Correlation-Id": tag})
            assert c.getresponse().status == 403   # anonymous ListBuckets: denied, and audited

        trusting = gateway("trusting", {"CAIRN_TLS_CA": cafile})
        tagged(trusting, "via-tls-ca")
        evs = wait_until(lambda: audit_events_over_https(aport, cafile, "via-tls-ca"), 20,
                         what="the event shipped over https")
        assert evs[0]["action"] == "s3:ListAllMyBuckets" and evs[0]["outcome"] == "denied"

        untrusting = gateway("untrusting", {"CAIRN_AUDIT_MAX_RETRIES": "1"})
        tagged(untrusting, "via-system-cas")

        def retried():
            c = http.client.HTTPConnection("127.0.0.1", untrusting, timeout=20)
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
            return sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("cairn_audit_retries_total"))
        wait_until(retried, 20, what="the shipper's retries against a store it cannot verify")
        assert audit_events_over_https(aport, cafile, "via-system-cas") == []

        # cairn admin audit query --url https://: verified against tls_ca too.
        def query(extra):
            return subprocess.run([CAIRN_BIN, "admin", "audit", "query", "--url", f"https://127.0.0.1:{aport}",
                                   "--correlation-id", "via-tls-ca", "--data", str(tmp_path / "cli")],
                                  env=env({"CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK, **extra}),
                                  capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        cp = query({"CAIRN_TLS_CA": cafile})
        assert cp.returncode == 0, cp.stderr
        assert [json.loads(line)["action"] for line in cp.stdout.splitlines()] == ["s3:ListAllMyBuckets"]
        cp = query({})
        assert cp.returncode == 1 and "certificate" in cp.stderr, cp.stderr
    finally:
        for p in servers + [store]:
            p.send_signal(signal.SIGTERM)
        for p in servers + [store]:
            assert p.wait(30) == 0


# ---- the S3 listener's TLS: versions, ciphers, reload on SIGHUP --------------------------------


def served_cert(port, **ctx_opts):
    """The DER certificate the listener serves to a new handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in ctx_opts.items():
        if k == "ciphers":
            ctx.set_ciphers(v)
        else:
            setattr(ctx, k, v)
    import socket as _socket
    with _socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True), s.version(), s.cipher()[0]


def der_of(path):
    return ssl.PEM_cert_to_DER_cert(path.read_text())


@pytest.fixture
def https_server(tmp_path):
    ca = make_ca(tmp_path / "pki", "cairn-s3")
    live = tmp_path / "live"
    live.mkdir()
    (live / "cert.pem").write_text((ca / "node.pem").read_text())
    (live / "key.pem").write_text((ca / "node.key").read_text())
    port = free_port()
    log = tmp_path / "srv.log"
    srv = subprocess.Popen([CAIRN_BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", str(tmp_path / "d")],
                           env=env({"CAIRN_ROOT_USER": AK, "CAIRN_ROOT_PASSWORD": SK,
                                    "CAIRN_TLS_CERT": str(live / "cert.pem"), "CAIRN_TLS_KEY": str(live / "key.pem")}),
                           stdout=subprocess.DEVNULL, stderr=open(log, "w"), text=True)
    wait_until(lambda: https_live(port, str(ca / "ca.pem")), 20, what="the HTTPS server")
    yield srv, port, ca, live, log
    srv.send_signal(signal.SIGTERM)
    assert srv.wait(20) == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_only_tls_1_2_and_1_3_with_aead_ciphers(https_server):
    _srv, port, _ca, _live, _log = https_server
    _, version, _ = served_cert(port)
    assert version == "TLSv1.3"
    _, version, cipher = served_cert(port, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2" and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    # TLS 1.1 and 1.0 are refused, whatever the client allows
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            served_cert(port, minimum_version=old, maximum_version=old, ciphers="DEFAULT:@SECLEVEL=0")
    # CBC and RSA key exchange are refused in TLS 1.2
    for weak in ("ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256", "AES256-SHA256"):
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            served_cert(port, maximum_version=ssl.TLSVersion.TLSv1_2, ciphers=weak)


def test_sighup_reloads_the_certificate_without_dropping_connections(https_server, tmp_path):
    srv, port, ca, live, log = https_server
    assert served_cert(port)[0] == der_of(ca / "node.pem")
    # a request in flight across the reload: its head and half its body
    # sent before, the rest after, on the same TLS connection
    bucket = unique_bucket()
    assert signed(port, "PUT", sigv4.object_path(bucket), conn=http.client.HTTPSConnection(
        "127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca / "ca.pem")), timeout=20))[0] == 200
    path = sigv4.object_path(bucket, "across")
    h, _, _ = sigv4.sign_request("PUT", path, {}, {"Host": f"127.0.0.1:{port}", "Content-Length": "10",
                                                   "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
                                 AK, SK, "UNSIGNED-PAYLOAD")
    import socket as _socket
    raw = _socket.create_connection(("127.0.0.1", port), timeout=20)
    kept = ssl.create_default_context(cafile=str(ca / "ca.pem")).wrap_socket(raw, server_hostname="127.0.0.1")
    kept.sendall((f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n12345").encode())
    new = make_ca(tmp_path / "pki2", "cairn-s3-renewed")
    (live / "cert.pem").write_text((new / "node.pem").read_text())
    (live / "key.pem").write_text((new / "node.key").read_text())
    srv.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS certificate reloaded" in log.read_text(), 20, what="the reload")
    assert served_cert(port)[0] == der_of(new / "node.pem"), "a new handshake gets the new certificate"
    kept.sendall(b"67890")
    assert kept.recv(4096).startswith(b"HTTP/1.1 200"), "the request in flight across the reload completes"
    kept.close()
    new_ctx = ssl.create_default_context(cafile=str(new / "ca.pem"))
    assert signed(port, "GET", path, conn=http.client.HTTPSConnection("127.0.0.1", port, context=new_ctx,
                                                                     timeout=20)) == (200, b"1234567890")
    # a key that is not the certificate's is refused; the renewed pair stays
    (live / "key.pem").write_text((ca / "node.key").read_text())
    srv.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS certificate not reloaded" in log.read_text(), 20, what="the refused reload")
    assert "not the certificate's" in log.read_text()
    assert served_cert(port)[0] == der_of(new / "node.pem")
    assert https_live(port, str(new / "ca.pem"))
    assert srv.poll() is None


# ---- mutual TLS between gateways and nodes ----------------------------------------------------


def client_cert(ca, name):
    """A client certificate the CA in ca signs: (cert.pem, key.pem)."""
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    key, csr, pem = ca / f"{name}.key", ca / f"{name}.csr", ca / f"{name}.pem"
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
    (ca / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca / "ca.pem"), "-CAkey", str(ca / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(ca / "client.cnf"), "-out", str(pem))
    return pem, key


def node_status(port, cafile, cert=None):
    """The status a node answers GET /health/live with, showing cert (or none)."""
    ctx = ssl.create_default_context(cafile=cafile)
    if cert:
        ctx.load_cert_chain(*cert)
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    c.request("GET", "/health/live")
    r = c.getresponse()
    return r.status, r.read()


def test_mutual_tls_between_gateway_and_nodes(tmp_path):
    ca = make_ca(tmp_path / "pki", "cairn-mtls")
    gw_cert = client_cert(ca, "gateway")
    stranger = make_ca(tmp_path / "stranger-pki", "stranger")
    stranger_cert = client_cert(stranger, "intruder")
    procs, ports = [], []
    try:
        for i in range(3):
            port = free_port()
            procs.append(subprocess.Popen(
                [CAIRN_BIN, "node", "--listen", f"127.0.0.1:{port}", "--drives", str(tmp_path / f"n{i}")],
                env=env({"CAIRN_TLS_CERT": str(ca / "node.pem"), "CAIRN_TLS_KEY": str(ca / "node.key"),
                         "CAIRN_TLS_CLIENT_CA": str(ca / "ca.pem")}),
                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"n{i}.log", "w")))
            ports.append(port)
            def up(p=port):
                try:
                    return node_status(p, str(ca / "ca.pem"), gw_cert)[0] == 200
                except (OSError, ssl.SSLError):
                    return False
            wait_until(up, 20, what="an mTLS node")
        # without a certificate, or with one another CA signed: 403, nothing served
        status, body = node_status(ports[0], str(ca / "ca.pem"))
        assert status == 403 and b"AccessDenied" in body
        assert node_status(ports[0], str(ca / "ca.pem"), stranger_cert)[0] == 403
        urls = ",".join(f"https://127.0.0.1:{p}" for p in ports)
        # a gateway without the client certificate cannot use the nodes
        gw, _ = start_gateway(tmp_path, urls, {"CAIRN_TLS_CA": str(ca / "ca.pem"), "CAIRN_SHARD_TIMEOUT_MS": "2000"})
        assert gw.wait(30) == 1
        # with it, it can
        gw, port = start_gateway(tmp_path, urls, {"CAIRN_TLS_CA": str(ca / "ca.pem"),
                                                  "CAIRN_TLS_CLIENT_CERT": str(gw_cert[0]),
                                                  "CAIRN_TLS_CLIENT_KEY": str(gw_cert[1])})
        try:
            wait_until(lambda: gateway_live(port), 20, what="the gateway over mTLS nodes")
            bucket = unique_bucket()
            assert signed(port, "PUT", sigv4.object_path(bucket))[0] == 200
            body = os.urandom(300_000)
            assert signed(port, "PUT", sigv4.object_path(bucket, "k"), body)[0] == 200
            assert signed(port, "GET", sigv4.object_path(bucket, "k")) == (200, body)
        finally:
            gw.send_signal(signal.SIGTERM)
            assert gw.wait(20) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("settings,key", [
    ({"CAIRN_TLS_CLIENT_CERT": "/x/c.pem"}, "tls_client_key"),
    ({"CAIRN_TLS_CLIENT_KEY": "/x/k.pem"}, "tls_client_cert"),
    ({"CAIRN_TLS_CLIENT_CA": "/x/ca.pem"}, "tls_client_ca"),
])
def test_mutual_tls_settings_are_checked(tmp_path, settings, key):
    cp = subprocess.run([CAIRN_BIN, "node", "--listen", f"127.0.0.1:{free_port()}", "--drives", str(tmp_path / "n")],
                        env=env(settings), capture_output=True, text=True, timeout=30)
    assert cp.returncode == 2 and key in cp.stderr, cp.stderr
