#!/usr/bin/env bash
# bench/sse.sh BUILD — SSE-S3 against plain storage (issue 13), in the same
# run, on one server: a bucket whose default encryption is AES256 (every
# object sealed, docs/encryption.md) and a plain bucket.  The runs
# alternate between the buckets, so load from others on a shared machine
# hits both alike:
#   - 4 KiB PUT and GET req/s, 16 connections;
#   - 64 MiB PUT and GET MB/s, 2 connections.
# Reported as medians and the ratio sse/plain (targets: >= 0.9x for 4 KiB,
# >= 0.8x for 64 MiB).  BENCH_QUICK=1: 3 runs, shorter.
set -euo pipefail
BUILD=${1:-build}
CAIRN=$BUILD/cairn
LOADGEN=$BUILD/cairn-loadgen
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
SECS=$([ "$QUICK" = 1 ] && echo 2 || echo 5)
KEYS=$([ "$QUICK" = 1 ] && echo 1000 || echo 5000)
BIG_N=$([ "$QUICK" = 1 ] && echo 2 || echo 8)
AK=benchroot SK=benchroot-secret-0123
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-sse.XXXXXX")
PID=

cleanup() {
  [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  rm -rf "$T"
}
trap cleanup EXIT INT TERM
die() { echo "sse bench: $*" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make build)"

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn CAIRN_SCRUB_INTERVAL=0 \
  "$CAIRN" server --listen "127.0.0.1:$PORT" --data "$T/data" >"$T/server.out" 2>"$T/server.log" &
PID=$!
wait_ready "$PORT" "$PID" "$T/server.log"
for b in plain sse; do
  "$LOADGEN" --url "$URL" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket "$b" >/dev/null \
    || die "cannot create bucket $b"
done
/usr/bin/python3 - "$URL" "$AK" "$SK" <<'EOF' || die "cannot set the bucket's default encryption"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
s3.put_bucket_encryption(Bucket="sse", ServerSideEncryptionConfiguration={
    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
s3.put_object(Bucket="sse", Key="probe", Body=b"x" * 100000)
h = s3.head_object(Bucket="sse", Key="probe")
assert h["ServerSideEncryption"] == "AES256", h
EOF

declare -A V
lg() {  # BUCKET TAG FIELD loadgen-args...
  local b=$1 tag=$2 field=$3 out; shift 3
  out=$("$LOADGEN" --url "$URL" --access-key "$AK" --secret-key "$SK" --bucket "$b" "$@") \
    || die "loadgen $tag on $b failed: $out"
  V[$b.$tag]="${V[$b.$tag]:-} $(loadgen_field "$field" "$out")"
  return 0
}

echo "== sse overhead: SSE-S3 (bucket default) against plain, $RUNS alternating runs" >&2
for b in plain sse; do
  lg "$b" warm rps --op put --size 4096 --concurrency 16 --requests "$KEYS" --keys "$KEYS" --prefix small/
  lg "$b" warmbig mbps --op put --size $((64 << 20)) --concurrency 2 --requests 2 --keys 2 --prefix big/
done
for r in $(seq "$RUNS"); do
  for b in plain sse; do
    sync
    lg "$b" put4k rps --op put --size 4096 --concurrency 16 --duration "$SECS" --requests "$KEYS" --keys "$KEYS" --prefix small/
    lg "$b" get4k rps --op get --size 4096 --concurrency 16 --duration "$SECS" --keys "$KEYS" --prefix small/
    lg "$b" put64m mbps --op put --size $((64 << 20)) --concurrency 2 --requests "$BIG_N" --keys 2 --prefix big/
    lg "$b" get64m mbps --op get --size $((64 << 20)) --concurrency 2 --requests "$BIG_N" --keys 2 --prefix big/
  done
done

echo
echo "SSE-S3 against plain storage (median of $RUNS alternating runs; one server, SQLite metadata, fsync on)"
printf '%-26s %10s %10s %8s %8s\n' metric sse plain ratio target
row() {  # TAG LABEL TARGET
  local on off rt note
  on=$(median2 <<<"${V[sse.$1]}") off=$(median2 <<<"${V[plain.$1]}")
  rt=$(ratio "$on" "$off")
  note=$(awk -v r="${rt%x}" -v t="$3" 'BEGIN { if (r == "-") print ""; else print (r >= t) ? "met" : "below" }')
  printf '%-26s %10s %10s %8s %8s %s\n' "$2" "$on" "$off" "$rt" ">= ${3}x" "$note"
}
row put4k "4 KiB PUT req/s (c=16)" 0.9
row get4k "4 KiB GET req/s (c=16)" 0.9
row put64m "64 MiB PUT MB/s (c=2)" 0.8
row get64m "64 MiB GET MB/s (c=2)" 0.8
