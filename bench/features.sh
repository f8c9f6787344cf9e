#!/usr/bin/env bash
# bench/features.sh — what the rest of S3 costs requests (issue 12): 4 KiB
# PUT and GET req/s, 16 connections, on one server, into a plain bucket and
# into a bucket with versioning enabled, in the same run; the runs alternate
# between the buckets so that load from others on a shared machine hits both
# alike.  Every PUT run writes the same keys again, so the versioned bucket
# gathers a version per key per run (the plain one replaces them) and the
# GETs read keys with many versions.  Reported as medians and the ratio
# versioned/plain (target: within 10%, >= 0.9x).  A bucket with a
# 20-statement policy and ACL grants joins when policies exist (issue 12).
#
# Usage: bash bench/features.sh [BUILD_DIR]   (BENCH_QUICK=1: 3 runs of 2 s)
set -euo pipefail
BUILD=${1:-build}
CAIRN=$BUILD/cairn
LOADGEN=$BUILD/cairn-loadgen
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
SECS=$([ "$QUICK" = 1 ] && echo 2 || echo 5)
KEYS=$([ "$QUICK" = 1 ] && echo 2000 || echo 5000)
AK=benchroot SK=benchroot-secret-0123
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-features.XXXXXX")
PID=

cleanup() {
  [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  rm -rf "$T"
}
trap cleanup EXIT INT TERM
die() { echo "features bench: $*" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make build)"

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn CAIRN_SCRUB_INTERVAL=0 \
  "$CAIRN" server --listen "127.0.0.1:$PORT" --data "$T/data" >"$T/server.out" 2>"$T/server.log" &
PID=$!
wait_ready "$PORT" "$PID" "$T/server.log"
for b in plain versioned; do
  "$LOADGEN" --url "$URL" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket "$b" >/dev/null \
    || die "cannot create bucket $b"
done
# Versioning on, through the S3 API as a client turns it on.
/usr/bin/python3 - "$URL" "$AK" "$SK" <<'EOF' || die "cannot enable versioning"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
assert s3.get_bucket_versioning(Bucket="versioned")["Status"] == "Enabled"
EOF


declare -A V
lg() {  # BUCKET TAG loadgen-args...
  local b=$1 tag=$2 out; shift 2
  out=$("$LOADGEN" --url "$URL" --access-key "$AK" --secret-key "$SK" --bucket "$b" --size 4096 --concurrency 16 "$@") \
    || die "loadgen $tag on $b failed: $out"
  V[$b.$tag.rps]="${V[$b.$tag.rps]:-} $(loadgen_field rps "$out")"
  V[$b.$tag.p50]="${V[$b.$tag.p50]:-} $(loadgen_field p50_ms "$out")"
  V[$b.$tag.p99]="${V[$b.$tag.p99]:-} $(loadgen_field p99_ms "$out")"
  return 0
}

echo "== features overhead: 4 KiB objects, 16 connections, ${SECS}s or $KEYS PUTs a run over the same keys, $RUNS runs, buckets alternating" >&2
for b in plain versioned; do
  lg "$b" warm --op put --requests "$KEYS" --keys "$KEYS" --prefix hot/
done
for r in $(seq "$RUNS"); do
  for b in plain versioned; do
    sync
    lg "$b" put --op put --duration "$SECS" --requests "$KEYS" --keys "$KEYS" --prefix hot/
    lg "$b" get --op get --duration "$SECS" --prefix hot/ --keys "$KEYS"
  done
done
versions=$(/usr/bin/python3 - "$URL" "$AK" "$SK" <<'EOF' 2>/dev/null || echo "?"
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
n = 0
for page in s3.get_paginator("list_object_versions").paginate(Bucket="versioned", Prefix="hot/0000000000"):
    n += len(page.get("Versions", []))
print(n)
EOF
)

echo
echo "S3 features overhead (4 KiB, c=16, median of $RUNS alternating runs; SQLite metadata, fsync on)"
printf '%-16s %12s %12s %8s %8s   %-22s %-22s\n' metric "versioned" "plain" ratio target "versioned p50/p99 ms" "plain p50/p99 ms"
for op in put get; do
  on=$(median2 <<<"${V[versioned.$op.rps]}") off=$(median2 <<<"${V[plain.$op.rps]}")
  rt=$(ratio "$on" "$off")
  note=$(awk -v r="${rt%x}" 'BEGIN { if (r == "-") print ""; else print (r >= 0.9) ? "met" : "below" }')
  printf '%-16s %12s %12s %8s %8s   %-22s %-22s %s\n' "4 KiB ${op^^} req/s" "$on" "$off" "$rt" ">= 0.9x" \
    "$(median2 <<<"${V[versioned.$op.p50]}")/$(median2 <<<"${V[versioned.$op.p99]}")" \
    "$(median2 <<<"${V[plain.$op.p50]}")/$(median2 <<<"${V[plain.$op.p99]}")" "$note"
done
echo "  versions of key hot/0000000000 in the versioned bucket at the end: $versions"
