#!/usr/bin/env bash
# Runs every test suite against the build in $1 (default: build):
#   1. C unit tests (Criterion, via meson test)
#   2. integration and end-to-end tests (pytest, real cairn processes), once
#      per metadata backend in $METADATA_BACKENDS (default "sqlite postgres":
#      the whole suite on SQLite, then the whole suite on PostgreSQL, which
#      conftest.py starts from Debian's binaries; about 4 and 4.5 minutes
#      on two cores)
# Exits non-zero if any suite fails.  Used by `make test` and `make test-asan`
# (which runs the integration suite on SQLite only: see the Makefile).
set -uo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
status=0

echo "== unit tests ($BUILD)"
# test_meta_pg needs a PostgreSQL server: pg-test.sh run starts a throwaway
# one for meson test (unless CAIRN_TEST_POSTGRES_URL names one) and stops it.
if ! scripts/pg-test.sh run meson test -C "$BUILD" --print-errorlogs --num-processes 2; then
  status=1
fi

export CAIRN_BIN="$PWD/$BUILD/cairn"
for backend in ${METADATA_BACKENDS:-sqlite postgres}; do
  echo "== integration tests ($BUILD, metadata on $backend)"
  started=$(date +%s)
  set +e
  $PY -m pytest -q -p no:cacheprovider tests/integration --metadata="$backend" ${PYTEST_ARGS:-}
  rc=$?
  set -e
  echo "== integration tests on $backend: $(( $(date +%s) - started )) s"
  # pytest exits 5 when it collected no test: that is a failure here, not a pass.
  if [ $rc -ne 0 ]; then status=1; fi
done

if [ $status -eq 0 ]; then echo "== all suites passed"; else echo "== FAILED"; fi
exit $status
