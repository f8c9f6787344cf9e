#!/usr/bin/env bash
# bench/dataplane.sh — the erasure-coded data plane (issue 3): 64 MiB PUT and
# GET MB/s on one drive (1+0), on 4+2 across six in-process drives, and on 4+2
# across six `cairn node` processes behind `cairn gateway`; then GET with two
# nodes killed (degraded: every stripe rebuilt from parity) against healthy.
# Medians of RUNS runs; everything on 127.0.0.1, cleaned up on exit.
#
# Usage: bash bench/dataplane.sh [BUILD_DIR]   (BENCH_QUICK=1: fewer runs)
set -euo pipefail
BUILD=${1:-build}
CAIRN=$BUILD/cairn
LOADGEN=$BUILD/cairn-loadgen
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
REQS=$([ "$QUICK" = 1 ] && echo 3 || echo 6)
SIZE=$((64 * 1024 * 1024))
AK=benchroot SK=benchroot-secret-0123
export CAIRN_CLUSTER_SECRET=bench-cluster-secret-0123456789
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-dataplane.XXXXXX")
PIDS=()

cleanup() {
  # Processes may be gone already (killed on purpose): nothing here may fail.
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT INT TERM
die() { echo "dataplane: $*" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"



median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run_lg PORT OP PREFIX: one loadgen run; prints its MB/s (exits on errors).
run_lg() {
  local out
  out=$("$LOADGEN" --url "http://127.0.0.1:$1" --access-key "$AK" --secret-key "$SK" --bucket bench \
        --op "$2" --size "$SIZE" --concurrency 1 --requests "$REQS" --keys "$REQS" --prefix "$3/") \
    || die "loadgen $2 failed: $out"
  sed -n 's/.*mbps=\([0-9.]*\).*/\1/p' <<<"$out"
}

# measure PORT NAME: PUT then GET medians for one deployment.
declare -A RES
measure() {
  local port=$1 name=$2 puts="" gets=""
  "$LOADGEN" --url "http://127.0.0.1:$port" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket bench >/dev/null
  for r in $(seq "$RUNS"); do
    sync
    puts="$puts $(run_lg "$port" put "r$r")"
    gets="$gets $(run_lg "$port" get "r$r")"
  done
  RES[$name.put]=$(median <<<"$puts")
  RES[$name.get]=$(median <<<"$gets")
}

start_server() {  # NAME [args...]: starts cairn server, sets PORT
  local name=$1; shift
  PORT=$(free_port)
  CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn CAIRN_SCRUB_INTERVAL=0 \
    "$CAIRN" "$@" --listen "127.0.0.1:$PORT" --data "$T/$name" >"$T/$name.out" 2>"$T/$name.log" &
  PIDS+=($!)
  SERVER_PID=$!
  wait_ready "$PORT" "$SERVER_PID" "$T/$name.log"
}

echo "== data plane: 64 MiB objects, 1 stream, $RUNS runs each" >&2
start_server single server
measure "$PORT" single
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

drives=$(for i in 1 2 3 4 5 6; do printf '%s,' "$T/local/d$i"; done); drives=${drives%,}
start_server local server --drives "$drives"
measure "$PORT" local
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

nodes="" NODE_PIDS=()
for i in 1 2 3 4 5 6; do
  np=$(free_port)
  CAIRN_LOG_LEVEL=warn "$CAIRN" node --listen "127.0.0.1:$np" --drives "$T/node$i" >/dev/null 2>"$T/node$i.log" &
  PIDS+=($!); NODE_PIDS+=($!); disown $!
  wait_ready "$np" "$!" "$T/node$i.log"
  nodes="$nodes${nodes:+,}http://127.0.0.1:$np"
done
start_server gateway gateway --nodes "$nodes"
measure "$PORT" nodes
# Degraded: two nodes gone; every GET rebuilds data from parity.
kill -9 "${NODE_PIDS[0]}" "${NODE_PIDS[1]}"
gets=""
for r in $(seq "$RUNS"); do gets="$gets $(run_lg "$PORT" get "r$r")"; done
RES[degraded.get]=$(median <<<"$gets")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "NA") printf "%.2fx", a / b; else print "-" }'; }
echo
echo "data plane (64 MiB, 1 stream, median of $RUNS runs; MB = 10^6 bytes; ratio vs one drive)"
printf '%-38s %10s %8s %10s %8s\n' layout "PUT MB/s" ratio "GET MB/s" ratio
printf '%-38s %10s %8s %10s %8s\n' "1 drive (1+0)" "${RES[single.put]}" 1.00x "${RES[single.get]}" 1.00x
printf '%-38s %10s %8s %10s %8s\n' "6 drives in-process (4+2)" "${RES[local.put]}" "$(ratio "${RES[local.put]}" "${RES[single.put]}")" "${RES[local.get]}" "$(ratio "${RES[local.get]}" "${RES[single.get]}")"
printf '%-38s %10s %8s %10s %8s\n' "6 nodes + gateway (4+2)" "${RES[nodes.put]}" "$(ratio "${RES[nodes.put]}" "${RES[single.put]}")" "${RES[nodes.get]}" "$(ratio "${RES[nodes.get]}" "${RES[single.get]}")"
printf '%-38s %10s %8s %10s %8s\n' "6 nodes, 2 killed (degraded GET)" "-" "-" "${RES[degraded.get]}" "$(ratio "${RES[degraded.get]}" "${RES[nodes.get]}") of healthy"
