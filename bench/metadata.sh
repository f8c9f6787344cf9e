#!/usr/bin/env bash
# bench/metadata.sh — the metadata benchmarks of issue 9, every comparison
# measured in one invocation:
#
#   1. SQLite against PostgreSQL, the metadata cache on and off (and "PG +
#      cache + Redis" when the build has redis_url): 4 KiB PUT, GET, HEAD,
#      DELETE, and LIST of a 1,000-key prefix (one ListObjectsV2 page), 16
#      connections, req/s with p50 and p99 latency; ratios against SQLite with
#      the cache on, which is what `cairn server` runs by default.  HEAD once
#      more at 4 connections ("HEAD c=4"): its latency short of saturation.
#   2. Deep listing on PostgreSQL (cache on): a bucket of 1,000,000 objects
#      (100,000 in quick mode) seeded straight into the tables with SQL, then
#      ListObjectsV2 page 1 against page 500 (page 50 quick).
#   3. Two gateways against one on PostgreSQL: aggregate 4 KiB PUT and GET
#      req/s over three storage nodes, the same 16 connections split over one
#      or two `cairn gateway` processes sharing one metadata database.
#
# Usage: bash bench/metadata.sh [BUILD_DIR]   (bench/run.sh calls it; so does
# `make bench-metadata`).  Environment as bench/run.sh: BENCH_QUICK=1,
# BENCH_RUNS, BENCH_DIR, BENCH_KEEP=1; and BENCH_PHASES="matrix deep cluster"
# (the default) runs only the phases named.
#
# Method.  PostgreSQL is Debian's (/usr/lib/postgresql/N/bin), initdb'd in
# the benchmark's temp dir and started on a free 127.0.0.1 port with its
# durability defaults (fsync, synchronous_commit and full_page_writes on), so
# it is held to what cairn's SQLite does (fsync on, every PUT durable before
# its answer).  initdb refuses root: as root the server runs as the system
# user cairn-test, as scripts/pg-test.sh does.  Each configuration is its own
# `cairn server` (PostgreSQL ones each on their own database of that one
# server), all running for the whole matrix, and the runs go round them in
# turn, op by op, the starting configuration rotating each run, so drift in
# the machine is spread over all of them.  Figures are medians over the runs
# (each run's own p50 and p99 for the latency columns).  A run with any failed
# request makes its figure INVALID and the script exit 1.  Targets are printed
# beside the figures, never enforced.
#
# The cache switches (cache_bytes / CAIRN_CACHE_BYTES, 0 = off; redis_url /
# CAIRN_REDIS_URL) are passed only when `cairn config describe` lists them:
# cairn refuses unknown CAIRN_ variables.  Without cache_bytes both cache
# columns run the same configuration (the report says so), and the Redis
# column is left out without redis_url.
set -euo pipefail

BUILD=${1:-build}
CAIRN=$BUILD/cairn
LOADGEN=$BUILD/cairn-loadgen
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
  RUNS=${BENCH_RUNS:-3}
  OP_SECONDS=1          # per PUT, GET, HEAD and LIST run
  MAX_PUTS=3000         # a PUT run also stops here (DELETE removes them all)
  DEEP_OBJECTS=100000
  DEEP_PAGE=50
  CLUSTER_SECONDS=1
else
  RUNS=${BENCH_RUNS:-5}
  OP_SECONDS=3
  MAX_PUTS=12000
  DEEP_OBJECTS=1000000
  DEEP_PAGE=500
  CLUSTER_SECONDS=3
fi
# Single-page listings: runs of JUMP_REQS requests of page 1, then of the
# deep page (or the other way round), DEEP_RUNS times.  They are cheap (a few
# ms each), so more of them than RUNS: short blocks, many of them, keep a
# burst of other work on the box from landing on one page only.
JUMP_REQS=100
DEEP_RUNS=$((RUNS * 2 + 1))
CONC=16
SIZE=4096
LIST_KEYS=1000
NODES=3                # storage nodes behind the gateways: 2+1
AK=benchroot
SK=benchroot-secret-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
MASTER_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
CLUSTER_SECRET=bench-cluster-secret-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PG_USER=cairn-test     # the system user scripts/pg-test.sh runs PostgreSQL as under root

