#!/usr/bin/env bash
# Runs every test suite against the build in $1 (default: build):
#   1. C unit tests (Criterion, via meson test)
#   1b. with FAULT_BUILD set (make test): the fault build's unit tests too
#   2. integration and end-to-end tests (pytest, real cairn processes), once
#      per metadata backend in $METADATA_BACKENDS (default "sqlite postgres":
#      the whole suite on SQLite and the whole suite on PostgreSQL, which
#      conftest.py starts from Debian's binaries; about 5 and 9 minutes one
#      after the other on two cores, so they run side by side)
#   (each pytest pass ends with its 15 slowest tests: where CI time goes)
#   3. with FAULT_BUILD set: the fault suite (tests/fault) on that build, in
#      two passes (run_pass), side by side with the passes of 2
# Exits non-zero if any suite fails.  Used by `make test` and `make test-asan`
# (which runs the integration suite on SQLite only: see the Makefile).
set -uo pipefail
set +e
BUILD=${1:-build}
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
status=0
failed=()   # the suites that failed, listed again at the end

echo "== unit tests ($BUILD)"
# test_meta_pg needs a PostgreSQL server: pg-test.sh run starts a throwaway
# one for meson test (unless CAIRN_TEST_POSTGRES_URL names one) and stops it.
if ! scripts/pg-test.sh run meson test -C "$BUILD" --print-errorlogs --num-processes 2; then
  status=1; failed+=("unit tests ($BUILD)")
fi
if [ -n "${FAULT_BUILD:-}" ]; then
  echo "== unit tests ($FAULT_BUILD)"
  scripts/pg-test.sh run meson test -C "$FAULT_BUILD" --print-errorlogs --num-processes 2 ||
    { status=1; failed+=("unit tests ($FAULT_BUILD)"); }
fi

export CAIRN_BIN="$PWD/$BUILD/cairn"
backends=(${METADATA_BACKENDS:-sqlite postgres})
# The pytest passes run side by side (each one pytest process with its own
# temp dir, and its own PostgreSQL; the tests mostly wait on the servers they
# start, so they share 2 cores well): CI's 45-minute budget.
# SERIAL_INTEGRATION=1 runs them one after the other, output as it comes.
logs=$(mktemp -d "${TMPDIR:-/tmp}/cairn-it-logs.XXXXXX")
run_pass() {  # BACKEND (sqlite, postgres, or faults and faults-nodes: the fault suite)
  local backend=$1 started rc base
  started=$(date +%s)
  base=$(mktemp -d "${TMPDIR:-/tmp}/cairn-it-$backend.XXXXXX")
  if [ "$backend" = faults ] || [ "$backend" = faults-nodes ]; then
    # The fault suite in two passes of about the same length (its loops
    # mostly wait on the servers they restart): drives, races and
    # PostgreSQL; then storage nodes, the audit trail and notifications.
    local files=(tests/fault/test_faults.py tests/fault/test_races.py tests/fault/test_access_faults.py
                 tests/fault/test_pg_faults.py)
    if [ "$backend" = faults-nodes ]; then
      files=($(ls tests/fault/test_*.py | grep -v -x -F -e "${files[0]}" -e "${files[1]}" -e "${files[2]}" -e "${files[3]}"))
    fi
    CAIRN_BIN="$PWD/$FAULT_BUILD/cairn" $PY -m pytest -q -p no:cacheprovider "${files[@]}" --basetemp="$base" --durations=15
  else
    $PY -m pytest -q -p no:cacheprovider tests/integration --metadata="$backend" --basetemp="$base" --durations=15 ${PYTEST_ARGS:-}
  fi
  rc=$?
  rm -rf "$base"
  echo "== $backend pass: $(( $(date +%s) - started )) s"
  # pytest exits 5 when it collected no test: that is a failure here, not a pass.
  return $rc
}
passes=("${backends[@]}")
[ -n "${FAULT_BUILD:-}" ] && passes+=(faults faults-nodes)
if [ ${#passes[@]} -gt 1 ] && [ "${SERIAL_INTEGRATION:-0}" != 1 ]; then
  echo "== pytest passes side by side: ${passes[*]}"
  pids=()
  for pass in "${passes[@]}"; do
    run_pass "$pass" >"$logs/$pass.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!passes[@]}"; do
    wait "${pids[$i]}" || { status=1; failed+=("${passes[$i]} pass"); }
  done
  for pass in "${passes[@]}"; do
    echo "== $pass pass ($BUILD): output"
    cat "$logs/$pass.log"
  done
  # CI shows only the end of a long log: name the failed tests again there.
  for pass in "${passes[@]}"; do
    grep -E '^(FAILED|ERROR) ' "$logs/$pass.log" | sed "s/^/== $pass: /"
  done
else
  for pass in "${passes[@]}"; do
    echo "== $pass pass ($BUILD)"
    run_pass "$pass" || { status=1; failed+=("$pass pass"); }
  done
fi
rm -rf "$logs"

if [ $status -eq 0 ]; then echo "== all suites passed"; else echo "== FAILED: ${failed[*]}"; fi
exit $status
