#!/usr/bin/env bash
# bench/run.sh — `make bench` / `make bench-quick`: cairn against nginx on loopback.
#
# Usage: bash bench/run.sh [BUILD_DIR]        (BUILD_DIR defaults to ./build)
#
# Starts nginx (a WebDAV PUT/GET file server with sendfile: the least work any
# object store could do for the same requests) and `cairn server` on free
# 127.0.0.1 ports, with their data in one temporary directory so both write to
# the same filesystem, then drives both with build/cairn-loadgen:
#
#   1. 4 KiB objects, 16 keep-alive connections: PUT and GET requests/s
#   2. 64 MiB objects, 1 and 4 streams: PUT and GET MB/s (10^6 bytes/s)
#   3. ListObjectsV2, 1000 keys a page, in a 100k-object bucket (10k in quick
#      mode): median latency of page 1 and page 50 (page 10 in quick mode)
#   5. bench/dataplane.sh: 64 MiB PUT/GET on one drive, 4+2 in-process, 4+2
#      over six nodes, and GET with two nodes killed
#   4. build/cairn-ecbench (no server): 4+2 encode, decode and CRC-32C GB/s of
#      cairn's codec beside raw ISA-L, printed after the table
#   6. bench/multipart.py: 1 GiB through multipart at 4 and 16 parallel parts,
#      and peak RSS over a 5 GiB multipart upload
#   7. bench/jobs.py: durable job queue jobs/s against a bare SQLite loop
#   8. build/cairn-cachebench (no server): the L1 cache's hit ratio (S3-FIFO
#      beside LRU, Zipf and Zipf polluted by scans) and the ns of a hit
#      and build/cairn-rlbench (no server): the rate limiter's ns per check,
#      and its us per check through a Redis started for it
#   9. bench/metadata.sh: SQLite against PostgreSQL with the metadata cache on
#      and off (4 KiB PUT/GET/HEAD/DELETE and LIST, p50 and p99), page 1
#      against page 500 of a 1M-object bucket on PostgreSQL, and two gateways
#      against one over PostgreSQL
#  10. bench/audit.sh: 4 KiB PUT and GET with the audit journal on against off
#      (two servers, alternating runs, ratio target >= 0.9x), then
#      build/cairn-auditbench: ns per emitted event from 1, 4 and 16 threads
#      and the durable append's p50/p99
#  11. bench/events.sh: the live event stream, GET /events/ws: publish-to-
#      receive p50/p99 at 300 sockets and 100 PUT/s (target p99 < 50 ms),
#      then sockets in steps up to 10,000 (2,000 quick): RSS per socket, idle
#      CPU and the server's thread count
#  12. bench/notify.sh: bucket notifications (webhook deliveries): PUT/s with
#      a notification rule against without, deliveries/s and that every
#      event arrived, job_workers 2 beside 4; then event-to-delivery p50/p99
#      at 200 PUT/s
#  13. bench/features.sh: the rest of S3 (issue 12): 4 KiB PUT and GET into a
#      versioned bucket (a version per key per run) against a plain one,
#      alternating on one server (target within 10%)
#  14. bench/tls.sh: TLS against plain HTTP, two servers side by side: 4 KiB
#      GET req/s over one connection and 64 MiB GET MB/s, by curl
#  15. bench/sse.sh: SSE-S3 (a bucket's default encryption) against a plain
#      bucket on one server: 4 KiB PUT and GET req/s, 64 MiB PUT and GET MB/s
#      (targets 0.9x and 0.8x)
#
# Runs alternate between the servers (nginx, cairn, nginx, cairn, ...) so drift
# in the machine hits both alike; every figure is the median of the runs and
# each cairn figure is also shown as a ratio of nginx's from this invocation.
# Every write-side run starts after `sync`, so neither server pays for the
# other's dirty pages.  A run with any failed request is invalid: its figure is
# marked and the script exits 1.  Targets are printed beside the figures for
# reading, not enforced.
#
# Environment: BENCH_QUICK=1 (short CI version), BENCH_RUNS (default 5, quick 3),
# BENCH_DIR (parent of the temp dir, default $TMPDIR or /tmp), BENCH_SERVERS
# ("nginx cairn"; "nginx" alone checks the harness without a cairn build),
# BENCH_KEEP=1 keeps the temp dir (logs, raw loadgen lines) for inspection.
# Only 127.0.0.1 is ever contacted.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-build}
QUICK=${BENCH_QUICK:-0}
SERVERS=${BENCH_SERVERS:-nginx cairn}
LOADGEN=$BUILD/cairn-loadgen
CAIRN=$BUILD/cairn

