#!/usr/bin/env bash
# bench/features.sh — what the rest of S3 costs requests (issue 12): 4 KiB
# PUT and GET req/s, 16 connections, on one server, into a plain bucket and
# into a bucket with versioning enabled, in the same run; the runs alternate
# between the buckets so that load from others on a shared machine hits both
# alike.  Every PUT run writes the same keys again, so the versioned bucket
# gathers a version per key per run (the plain one replaces them) and the
# GETs read keys with many versions.  Reported as medians and the ratio
# versioned/plain (target: within 10%, >= 0.9x).  A third bucket has a
# 20-statement bucket policy (allows and denies for other users and
# prefixes, conditions on the source address, one statement for the
# caller) and ACL grants to other users: every request on it is judged by
# the whole policy (docs/access-control.md), reported as policy/plain.
# The requests are a user's, not root's (root is never judged), and the
# user owns the three buckets.
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
user=$("$CAIRN" admin --data "$T/data" user create benchuser) || die "cannot create the bench user"
AK=$(awk -F': ' '$1 == "access_key_id" { print $2 }' <<<"$user")
SK=$(awk -F': ' '$1 == "secret_access_key" { print $2 }' <<<"$user")
[ -n "$AK" ] && [ -n "$SK" ] || die "no key in: $user"
for b in plain versioned; do
  "$LOADGEN" --url "$URL" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket "$b" >/dev/null \
    || die "cannot create bucket $b"
done
# Versioning on, the policy and the grants, through the S3 API as a client
# sets them.
/usr/bin/python3 - "$URL" "$AK" "$SK" <<'EOF' || die "cannot configure the buckets"
import json, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3],
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
assert s3.get_bucket_versioning(Bucket="versioned")["Status"] == "Enabled"
s3.create_bucket(Bucket="policy", ObjectOwnership="ObjectWriter")
me = s3.list_buckets()["Owner"]["ID"]
arn = "arn:aws:s3:::policy"
stmts = []
for i in range(10):   # other users, other prefixes
    stmts.append({"Sid": f"Team{i}", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{1000 + i}:user/team{i}"},
                  "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{arn}/team{i}/*"})
for i in range(5):    # denies whose conditions do not hold from here
    stmts.append({"Sid": f"Fence{i}", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                  "Resource": [arn, f"{arn}/*"], "Condition": {"NotIpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}}})
for i in range(4):    # public reads of other prefixes
    stmts.append({"Sid": f"Public{i}", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                  "Resource": f"{arn}/public{i}/*", "Condition": {"StringLike": {"aws:UserAgent": "*"}}})
stmts.append({"Sid": "Me", "Effect": "Allow", "Principal": {"AWS": me}, "Action": "s3:*", "Resource": [arn, f"{arn}/hot/*"]})
assert len(stmts) == 20
s3.put_bucket_policy(Bucket="policy", Policy=json.dumps({"Version": "2012-10-17", "Statement": stmts}))
s3.put_bucket_acl(Bucket="policy", GrantRead='id="1001", id="1002"', GrantWrite='id="1003"', GrantFullControl=f'id="{me}"')
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
for b in plain versioned policy; do
  lg "$b" warm --op put --requests "$KEYS" --keys "$KEYS" --prefix hot/
done
for r in $(seq "$RUNS"); do
  for b in plain versioned policy; do
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
printf '%-26s %10s %10s %8s %8s   %-20s %-20s\n' metric "bucket" "plain" ratio target "bucket p50/p99 ms" "plain p50/p99 ms"
for b in versioned policy; do
  for op in put get; do
    on=$(median2 <<<"${V[$b.$op.rps]}") off=$(median2 <<<"${V[plain.$op.rps]}")
    rt=$(ratio "$on" "$off")
    note=$(awk -v r="${rt%x}" 'BEGIN { if (r == "-") print ""; else print (r >= 0.9) ? "met" : "below" }')
    printf '%-26s %10s %10s %8s %8s   %-20s %-20s %s\n' "$b 4 KiB ${op^^} req/s" "$on" "$off" "$rt" ">= 0.9x" \
      "$(median2 <<<"${V[$b.$op.p50]}")/$(median2 <<<"${V[$b.$op.p99]}")" \
      "$(median2 <<<"${V[plain.$op.p50]}")/$(median2 <<<"${V[plain.$op.p99]}")" "$note"
  done
done
echo "  versions of key hot/0000000000 in the versioned bucket at the end: $versions"
