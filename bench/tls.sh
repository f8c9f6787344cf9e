#!/usr/bin/env bash
# bench/tls.sh BUILD — TLS against plain HTTP (issue 13), in the same run:
# two `cairn server`s side by side, one serving HTTPS (a certificate from a
# CA made here) and one plain HTTP, each with a public 4 KiB and a 64 MiB
# object.  curl (a C client, so the client's cost is small beside the
# server's) fetches, alternating between the servers, RUNS times:
#   - 4 KiB GET: N GETs over one kept-alive connection (one curl), req/s
#   - 64 MiB GET: M GETs, MB/s
# Prints the medians and the ratio TLS / plain.  A failed transfer makes the
# run invalid and the script exit 1.  BENCH_QUICK=1: 3 runs, fewer requests.
set -euo pipefail
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CAIRN="$ROOT/$BUILD/cairn"
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
SMALL_N=$([ "$QUICK" = 1 ] && echo 1000 || echo 4000)
BIG_N=$([ "$QUICK" = 1 ] && echo 2 || echo 6)
die() { echo "tls bench: $*" >&2; exit 1; }
LOADGEN="$ROOT/$BUILD/cairn-loadgen"
. "$HERE/lib.sh"
command -v curl >/dev/null || die "curl is not installed"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/cairn-tls-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$DIR/srv.key" -out "$DIR/srv.csr" 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" > "$DIR/ext.cnf"
openssl x509 -req -in "$DIR/srv.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
  -extfile "$DIR/ext.cnf" -out "$DIR/srv.pem" 2>/dev/null

AK=benchtlsroot SK=benchtlsroot-secret-0123456789
start() { # NAME PORT [TLS]
  local name=$1 port=$2 tls=${3:-}
  local env=(CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn)
  [ -n "$tls" ] && env+=(CAIRN_TLS_CERT="$DIR/srv.pem" CAIRN_TLS_KEY="$DIR/srv.key")
  env "${env[@]}" "$CAIRN" server --listen "127.0.0.1:$port" --data "$DIR/$name" >"$DIR/$name.out" 2>"$DIR/$name.log" &
  PIDS+=($!)
}
PLAIN_PORT=$(free_port); start plain "$PLAIN_PORT"
TLS_PORT=$(free_port); start tls "$TLS_PORT" tls
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$PLAIN_PORT/health/live" >/dev/null 2>&1 &&
    curl -sf --cacert "$DIR/ca.pem" "https://127.0.0.1:$TLS_PORT/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done
/usr/bin/python3 - "$PLAIN_PORT" "$TLS_PORT" "$DIR/ca.pem" "$AK" "$SK" <<'PY' || die "setting up the objects failed"
import json, sys, boto3
from botocore.config import Config
plain, tls, ca, ak, sk = sys.argv[1:]
for url, verify in ((f"http://127.0.0.1:{plain}", None), (f"https://127.0.0.1:{tls}", ca)):
    s3 = boto3.session.Session().client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
                                        aws_secret_access_key=sk, verify=verify,
                                        config=Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="bench")
    s3.put_bucket_policy(Bucket="bench", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bench/*"}]}))
    s3.put_object(Bucket="bench", Key="small", Body=b"s" * 4096)
    s3.put_object(Bucket="bench", Key="big", Body=bytes(range(256)) * (64 * 1024 * 1024 // 256))
PY

# fetch KEY N SIZE URL CURLOPTS...: N GETs of KEY over one curl (one kept-
# alive connection); each must answer 200 with SIZE bytes.  Prints the
# requests per second.
fetch() {
  local key=$1 n=$2 size=$3 url=$4; shift 4
  local cfg="$DIR/urls.$$"
  for _ in $(seq "$n"); do echo "url = \"$url/bench/$key\""; echo "output = /dev/null"; done > "$cfg"
  local t0 t1 got
  t0=$(date +%s.%N)
  got=$(curl -s "$@" -K "$cfg" -w '%{http_code} %{size_download}\n') || die "curl failed"
  t1=$(date +%s.%N)
  [ "$(echo "$got" | grep -c "^200 $size\$")" = "$n" ] || die "a GET of $key failed"
  echo "$n $t0 $t1" | awk '{ printf "%.3f", $1 / ($3 - $2) }'
}
small_run() { fetch small "$SMALL_N" 4096 "$@" | awk '{ printf "%.0f", $1 }'; }                 # req/s
big_run() { fetch big "$BIG_N" 67108864 "$@" | awk '{ printf "%.0f", $1 * 64 * 1.048576 }'; }   # MB/s
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

PS=() TS=() PB=() TB=()
for _ in $(seq "$RUNS"); do
  PS+=("$(small_run "http://127.0.0.1:$PLAIN_PORT")")
  TS+=("$(small_run "https://127.0.0.1:$TLS_PORT" --cacert "$DIR/ca.pem")")
  PB+=("$(big_run "http://127.0.0.1:$PLAIN_PORT")")
  TB+=("$(big_run "https://127.0.0.1:$TLS_PORT" --cacert "$DIR/ca.pem")")
done
ps=$(printf '%s\n' "${PS[@]}" | median); ts=$(printf '%s\n' "${TS[@]}" | median)
pb=$(printf '%s\n' "${PB[@]}" | median); tb=$(printf '%s\n' "${TB[@]}" | median)
echo "TLS against plain HTTP (curl, one connection; median of $RUNS runs; TLS 1.3, AES-256-GCM):"
printf '  %-22s %10s %10s %8s\n' "" "plain" "TLS" "TLS/plain"
printf '  %-22s %10s %10s %7.2fx\n' "4 KiB GET req/s" "$ps" "$ts" "$(echo "$ts $ps" | awk '{ print $1 / $2 }')"
printf '  %-22s %10s %10s %7.2fx\n' "64 MiB GET MB/s" "$pb" "$tb" "$(echo "$tb $pb" | awk '{ print $1 / $2 }')"