if [ "$QUICK" = 1 ]; then
  RUNS=${BENCH_RUNS:-3}
  SMALL_SECONDS=2        # per 4 KiB run...
  SMALL_MAX_PUTS=6000    # ...or this many PUTs, whichever ends first
  BIG_REQ_1=3            # 64 MiB requests per single-stream run
  BIG_STREAMS=""         # no 4-stream rows in quick mode
  LIST_OBJECTS=10000
  LIST_DEEP_PAGE=10
  SEED_MAX_SECONDS=60
else
  RUNS=${BENCH_RUNS:-5}
  SMALL_SECONDS=5
  SMALL_MAX_PUTS=20000
  BIG_REQ_1=6
  BIG_STREAMS=4
  LIST_OBJECTS=100000
  LIST_DEEP_PAGE=50
  SEED_MAX_SECONDS=240
fi
SMALL=4096
BIG=$((64 * 1024 * 1024))
BIG_KEYS=4
CONC=16

die() { echo "bench: $*" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"

# ---- prerequisites -----------------------------------------------------------

[ -x "$LOADGEN" ] || die "$LOADGEN not built (run make build)"
want_cairn=0; want_nginx=0
for s in $SERVERS; do
  case $s in
    cairn) want_cairn=1 ;;
    nginx) want_nginx=1 ;;
    *) die "unknown server in BENCH_SERVERS: $s" ;;
  esac
done
if [ $want_cairn = 1 ]; then [ -x "$CAIRN" ] || die "$CAIRN not built (run make build)"; fi
if [ $want_nginx = 1 ]; then
  command -v nginx >/dev/null || die "nginx not installed (make deps)"
  nginx -V 2>&1 | grep -q -- --with-http_dav_module || die "this nginx lacks the DAV module (install Debian's nginx)"
fi

# ---- temp dir, cleanup ---------------------------------------------------------

