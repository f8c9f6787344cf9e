"""Server-side encryption at rest (docs/encryption.md): SSE-C, SSE-S3 and
SSE-KMS through boto3 against a real server, what is stored on disk, and
tamper tests that edit the stored bytes (fixing the shard's own CRCs, so
only the encryption can notice) and expect an error, never wrong bytes."""
import base64
import hashlib
import os
import sqlite3
import struct
from pathlib import Path

import botocore
import pytest

from conftest import pg_cluster, postgres, unique_bucket, wait_until

PKG = 65536
TAG = 16


def ckey(seed=b"k"):
    key = hashlib.sha256(seed).digest()
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_ckey(seed=b"k"):
    key = hashlib.sha256(seed).digest()
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def payload(n, seed=1):
    out = bytearray()
    h = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


def err_code(e):
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def srv(make_server):
    # One drive, no parity: a tampered block cannot be rebuilt from parity,
    # so only the encryption stands between it and the client.
    return make_server(env={"CAIRN_SSE_C_ALLOW_INSECURE": "true"})


@pytest.fixture
def c(srv):
    return srv.client()


def new_bucket(c):
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    return b


# ---- CRC32C, to re-seal a shard block after editing it -----------------------------------------

_T = []
for i in range(256):
    v = i
    for _ in range(8):
        v = (v >> 1) ^ 0x82F63B78 if v & 1 else v >> 1
    _T.append(v)


def crc32c(data):
    v = 0xFFFFFFFF
    for b in data:
        v = _T[(v ^ b) & 0xFF] ^ (v >> 8)
    return v ^ 0xFFFFFFFF


def sql_one(srv, statement_pg, statement_sqlite, args=()):
    """One row of the server's own metadata, on either backend."""
    if postgres():
        out = pg_cluster().sql(statement_pg, db=srv.metadata_db()).stdout.strip()
        return out.split("|") if out else None
    con = sqlite3.connect(str(Path(srv.data_dir) / "meta.db"))
    try:
        return con.execute(statement_sqlite, args).fetchone()
    finally:
        con.close()


def row_of(srv, key):
    """(version id, layout) of the current version of key (ASCII)."""
    r = sql_one(srv, f"SELECT version_id, layout FROM objects WHERE key = convert_to('{key}', 'UTF8')",
                "SELECT version_id, layout FROM objects WHERE CAST(key AS TEXT) = ?", (key,))
    assert r, f"no row for {key}"
    return r[0], r[1]


def shard_of(srv, c, bucket, key):
    """The shard file of a 1+0 object: its version id names it."""
    vid, layout = row_of(srv, key)
    assert layout.startswith("1+0:") and layout.endswith(":s"), layout
    files = [p for p in Path(srv.data_dir).rglob(f"{vid}.0")]
    assert len(files) == 1, files
    return files[0], int(layout.split(":")[1])


def blocks_of(raw, block):
    """[crc32c | block]... -> list of block payloads."""
    out, off = [], 0
    while off < len(raw):
        n = min(block, len(raw) - off - 4)
        out.append(bytearray(raw[off + 4:off + 4 + n]))
        off += 4 + n
    return out


def join_blocks(blocks):
    return b"".join(struct.pack("<I", crc32c(bytes(b))) + bytes(b) for b in blocks)


