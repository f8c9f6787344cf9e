#!/usr/bin/env bash
# bench/notify.sh — bucket notifications (docs/notifications.md): how many
# webhook deliveries a second one server makes, what its notifications cost
# its PUTs, and how long an event takes to reach its webhook.  Two `cairn
# server`s side by side, one with job_workers=2 (the default) and one with
# 4 (a delivery waits on the network, so more workers might help), driven
# by bench/notify.py, which also runs the webhook receiver:
#
#   1. throughput: N PUTs of 1 KiB (10000; 2000 quick), 16 connections
#      (cairn-loadgen), to a bucket with a rule sending every ObjectCreated
#      event to the receiver, and N to a bucket without one (the baseline:
#      same server, same run); PUT/s on and off, their ratio, deliveries/s
#      from the first delivery to the last (and apart: while the PUTs run,
#      after them), the events' age at delivery, CPU (server, its
#      job-worker threads, receiver) and job-worker CPU per delivery.
#      Every event must arrive: unique delivery ids == N.  A warm-up of 500
#      PUTs a bucket first; then the runs alternate between the servers.
#   2. latency, on the job_workers=2 server: 200 PUT/s for 5 s (2 s quick)
#      from 4 boto3 threads on one schedule; for each delivery, its receive
#      time minus the event's time in its sequencer; p50 and p99.
#
# Each part 5 runs (3 quick), medians and (min..max).  The servers run with
# CAIRN_FSYNC=true (the default, and said in the output: each PUT commits
# its object and its notification job, durably, in one transaction) and log
# at warn; everything else is the default (job_poll_ms 250,
# notify_timeout_ms 5000).  The webhook target has a secret, so every
# delivery is signed and the receiver checks every signature.  An event
# missing, a bad signature, a failed PUT or a server that dies makes the
# script exit 1 (with the servers' logs).
#
# Usage: bash bench/notify.sh [BUILD_DIR]   (BENCH_QUICK=1: about 30 s; full about 5 min)
# Environment: BENCH_QUICK, BENCH_RUNS, BENCH_DIR, BENCH_KEEP=1 as in
# bench/run.sh; NOTIFY_N (PUTs a throughput run), NOTIFY_RATE (200 PUT/s),
# NOTIFY_SECONDS, NOTIFY_WORKERS ("2 4": one server per job_workers value;
# the first also runs the latency part), NOTIFY_FSYNC (true),
# NOTIFY_POLL_MS (job_poll_ms; unset: the default), NOTIFY_SIZE (1024
# bytes), NOTIFY_CONC (16), NOTIFY_WRITERS (4).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-build}
CAIRN=$BUILD/cairn
LOADGEN=$BUILD/cairn-loadgen
QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
N=${NOTIFY_N:-$([ "$QUICK" = 1 ] && echo 2000 || echo 10000)}
RATE=${NOTIFY_RATE:-200}
SECS=${NOTIFY_SECONDS:-$([ "$QUICK" = 1 ] && echo 2 || echo 5)}
WORKERS=${NOTIFY_WORKERS:-2 4}
FSYNC=${NOTIFY_FSYNC:-true}
POLL_MS=${NOTIFY_POLL_MS:-}
export NOTIFY_SIZE=${NOTIFY_SIZE:-1024} NOTIFY_CONC=${NOTIFY_CONC:-16} NOTIFY_WRITERS=${NOTIFY_WRITERS:-4}
AK=benchroot SK=benchroot-secret-0123
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-notify.XXXXXX")
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] || continue; wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "notify bench: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "notify bench: $*" >&2; exit 2; }
. "$HERE/lib.sh"
[ -x "$CAIRN" ] || die "$CAIRN not built (make build)"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (make build)"
/usr/bin/python3 -c 'import boto3' 2>/dev/null || die "/usr/bin/python3 lacks boto3 (apt install python3-boto3)"

declare -A PID
SPECS=()
start() {  # NAME JOB_WORKERS: a fresh server in $T/NAME
  local p extra=()
  p=$(free_port)
  [ -n "$POLL_MS" ] && extra=(CAIRN_JOB_POLL_MS="$POLL_MS")
  env CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn CAIRN_SCRUB_INTERVAL=0 \
    CAIRN_FSYNC="$FSYNC" CAIRN_JOB_WORKERS="$2" "${extra[@]}" \
    "$CAIRN" server --listen "127.0.0.1:$p" --data "$T/$1" >"$T/$1.out" 2>"$T/$1.log" &
  PID[$1]=$!
  PIDS+=("$!")
  wait_ready "$p" "${PID[$1]}" "$T/$1.log"
  SPECS+=("$1=http://127.0.0.1:$p,${PID[$1]},$T/$1")
}