T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-bench.XXXXXX")
NGINX_PID=""
CAIRN_PID=""
cleanup() {
  local rc=$?
  for pid in $NGINX_PID $CAIRN_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $NGINX_PID $CAIRN_PID; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: kept $T" >&2
  else
    echo "bench: removing $T" >&2
    rm -rf "$T"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RESULTS=$T/results.log     # every raw loadgen line, tagged
: >"$RESULTS"

# A port nobody listens on now (a refused connect).  The server's own bind
# failing is still caught by the readiness wait below.


start_nginx() {
  NGINX_PORT=$(free_port)
  mkdir -p "$T/nginx-root" "$T/nginx-tmp"
  echo ok >"$T/nginx-root/ready.txt"
  local user_line="# not root: no user directive"
  [ "$(id -u)" = 0 ] && user_line="user root root;"
  sed -e "s|@TMP@|$T|g" -e "s|@ROOT@|$T/nginx-root|g" -e "s|@PORT@|$NGINX_PORT|g" \
      -e "s|@USER_LINE@|$user_line|" "$HERE/nginx.conf.in" >"$T/nginx.conf"
  nginx -e "$T/nginx-error.log" -p "$T" -c "$T/nginx.conf" >"$T/nginx.log" 2>&1 &
  NGINX_PID=$!
  wait_ready "$NGINX_PORT" "$NGINX_PID" "$T/nginx.log" /ready.txt
}

start_cairn() {
  CAIRN_PORT=$(free_port)
  CAIRN_AK=benchadmin
  CAIRN_SK=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
  mkdir -p "$T/cairn-data"
  CAIRN_ROOT_USER=$CAIRN_AK CAIRN_ROOT_PASSWORD=$CAIRN_SK \
    "$CAIRN" server --listen "127.0.0.1:$CAIRN_PORT" --data "$T/cairn-data" >"$T/cairn.log" 2>&1 &
  CAIRN_PID=$!
  wait_ready "$CAIRN_PORT" "$CAIRN_PID" "$T/cairn.log"
}

# ---- running loadgen -----------------------------------------------------------

INVALID=0
declare -A VALS BAD

# lg SERVER TAG loadgen-args...: one run; appends the figure's source line to
# RESULTS and prints it; failed requests mark TAG invalid for SERVER.
LAST=""
lg() {
  local server=$1 tag=$2; shift 2
  local conn
  if [ "$server" = cairn ]; then
    conn=(--url "http://127.0.0.1:$CAIRN_PORT" --access-key "$CAIRN_AK" --secret-key "$CAIRN_SK")
  else
    conn=(--url "http://127.0.0.1:$NGINX_PORT" --nosign)
  fi
  local rc=0
  LAST=$("$LOADGEN" "${conn[@]}" "$@" 2>"$T/loadgen.err") || rc=$?
  echo "$server $tag $LAST" >>"$RESULTS"
  if [ $rc -ne 0 ] || [ -z "$LAST" ]; then
    BAD[$server.$tag]=1
    INVALID=$((INVALID + 1))
    echo "bench: $server $tag: run failed (exit $rc): ${LAST:-no output}" >&2
    head -n 5 "$T/loadgen.err" >&2 || true
  fi
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $LAST"; }

# record SERVER TAG FIELD: keeps this run's figure for the median.
record() {
  local v
  v=$(field "$3")
  VALS[$1.$2]="${VALS[$1.$2]:-} ${v:-NA}"
  printf '  %-6s %-12s %-9s %s\n' "$1" "$2" "$3=${v:-NA}" "(errors=$(field errors))" >&2
}

median() {
  local sorted n
  sorted=$(tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | sort -g) || true
  n=$(grep -c . <<<"$sorted" || true)
  [ "$n" -gt 0 ] || { echo NA; return; }
  if [ $((n % 2)) = 1 ]; then
    sed -n "$(((n + 1) / 2))p" <<<"$sorted"
  else
    awk -v a="$(sed -n "$((n / 2))p" <<<"$sorted")" -v b="$(sed -n "$((n / 2 + 1))p" <<<"$sorted")" \
      'BEGIN { printf "%.3f\n", (a + b) / 2 }'
  fi
}

# ---- phases ----------------------------------------------------------------------

# The PUT runs stop at SMALL_MAX_PUTS too: every file nginx creates must be
# deleted again at exit, and unlinking hundreds of thousands of small files
# (ext4 mounted with discard) costs minutes.
phase_small() {
  echo "== 4 KiB objects, $CONC connections, ${SMALL_SECONDS}s or $SMALL_MAX_PUTS PUTs a run, $RUNS runs" >&2
  declare -gA SMALL_KEYS
  for s in $SERVERS; do  # warm-up: connections, caches, first directory creation
    lg "$s" warmup --op put --size $SMALL --concurrency $CONC --requests 500 --bucket bench --prefix warm/
    lg "$s" warmup --op get --size $SMALL --concurrency $CONC --requests 2000 --bucket bench --prefix warm/ --keys 500
  done
  for r in $(seq "$RUNS"); do
    for s in $SERVERS; do
      sync
      lg "$s" put4k --op put --size $SMALL --concurrency $CONC --duration $SMALL_SECONDS \
        --requests $SMALL_MAX_PUTS --bucket bench --prefix "small/r$r/"
      record "$s" put4k rps
      [ "$r" = 1 ] && SMALL_KEYS[$s]=$(field requests)
    done
  done
  for r in $(seq "$RUNS"); do
    for s in $SERVERS; do
      lg "$s" get4k --op get --size $SMALL --concurrency $CONC --duration $SMALL_SECONDS \
        --bucket bench --prefix small/r1/ --keys "${SMALL_KEYS[$s]:-1}"
      record "$s" get4k rps
    done
  done
}

# big_run SERVER STREAMS: one PUT run then one GET run of 64 MiB objects.  The
# PUTs cycle over at most BIG_KEYS keys (overwrites keep the disk use bounded)
# and the GETs read exactly those keys back.
big_run() {
  local s=$1 streams=$2 n keys
  n=$BIG_REQ_1
  [ "$streams" -gt 1 ] && n=$((BIG_REQ_1 * 2))
  keys=$((n < BIG_KEYS ? n : BIG_KEYS))
  sync
  lg "$s" "put64m.c$streams" --op put --size $BIG --concurrency "$streams" --requests "$n" \
    --bucket bench --prefix "big/c$streams/" --keys $keys
  record "$s" "put64m.c$streams" mbps
  lg "$s" "get64m.c$streams" --op get --size $BIG --concurrency "$streams" --requests $((n * 2)) \
    --bucket bench --prefix "big/c$streams/" --keys $keys
  record "$s" "get64m.c$streams" mbps
}

phase_big() {
  echo "== 64 MiB objects, 1 stream${BIG_STREAMS:+ and $BIG_STREAMS streams}, $RUNS runs" >&2
  for r in $(seq "$RUNS"); do
    for s in $SERVERS; do
      for streams in 1 $BIG_STREAMS; do big_run "$s" "$streams"; done
    done
  done
}

# Fills a bucket with LIST_OBJECTS tiny objects (capped at SEED_MAX_SECONDS; the
# table says how many it got), then walks it RUNS times.
phase_list() {
  [ $want_cairn = 1 ] || return 0
  echo "== ListObjectsV2 over $LIST_OBJECTS objects (seeding at concurrency 32)" >&2
  "$LOADGEN" --url "http://127.0.0.1:$CAIRN_PORT" --access-key "$CAIRN_AK" --secret-key "$CAIRN_SK" \
    --op mkbucket --bucket list >/dev/null 2>>"$T/loadgen.err" || die "cannot create bucket 'list'"
  sync
  lg cairn seed --op put --size 64 --concurrency 32 --requests $LIST_OBJECTS \
    --duration $SEED_MAX_SECONDS --bucket list --prefix k/
  record cairn seed rps
  LIST_KEYS=$(field requests)
  [ "$(field errors)" = 0 ] || LIST_KEYS=0   # failed PUTs leave the count unknown
  lg cairn list --op list --concurrency 1 --requests "$RUNS" --bucket list --prefix k/ \
    --keys "${LIST_KEYS:-0}" --pages "1,$LIST_DEEP_PAGE"
  record cairn listp1 page1_ms
  record cairn listpd "page${LIST_DEEP_PAGE}_ms"
  if [ -n "${BAD[cairn.list]:-}" ]; then BAD[cairn.listp1]=1; BAD[cairn.listpd]=1; fi
}

# ---- report ------------------------------------------------------------------------

fmt() {  # fmt VALUE DECIMALS
  if [ "$1" = NA ]; then echo n/a; else printf "%.${2}f" "$1"; fi
}

# cell VALUES DECIMALS BADFLAG: "median (min..max)" of one server's runs.
cell() {
  local vals=$1 dec=$2 bad=$3 m lo hi
  [ -n "$bad" ] && { echo INVALID; return; }
  m=$(median "$vals")
  [ "$m" = NA ] && { echo n/a; return; }
  read -r lo hi < <(tr ' ' '\n' <<<"$vals" | grep -E '^[0-9.]+$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }')
  if [ "$lo" = "$hi" ]; then fmt "$m" "$dec"; else echo "$(fmt "$m" "$dec") ($(fmt "$lo" "$dec")..$(fmt "$hi" "$dec"))"; fi
}

# row LABEL KEY DECIMALS TARGET_KIND TARGET_VALUE: one table line.
# TARGET_KIND: ratio (cairn/nginx >= value), abs (cairn >= value), none.
row() {
  local label=$1 key=$2 dec=$3 kind=$4 tv=$5
  local c=NA n=NA ratio="-" target="-" note=""
  [ $want_cairn = 1 ] && c=$(median "${VALS[cairn.$key]:-}")
  [ $want_nginx = 1 ] && n=$(median "${VALS[nginx.$key]:-}")
  if [ "$c" != NA ] && [ "$n" != NA ] && awk -v n="$n" 'BEGIN { exit !(n > 0) }'; then
    ratio=$(awk -v c="$c" -v n="$n" 'BEGIN { printf "%.2fx", c / n }')
  fi
  case $kind in
    ratio) target=">= ${tv}x nginx"
           [ "$ratio" != "-" ] && note=$(awk -v r="${ratio%x}" -v t="$tv" 'BEGIN { print (r >= t) ? "met" : "below" }') ;;
    abs)   target=">= $(fmt "$tv" 0)"
           [ "$c" != NA ] && note=$(awk -v c="$c" -v t="$tv" 'BEGIN { print (c >= t) ? "met" : "below" }') ;;
  esac
  c=$(cell "${VALS[cairn.$key]:-}" "$dec" "${BAD[cairn.$key]:-}")
  n=$(cell "${VALS[nginx.$key]:-}" "$dec" "${BAD[nginx.$key]:-}")
  printf '%-34s %22s %22s %7s   %-15s %s\n' "$label" "$c" "$n" "$ratio" "$target" "$note"
}