# ---- SSE-C ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 5000, PKG - 1, PKG, PKG + 1, 3 * PKG + 77, 2 * 1024 * 1024 + 3])
def test_sse_c_round_trip(c, size):
    b = new_bucket(c)
    data = payload(size, size)
    r = c.put_object(Bucket=b, Key="k", Body=data, **ckey())
    assert r["SSECustomerAlgorithm"] == "AES256"
    assert r["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(ckey()["SSECustomerKey"]).digest()).decode()
    g = c.get_object(Bucket=b, Key="k", **ckey())
    assert g["Body"].read() == data
    assert g["SSECustomerAlgorithm"] == "AES256"
    h = c.head_object(Bucket=b, Key="k", **ckey())
    assert h["ContentLength"] == size
    # ranges across package boundaries
    for start, end in [(0, 0), (PKG - 2, PKG + 2), (size // 2, size - 1), (size - 1, size - 1)]:
        if size == 0 or start > end or end >= size or start < 0:
            continue
        g = c.get_object(Bucket=b, Key="k", Range=f"bytes={start}-{end}", **ckey())
        assert g["Body"].read() == data[start:end + 1], (start, end)
    lst = c.list_objects_v2(Bucket=b)["Contents"]
    assert lst[0]["Size"] == size


def test_sse_c_needs_the_key(c):
    b = new_bucket(c)
    c.put_object(Bucket=b, Key="k", Body=payload(100000), **ckey())
    for call in (c.get_object, c.head_object):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(Bucket=b, Key="k")
        assert err_code(e.value)[1] == 400
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(Bucket=b, Key="k", **ckey(b"wrong"))
        assert err_code(e.value)[1] == 403
    # a plain object refuses a customer key
    c.put_object(Bucket=b, Key="plain", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket=b, Key="plain", **ckey())
    assert err_code(e.value) == ("InvalidRequest", 400)


def test_sse_c_bad_headers(srv, c):
    b = new_bucket(c)
    key = ckey()["SSECustomerKey"]
    cases = [
        ({"x-amz-server-side-encryption-customer-algorithm": "AES128",
          "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
          "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode()},
         "InvalidEncryptionAlgorithmError"),
        ({"x-amz-server-side-encryption-customer-algorithm": "AES256",
          "x-amz-server-side-encryption-customer-key": base64.b64encode(key[:16]).decode(),
          "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key[:16]).digest()).decode()},
         "InvalidArgument"),
        ({"x-amz-server-side-encryption-customer-algorithm": "AES256",
          "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
          "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()},
         "InvalidArgument"),
        ({"x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode()}, "InvalidArgument"),
        ({"x-amz-server-side-encryption": "AES512"}, "InvalidArgument"),
        ({"x-amz-server-side-encryption": "aws:kms:dsse"}, "NotImplemented"),
        ({"x-amz-server-side-encryption": "AES256", "x-amz-server-side-encryption-aws-kms-key-id": "k1"},
         "InvalidArgument"),
    ]
    for headers, code in cases:
        r = srv.request("PUT", f"/{b}/bad", body=b"data", headers=headers)
        assert r.status == (501 if code == "NotImplemented" else 400), (headers, r.status, r.body)
        assert r.error_code == code, (headers, r.body)
    assert "Contents" not in c.list_objects_v2(Bucket=b)


def test_sse_c_refused_over_plain_http(make_server):
    s = make_server()
    cl = s.client()
    b = new_bucket(cl)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cl.put_object(Bucket=b, Key="k", Body=b"x", **ckey())
    assert err_code(e.value) == ("InvalidRequest", 400)
    assert "Contents" not in cl.list_objects_v2(Bucket=b)


def test_sse_c_multipart_and_part_reupload(c):
    b = new_bucket(c)
    up = c.create_multipart_upload(Bucket=b, Key="mp", **ckey())
    assert up["SSECustomerAlgorithm"] == "AES256"
    p1 = payload(5 * 1024 * 1024 + 11, 1)
    p2 = payload(300000, 2)
    # a part without the key, or with another, is refused
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=p1)
    assert err_code(e.value)[1] == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=p1, **ckey(b"other"))
    assert err_code(e.value)[1] == 403
    # part 1 uploaded twice: the second is sealed under a key of its own
    c.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=payload(5 * 1024 * 1024 + 11, 9),
                  **ckey())
    e1 = c.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=p1, **ckey())["ETag"]
    e2 = c.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=2, Body=p2, **ckey())["ETag"]
    c.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                           {"PartNumber": 2, "ETag": e2}]})
    whole = p1 + p2
    assert c.get_object(Bucket=b, Key="mp", **ckey())["Body"].read() == whole
    start = len(p1) - 100
    g = c.get_object(Bucket=b, Key="mp", Range=f"bytes={start}-{start + 199}", **ckey())
    assert g["Body"].read() == whole[start:start + 200]
    assert c.get_object(Bucket=b, Key="mp", PartNumber=2, **ckey())["Body"].read() == p2
    with pytest.raises(botocore.exceptions.ClientError):
        c.get_object(Bucket=b, Key="mp")


