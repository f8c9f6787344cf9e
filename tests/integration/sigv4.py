"""AWS Signature Version 4 for hand-built requests in the integration tests.

boto3 signs ordinary requests; the tests that need something boto3 will not
produce (a skewed clock, a tampered presigned URL, an aws-chunked streaming
body with per-chunk signatures, a wrong x-amz-content-sha256) build them with
these helpers and send them with http.client.  The algorithm follows the AWS
documentation "Signature Version 4 signing process" and "Signature
Calculations for the Authorization Header: Transferring Payload in Multiple
Chunks": canonical request -> string to sign -> HMAC chain keyed by the secret.

Paths are passed exactly as they go on the wire (already percent-encoded);
S3 does not encode them a second time for the canonical URI.
"""

import datetime
import hashlib
import hmac
import urllib.parse

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def amz_date(offset_seconds=0):
    """Current UTC time (plus an offset) in the ISO 8601 basic form."""
    now = datetime.datetime.now(datetime.timezone.utc)
    now += datetime.timedelta(seconds=offset_seconds)
    return now.strftime("%Y%m%dT%H%M%SZ")


def uri_encode(s, keep_slash=True):
    """AWS URI encoding: unreserved A-Za-z0-9-_.~ kept, everything else %XX."""
    return urllib.parse.quote(s, safe="/~" if keep_slash else "~")


def object_path(bucket, key=None):
    """The wire path for a bucket or an object in path-style addressing."""
    if key is None:
        return "/" + bucket
    return "/" + bucket + "/" + uri_encode(key)


def normalize_query(query):
    """Turns a dict or a list of pairs into a list of (name, value-or-None)."""
    if query is None:
        return []
    if isinstance(query, dict):
        return list(query.items())
    return list(query)


def canonical_query(query):
    """Sorted, encoded name=value pairs; a bare name signs as 'name='."""
    pairs = [(uri_encode(k, False), uri_encode("" if v is None else str(v), False))
             for k, v in normalize_query(query)]
    return "&".join(k + "=" + v for k, v in sorted(pairs))


def wire_query(query):
    """The query as sent: encoded pairs, bare names kept bare (like boto3's ?delete)."""
    parts = []
    for k, v in normalize_query(query):
        if v is None:
            parts.append(uri_encode(k, False))
        else:
            parts.append(uri_encode(k, False) + "=" + uri_encode(str(v), False))
    return "&".join(parts)


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region="us-east-1", service="s3"):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def scope(date, region="us-east-1", service="s3"):
    return f"{date}/{region}/{service}/aws4_request"


def _canonical_headers(headers):
    lowered = {}
    for name, value in headers.items():
        lowered[name.lower()] = " ".join(str(value).strip().split())
    names = sorted(lowered)
    text = "".join(f"{n}:{lowered[n]}\n" for n in names)
    return text, ";".join(names)


def canonical_request(method, path, query, headers, payload_hash):
    hdr_text, signed = _canonical_headers(headers)
    text = "\n".join([method, path, canonical_query(query), hdr_text, signed, payload_hash])
    return text, signed


def sign_request(method, path, query, headers, access_key, secret, payload_hash,
                 date=None, region="us-east-1"):
    """Signs with header auth.  headers must contain Host; x-amz-date and
    x-amz-content-sha256 are added.  Every header in `headers` is signed.
    Returns (headers with Authorization, signature hex, amz_date)."""
    date = date or amz_date()
    headers = dict(headers)
    headers["x-amz-date"] = date
    headers["x-amz-content-sha256"] = payload_hash
    creq, signed = canonical_request(method, path, query, headers, payload_hash)
    sts = "\n".join([ALGORITHM, date, scope(date[:8], region),
                     hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    sig = hmac.new(signing_key(secret, date[:8], region), sts.encode("utf-8"),
                   hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"{ALGORITHM} Credential={access_key}/{scope(date[:8], region)}, "
                                f"SignedHeaders={signed}, Signature={sig}")
    return headers, sig, date


def presign(method, host, path, access_key, secret, expires=300, date=None,
            region="us-east-1", extra_query=None):
    """Returns the query string of a presigned URL (host is the only signed header)."""
    date = date or amz_date()
    query = normalize_query(extra_query) + [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope(date[:8], region)}"),
        ("X-Amz-Date", date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    creq, _ = canonical_request(method, path, query, {"host": host}, UNSIGNED_PAYLOAD)
    sts = "\n".join([ALGORITHM, date, scope(date[:8], region),
                     hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    sig = hmac.new(signing_key(secret, date[:8], region), sts.encode("utf-8"),
                   hashlib.sha256).hexdigest()
    return canonical_query(query + [("X-Amz-Signature", sig)])


def chunk_signature(secret, date, prev_signature, data, region="us-east-1"):
    """Signature of one aws-chunked chunk, chained from the previous one."""
    sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", date, scope(date[:8], region),
                     prev_signature, EMPTY_SHA256, hashlib.sha256(data).hexdigest()])
    return hmac.new(signing_key(secret, date[:8], region), sts.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def split_chunks(data, chunk_size):
    """The payload cut into chunks, followed by the final empty chunk."""
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    return chunks + [b""]


def encode_signed_chunks(chunks, secret, date, seed_signature, region="us-east-1",
                         tamper_index=None):
    """Frames chunks as STREAMING-AWS4-HMAC-SHA256-PAYLOAD.  When tamper_index is
    given, that chunk's data is altered after signing (its signature is then wrong)."""
    out = []
    prev = seed_signature
    for i, chunk in enumerate(chunks):
        sig = chunk_signature(secret, date, prev, chunk, region)
        prev = sig
        if i == tamper_index and chunk:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        out.append(b"%x;chunk-signature=%s\r\n" % (len(chunk), sig.encode()))
        out.append(chunk + b"\r\n")
    return b"".join(out)


def encoded_length(payload_len, chunk_size):
    """Content-Length of a signed aws-chunked body (the AWS documented formula)."""
    sig_part = len(";chunk-signature=") + 64 + 2 + 2  # header CRLF + data CRLF

    def one(n):
        return len("%x" % n) + sig_part + n

    full, rest = divmod(payload_len, chunk_size)
    total = full * one(chunk_size)
    if rest:
        total += one(rest)
    return total + one(0)


def encode_unsigned_trailer_chunks(chunks, trailer_name, trailer_value):
    """Frames chunks as STREAMING-UNSIGNED-PAYLOAD-TRAILER with one trailer header."""
    out = []
    for chunk in chunks:
        if not chunk:
            break
        out.append(b"%x\r\n" % len(chunk))
        out.append(chunk + b"\r\n")
    out.append(b"0\r\n")
    out.append(f"{trailer_name}:{trailer_value}\r\n\r\n".encode())
    return b"".join(out)