report() {
  local fs
  fs=$(findmnt -n -o SOURCE,FSTYPE,OPTIONS -T "$T" 2>/dev/null | tr -s ' ' || stat -f -c '%T' "$T")
  echo
  echo "cairn benchmark ($([ "$QUICK" = 1 ] && echo quick || echo full)): median of $RUNS runs, loopback, $(nproc) CPUs shared by loadgen and server"
  echo "  data dirs: $T, removed at exit (filesystem: $fs)"
  echo "  cairn: $CAIRN, default config (fsync on); nginx: $(nginx -v 2>&1 | sed 's/.*: //'), 2 workers, sendfile, WebDAV PUT (no fsync)"
  echo "  load average: $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end (other work on the box skews figures)"
  echo "  MB = 10^6 bytes; figures are medians, (min..max) over the runs; ratio = cairn median / nginx median"
  echo
  printf '%-34s %22s %22s %7s   %-15s %s\n' metric "cairn (min..max)" "nginx (min..max)" ratio target ""
  printf '%s\n' "----------------------------------------------------------------------------------------------------------------"
  row "4 KiB PUT req/s (c=$CONC)" put4k 0 abs 2000
  row "4 KiB GET req/s (c=$CONC)" get4k 0 ratio 0.3
  row "64 MiB PUT MB/s (1 stream)" put64m.c1 0 ratio 0.5
  row "64 MiB GET MB/s (1 stream)" get64m.c1 0 ratio 0.8
  if [ -n "$BIG_STREAMS" ]; then
    row "64 MiB PUT MB/s ($BIG_STREAMS streams)" "put64m.c$BIG_STREAMS" 0 ratio 0.5
    row "64 MiB GET MB/s ($BIG_STREAMS streams)" "get64m.c$BIG_STREAMS" 0 ratio 0.8
  fi
  if [ $want_cairn = 1 ]; then
    row "64 B PUT req/s (c=32, list seeding)" seed 0 none 0
    row "List page 1 ms ($LIST_KEYS objects)" listp1 2 none 0
    row "List page $LIST_DEEP_PAGE ms ($LIST_KEYS objects)" listpd 2 none 0
  fi
  echo
  if [ "$INVALID" -gt 0 ]; then
    echo "INVALID: $INVALID loadgen run(s) had failed requests (see messages above); their figures are not trustworthy."
    return 1
  fi
}