def test_sse_c_copies(c):
    b = new_bucket(c)
    data = payload(200000, 5)
    small = payload(100, 6)
    c.put_object(Bucket=b, Key="src", Body=data, **ckey())
    c.put_object(Bucket=b, Key="small", Body=small, **ckey())
    # without the source's key the copy is refused
    with pytest.raises(botocore.exceptions.ClientError):
        c.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"})
    # SSE-C -> plain, SSE-C -> another SSE-C key, plain -> SSE-C, inline and not
    for key in ("src", "small"):
        want = data if key == "src" else small
        c.copy_object(Bucket=b, Key=f"{key}-plain", CopySource={"Bucket": b, "Key": key}, **copy_ckey())
        assert c.get_object(Bucket=b, Key=f"{key}-plain")["Body"].read() == want
        c.copy_object(Bucket=b, Key=f"{key}-k2", CopySource={"Bucket": b, "Key": key}, **copy_ckey(),
                      **ckey(b"k2"))
        assert c.get_object(Bucket=b, Key=f"{key}-k2", **ckey(b"k2"))["Body"].read() == want
        with pytest.raises(botocore.exceptions.ClientError):
            c.get_object(Bucket=b, Key=f"{key}-k2", **ckey())
        c.copy_object(Bucket=b, Key=f"{key}-back", CopySource={"Bucket": b, "Key": f"{key}-plain"}, **ckey(b"k3"))
        assert c.get_object(Bucket=b, Key=f"{key}-back", **ckey(b"k3"))["Body"].read() == want
    # re-encrypting an object in place (a copy onto itself changing only its encryption)
    c.copy_object(Bucket=b, Key="src", CopySource={"Bucket": b, "Key": "src"}, **copy_ckey(), **ckey(b"new"))
    assert c.get_object(Bucket=b, Key="src", **ckey(b"new"))["Body"].read() == data
    # UploadPartCopy from an SSE-C source into an SSE-C upload
    up = c.create_multipart_upload(Bucket=b, Key="mpc", **ckey(b"up"))
    pc = c.upload_part_copy(Bucket=b, Key="mpc", UploadId=up["UploadId"], PartNumber=1,
                            CopySource={"Bucket": b, "Key": "src"}, CopySourceRange="bytes=10-150009",
                            **copy_ckey(b"new"), **ckey(b"up"))
    c.complete_multipart_upload(Bucket=b, Key="mpc", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": pc["CopyPartResult"]["ETag"]}]})
    assert c.get_object(Bucket=b, Key="mpc", **ckey(b"up"))["Body"].read() == data[10:150010]


def test_sse_c_stored_bytes_are_not_plaintext(srv, c):
    b = new_bucket(c)
    marker = b"PLAINTEXT-MARKER-" * 4000
    c.put_object(Bucket=b, Key="big", Body=marker, **ckey())
    c.put_object(Bucket=b, Key="small", Body=marker[:2000], **ckey())
    for p in Path(srv.data_dir).rglob("*"):
        if p.is_file():
            assert b"PLAINTEXT-MARKER-" not in p.read_bytes(), p
    # the key is not stored either
    key = ckey()["SSECustomerKey"]
    for p in Path(srv.data_dir).rglob("*"):
        if p.is_file():
            raw = p.read_bytes()
            assert key not in raw and base64.b64encode(key) not in raw, p
    srv.stop_and_fsck()


def test_post_object_sse_c(srv, c):
    from test_post_object import err, post, presigned
    b = new_bucket(c)
    key = ckey()["SSECustomerKey"]
    f = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
         "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
         "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode()}
    for name, body in (("small", payload(1000, 1)), ("big", payload(300000, 2))):
        p = presigned(c, b, name, fields=f, conditions=[{k: v} for k, v in f.items()])
        r = post(srv, b, p["fields"], body)
        assert r.status_code == 204, r.text
        assert r.headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
        assert c.get_object(Bucket=b, Key=name, **ckey())["Body"].read() == body
        with pytest.raises(botocore.exceptions.ClientError):
            c.get_object(Bucket=b, Key=name)
    bad = dict(f, **{"x-amz-server-side-encryption-customer-algorithm": "DES"})
    p = presigned(c, b, "bad", fields=bad, conditions=[{k: v} for k, v in bad.items()])
    r = post(srv, b, p["fields"], b"x")
    assert r.status_code == 400 and err(r)[0] == "InvalidEncryptionAlgorithmError"
    assert "Contents" not in c.list_objects_v2(Bucket=b, Prefix="bad")


# ---- tamper tests: the stored bytes edited under the shard's CRCs ------------------------------

def tamper(srv, c, edit, size=5 * PKG + 1000):
    """Stores a sealed object, stops the server, edits its stored stream
    (edit(stream) -> stream, on the concatenated block payloads, CRCs
    fixed after), restarts it and returns (bucket, data)."""
    b = new_bucket(c)
    data = payload(size, 42)
    c.put_object(Bucket=b, Key="t", Body=data, **ckey())
    path, block = shard_of(srv, c, b, "t")
    srv.stop()
    raw = path.read_bytes()
    blocks = blocks_of(raw, block)
    stream = bytearray(b"".join(bytes(x) for x in blocks))
    assert len(stream) == size + TAG * ((size + PKG - 1) // PKG)
    stream = edit(stream)
    blocks = [stream[i:i + block] for i in range(0, len(stream), block)]
    path.write_bytes(join_blocks(blocks))
    srv.start()
    return b, data


def assert_refused(srv, c, b, data, first_bad_pkg):
    """Every read that needs the damaged package fails; none returns bytes
    that differ from what was written."""
    cl = srv.client()
    # a range inside the damaged package: a clean 500 before any byte
    at = first_bad_pkg * PKG + 10
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cl.get_object(Bucket=b, Key="t", Range=f"bytes={at}-{at + 100}", **ckey())
    assert err_code(e.value) == ("InternalError", 500)
    # the whole object: either refused up front or cut short, never wrong
    got = b""
    try:
        body = cl.get_object(Bucket=b, Key="t", **ckey())["Body"]
        got = body.read()
    except (botocore.exceptions.ClientError, botocore.exceptions.IncompleteReadError,
            botocore.exceptions.ResponseStreamingError, ConnectionError):
        pass
    except Exception as ex:  # urllib3's ProtocolError and friends, depending on the version
        assert "IncompleteRead" in repr(ex) or "Connection" in repr(ex), repr(ex)
    assert got != data
    assert data.startswith(got[:len(got)]) or got == b"", "bytes that were never written were returned"
    assert len(got) <= first_bad_pkg * PKG
    # packages before the damage still read
    if first_bad_pkg > 0:
        g = cl.get_object(Bucket=b, Key="t", Range="bytes=0-99", **ckey())["Body"].read()
        assert g == data[:100]
    assert "do not authenticate" in srv.log_text() or "does not authenticate" in srv.log_text()


def test_tamper_flipped_byte(srv, c):
    def edit(s):
        s[2 * (PKG + TAG) + 500] ^= 0x01
        return s
    b, data = tamper(srv, c, edit)
    assert_refused(srv, c, b, data, 2)


def test_tamper_flipped_tag(srv, c):
    def edit(s):
        s[(PKG + TAG) + PKG + 3] ^= 0x80  # in package 1's tag
        return s
    b, data = tamper(srv, c, edit)
    assert_refused(srv, c, b, data, 1)


def test_tamper_swapped_packages(srv, c):
    def edit(s):
        n = PKG + TAG
        p1, p3 = bytes(s[n:2 * n]), bytes(s[3 * n:4 * n])
        s[n:2 * n], s[3 * n:4 * n] = p3, p1
        return s
    b, data = tamper(srv, c, edit)
    assert_refused(srv, c, b, data, 1)


def test_tamper_truncated_last_package(srv, c):
    # The stream ends early: the last package is dropped and its length
    # given to a copy of the one before (so the shard keeps the length its
    # geometry wants, and the data layer sees no damage).
    def edit(s):
        n = PKG + TAG
        last = len(s) - 5 * n
        return s[:5 * n] + s[4 * n:4 * n + last]
    b, data = tamper(srv, c, edit)
    assert_refused(srv, c, b, data, 5)


def test_tamper_packages_from_another_object(srv, c):
    b = new_bucket(c)
    other = payload(5 * PKG + 1000, 7)
    c.put_object(Bucket=b, Key="other", Body=other, **ckey())
    opath, block = shard_of(srv, c, b, "other")
    ostream = b"".join(bytes(x) for x in blocks_of(opath.read_bytes(), block))

    def edit(s):
        n = PKG + TAG
        s[0:n] = ostream[0:n]  # same key, same index: only the per-object data key tells them apart
        return s
    b2, data = tamper(srv, c, edit)
    assert_refused(srv, c, b2, data, 0)


def test_tamper_inline_object(srv, c):
    b = new_bucket(c)
    data = payload(3000, 3)
    c.put_object(Bucket=b, Key="small", Body=data, **ckey())
    srv.stop()
    vid = row_of(srv, "small")[0]
    if postgres():
        hexblob = pg_cluster().sql(f"SELECT encode(data, 'hex') FROM object_data WHERE version_id = '{vid}'",
                                   db=srv.metadata_db()).stdout.strip()
        blob = bytes.fromhex(hexblob)
    else:
        blob = sql_one(srv, "", "SELECT data FROM object_data WHERE version_id = ?", (vid,))[0]
    assert len(blob) == len(data) + TAG and data not in blob
    blob = bytearray(blob)
    blob[100] ^= 0x04
    if postgres():
        pg_cluster().sql(f"UPDATE object_data SET data = decode('{bytes(blob).hex()}', 'hex') WHERE version_id = '{vid}'",
                         db=srv.metadata_db())
    else:
        con = sqlite3.connect(str(Path(srv.data_dir) / "meta.db"))
        con.execute("UPDATE object_data SET data = ? WHERE version_id = ?", (bytes(blob), vid))
        con.commit()
        con.close()
    srv.start()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        srv.client().get_object(Bucket=b, Key="small", **ckey())
    assert err_code(e.value) == ("InternalError", 500)


# ---- erasure coding, healing and fsck work on sealed bytes ---------------------------------------

def test_sealed_objects_heal_from_parity(make_server, tmp_path):
    from test_erasure import K, metrics, put_ec, shard_files, start_ec, wait_healed, wait_metric
    srv, drives = start_ec(make_server, tmp_path, env={"CAIRN_SSE_C_ALLOW_INSECURE": "true"})
    cl = srv.client()
    b = new_bucket(cl)
    data = payload(40 * 4096 + 3 * PKG + 5, 11)
    before = shard_files(drives)
    cl.put_object(Bucket=b, Key="sealed", Body=data, **ckey())
    new = [v for v in shard_files(drives) if v not in before]
    assert len(new) == 1
    shards = shard_files(drives)[new[0]]
    saved = {i: p.read_bytes() for i, p in shards.items()}
    assert all(b"PLAINTEXT" not in v for v in saved.values())
    m0 = metrics(srv)
    shards[0].unlink()
    shards[K + 1].unlink()
    assert cl.get_object(Bucket=b, Key="sealed", **ckey())["Body"].read() == data
    g = cl.get_object(Bucket=b, Key="sealed", Range=f"bytes={PKG - 7}-{2 * PKG + 9}", **ckey())
    assert g["Body"].read() == data[PKG - 7:2 * PKG + 10]
    wait_healed([(shards[0], saved[0]), (shards[K + 1], saved[K + 1])])
    wait_metric(srv, "healed_shards", m0["healed_shards"] + 2)
    assert metrics(srv)["heal_failures"] == 0
    assert cl.get_object(Bucket=b, Key="sealed", **ckey())["Body"].read() == data
    srv.stop_and_fsck()


# ---- SSE-S3 and SSE-KMS -----------------------------------------------------------------------------

def sse_member(srv, key):
    """The stored cairn-sse member of key's current version, split."""
    if postgres():
        hj = pg_cluster().sql(f"SELECT convert_from(headers_json, 'UTF8') FROM objects WHERE key = convert_to('{key}', 'UTF8')",
                              db=srv.metadata_db()).stdout.strip()
    else:
        hj = sql_one(srv, "", "SELECT headers_json FROM objects WHERE CAST(key AS TEXT) = ?", (key,))[0]
    import json
    return json.loads(hj)["cairn-sse"].split(":")


@pytest.mark.parametrize("size", [0, 3000, 3 * PKG + 5, 1024 * 1024 + 1])
def test_sse_s3_round_trip(srv, c, size):
    b = new_bucket(c)
    data = payload(size, size + 1)
    r = c.put_object(Bucket=b, Key="k", Body=data, ServerSideEncryption="AES256")
    assert r["ServerSideEncryption"] == "AES256"
    g = c.get_object(Bucket=b, Key="k")
    assert g["ServerSideEncryption"] == "AES256" and g["Body"].read() == data
    assert c.head_object(Bucket=b, Key="k")["ServerSideEncryption"] == "AES256"
    if size > 10:
        g = c.get_object(Bucket=b, Key="k", Range=f"bytes=3-{size - 2}")
        assert g["Body"].read() == data[3:size - 1]
    m = sse_member(srv, "k")
    assert m[:4] == ["v1", "S", "cairn-sse-s3", "1"], m
    # a customer key on an SSE-S3 object is refused
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket=b, Key="k", **ckey())
    assert err_code(e.value) == ("InvalidRequest", 400)


def test_bucket_default_encryption_applies_to_every_write(srv, c):
    b = new_bucket(c)
    srv.admin("kms", "key", "create", "--id", "bk")
    c.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "bk"},
         "BucketKeyEnabled": True}]})
    big, small = payload(200000, 1), payload(10, 2)
    r = c.put_object(Bucket=b, Key="big", Body=big)
    assert r["ServerSideEncryption"] == "aws:kms" and r["SSEKMSKeyId"] == "bk" and r["BucketKeyEnabled"]
    c.put_object(Bucket=b, Key="small", Body=small)
    up = c.create_multipart_upload(Bucket=b, Key="mp")
    assert up["ServerSideEncryption"] == "aws:kms"
    p = payload(5 * 1024 * 1024, 3)
    e1 = c.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=p)
    assert e1["ServerSideEncryption"] == "aws:kms"
    c.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up["UploadId"],
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]}]})
    c.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "big"})
    for k, want in (("big", big), ("small", small), ("mp", p), ("copy", big)):
        g = c.get_object(Bucket=b, Key=k)
        assert g["ServerSideEncryption"] == "aws:kms" and g["SSEKMSKeyId"] == "bk", k
        assert g["Body"].read() == want, k
        assert sse_member(srv, k)[1:3] == ["K", "bk"], k
    # the request's own choice wins over the default
    c.put_object(Bucket=b, Key="s3", Body=small, ServerSideEncryption="AES256")
    assert c.head_object(Bucket=b, Key="s3")["ServerSideEncryption"] == "AES256"
    c.put_object(Bucket=b, Key="c", Body=small, **ckey())
    assert c.get_object(Bucket=b, Key="c", **ckey())["Body"].read() == small
    # without the default, writes are plain again
    c.delete_bucket_encryption(Bucket=b)
    c.put_object(Bucket=b, Key="plain", Body=small)
    assert "ServerSideEncryption" not in c.head_object(Bucket=b, Key="plain")
    srv.stop_and_fsck()


