#!/usr/bin/env bash
# Line and branch coverage of src/ over the unit, integration and fault
# suites (`make coverage`).  The build in $1 has -Db_coverage=true and the
# fault layer (-Dfaults=true: the fault suite needs it, and without a spec it
# behaves as the normal build).  Prints a table per module and per file and
# writes $1/coverage.json and $1/coverage.txt.  A failing suite still gets
# its coverage reported, and then fails the target.
# Processes killed with -9 or crashed on purpose write no counts: the figures
# are those of every process that exited.
set -uo pipefail
BUILD=${1:-build-coverage}
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
status=0
find "$BUILD" -name '*.gcda' -delete

echo "== unit tests ($BUILD)"
scripts/pg-test.sh run meson test -C "$BUILD" --print-errorlogs --num-processes 2 || status=1
export CAIRN_BIN="$PWD/$BUILD/cairn"
echo "== integration tests ($BUILD)"
$PY -m pytest -q -p no:cacheprovider tests/integration ${PYTEST_ARGS:-} || status=1
if [ "${COVERAGE_FAULTS:-1}" = 1 ]; then
  echo "== fault suite ($BUILD)"
  $PY -m pytest -q -p no:cacheprovider tests/fault || status=1
fi

echo "== coverage of src/"
# The build directory is the search path: without it gcovr also reads the
# .gcda files of any other coverage build under the tree.
gcovr -r . --object-directory "$BUILD" --filter 'src/' --gcov-ignore-parse-errors \
  --json-summary "$BUILD/coverage.json" --json-summary-pretty -o "$BUILD/coverage.txt" --txt -b "$BUILD" >/dev/null || status=1
$PY scripts/coverage-table.py "$BUILD/coverage.json" || status=1
exit $status