# ---- main ------------------------------------------------------------------------

LIST_KEYS=0
START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
[ $want_nginx = 1 ] && start_nginx
[ $want_cairn = 1 ] && start_cairn
if [ $want_cairn = 1 ]; then
  "$LOADGEN" --url "http://127.0.0.1:$CAIRN_PORT" --access-key "$CAIRN_AK" --secret-key "$CAIRN_SK" \
    --op mkbucket --bucket bench >/dev/null || die "cannot create bucket 'bench' on cairn"
fi
phase_small
phase_big
phase_list
# Memory bound: one large PutObject (5 GiB; 1 GiB in quick mode) streamed to
# cairn; the server's peak RSS must not grow with the object.
RSS_LINE=""
if [ $want_cairn = 1 ]; then
  RSS_SIZE=$(( QUICK == 1 ? 1024 * 1024 * 1024 : 5 * 1024 * 1024 * 1024 ))
  sync
  RSS_LINE=$(/usr/bin/python3 "$HERE/put_rss.py" "http://127.0.0.1:$CAIRN_PORT" "$CAIRN_PID" \
             "$CAIRN_AK" "$CAIRN_SK" bench "$RSS_SIZE" 2>&1) || INVALID=$((INVALID + 1))
fi
# Codec throughput, in-process (same figures in quick and full mode: ~1 s).
EC_LINES=""
if [ -x "$BUILD/cairn-ecbench" ]; then
  EC_LINES=$("$BUILD/cairn-ecbench" 2>&1) || INVALID=$((INVALID + 1))