def test_sse_kms_keys_disable_enable_unknown(srv, c):
    b = new_bucket(c)
    srv.admin("kms", "key", "create", "--id", "app")
    data = payload(150000, 4)
    r = c.put_object(Bucket=b, Key="k", Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId="app")
    assert r["SSEKMSKeyId"] == "app"
    arn = "arn:aws:kms:us-east-1:000000000000:key/app"
    c.put_object(Bucket=b, Key="arn", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=arn)
    assert c.head_object(Bucket=b, Key="arn")["SSEKMSKeyId"] == "app"
    for bad in ("nope", "alias/app", "arn:aws:s3:::bucket/app"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            c.put_object(Bucket=b, Key="bad", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=bad)
        assert err_code(e.value) == ("KMS.NotFoundException", 400), bad
    srv.admin("kms", "key", "disable", "app")
    deadline_ok = lambda: _code_of(lambda: c.get_object(Bucket=b, Key="k")) == "KMS.DisabledException"
    wait_until(deadline_ok, 10, what="the disabled key refused")
    assert c.head_object(Bucket=b, Key="k")["SSEKMSKeyId"] == "app", "HEAD opens nothing"
    assert _code_of(lambda: c.put_object(Bucket=b, Key="k2", Body=b"x", ServerSideEncryption="aws:kms",
                                         SSEKMSKeyId="app")) == "KMS.DisabledException"
    # a copy of it needs its key too
    assert _code_of(lambda: c.copy_object(Bucket=b, Key="cp", CopySource={"Bucket": b, "Key": "k"})) \
        == "KMS.DisabledException"
    srv.admin("kms", "key", "enable", "app")
    wait_until(lambda: _code_of(lambda: c.get_object(Bucket=b, Key="k")) is None, 10, what="the key enabled again")
    assert c.get_object(Bucket=b, Key="k")["Body"].read() == data
    names = [o["Key"] for o in c.list_objects_v2(Bucket=b)["Contents"]]
    assert names == ["arn", "k"], names


def _code_of(call):
    try:
        r = call()
        if isinstance(r, dict) and "Body" in r:
            r["Body"].read()
        return None
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def test_rotation_rewraps_data_keys_and_master_rotation_keeps_everything_readable(srv, c):
    b = new_bucket(c)
    srv.admin("kms", "key", "create", "--id", "rot")
    objs = {"s3": (payload(100000, 5), {"ServerSideEncryption": "AES256"}),
            "kms": (payload(2000, 6), {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "rot"}),
            "ssec": (payload(90000, 7), ckey())}
    for k, (data, extra) in objs.items():
        c.put_object(Bucket=b, Key=k, Body=data, **extra)
    before = sse_member(srv, "kms")
    assert before[2:4] == ["rot", "1"]
    srv.admin("kms", "key", "rotate", "rot")
    wait_until(lambda: sse_member(srv, "kms")[3] == "2", 30, what="the re-wrap job")
    after = sse_member(srv, "kms")
    assert after[4] != before[4], "the data key was re-wrapped"
    assert c.get_object(Bucket=b, Key="kms")["Body"].read() == objs["kms"][0]
    # new writes wrap under the new version once the gateway's key row is
    # fresh again (KMS_CACHE_MS, docs/kms.md)
    def new_write_is_v2():
        c.put_object(Bucket=b, Key="kms2", Body=b"new", ServerSideEncryption="aws:kms", SSEKMSKeyId="rot")
        return sse_member(srv, "kms2")[3] == "2"
    wait_until(new_write_is_v2, 10, what="a write under the new version")
    # the master key rotated: every key version and secret re-sealed; after
    # a restart with the new key every mode still reads
    srv.stop()
    cp = srv.admin("kms", "rotate-master")
    assert cp.returncode == 0, cp.stderr
    srv.start()
    cl = srv.client()
    for k, (data, extra) in objs.items():
        get_extra = extra if k == "ssec" else {}
        assert cl.get_object(Bucket=b, Key=k, **get_extra)["Body"].read() == data, k
    srv.stop_and_fsck()


def test_post_object_sse_s3(srv, c):
    from test_post_object import post, presigned
    b = new_bucket(c)
    f = {"x-amz-server-side-encryption": "AES256"}
    p = presigned(c, b, "form", fields=f, conditions=[f])
    r = post(srv, b, p["fields"], payload(70000, 8))
    assert r.status_code == 204 and r.headers["x-amz-server-side-encryption"] == "AES256", r.text
    assert c.head_object(Bucket=b, Key="form")["ServerSideEncryption"] == "AES256"
    assert c.get_object(Bucket=b, Key="form")["Body"].read() == payload(70000, 8)


def test_scrubber_repairs_sealed_objects(make_server, tmp_path):
    import sigv4
    from test_scrub import metric, shard_files as scrub_shards
    drives = [str(tmp_path / f"d{i}") for i in range(6)]
    srv = make_server(env={"CAIRN_DRIVES": ",".join(drives), "CAIRN_EC_BLOCK_SIZE": "4KiB",
                           "CAIRN_SCRUB_INTERVAL": "1", "CAIRN_SCRUB_RATE": "0"})
    cl = srv.client()
    b = new_bucket(cl)
    body = payload(200_000, 12)
    cl.put_object(Bucket=b, Key="scrubbed", Body=body, ServerSideEncryption="AES256")
    files = scrub_shards(drives)
    assert len(files) == 6, files
    victim = files[0]
    original = open(victim, "rb").read()
    damaged = bytearray(original)
    damaged[4 + 100] ^= 0xFF
    with open(victim, "wb") as f:
        f.write(damaged)
    before = metric(srv, "cairn_scrub_repaired_shards_total")
    wait_until(lambda: open(victim, "rb").read() == original
               and metric(srv, "cairn_scrub_repaired_shards_total") >= before + 1, 30,
               what="the scrubber to restore the sealed object's shard")
    assert cl.get_object(Bucket=b, Key="scrubbed")["Body"].read() == body
    srv.stop_and_fsck()


def test_rebalancing_moves_sealed_shards(tmp_path):
    import sigv4
    from test_membership import Cluster, all_read_back
    cl = Cluster(tmp_path)
    try:
        bucket = unique_bucket()
        assert cl.request("PUT", sigv4.object_path(bucket))[0] == 200
        objs = {}
        for i in range(20):
            data = payload(20_000 + 137 * i, 100 + i)
            st, _ = cl.request("PUT", sigv4.object_path(bucket, f"o{i}"), data,
                               headers={"x-amz-server-side-encryption": "AES256"})
            assert st == 200
            objs[f"o{i}"] = data
        total = 6 * len(objs)
        cl.add_and_rebalance(f"http://127.0.0.1:{cl.node_ports[6]}")
        assert sum(cl.shards(i) for i in range(7)) == total, "a moved shard was left behind"
        assert cl.shards(6) > 0, "nothing moved to the new node"
        all_read_back(cl, bucket, objs)
    finally:
        cl.close()


# ---- versions, crashes --------------------------------------------------------------------------------

def test_versions_keep_their_own_encryption(srv, c):
    b = new_bucket(c)
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v1 = c.put_object(Bucket=b, Key="k", Body=b"one" * 9000, ServerSideEncryption="AES256")["VersionId"]
    v2 = c.put_object(Bucket=b, Key="k", Body=b"two" * 9000, **ckey())["VersionId"]
    v3 = c.put_object(Bucket=b, Key="k", Body=b"three")["VersionId"]
    assert c.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"one" * 9000
    assert c.get_object(Bucket=b, Key="k", VersionId=v2, **ckey())["Body"].read() == b"two" * 9000
    assert _code_of(lambda: c.get_object(Bucket=b, Key="k", VersionId=v2)) == "InvalidRequest"
    assert c.get_object(Bucket=b, Key="k")["Body"].read() == b"three"
    h = c.head_object(Bucket=b, Key="k", VersionId=v1)
    assert h["ServerSideEncryption"] == "AES256"
    assert "ServerSideEncryption" not in c.head_object(Bucket=b, Key="k", VersionId=v3)
    # a delete marker, then the SSE-C version copied back as current, re-sealed under SSE-S3
    c.delete_object(Bucket=b, Key="k")
    c.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k", "VersionId": v2}, **copy_ckey(),
                  ServerSideEncryption="AES256")
    g = c.get_object(Bucket=b, Key="k")
    assert g["ServerSideEncryption"] == "AES256" and g["Body"].read() == b"two" * 9000
    srv.stop_and_fsck()