stop() {  # NAME: SIGTERM, then the exit; a server that died before is a failure
  local rc=0 pid=${PID[$1]}
  if ! kill -0 "$pid" 2>/dev/null || [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
    wait "$pid" || rc=$?
    echo "notify bench: the $1 server died (exit $rc)" >&2
    return 1
  fi
  kill "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || echo "notify bench: the $1 server exited $rc on SIGTERM" >&2
  return 0
}

log_tail() {  # NAME: the end of a server's log
  echo "notify bench: the end of the $1 server's log ($T/$1.log):" >&2
  tail -n 20 "$T/$1.log" >&2 || true
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

RC=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NAMES=()
for w in $WORKERS; do NAMES+=("w$w"); start "w$w" "$w"; done
echo "== notifications: $N PUTs a throughput run on job_workers = $WORKERS, then $RATE PUT/s for ${SECS}s on job_workers=${WORKERS%% *}, $RUNS runs each (fsync $FSYNC)" >&2
OUT=$(/usr/bin/python3 "$HERE/notify.py" "$CAIRN" "$LOADGEN" "$AK" "$SK" "$N" "$RUNS" "$RATE" "$SECS" "${SPECS[@]}") || RC=1
for name in "${NAMES[@]}"; do
  if ! stop "$name"; then RC=1; log_tail "$name"; elif [ "$RC" != 0 ]; then log_tail "$name"; fi
done
PIDS=()

TP() { field "$2" "$(grep "^throughput_summary server=$1 " <<<"$OUT" || true)"; }
L() { field "$1" "$(grep '^latency_summary' <<<"$OUT" || true)"; }
# rng GETTER [SERVER] KEY: "median (min..max)" from KEY, KEY_min and KEY_max
# of a summary line; the median alone when they agree (one valid run).
rng() {
  local key=${*: -1} m lo hi
  m=$("$@") lo=$("${@:1:$#-1}" "${key}_min") hi=$("${@:1:$#-1}" "${key}_max")
  if [ "$lo" = "$hi" ]; then echo "${m:-n/a}"; else echo "$m ($lo..$hi)"; fi
}
row() {  # LABEL then one cell per server
  local label=$1; shift
  printf '  %-52s' "$label"
  for c in "$@"; do printf ' %-28s' "${c//nan/n/a}"; done   # a figure no valid run had
  echo
}
per() {  # LABEL FUNCTION: one cell per server, FUNCTION NAME prints it
  local label=$1 fn=$2 name c=()
  for name in "${NAMES[@]}"; do c+=("$($fn "$name")"); done
  row "$label" "${c[@]}"
}
c_on() { rng TP "$1" on_rps; }
c_off() { rng TP "$1" off_rps; }
c_ratio() { echo "$(TP "$1" ratio)x"; }
c_dps() { rng TP "$1" dps; }
c_during() { echo "$(TP "$1" during_pct)% / $(TP "$1" drain_s) s"; }
c_phase() { echo "$(TP "$1" dps_during) / $(TP "$1" dps_after)"; }
c_age() { echo "$(TP "$1" age_p50_ms) / $(TP "$1" age_p99_ms)"; }
c_count() {
  echo "$(TP "$1" delivered_min) / $N, $(TP "$1" valid_runs) of $RUNS valid$([ "$(TP "$1" died)" = 1 ] && echo ", DIED")"
}
c_dup() { echo "$(TP "$1" duplicates) / $(TP "$1" retried) / $(TP "$1" failed_attempts)"; }
c_cpu() { echo "$(TP "$1" server_cpu_pct) / $(TP "$1" worker_cpu_pct) / $(TP "$1" receiver_cpu_pct)"; }
c_wus() { echo "$(TP "$1" worker_us)"; }
c_head() { echo "job_workers=${1#w}"; }

FS=$(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$T" 2>/dev/null | tr -s ' ' || stat -f -c '%T' "$T")
echo
echo "Bucket notifications (webhook deliveries)"
echo "  cairn server: CAIRN_FSYNC=$FSYNC (each PUT commits its object and its notification job in one transaction$([ "$FSYNC" = true ] && echo ", durably")),"
echo "  job_poll_ms ${POLL_MS:-250 (default)}, log level warn; one server per job_workers value, side by side, runs alternating;"
echo "  data dirs in $T (filesystem: $FS)"
echo "  receiver: bench/notify.py, asyncio HTTP/1.1 keep-alive, answers 200 at once, checks every signature; $(nproc) CPUs shared"
echo "  by loadgen, receiver and servers; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo
echo "  throughput: $N PUTs of $NOTIFY_SIZE B a run, $NOTIFY_CONC connections (cairn-loadgen); baseline: $N PUTs to a bucket"
echo "  without a configuration, same server, same run; median of the valid runs of $RUNS, (min..max)"
per metric c_head
per "PUT/s, notifications on" c_on
per "PUT/s, no configuration (baseline)" c_off
per "ratio on/off" c_ratio
per "deliveries/s (first delivery to last)" c_dps
per "  while the PUTs run / after them" c_phase
per "delivered while PUTs ran / last one after them" c_during
per "event age at delivery p50 / p99 (ms)" c_age
per "events delivered / PUTs (fewest run)" c_count
per "duplicates / retried / failed attempts (all runs)" c_dup
per "CPU % of a core: server / job workers / receiver" c_cpu
per "job-worker CPU per delivery (us)" c_wus
for name in "${NAMES[@]}"; do
  sat=$(TP "$name" receiver_saturated)
  [ "${sat:-0}" = 0 ] || echo "  WARNING: the receiver passed 85% of a core in $sat run(s) on $name: it limits the figures"
done
echo
echo "  latency: $RATE PUT/s of $NOTIFY_SIZE B for $SECS s ($NOTIFY_WRITERS boto3 threads on one schedule), job_workers=${WORKERS%% *};"
echo "  receive time minus the sequencer's time; median of $(L valid_runs) valid run(s) of $RUNS, (min..max)"
row "event-to-delivery p50 (ms)" "$(rng L p50_ms)"
row "event-to-delivery p99 (ms)" "$(rng L p99_ms)"
row "slowest delivery, all runs (ms)" "$(L max_ms)"
row "events delivered / PUTs (fewest run)" "$(L received_min) / $(L expected), duplicates $(L duplicates), PUT rate $(L put_rate)/s"
[ "$RC" = 0 ] || echo "  INVALID: a run failed (messages above: an event missing, a PUT failed or a server died); its figures are not trustworthy."
exit $RC