else
  echo "bench: $BUILD/cairn-ecbench not built; no codec figures" >&2
fi
# The L1 metadata cache, in-process: S3-FIFO's hit ratio beside LRU's on a
# Zipf trace and on one polluted by scans, and the ns of a hit.
CACHE_LINES=""
if [ -x "$BUILD/cairn-cachebench" ]; then
  CACHE_LINES=$("$BUILD/cairn-cachebench" 2>&1) || INVALID=$((INVALID + 1))
else
  echo "bench: $BUILD/cairn-cachebench not built; no cache figures" >&2
fi
# The rate limiter's cost per check, local and through a Redis of its own
# (started here from Debian's redis-server when it is installed).
RL_LINES=""
if [ -x "$BUILD/cairn-rlbench" ]; then
  RL_REDIS_ARGS=()
  RL_REDIS_PID=""
  if command -v redis-server >/dev/null 2>&1; then
    RL_REDIS_PORT=$(free_port)
    redis-server --port "$RL_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
      >/dev/null 2>&1 &
    RL_REDIS_PID=$!
    for _ in $(seq 50); do
      redis-cli -p "$RL_REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
      sleep 0.1
    done
    RL_REDIS_ARGS=(--redis "redis://127.0.0.1:$RL_REDIS_PORT")
  fi
  RL_LINES=$("$BUILD/cairn-rlbench" --runs "$RUNS" "${RL_REDIS_ARGS[@]}" 2>&1) || INVALID=$((INVALID + 1))
  if [ -n "$RL_REDIS_PID" ]; then
    kill "$RL_REDIS_PID" 2>/dev/null || true
    wait "$RL_REDIS_PID" 2>/dev/null || true
  fi
else
  echo "bench: $BUILD/cairn-rlbench not built; no rate limiter figures" >&2