def test_kill_during_a_sealed_upload_leaves_nothing(srv, c):
    from conftest import open_put
    b = new_bucket(c)
    c.put_object(Bucket=b, Key="kept", Body=payload(300000, 1), ServerSideEncryption="AES256")  # acknowledged
    sock = open_put(srv, b, "cut", 8 * 1024 * 1024, extra_headers={"x-amz-server-side-encryption": "AES256"})
    sock.sendall(payload(3 * 1024 * 1024, 2))
    wait_until(lambda: any(p.is_file() for p in Path(srv.data_dir).rglob("tmp/*")), 10,
               what="the upload's temp shards")
    srv.kill()
    sock.close()
    srv.start()
    cl = srv.client()
    assert cl.get_object(Bucket=b, Key="kept")["Body"].read() == payload(300000, 1)
    assert [o["Key"] for o in cl.list_objects_v2(Bucket=b)["Contents"]] == ["kept"]
    srv.stop_and_fsck()


def test_a_sealed_object_past_repair_answers_500(srv, c):
    """A block whose CRC fails on a 1+0 store cannot be rebuilt: the read of a
    sealed object stops at the data layer (EIO), before any decryption."""
    b = new_bucket(c)
    data = payload(3 * PKG, 13)
    c.put_object(Bucket=b, Key="lost", Body=data, **ckey())
    path, _block = shard_of(srv, c, b, "lost")
    raw = bytearray(path.read_bytes())
    raw[4 + 10] ^= 0xFF  # inside the first block, its CRC left as it was
    path.write_bytes(bytes(raw))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        c.get_object(Bucket=b, Key="lost", **ckey())
    assert err_code(e.value) == ("InternalError", 500)
    assert "cannot be read" in e.value.response["Error"]["Message"]
    assert "do not authenticate" not in srv.log_text()
