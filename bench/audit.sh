#!/usr/bin/env bash
# bench/audit.sh — what the audit trail costs requests (issue 10): 4 KiB PUT
# and GET req/s, 16 connections, against two cairn servers started side by
# side, one with the audit journal on (the default) and one with
# audit_enabled=false, in the same run; their runs alternate so that load
# from others on a shared machine hits both alike.  Reported as medians and
# the ratio on/off (target >= 0.9x), with the p50/p99 latencies, and then
# cairn-auditbench's in-process figures (ns per emitted event from 1, 4 and
# 16 threads; durable append p50/p99), and cairn-shipbench's end-to-end
# shipper figures on SQLite and PostgreSQL (events/s into the store, flush
# latency p50/p99, emit -> queryable p50/p99).
#
# Usage: bash bench/audit.sh [BUILD_DIR]   (BENCH_QUICK=1: 3 runs of 2 s)
set -euo pipefail
BUILD=${1:-build}
CAIRN=$BUILD/cairn
LOADGEN=$BUILD/cairn-loadgen
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
SECS=$([ "$QUICK" = 1 ] && echo 2 || echo 5)
MAXPUTS=$([ "$QUICK" = 1 ] && echo 6000 || echo 20000)
AK=benchroot SK=benchroot-secret-0123
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-audit.XXXXXX")
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT INT TERM
die() { echo "audit bench: $*" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make build)"


declare -A PORT
start() {  # NAME AUDIT_ENABLED
  local p
  p=$(free_port)
  CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn CAIRN_SCRUB_INTERVAL=0 CAIRN_AUDIT_ENABLED=$2 \
    "$CAIRN" server --listen "127.0.0.1:$p" --data "$T/$1" >"$T/$1.out" 2>"$T/$1.log" &
  PIDS+=($!)
  local pid=$!
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$T/$1.log" >&2; die "$1 exited during startup"; }
    "$LOADGEN" --url "http://127.0.0.1:$p" --op probe --path /health/live && break
    sleep 0.1
  done
  "$LOADGEN" --url "http://127.0.0.1:$p" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket bench >/dev/null \
    || die "cannot create the bucket on $1"
  PORT[$1]=$p
}


declare -A V
lg() {  # NAME TAG loadgen-args...
  local name=$1 tag=$2 out; shift 2
  out=$("$LOADGEN" --url "http://127.0.0.1:${PORT[$name]}" --access-key "$AK" --secret-key "$SK" --bucket bench \
        --size 4096 --concurrency 16 "$@") || die "loadgen $tag on $name failed: $out"
  V[$name.$tag.rps]="${V[$name.$tag.rps]:-} $(loadgen_field rps "$out")"
  V[$name.$tag.p50]="${V[$name.$tag.p50]:-} $(loadgen_field p50_ms "$out")"
  V[$name.$tag.p99]="${V[$name.$tag.p99]:-} $(loadgen_field p99_ms "$out")"
  [ "$tag" = put ] && KEYS[$name]=$(loadgen_field requests "$out")
  return 0
}

echo "== audit overhead: 4 KiB objects, 16 connections, ${SECS}s or $MAXPUTS PUTs a run, $RUNS runs, on/off alternating" >&2
start on true
start off false
declare -A KEYS
for s in on off; do
  lg "$s" warm --op put --requests 500 --prefix warm/
done
for r in $(seq "$RUNS"); do
  for s in on off; do
    sync
    lg "$s" put --op put --duration "$SECS" --requests "$MAXPUTS" --prefix "r$r/"
    lg "$s" get --op get --duration "$SECS" --prefix "r$r/" --keys "${KEYS[$s]:-1}"
  done
done
events=$(curl -s "http://127.0.0.1:${PORT[on]}/metrics" 2>/dev/null | sed -n 's/^cairn_audit_events_emitted_total //p' || true)
lost=$(curl -s "http://127.0.0.1:${PORT[on]}/metrics" 2>/dev/null | sed -n 's/^cairn_audit_events_lost_total //p' || true)

echo
echo "audit trail overhead (4 KiB, c=16, median of $RUNS alternating runs; audit on = default config, fsync on)"
printf '%-16s %12s %12s %8s %8s   %-22s %-22s\n' metric "audit on" "audit off" ratio target "on p50/p99 ms" "off p50/p99 ms"
for op in put get; do
  on=$(median2 <<<"${V[on.$op.rps]}") off=$(median2 <<<"${V[off.$op.rps]}")
  rt=$(ratio "$on" "$off")
  note=$(awk -v r="${rt%x}" 'BEGIN { if (r == "-") print ""; else print (r >= 0.9) ? "met" : "below" }')
  printf '%-16s %12s %12s %8s %8s   %-22s %-22s %s\n' "4 KiB ${op^^} req/s" "$on" "$off" "$rt" ">= 0.9x" \
    "$(median2 <<<"${V[on.$op.p50]}")/$(median2 <<<"${V[on.$op.p99]}")" \
    "$(median2 <<<"${V[off.$op.p50]}")/$(median2 <<<"${V[off.$op.p99]}")" "$note"
done
echo "  audit events emitted by the 'on' server: ${events:-?}, lost: ${lost:-?}"
if [ -x "$BUILD/cairn-auditbench" ]; then
  BENCH_QUICK=$QUICK BENCH_DIR=$T "$BUILD/cairn-auditbench"
else
  echo "audit bench: $BUILD/cairn-auditbench not built; no in-process figures" >&2
fi

# The shipper end to end (cairn-shipbench): events/s from emit into the
# store, flush latency, emit -> queryable, on SQLite and on PostgreSQL (a
# throwaway server from scripts/pg-test.sh); every event counted in the
# store (a difference fails the bench).  Quick: 8 x 2,000 events, and a
# short RSS check (100,000 events, RSS sampled every 20,000).
SHIPBENCH=$BUILD/cairn-shipbench
if [ -x "$SHIPBENCH" ]; then
  if [ "$QUICK" = 1 ]; then SHIPARGS=(--threads 8 --events 2000); else SHIPARGS=(--threads 16 --events 25000); fi
  echo
  echo "audit shipper end to end (embedded mode: journal -> store table; fsync on)"
  BENCH_DIR=$T "$SHIPBENCH" "${SHIPARGS[@]}" || die "cairn-shipbench (sqlite) failed"
  HERE=$(cd "$(dirname "$0")" && pwd)
  if PGDIR=$(bash "$HERE/../scripts/pg-test.sh" start 2>/dev/null); then
    PGURL=$(bash "$HERE/../scripts/pg-test.sh" url "$PGDIR")
    BENCH_DIR=$T "$SHIPBENCH" "${SHIPARGS[@]}" --metadata-url "$PGURL" || { bash "$HERE/../scripts/pg-test.sh" stop "$PGDIR"; die "cairn-shipbench (postgres) failed"; }
    bash "$HERE/../scripts/pg-test.sh" stop "$PGDIR"
  else
    echo "audit bench: no PostgreSQL server (scripts/pg-test.sh start failed); SQLite figures only" >&2
  fi
  if [ "$QUICK" = 1 ]; then
    BENCH_DIR=$T "$SHIPBENCH" --threads 4 --events 25000 --no-fsync --rss --rss-every 20000 --rss-slack-mib 32 --idle-probe-s 0 \
      || die "cairn-shipbench RSS check failed"
  fi
else
  echo "audit bench: $SHIPBENCH not built; no shipper figures" >&2
fi
