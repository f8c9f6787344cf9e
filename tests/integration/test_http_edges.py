"""Edges of the HTTP layer (src/http/server.c) seen through the S3 API: a
request refused in the middle of a body sent with Transfer-Encoding: chunked.

Such a body has no length to drain against, and libmicrohttpd cannot send a
response while a body is still arriving; the server reads and drops the rest
(within its drain limit) so the client gets the S3 error instead of a reset
connection.  Requests are written by hand on raw sockets, signed with SigV4
(UNSIGNED-PAYLOAD, since the body is streamed in HTTP chunks).
"""

import socket

import sigv4
from conftest import read_socket_response, unique_bucket


def chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def signed_head(server, method, path, query, extra):
    ak, sk = server.root
    headers = {"Host": server.host, **extra}
    headers, _sig, _date = sigv4.sign_request(method, path, query, headers, ak, sk, sigv4.UNSIGNED_PAYLOAD)
    q = sigv4.wire_query(query)
    lines = [f"{method} {path}{'?' + q if q else ''} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_chunked_xml_body_over_the_limit_gets_its_s3_error(server, s3):
    bucket = unique_bucket("chunk")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    # A DeleteObjects body larger than the 4 MiB an XML body may have, in
    # HTTP chunks: refused once the limit is passed, mid-body.
    body = b"<Delete>" + b" " * (4 * 1024 * 1024) + b"<Object><Key>kept</Key></Object></Delete>"
    head = signed_head(server, "POST", sigv4.object_path(bucket), {"delete": ""},
                       {"Transfer-Encoding": "chunked", "Content-Type": "application/xml"})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(head + chunked(body, 256 * 1024))
        r = read_socket_response(sock, "POST")
    finally:
        sock.close()
    assert r.status == 400, r
    assert r.error_code == "MalformedXML", r
    assert r.header("x-amz-request-id"), r
    # Nothing was deleted.
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"x"


def test_chunked_xml_body_within_the_limit_is_served(server, s3):
    bucket = unique_bucket("chunk")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="gone", Body=b"x")
    body = b"<Delete><Quiet>true</Quiet><Object><Key>gone</Key></Object></Delete>"
    import base64
    import hashlib
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    head = signed_head(server, "POST", sigv4.object_path(bucket), {"delete": ""},
                       {"Transfer-Encoding": "chunked", "Content-MD5": md5})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(head + chunked(body, 16))
        r = read_socket_response(sock, "POST")
    finally:
        sock.close()
    assert r.status == 200, r
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