die() { echo "metadata bench: $*" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"

[ -x "$CAIRN" ] || die "$CAIRN not built (run make build)"
[ -x "$LOADGEN" ] || die "$LOADGEN not built (run make build)"
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries under /usr/lib/postgresql (make deps)"

# ---- what this build can switch ----------------------------------------------------

OPTIONS=$("$CAIRN" config describe 2>/dev/null || true)
has_option() { grep -q "^| \`$1\` |" <<<"$OPTIONS"; }
HAS_CACHE=0; has_option cache_bytes && HAS_CACHE=1
HAS_REDIS=0; has_option redis_url && command -v redis-server >/dev/null && HAS_REDIS=1

# ---- temp dir, processes, cleanup ------------------------------------------------------

T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/cairn-metabench.XXXXXX")
PIDS=()
PG_DIR=""
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi; }
cleanup() {
  local rc=$?
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && { wait "$p" 2>/dev/null || true; }; done
  if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "metadata bench: kept $T" >&2
  else
    rm -rf "$T"
    case "$PG_DIR" in /tmp/cairn-metabench-pg.*) rm -rf "$PG_DIR" ;; esac
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
RESULTS=$T/results.log
: >"$RESULTS"



# ---- PostgreSQL ----------------------------------------------------------------------------

start_pg() {
  if [ "$(id -u)" = 0 ] && ! id "$PG_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null ||
      id "$PG_USER" >/dev/null 2>&1 || die "cannot create the user $PG_USER (initdb refuses root)"
  fi
  # On the benchmark's filesystem when PostgreSQL's user can reach it there.
  chmod 711 "$T"
  PG_DIR=$T/pg
  if [ "$(id -u)" = 0 ] && ! runuser -u "$PG_USER" -- test -x "$T"; then
    PG_DIR=$(mktemp -d /tmp/cairn-metabench-pg.XXXXXX)
    echo "metadata bench: $PG_USER cannot reach $T; PostgreSQL's data goes to $PG_DIR" >&2
  fi
  mkdir -p "$PG_DIR/data"
  : >"$PG_DIR/log"
  chmod 755 "$PG_DIR"
  [ "$(id -u)" != 0 ] || chown "$PG_USER" "$PG_DIR" "$PG_DIR/data" "$PG_DIR/log"
  as_pg "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$PG_DIR/log" 2>&1 ||
    { tail -n 20 "$PG_DIR/log" >&2; die "initdb failed"; }
  local tries
  for tries in 1 2 3 4 5; do
    PG_PORT=$(free_port)
    # Durability as shipped (fsync, synchronous_commit, full_page_writes on);
    # only where it listens and how many connections it takes are set.
    if as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200" \
        start >/dev/null 2>&1; then
      return 0
    fi
  done
  tail -n 20 "$PG_DIR/log" >&2
  die "PostgreSQL did not start"
}

pg_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$1"; }

# psql_db DB SQL: runs SQL (several statements allowed); prints unaligned rows.
psql_db() {
  "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$(pg_url "$1")" -c "$2" </dev/null
}

# ---- cairn processes ---------------------------------------------------------------------------

