#!/usr/bin/env bash
# bench/events.sh — the live event stream, GET /events/ws (issue 11): how
# fast an event reaches its sockets, and how many idle sockets one server
# holds and what they cost it.  Two `cairn server`s, one after the other,
# each fresh, driven by bench/events.py:
#
#   1. latency: 300 sockets on one bucket while 100 small PUTs a second go
#      in for 10 s (3 s quick), so 30,000 messages a second leave the
#      server; publish-to-receive p50 and p99 over every (socket, message)
#      pair, target p99 < 50 ms; every socket must receive every event.
#      5 runs (3 quick), medians.
#   2. capacity: sockets opened in steps of 1000, 2000, 5000, 10000 (1000,
#      2000 quick) until one fails; at each, the server's RSS per socket
#      (beside Centrifugo's ~30 KiB a connection), its idle CPU over 5 s
#      with the default 30 s ping interval, and its OS threads, request
#      threads apart (a WebSocket must not hold one); then one PUT every
#      socket must get.
#
# The servers run with CAIRN_FSYNC=false (a PUT's durability is not what is
# measured here; the PUTs only make events) and CAIRN_CONNECTION_LIMIT_PER_IP
# =0 (every socket comes from 127.0.0.1); everything else is the default,
# events_max_sockets 10000 and events_ping_interval 30 s included.  The fd
# limit (ulimit -n) is raised to the hard limit for the servers and the
# client.  A socket refused, an event missing or a server that dies makes
# the script exit 1 (with the server's log); targets are printed, never
# enforced.
#
# Usage: bash bench/events.sh [BUILD_DIR]   (BENCH_QUICK=1: about 25 s; full about 90 s)
# Environment: BENCH_QUICK, BENCH_RUNS, BENCH_DIR, BENCH_KEEP=1 as in
# bench/run.sh; EVENTS_SOCKETS (300), EVENTS_RATE (100 PUT/s),
# EVENTS_STEPS (comma-separated), EVENTS_PROCS (receiver processes, 1),
# EVENTS_CLIENT (raw, or websockets: python3-websockets, see events.py).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-build}
CAIRN=$BUILD/cairn
LOADGEN=$BUILD/cairn-loadgen
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
SECS=$([ "$QUICK" = 1 ] && echo 3 || echo 10)
SOCKETS=${EVENTS_SOCKETS:-300}
RATE=${EVENTS_RATE:-100}
PROCS=${EVENTS_PROCS:-1}
STEPS=${EVENTS_STEPS:-$([ "$QUICK" = 1 ] && echo 1000,2000 || echo 1000,2000,5000,10000)}
export EVENTS_CLIENT=${EVENTS_CLIENT:-raw}
AK=benchroot SK=benchroot-secret-0123
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-events.XXXXXX")
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "events bench: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "events bench: $*" >&2; exit 2; }
. "$HERE/lib.sh"
[ -x "$CAIRN" ] || die "$CAIRN not built (make build)"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make build)"
/usr/bin/python3 -c 'import boto3' 2>/dev/null || die "/usr/bin/python3 lacks boto3 (apt install python3-boto3)"
if [ "$EVENTS_CLIENT" = websockets ]; then
  /usr/bin/python3 -c 'import websockets' 2>/dev/null || die "/usr/bin/python3 lacks websockets (python3-websockets)"
fi

# One fd per socket, in the server and in the client: up to the hard limit.
ulimit -n "$(ulimit -Hn)"

PORT="" PID=""
start() {  # NAME: a fresh server in $T/NAME
  PORT=$(free_port)
  CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn CAIRN_SCRUB_INTERVAL=0 \
    CAIRN_FSYNC=false CAIRN_CONNECTION_LIMIT_PER_IP=0 \
    "$CAIRN" server --listen "127.0.0.1:$PORT" --data "$T/$1" >"$T/$1.out" 2>"$T/$1.log" &
  PID=$!
  PIDS+=("$PID")
  wait_ready "$PORT" "$PID" "$T/$1.log"
}

stop() {  # NAME: SIGTERM, then the exit; a server that died before is a failure
  local rc=0
  PIDS=()    # one server at a time: this one is reaped here
  if ! kill -0 "$PID" 2>/dev/null; then
    wait "$PID" || rc=$?
    echo "events bench: the $1 server died (exit $rc)" >&2
    return 1
  fi
  kill "$PID"
  wait "$PID" || rc=$?
  [ "$rc" = 0 ] || echo "events bench: the $1 server exited $rc on SIGTERM" >&2
  return 0
}

