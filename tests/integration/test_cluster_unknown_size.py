"""Bodies without a length through a gateway over storage nodes.

A chunked UNSIGNED-PAYLOAD PutObject or UploadPart, and a POST form
(test_post_object.py), carry no object length before their first byte.  The
gateway sends each shard of such an object to its node chunked (src/data/
remote.c, docs/shard-api.md): the node commits a shard only when the chunked
stream ended with its zero chunk and the Poly1305 tag before it verifies.

These tests run the real processes of test_cluster.py (six nodes, one
gateway, 4+2 erasure coding, a 4 KiB shard block, so a few MiB are hundreds
of stripes) and check what a user sees: the bytes read back exactly, an
upload cut short leaves no object and nothing on any node, and a node killed
mid-stream never turns into an acknowledged write with other bytes.
"""

import http.client
import socket

import pytest

import sigv4
from conftest import md5_hex, wait_until
from test_cluster import (INLINE_MAX, KiB, MiB, STRIPE, assert_only_missing_on, assert_reads_back,  # noqa: F401
                          fsck_after_outage, make_cluster, new_bucket, payload)


def chunked_head(gw, bucket, key, query=None):
    """The bytes of a signed chunked UNSIGNED-PAYLOAD PUT's head (no length)."""
    path = sigv4.object_path(bucket, key)
    h, _sig, _date = sigv4.sign_request("PUT", path, query, {"Host": gw.host}, gw.root[0], gw.root[1],
                                        sigv4.UNSIGNED_PAYLOAD)
    h["Transfer-Encoding"] = "chunked"
    target = path + ("?" + sigv4.wire_query(query) if query else "")
    return (f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


def chunks(data, sizes):
    """data as HTTP/1.1 chunks of the given sizes (cycled), without the zero chunk."""
    out, off, i = [], 0, 0
    while off < len(data):
        n = min(sizes[i % len(sizes)], len(data) - off)
        out.append(b"%x\r\n" % n + data[off:off + n] + b"\r\n")
        off += n
        i += 1
    return b"".join(out)


def put_chunked(gw, bucket, key, data, query=None, sizes=(65536, 1, 7000, 300_001)):
    """A chunked PUT of data in chunks of odd sizes; returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as s:
        s.sendall(chunked_head(gw, bucket, key, query) + chunks(data, sizes) + b"0\r\n\r\n")
        resp = http.client.HTTPResponse(s, method="PUT")
        resp.begin()
        return resp.status, dict(resp.getheaders()), resp.read()


def new_versions(cl, before):
    return {v: s for v, s in cl.shard_map().items() if v not in before}


@pytest.mark.deadline(120)
def test_a_chunked_put_of_several_mib_is_stored_on_the_nodes_and_reads_back(make_cluster):
    cl = make_cluster()
    gw = cl.gateway
    bucket = new_bucket(gw)
    data = payload(3 * MiB + 12345, 1)
    assert len(data) > INLINE_MAX and len(data) > 100 * STRIPE
    before = set(cl.shard_map())
    status, headers, body = put_chunked(gw, bucket, "big", data)
    assert status == 200, body
    assert headers["ETag"] == f'"{md5_hex(data)}"'
    # Erasure-coded on the nodes: one new version, a shard on each of the six.
    new = new_versions(cl, before)
    assert len(new) == 1 and len(next(iter(new.values()))) == 6, new
    assert_reads_back(gw, bucket, "big", data)
    h = gw.request("HEAD", sigv4.object_path(bucket, "big"))
    assert h.status == 200 and int(h.header("Content-Length")) == len(data)
    # Small ones too: inline, one stripe, a stripe and a byte.
    for size in (1, INLINE_MAX + 1, STRIPE, STRIPE + 1):
        small = payload(size, size)
        assert put_chunked(gw, bucket, f"s{size}", small, sizes=(1000,))[0] == 200
        assert_reads_back(gw, bucket, f"s{size}", small)
    assert all(n.tmp_files() == [] for n in cl.nodes)
    gw.stop_and_fsck()


@pytest.mark.deadline(120)
def test_a_chunked_upload_part_reads_back(make_cluster):
    cl = make_cluster()
    gw = cl.gateway
    bucket = new_bucket(gw)
    s3 = gw.client()
    u = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    p1, p2 = payload(5 * MiB + 3, 2), payload(777_777, 3)
    etags = []
    for n, part in ((1, p1), (2, p2)):
        status, headers, body = put_chunked(gw, bucket, "mp", part, query={"partNumber": n, "uploadId": u})
        assert status == 200, body
        assert headers["ETag"] == f'"{md5_hex(part)}"'
        etags.append(headers["ETag"])
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=u, MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
    assert_reads_back(gw, bucket, "mp", p1 + p2)
    gw.stop_and_fsck()


@pytest.mark.deadline(90)
def test_a_chunked_upload_cut_short_leaves_nothing_on_any_node(make_cluster):
    """The client goes away mid-body: the gateway aborts its six chunked shard
    uploads, which end without their zero chunk; every node drops its temp
    file, no shard of the cut version is committed, the key stays absent and
    fsck finds the store clean."""
    cl = make_cluster()
    gw = cl.gateway
    bucket = new_bucket(gw)
    before = set(cl.shard_map())
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    sock.sendall(chunked_head(gw, bucket, "cut") + chunks(payload(3 * MiB, 4), (65536,)))
    wait_until(lambda: all(n.tmp_files() for n in cl.nodes), 20, what="chunked shard uploads on every node")
    sock.close()
    wait_until(lambda: not any(n.tmp_files() for n in cl.nodes), 20,
               what="the nodes to drop the cut-short shard uploads")
    assert set(cl.shard_map()) == before
    assert gw.request("HEAD", sigv4.object_path(bucket, "cut")).status == 404
    cl.assert_processes_alive()
    gw.stop_and_fsck()


@pytest.mark.deadline(120)
def test_a_node_killed_mid_stream_never_costs_an_acknowledged_byte(make_cluster):
    """A node dies while a chunked PUT streams to it: the PUT either fails
    with a 5xx (and the key stays absent) or succeeds and reads back exactly;
    then only that node lacks the version's shard, repairable from parity."""
    cl = make_cluster()
    gw = cl.gateway
    bucket = new_bucket(gw)
    victim = cl.nodes[2]
    data = payload(4 * MiB + 1, 5)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as s:
        s.sendall(chunked_head(gw, bucket, "k") + chunks(data[:2 * MiB], (65536,)))
        wait_until(lambda: all(n.tmp_files() for n in cl.nodes), 20, what="chunked shard uploads on every node")
        victim.kill9()
        s.sendall(chunks(data[2 * MiB:], (65536,)) + b"0\r\n\r\n")
        resp = http.client.HTTPResponse(s, method="PUT")
        resp.begin()
        status, body = resp.status, resp.read()
    if status == 200:
        assert_reads_back(gw, bucket, "k", data)
    else:
        assert 500 <= status < 600 and b"<Code>" in body, (status, body)
        assert gw.request("HEAD", sigv4.object_path(bucket, "k")).status == 404
    # With one node of six down the write keeps its quorum.
    assert status == 200, body
    code, doc = fsck_after_outage(cl)
    assert_only_missing_on(cl, code, doc, [victim])
