#!/usr/bin/env bash
# Runs every libFuzzer target in $1 (the fuzz build dir) for $2 seconds each.
# Corpora persist in tests/fuzz/corpus/<target>/ (git-ignored), so longer runs
# build on earlier ones.  Exits non-zero on the first crash, leak or timeout.
set -euo pipefail
BUILD=$1
SECONDS_EACH=${2:-30}
cd "$(dirname "$0")/.."
status=0
for bin in "$BUILD"/fuzz_*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus=tests/fuzz/corpus/$name
  mkdir -p "$corpus"
  seeds=()
  [ -d "tests/fuzz/seeds/$name" ] && seeds=("tests/fuzz/seeds/$name")
  echo "== $name (${SECONDS_EACH}s)"
  # Undefined behaviour fails the run too (UBSan only prints by default).
  if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$BUILD/$name-" -print_final_stats=0 "$corpus" "${seeds[@]}" 2>"$BUILD/$name.log"; then
    echo "FAILED: $name (see $BUILD/$name.log and $BUILD/$name-*)"
    tail -30 "$BUILD/$name.log"
    status=1
  else
    grep -E "^#[0-9]+.*(DONE|pulse)" "$BUILD/$name.log" | tail -1 || true
  fi
done
exit $status