declare -A PORT PID
# start_cairn NAME ENV-ASSIGNMENTS... -- CAIRN-ARGS...: starts `cairn ARGS
# --listen .. --data T/NAME` with only the given CAIRN_* variables (plus the
# root credentials, warn-level logs and no scrubbing) and waits for it.
start_cairn() {
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local port
  port=$(free_port)
  env $(env | sed -n 's/^\(CAIRN_[A-Za-z0-9_]*\)=.*/-u \1/p') \
    CAIRN_ROOT_USER=$AK CAIRN_ROOT_PASSWORD=$SK CAIRN_LOG_LEVEL=warn CAIRN_SCRUB_INTERVAL=0 "${envs[@]}" \
    "$CAIRN" "$@" --listen "127.0.0.1:$port" --data "$T/$name" >"$T/$name.out" 2>"$T/$name.log" &
  PIDS+=($!)
  PID[$name]=$!
  PORT[$name]=$port
  wait_ready "$port" "${PID[$name]}" "$T/$name.log"
}

stop_cairn() {
  local pid=${PID[$1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---- loadgen runs and figures ------------------------------------------------------------------

INVALID=0
declare -A VALS BAD
LAST=""

# lg TAG URLS loadgen-args...: one run; failed requests mark TAG invalid.
lg() {
  local tag=$1 urls=$2; shift 2
  local rc=0
  LAST=$("$LOADGEN" --url "$urls" --access-key "$AK" --secret-key "$SK" "$@" 2>"$T/loadgen.err") || rc=$?
  echo "$tag $LAST" >>"$RESULTS"
  if [ $rc -ne 0 ] || [ -z "$LAST" ]; then
    BAD[$tag]=1
    INVALID=$((INVALID + 1))
    echo "metadata bench: $tag: run failed (exit $rc): ${LAST:-no output}" >&2
    head -n 5 "$T/loadgen.err" >&2 || true
  fi
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $LAST"; }

# record TAG FIELD...: keeps this run's FIELDs (as TAG.FIELD) for the medians.
record() {
  local tag=$1 f v line=""; shift
  for f in "$@"; do
    v=$(field "$f")
    VALS[$tag.$f]="${VALS[$tag.$f]:-} ${v:-NA}"
    line="$line $f=${v:-NA}"
  done
  echo "  $tag$line (errors=$(field errors))" >&2
}

median() {
  tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

fmt() { if [ "$1" = NA ]; then echo n/a; else printf "%.${2}f" "$1"; fi; }

# cell TAG FIELD DECIMALS: "median (min..max)", INVALID or n/a.
cell() {
  local vals=${VALS[$1.$2]:-} m lo hi
  [ -n "${BAD[$1]:-}" ] && { echo INVALID; return; }
  m=$(median "$vals")
  [ "$m" = NA ] && { echo n/a; return; }
  read -r lo hi < <(tr ' ' '\n' <<<"$vals" | grep -E '^[0-9.]+$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }')
  if [ "$lo" = "$hi" ]; then fmt "$m" "$3"; else echo "$(fmt "$m" "$3") ($(fmt "$lo" "$3")..$(fmt "$hi" "$3"))"; fi
}

# med TAG FIELD: the median, or NA when the tag is invalid.
med() { if [ -n "${BAD[$1]:-}" ]; then echo NA; else median "${VALS[$1.$2]:-}"; fi; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "NA" && b != "NA" && b > 0) printf "%.2fx", a / b; else print "-" }'; }

# verdict OK?: met / below, "-" when a figure is missing.
verdict() { awk -v e="$1" 'BEGIN { if (e == "") print "-"; else print (e ? "met" : "below") }'; }

# ---- 1. the backend matrix -------------------------------------------------------------------------

# On PostgreSQL the cache needs Redis to hear other gateways' writes
# (docs/cache.md): without redis_url it caches nothing, so with Redis at hand
# "PostgreSQL + cache" is the Redis configuration and carries the targets.
CONFIGS="sqlite sqlite_cache pg pg_cache"
TARGET_CFG=pg_cache
[ $HAS_REDIS = 1 ] && CONFIGS="sqlite sqlite_cache pg pg_redis" && TARGET_CFG=pg_redis
BASE=sqlite_cache
declare -A LABEL=([sqlite]="SQLite" [sqlite_cache]="SQLite + cache" [pg]="PostgreSQL"
                  [pg_cache]="PostgreSQL + cache" [pg_redis]="PG + cache + Redis")
REDIS_PORT=""

start_matrix() {
  local c envs
  if [ $HAS_REDIS = 1 ]; then
    REDIS_PORT=$(free_port)
    mkdir -p "$T/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$T/redis" \
      --daemonize no >"$T/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || die "redis-server did not start"
  fi
  for c in $CONFIGS; do
    envs=()
    case $c in pg*) psql_db postgres "CREATE DATABASE bench_$c" >/dev/null
                    envs+=("CAIRN_METADATA_URL=$(pg_url "bench_$c")") ;; esac
    case $c in sqlite | pg) [ $HAS_CACHE = 1 ] && envs+=(CAIRN_CACHE_BYTES=0) ;; esac
    [ "$c" = pg_redis ] && envs+=("CAIRN_REDIS_URL=redis://127.0.0.1:$REDIS_PORT")
    start_cairn "$c" "${envs[@]}" -- server
  done
}

url_of() { echo "http://127.0.0.1:${PORT[$1]}"; }

# The configurations in turn, starting at the (r mod n)-th.
rotated() {
  local r=$1 list=($CONFIGS)
  local n=${#list[@]} i
  for ((i = 0; i < n; i++)); do echo "${list[$(((r + i) % n))]}"; done
}

phase_matrix() {
  local c r u
  echo "== metadata backends: 4 KiB PUT/GET/HEAD/LIST/DELETE, $CONC connections, $RUNS runs ($CONFIGS)" >&2
  declare -gA NKEYS
  for c in $CONFIGS; do
    u=$(url_of "$c")
    "$LOADGEN" --url "$u" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket bench >/dev/null ||
      die "cannot create bucket 'bench' on $c"
    # Warm-up (connections, statement caches), then the 1,000 keys LIST reads.
    lg "$c.warmup" "$u" --op put --size $SIZE --concurrency $CONC --requests 500 --bucket bench --prefix warm/
    lg "$c.warmup" "$u" --op get --size $SIZE --concurrency $CONC --requests 2000 --bucket bench --prefix warm/ --keys 500
    lg "$c.seed" "$u" --op put --size $SIZE --concurrency $CONC --requests $LIST_KEYS --bucket bench --prefix list/
  done
  for r in $(seq "$RUNS"); do
    for c in $(rotated "$r"); do
      sync
      lg "$c.put" "$(url_of "$c")" --op put --size $SIZE --concurrency $CONC --duration $OP_SECONDS \
        --requests $MAX_PUTS --bucket bench --prefix "m/r$r/"
      record "$c.put" rps p50_ms p99_ms
      NKEYS[$c]=$(field requests)
    done
    # head4: HEAD's latency short of saturation (4 connections; the 16 of
    # the other rows queue on 2 cores that the load generator shares).
    for op in get head head4; do
      for c in $(rotated "$r"); do
        lg "$c.$op" "$(url_of "$c")" --op "${op%4}" --size $SIZE --concurrency "$([ "$op" = head4 ] && echo 4 || echo $CONC)" \
          --duration $OP_SECONDS --bucket bench --prefix "m/r$r/" --keys "${NKEYS[$c]:-1}"
        record "$c.$op" rps p50_ms p99_ms
      done
    done
    for c in $(rotated "$r"); do
      lg "$c.list" "$(url_of "$c")" --op list --concurrency $CONC --duration $OP_SECONDS \
        --bucket bench --prefix list/ --max-keys 1000 --keys $LIST_KEYS
      record "$c.list" rps p50_ms p99_ms
    done
    # Every key this run's PUTs made, so each run starts on the same tables.
    for c in $(rotated "$r"); do
      sync
      lg "$c.delete" "$(url_of "$c")" --op delete --concurrency $CONC --requests "${NKEYS[$c]:-1}" \
        --bucket bench --prefix "m/r$r/" --keys "${NKEYS[$c]:-1}"
      record "$c.delete" rps p50_ms p99_ms
    done
  done
  for c in $CONFIGS; do stop_cairn "$c"; done
}

# ---- 2. deep listing ------------------------------------------------------------------------------------

DEEP_SEED_SECONDS=NA
DEEP_AFTER=$(printf 'k/%010d' $(((DEEP_PAGE - 1) * 1000 - 1)))

phase_deep() {
  local u r
  echo "== deep listing on PostgreSQL + cache: $DEEP_OBJECTS objects, page 1 against page $DEEP_PAGE" >&2
  psql_db postgres "CREATE DATABASE bench_deep" >/dev/null
  start_cairn deep "CAIRN_METADATA_URL=$(pg_url bench_deep)" -- server
  u=$(url_of deep)
  "$LOADGEN" --url "$u" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket deep >/dev/null ||
    die "cannot create bucket 'deep'"
  # One real 64-byte object (key tmpl/0000000000); the seeded rows copy
  # everything of it but the key and the version id, and each gets its own
  # object_data row, so they list, HEAD and GET as small objects PUT
  # through S3 would.
  lg deep.template "$u" --op put --size 64 --requests 1 --bucket deep --prefix tmpl/
  local t0
  t0=$(date +%s.%N)
  psql_db bench_deep "
    BEGIN;
    CREATE TEMP TABLE tmpl AS SELECT * FROM objects
      WHERE bucket = 'deep' AND key = convert_to('tmpl/0000000000', 'UTF8');
    DO \$\$ BEGIN IF (SELECT count(*) FROM tmpl) <> 1 THEN RAISE 'no template object'; END IF; END \$\$;
    INSERT INTO objects (bucket, key, version_id, size, etag, mtime_ms, owner_id, storage, headers_json, layout)
      SELECT t.bucket, convert_to('k/' || lpad(g::text, 10, '0'), 'UTF8'), md5('bench-deep-' || g),
             t.size, t.etag, t.mtime_ms, t.owner_id, t.storage, t.headers_json, t.layout
      FROM tmpl t, generate_series(0, $DEEP_OBJECTS - 1) g;
    INSERT INTO object_data (version_id, data)
      SELECT md5('bench-deep-' || g), d.data
      FROM tmpl t JOIN object_data d ON d.version_id = t.version_id, generate_series(0, $DEEP_OBJECTS - 1) g;
    COMMIT;" >/dev/null || die "seeding the deep bucket failed"
  # Settle what a long-lived table would have settled: statistics, hint bits
  # and the visibility map (VACUUM), and the insert's dirty pages (CHECKPOINT),
  # so no listing below pays for the seeding.
  psql_db bench_deep "VACUUM (ANALYZE) objects" >/dev/null
  psql_db bench_deep "VACUUM (ANALYZE) object_data" >/dev/null
  psql_db bench_deep "CHECKPOINT" >/dev/null
  DEEP_SEED_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  sync
  # The seeded rows are objects: a few hundred of them read back whole.
  lg deep.get "$u" --op get --size 64 --concurrency 4 --requests 400 --bucket deep --prefix k/ --keys $DEEP_OBJECTS
  # Whole walks by continuation token: every seeded key must list, and the
  # deep page is timed as a client paging down to it sees it.
  lg deep.walk "$u" --op list --concurrency 1 --requests "$RUNS" --bucket deep --prefix k/ --max-keys 1000 \
    --keys $DEEP_OBJECTS --pages "1,$DEEP_PAGE"
  record deep.walk page1_ms "page${DEEP_PAGE}_ms"
  # Then the two pages alone, alternating, many times: page 1, and the deep
  # page by start-after (what its continuation token encodes: the key before it).
  for r in $(seq "$DEEP_RUNS"); do
    local order="p1 pd"
    [ $((r % 2)) = 0 ] && order="pd p1"
    for which in $order; do
      if [ "$which" = p1 ]; then
        lg deep.p1 "$u" --op list --concurrency 1 --requests $JUMP_REQS --bucket deep --prefix k/ \
          --max-keys 1000 --max-pages 1 --keys 1000
      else
        lg deep.pd "$u" --op list --concurrency 1 --requests $JUMP_REQS --bucket deep --prefix k/ \
          --max-keys 1000 --max-pages 1 --keys 1000 --start-after "$DEEP_AFTER"
      fi
      record "deep.$which" p50_ms p99_ms
    done
  done
  stop_cairn deep
}

# ---- 3. two gateways against one ------------------------------------------------------------------------

phase_cluster() {
  local i np nodes="" r
  echo "== two gateways against one on PostgreSQL ($NODES nodes), 4 KiB, $CONC connections in all" >&2
  for i in $(seq $NODES); do
    np=$(free_port)
    env $(env | sed -n 's/^\(CAIRN_[A-Za-z0-9_]*\)=.*/-u \1/p') CAIRN_CLUSTER_SECRET=$CLUSTER_SECRET CAIRN_LOG_LEVEL=warn \
      "$CAIRN" node --listen "127.0.0.1:$np" --drives "$T/node$i" >/dev/null 2>"$T/node$i.log" &
    PIDS+=($!)
    wait_ready "$np" "$!" "$T/node$i.log"
    nodes="$nodes${nodes:+,}http://127.0.0.1:$np"
  done
  psql_db postgres "CREATE DATABASE bench_cluster" >/dev/null
  local genv=("CAIRN_METADATA_URL=$(pg_url bench_cluster)" "CAIRN_MASTER_KEY=$MASTER_KEY"
              "CAIRN_CLUSTER_SECRET=$CLUSTER_SECRET")
  start_cairn gw1 "${genv[@]}" -- gateway --nodes "$nodes"
  start_cairn gw2 "${genv[@]}" -- gateway --nodes "$nodes"
  local one two
  one=$(url_of gw1)
  two="$(url_of gw1),$(url_of gw2)"
  "$LOADGEN" --url "$one" --access-key "$AK" --secret-key "$SK" --op mkbucket --bucket bench >/dev/null ||
    die "cannot create bucket 'bench' on the gateways"
  for g in gw1 gw2; do
    lg "$g.warmup" "$(url_of $g)" --op put --size $SIZE --concurrency $CONC --requests 500 --bucket bench --prefix "warm/$g/"
    lg "$g.warmup" "$(url_of $g)" --op get --size $SIZE --concurrency $CONC --requests 2000 --bucket bench \
      --prefix "warm/$g/" --keys 500
  done
  declare -A n
  for r in $(seq "$RUNS"); do
    local order="one two"
    [ $((r % 2)) = 0 ] && order="two one"
    for k in $order; do
      local urls=$one
      [ "$k" = two ] && urls=$two
      sync
      lg "cl.$k.put" "$urls" --op put --size $SIZE --concurrency $CONC --duration $CLUSTER_SECONDS \
        --requests $MAX_PUTS --bucket bench --prefix "c/$k/r$r/"
      record "cl.$k.put" rps p50_ms p99_ms
      n[$k]=$(field requests)
    done
    for k in $order; do
      local urls=$one
      [ "$k" = two ] && urls=$two
      lg "cl.$k.get" "$urls" --op get --size $SIZE --concurrency $CONC --duration $CLUSTER_SECONDS \
        --bucket bench --prefix "c/$k/r$r/" --keys "${n[$k]:-1}"
      record "cl.$k.get" rps p50_ms p99_ms
    done
  done
}

# ---- report -----------------------------------------------------------------------------------------------

report_matrix() {
  local op c label base_rps rps p50 p99 target e
  echo
  echo "metadata backends: 4 KiB objects, $CONC connections, ${OP_SECONDS}s a run (PUT also stops at $MAX_PUTS; DELETE removes what that run's PUT made), median of $RUNS runs"
  echo "  PostgreSQL $("$PGBIN/postgres" --version | awk '{ print $3 }') on 127.0.0.1 with fsync, synchronous_commit and full_page_writes on; SQLite as cairn runs it (fsync on)"
  if [ $HAS_CACHE = 1 ]; then
    echo "  cache off = CAIRN_CACHE_BYTES=0; cache on = the default${REDIS_PORT:+; Redis: redis-server on 127.0.0.1 (no persistence)}"
  else
    echo "  NOTE: this build has no cache_bytes option, so the 'cache' rows run the same configuration as the others"
  fi
  if [ $HAS_REDIS = 1 ]; then
    echo "  PostgreSQL caches only with Redis (without it other gateways' writes would go unseen): its cache row is PG + cache + Redis"
  else
    echo "  no 'PG + cache + Redis' rows: this build has no redis_url option (or redis-server is missing)"
  fi
  echo "  x base = req/s over ${LABEL[$BASE]}'s in this run; LIST = one ListObjectsV2 page of a 1,000-key prefix (req/s = pages/s)"
  echo
  printf '%-8s %-20s %26s %7s %8s %8s   %s\n' op configuration "req/s (min..max)" "x base" "p50 ms" "p99 ms" target
  printf '%s\n' "-------------------------------------------------------------------------------------------------------------"
  for op in put get head head4 list delete; do
    label=$(tr a-z A-Z <<<"$op")
    [ "$op" = list ] && label="LIST 1k"
    [ "$op" = head4 ] && label="HEAD c=4"
    base_rps=$(med "$BASE.$op" rps)
    for c in $CONFIGS; do
      rps=$(med "$c.$op" rps)
      p50=$(med "$c.$op" p50_ms)
      p99=$(med "$c.$op" p99_ms)
      target=""
      if [ "$c" = "$TARGET_CFG" ] && [ "$op" = get ]; then
        e=""; [ "$rps" != NA ] && [ "$base_rps" != NA ] && e=$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { print (b > 0 && a / b >= 0.8) ? 1 : 0 }')
        target=">= 0.8x base: $(verdict "$e")"
      elif [ "$c" = "$TARGET_CFG" ] && { [ "$op" = head ] || [ "$op" = head4 ]; }; then
        e=""; [ "$p99" != NA ] && e=$(awk -v a="$p99" 'BEGIN { print (a < 2) ? 1 : 0 }')
        target="p99 < 2 ms: $(verdict "$e")"
      fi
      printf '%-8s %-20s %26s %7s %8s %8s   %s\n' "$label" "${LABEL[$c]}" "$(cell "$c.$op" rps 0)" \
        "$(ratio "$rps" "$base_rps")" "$(fmt "$p50" 2)" "$(fmt "$p99" 2)" "$target"
      label=""
    done
  done
}

report_deep() {
  local p1 pd w1 wd e
  p1=$(med deep.p1 p50_ms)
  pd=$(med deep.pd p50_ms)
  echo
  echo "deep listing on PostgreSQL + cache: $DEEP_OBJECTS objects under k/ ($([ "$QUICK" = 1 ] && echo "quick mode: 100k objects, page $DEEP_PAGE instead of 1M and page 500" || echo "full size")),"
  echo "  seeded by SQL (INSERT ... SELECT generate_series, copies of one 64-byte object PUT through S3; then VACUUM ANALYZE,"
  echo "  CHECKPOINT) in ${DEEP_SEED_SECONDS} s; 400 of them read back by GET;"
  echo "  ListObjectsV2 max-keys=1000, one connection; page $DEEP_PAGE fetched by start-after=$DEEP_AFTER; median over $DEEP_RUNS runs of each run's p50 of $JUMP_REQS requests"
  echo
  printf '%-46s %24s %7s   %s\n' page "ms (min..max)" ratio target
  printf '%s\n' "-----------------------------------------------------------------------------------------------"
  printf '%-46s %24s %7s   %s\n' "page 1" "$(cell deep.p1 p50_ms 2)" "" ""
  e=""; [ "$p1" != NA ] && [ "$pd" != NA ] && e=$(awk -v a="$pd" -v b="$p1" 'BEGIN { print (b > 0 && a / b <= 1.2) ? 1 : 0 }')
  printf '%-46s %24s %7s   %s\n' "page $DEEP_PAGE" "$(cell deep.pd p50_ms 2)" "$(ratio "$pd" "$p1")" \
    "<= 1.2x page 1: $(verdict "$e")"
  w1=$(med deep.walk page1_ms)
  wd=$(med deep.walk "page${DEEP_PAGE}_ms")
  printf '%-46s %24s %7s   %s\n' "walking by continuation token: page 1" "$(cell deep.walk page1_ms 2)" "" \
    "(median of $RUNS whole walks,"
  printf '%-46s %24s %7s   %s\n' "walking by continuation token: page $DEEP_PAGE" "$(cell deep.walk "page${DEEP_PAGE}_ms" 2)" \
    "$(ratio "$wd" "$w1")" " each listing all $DEEP_OBJECTS keys)"
}

report_cluster() {
  local op label r1 r2
  echo
  echo "two gateways against one on PostgreSQL: $NODES storage nodes (2+1; 4 KiB objects stay inline in the metadata),"
  echo "  $CONC connections in all (2 gateways: 8 each), ${CLUSTER_SECONDS}s a run, median of $RUNS runs; both gateways run throughout"
  echo
  printf '%-6s %26s %26s %7s   %s\n' op "1 gateway req/s" "2 gateways req/s" ratio "p50 / p99 ms (1 gw | 2 gw)"
  printf '%s\n' "-------------------------------------------------------------------------------------------------------------"
  for op in put get; do
    label=$(tr a-z A-Z <<<"$op")
    r1=$(med "cl.one.$op" rps)
    r2=$(med "cl.two.$op" rps)
    printf '%-6s %26s %26s %7s   %s\n' "$label" "$(cell "cl.one.$op" rps 0)" "$(cell "cl.two.$op" rps 0)" \
      "$(ratio "$r2" "$r1")" \
      "$(fmt "$(med "cl.one.$op" p50_ms)" 2) / $(fmt "$(med "cl.one.$op" p99_ms)" 2) | $(fmt "$(med "cl.two.$op" p50_ms)" 2) / $(fmt "$(med "cl.two.$op" p99_ms)" 2)"
  done
}

# ---- main ---------------------------------------------------------------------------------------------------

START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PHASES=" ${BENCH_PHASES:-matrix deep cluster} "
start_pg
if [[ $PHASES == *" matrix "* ]]; then start_matrix; phase_matrix; fi
if [[ $PHASES == *" deep "* ]]; then phase_deep; fi
if [[ $PHASES == *" cluster "* ]]; then phase_cluster; fi
echo
echo "metadata benchmark ($([ "$QUICK" = 1 ] && echo quick || echo full)), issue 9: $(nproc) CPUs shared by loadgen, cairn and PostgreSQL;"
echo "  load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; data in $T (removed at exit)"
if [[ $PHASES == *" matrix "* ]]; then report_matrix; fi
if [[ $PHASES == *" deep "* ]]; then report_deep; fi
if [[ $PHASES == *" cluster "* ]]; then report_cluster; fi
echo
echo "targets (printed, not enforced): PostgreSQL + cache GET >= 0.8x SQLite; HEAD p99 < 2 ms; page $DEEP_PAGE <= 1.2x page 1"
echo "metadata bench: finished in $((SECONDS - START)) s" >&2
if [ "$INVALID" -gt 0 ]; then
  echo "INVALID: $INVALID loadgen run(s) had failed requests (see messages above); their figures are not trustworthy."
  exit 1
fi
