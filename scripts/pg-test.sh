#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, from Debian's binaries.
#
#   scripts/pg-test.sh start        initdb in a new temp dir, start on a free
#                                   127.0.0.1 port; prints the directory
#   scripts/pg-test.sh url DIR      prints the server's URL (postgres://...)
#   scripts/pg-test.sh stop DIR     stops the server and removes DIR
#   scripts/pg-test.sh halt DIR     stops the server (fast shutdown: sessions
#                                   are ended), keeping DIR (outage tests)
#   scripts/pg-test.sh resume DIR   starts a halted server again, same port
#   scripts/pg-test.sh run CMD...   runs CMD with CAIRN_TEST_POSTGRES_URL set:
#                                   a server started for it and stopped after,
#                                   unless the variable already names one
#
# Typical use (scripts/run-tests.sh does this):
#   PGDIR=$(scripts/pg-test.sh start) && export CAIRN_TEST_POSTGRES_URL=$(scripts/pg-test.sh url "$PGDIR")
#   ...; scripts/pg-test.sh stop "$PGDIR"
#
# The server trusts every local connection (auth method trust, user
# postgres), listens on 127.0.0.1 only (no Unix socket), and runs without
# fsync: it holds test data only.  initdb refuses to run as root, so as root
# the server runs as the system user cairn-test (created on first use) and
# the directory belongs to it.  Nothing here prints but the answer: progress
# and the server's own log stay in DIR/log.
set -euo pipefail

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
RUN_USER=cairn-test

die() { echo "pg-test.sh: $*" >&2; exit 1; }

# Runs a command as the server's user (ourselves unless we are root).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$RUN_USER" -- "$@"; else "$@"; fi
}

ensure_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id "$RUN_USER" >/dev/null 2>&1 && return 0
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER" 2>/dev/null ||
    id "$RUN_USER" >/dev/null 2>&1 || die "cannot create the user $RUN_USER (initdb refuses root)"
}

# Starts the server of DIR on PORT; returns pg_ctl's status.
pg_start() {
  as_owner "$PGBIN/pg_ctl" -D "$1/data" -l "$1/log" -w -t 30 \
    -o "-p $2 -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null 2>&1
}

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  [ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (apt-get install postgresql)"
  ensure_user
  local dir
  dir=$(mktemp -d /tmp/cairn-pg-XXXXXX)
  chmod 755 "$dir"
  mkdir "$dir/data"
  : >"$dir/log"
  [ "$(id -u)" -ne 0 ] || chown "$RUN_USER" "$dir" "$dir/data" "$dir/log"
  if ! as_owner "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/log" 2>&1; then
    cat "$dir/log" >&2
    rm -rf "$dir"
    die "initdb failed"
  fi
  # A port that was free a moment ago may be taken by the time the server
  # binds it: try a few.
  local port tries=0
  while :; do
    port=$(free_port)
    if pg_start "$dir" "$port"; then
      break
    fi
    tries=$((tries + 1))
    if [ $tries -ge 5 ]; then
      tail -n 20 "$dir/log" >&2
      rm -rf "$dir"
      die "the server did not start"
    fi
  done
  echo "$port" >"$dir/port"
  echo "$dir"
}

url() {
  local dir=${1:?usage: pg-test.sh url DIR}
  [ -f "$dir/port" ] || die "$dir holds no test server"
  echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
}

stop() {
  local dir=${1:?usage: pg-test.sh stop DIR}
  case "$dir" in /tmp/cairn-pg-*) ;; *) die "refusing to remove $dir (not made by pg-test.sh start)" ;; esac
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

halt() {
  local dir=${1:?usage: pg-test.sh halt DIR}
  [ -f "$dir/port" ] || die "$dir holds no test server"
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || die "the server of $dir did not stop"
}

resume() {
  local dir=${1:?usage: pg-test.sh resume DIR}
  [ -f "$dir/port" ] || die "$dir holds no test server"
  pg_start "$dir" "$(cat "$dir/port")" || { tail -n 20 "$dir/log" >&2; die "the server of $dir did not start again"; }
}

RUN_DIR=
run() {
  [ $# -gt 0 ] || die "usage: pg-test.sh run CMD [ARGS...]"
  if [ -z "${CAIRN_TEST_POSTGRES_URL:-}" ]; then
    if RUN_DIR=$(start); then
      trap 'stop "$RUN_DIR"' EXIT
      trap 'exit 130' INT TERM
      CAIRN_TEST_POSTGRES_URL=$(url "$RUN_DIR")
      export CAIRN_TEST_POSTGRES_URL
    else
      # The suites that need it fail and say why; the others still run.
      echo "pg-test.sh: no PostgreSQL server for the tests" >&2
    fi
  fi
  local rc=0
  "$@" || rc=$?
  return $rc
}

case "${1:-}" in
  start) start ;;
  url) url "${2:-}" ;;
  stop) stop "${2:-}" ;;
  halt) halt "${2:-}" ;;
  resume) resume "${2:-}" ;;
  run) shift; run "$@" ;;
  *) die "usage: pg-test.sh start | url DIR | stop DIR | halt DIR | resume DIR | run CMD..." ;;
esac