# log_tail NAME: the end of a server's log, its own lines first (a refused
# request's line is logged too, and a few hundred of them would hide them).
log_tail() {
  echo "events bench: the end of the $1 server's log ($T/$1.log):" >&2
  grep -v '"msg":"request"' "$T/$1.log" | tail -n 20 >&2 || true
  echo "events bench: its last request lines (of $(grep -c '"msg":"request"' "$T/$1.log" || true)):" >&2
  grep '"msg":"request"' "$T/$1.log" | tail -n 3 >&2 || true
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

RC=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== event stream latency: $SOCKETS sockets, $RATE PUT/s for ${SECS}s, $RUNS runs (client: $EVENTS_CLIENT, $PROCS process(es))" >&2
start latency
LAT=$(/usr/bin/python3 "$HERE/events.py" latency "http://127.0.0.1:$PORT" "$PID" "$AK" "$SK" \
      "$SOCKETS" "$RATE" "$SECS" "$RUNS" "$PROCS") || RC=1
stop latency || RC=1
[ "$RC" = 0 ] || log_tail latency

echo "== event stream capacity: sockets in steps of $STEPS" >&2
start capacity
CRC=0
CAP=$(/usr/bin/python3 "$HERE/events.py" capacity "http://127.0.0.1:$PORT" "$PID" "$AK" "$SK" "$STEPS") || CRC=1
stop capacity || CRC=1
[ "$CRC" = 0 ] || { RC=1; log_tail capacity; }

L() { field "$1" "$LAT"; }
C() { field "$1" "$CAP"; }
met() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "" || v == "nan") print ""; else print (v < t) ? "met" : "not met" }'; }
echo
echo "Event stream (issue 11)"
echo "  cairn server: CAIRN_FSYNC=false (durability is not measured here), CAIRN_CONNECTION_LIMIT_PER_IP=0 (all sockets"
echo "  from 127.0.0.1), otherwise defaults (events_max_sockets 10000, ping every 30 s); fd limit $(ulimit -n); a fresh server per part"
echo "  client: bench/events.py, $EVENTS_CLIENT WebSocket client, $PROCS receiver process(es); $(nproc) CPUs shared by client and server;"
echo "  load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo
echo "  latency: $SOCKETS sockets on one bucket, $RATE PUT/s of 100 B for ${SECS} s ($((SOCKETS * ${RATE%.*})) messages/s out),"
echo "  median of $(L valid_runs) valid run(s) of $RUNS, (min..max)"
printf '  %-44s %-24s %s\n' metric value target
printf '  %-44s %-24s %s\n' "publish-to-receive p50 (ms)" "$(L p50_ms) ($(L p50_min)..$(L p50_max))" ""
printf '  %-44s %-24s %s\n' "publish-to-receive p99 (ms)" "$(L p99_ms) ($(L p99_min)..$(L p99_max))" "p99 < 50 ms  $(met "$(L p99_ms)" 50)"
printf '  %-44s %-24s %s\n' "messages received / expected, each run" "$(L received_min) / $(L expected_per_run) (fewest)" \
  "$([ "$(L valid_runs)" = "$RUNS" ] && echo "all $RUNS runs complete" || echo "INVALID: $(L valid_runs) of $RUNS runs complete (above)")"
printf '  %-44s %-24s %s\n' "server's publish->send p50 / p99 (ms)" "<= $(L server_p50_le_ms) / <= $(L server_p99_le_ms)" "cairn_events_publish_to_send_seconds buckets"
printf '  %-44s %-24s %s\n' "client CPU (receivers, % of one core)" "$(L client_cpu_pct)" \
  "$([ "$(L saturated_runs)" = 0 ] && echo "not saturated" || echo "SATURATED in $(L saturated_runs) run(s): the client inflates the figures")"
echo
echo "  capacity: steps $STEPS, idle server (no PUTs), ping interval 30 s"
printf '  %-44s %-24s %s\n' "largest socket count held" "$(C held)" "every socket got a PUT's event at each step"
printf '  %-44s %-24s %s\n' "RSS per socket (KiB)" "$(C rss_per_socket_kib)" \
  "Centrifugo ~30 KiB per connection: beat that  $(met "$(C rss_per_socket_kib)" 30)"
printf '  %-44s %-24s %s\n' "server RSS, no sockets -> $(C held) (KiB)" "$(C rss0_kib) -> $(C rss_kib)" ""
printf '  %-44s %-24s %s\n' "server idle CPU, $(C held) sockets (% of a core)" "$(C idle_cpu_pct)" "over 5 s"
printf '  %-44s %-24s %s\n' "server OS threads, none -> $(C held) sockets" "$(C threads0) -> $(C threads)" \
  "of them request threads $(C request_threads0) -> $(C request_threads) (the writer's keep-alive connection)"
if [ "$(C request_threads)" != "$(C request_threads0)" ]; then
  echo "  WARNING: request threads grew with the sockets: a WebSocket may be holding a request thread"
fi
[ "$RC" = 0 ] || echo "  INVALID: a part failed (messages above); its figures are not trustworthy."
exit $RC