fi
rc=0
report || rc=$?
if [ -n "$RSS_LINE" ]; then
  echo "memory: one PutObject of $((RSS_SIZE / 1024 / 1024)) MiB, server RSS before -> peak (VmHWM):"
  echo "  $RSS_LINE"
fi
if [ -n "$EC_LINES" ]; then
  echo "$EC_LINES"
fi
if [ -n "$CACHE_LINES" ]; then
  echo "$CACHE_LINES"
fi
if [ -n "$RL_LINES" ]; then
  echo "$RL_LINES"
fi
# Multipart transfers (issue 4): 4 and 16 parallel parts, and the server's
# peak RSS over a large multipart upload.
if [ "$want_cairn" = 1 ]; then
  MP_SIZE=$(( QUICK == 1 ? 256 * 1024 * 1024 : 1024 * 1024 * 1024 ))
  MP_RSS=$(( QUICK == 1 ? 512 * 1024 * 1024 : 5 * 1024 * 1024 * 1024 ))
  echo "multipart (boto3 transfer manager, 8 MiB parts; RSS line: one upload of $((MP_RSS / 1024 / 1024)) MiB in 64 MiB parts):"
  /usr/bin/python3 "$HERE/multipart.py" "http://127.0.0.1:$CAIRN_PORT" "$CAIRN_PID" "$CAIRN_AK" "$CAIRN_SK" \
    "$MP_SIZE" "$MP_RSS" 2>&1 | sed 's/^/  /' || rc=1
fi
# Job queue throughput (issue 4): no-op jobs through 4 workers against a bare
# single-threaded SQLite loop running the same statements.
if [ "$want_cairn" = 1 ]; then
  JOBS_N=$(( QUICK == 1 ? 1000 : 5000 ))
  echo "job queue (test.noop jobs, 4 workers; baseline: the same SQL in a bare 1-thread sqlite3 loop, median of $RUNS runs):"
  /usr/bin/python3 "$HERE/jobs.py" "$CAIRN" "$JOBS_N" "$RUNS" 4 "$T/jobs" 2>&1 | sed 's/^/  /' || rc=1
fi
# The data plane: one drive vs 4+2 in-process vs 4+2 over six nodes, and
# degraded GET.  Its own servers, started after ours are done with the disk.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/dataplane.sh" "$BUILD" || rc=$?
fi
# The audit trail (issue 10): 4 KiB PUT and GET with audit on against off,
# two servers side by side, and the journal's in-process figures.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/audit.sh" "$BUILD" || rc=$?
fi
# The metadata backends (issue 9): SQLite against PostgreSQL, cache on and
# off; deep listing; two gateways against one.  Its own servers and its own
# PostgreSQL, started after ours are done.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/metadata.sh" "$BUILD" || rc=$?
fi
# The live event stream (issue 11): publish-to-receive latency at 300
# sockets, then how many idle sockets one server holds and what they cost
# it.  Its own servers, one after the other.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/events.sh" "$BUILD" || rc=$?
fi
# Bucket notifications: webhook deliveries/s and their cost to PUTs (a rule
# against none, job_workers 2 and 4), then event-to-delivery latency.  Its
# own servers and its own receiver.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/notify.sh" "$BUILD" || rc=$?
fi
# The rest of S3 (issue 12): a versioned bucket against a plain one.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/features.sh" "$BUILD" || rc=$?
fi
# TLS against plain HTTP (issue 13): 4 KiB and 64 MiB GETs by curl.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/tls.sh" "$BUILD" || rc=$?
fi
# SSE-S3 against plain storage (issue 13): 4 KiB and 64 MiB PUTs and GETs.
if [ "$want_cairn" = 1 ]; then
  BENCH_QUICK=$QUICK bash "$HERE/sse.sh" "$BUILD" || rc=$?
fi
echo "bench: finished in $((SECONDS - START)) s" >&2
exit $rc
