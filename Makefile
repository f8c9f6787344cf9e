# cairn — the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is a step of those or an optional extra.

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FAULT_BUILD ?= build-faults
COV_BUILD  ?= build-coverage
PYTHON     ?= /usr/bin/python3
FUZZ_SECONDS ?= 30
comma := ,

.PHONY: audit-ship-million audit-ship-rss audit-ship-tsan lifecycle-scale
.PHONY: all deps build run test test-unit test-integration test-postgres test-asan test-asan-ci test-tsan test-faults coverage bench bench-quick bench-metadata fuzz fuzz-quick clean

all: build

deps:
	@bash scripts/install-deps.sh

# Reconfigures when the set of source files changes (meson.build lists folders).
define meson_build
	@mkdir -p $(1)
	@find src tests bench -name '*.c' 2>/dev/null | sort > $(1)/.srclist.new
	@if [ ! -f $(1)/build.ninja ]; then meson setup $(1) $(2) >/dev/null; \
	 elif ! cmp -s $(1)/.srclist.new $(1)/.srclist; then meson setup --reconfigure $(1) $(2) >/dev/null; fi
	@mv $(1)/.srclist.new $(1)/.srclist
	@ninja -C $(1) $(3)
endef

build: deps
	$(call meson_build,$(BUILD),)

run: build
	./$(BUILD)/cairn server

test-unit: build
	bash scripts/pg-test.sh run meson test -C $(BUILD) --print-errorlogs

# The integration suite on SQLite (the default; --metadata=postgres or
# CAIRN_TEST_METADATA=postgres runs it on PostgreSQL: see test-postgres).
test-integration: build
	CAIRN_BIN=$(CURDIR)/$(BUILD)/cairn $(PYTHON) -m pytest -q tests/integration

# The whole integration suite with every server's metadata in PostgreSQL
# (one server for the session from Debian's binaries, a migrated template,
# a clone per server; about 4.5 minutes).  `make test` runs it too.
test-postgres: build
	CAIRN_BIN=$(CURDIR)/$(BUILD)/cairn $(PYTHON) -m pytest -q tests/integration --metadata=postgres

# Every suite: unit tests on the normal build and on the fault build, then
# four pytest passes side by side (they mostly wait on the servers they
# start): the integration suite with metadata on SQLite, the same on
# PostgreSQL, and the fault suite on the fault build in two halves.  SERIAL_INTEGRATION=1
# runs the passes one after the other.
test: build
	$(call meson_build,$(FAULT_BUILD),-Dfaults=true)
	@FAULT_BUILD=$(FAULT_BUILD) bash scripts/run-tests.sh $(BUILD)

# The integration suite runs on SQLite only here (the unit tests still run
# the PostgreSQL backend's conformance suite under ASan): a second pass on
# PostgreSQL would cost about 7 more minutes of CI's 45-minute budget.
# `make test-asan ASAN_METADATA_BACKENDS="sqlite postgres"` runs both.
ASAN_METADATA_BACKENDS ?= sqlite
test-asan: deps
	$(call meson_build,$(ASAN_BUILD),-Db_sanitize=address$(comma)undefined -Db_lundef=false)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  METADATA_BACKENDS="$(ASAN_METADATA_BACKENDS)" PYTEST_ARGS="$(ASAN_PYTEST_ARGS)" bash scripts/run-tests.sh $(ASAN_BUILD)

# CI's ASan pass (.ci/run): every unit test, and the integration suite on
# SQLite without the files that mostly wait (job ticks, lifecycle days,
# rate-limit windows, delivery retries, membership and log-shipping timers),
# drive outside clients (aws cli, rclone, s3cmd) or stream gigabytes; about
# half the suite's time, and all of its request parsing, S3 handlers, SSE,
# erasure coding, cluster and durability tests.  `make test-asan` runs them
# all (about 15 minutes more than this on two cores).
ASAN_CI_SKIP := huge lifecycle events jobs audit_ship rate_limits membership notifications clients clients_tls log_ship placement cli
test-asan-ci:
	@$(MAKE) --no-print-directory test-asan ASAN_PYTEST_ARGS="$(foreach f,$(ASAN_CI_SKIP),--ignore=tests/integration/test_$(f).py)"

# TSan: Criterion's runner does not start under TSan, so this runs the
# integration suite against a TSan-built server (the concurrency lives there).
test-tsan: deps
	$(call meson_build,$(TSAN_BUILD),-Db_sanitize=thread -Db_lundef=false)
	CAIRN_BIN=$(CURDIR)/$(TSAN_BUILD)/cairn TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# The fault suite: a build with the fault-injection layer (-Dfaults=true),
# its unit tests (allocation failures among them), then every I/O call of
# PUT, overwrite, DELETE, multipart complete and heal on six drives, and of a
# PUT and a rebalance pass over storage nodes, failed or crashed in turn,
# each run checked by a restart, the ledger and fsck (about 11 minutes).
test-faults: deps
	$(call meson_build,$(FAULT_BUILD),-Dfaults=true)
	bash scripts/pg-test.sh run meson test -C $(FAULT_BUILD) --print-errorlogs --num-processes 2
	CAIRN_BIN=$(CURDIR)/$(FAULT_BUILD)/cairn $(PYTHON) -m pytest -q -p no:cacheprovider tests/fault

# Line and branch coverage per module over the unit, integration and fault
# suites (gcovr; scripts/coverage.sh).  About 20 minutes; not part of CI.
coverage: deps
	$(call meson_build,$(COV_BUILD),-Db_coverage=true -Dfaults=true)
	@bash scripts/coverage.sh $(COV_BUILD)

fuzz: deps
	$(call meson_build,$(FUZZ_BUILD),-Dfuzz=true --native-file scripts/clang.ini -Db_sanitize=address$(comma)undefined -Db_lundef=false)
	@bash scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz-quick:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=5

bench: build
	@bash bench/run.sh $(BUILD)

bench-quick: build
	@BENCH_QUICK=1 bash bench/run.sh $(BUILD)

# Only the metadata benchmarks (bench/metadata.sh, also part of both targets
# above): `make bench-metadata BENCH_QUICK=1` for the short version.
bench-metadata: build
	@bash bench/metadata.sh $(BUILD)

# The audit shipper's long runs (issue 10), none of them part of CI (which
# runs the short versions: test_audit_ship's 8 x 2,000 in the unit suite,
# and bench-quick's cairn-shipbench runs, an RSS check among them).
#   audit-ship-million  100 threads x 10,000 events, then close: exactly
#                       1,000,000 events of the run's correlation id in the
#                       store (SQLite, fsync on; a few minutes)
#   audit-ship-rss      RSS sampled every million events over 10 million
#                       (fsync off; fails past 64 MiB of growth; about 20 min)
#   audit-ship-tsan     the million run on a TSan build (SHIP_TSAN_EVENTS per
#                       thread, default 10,000: long; 200 for a quick look)
SHIP_TSAN_EVENTS ?= 10000
audit-ship-million: build
	./$(BUILD)/cairn-shipbench --threads 100 --events 10000

audit-ship-rss: build
	./$(BUILD)/cairn-shipbench --threads 10 --events 1000000 --no-fsync --rss --rss-every 1000000 --rss-slack-mib 64 --journal-max-mib 256 --idle-probe-s 0

audit-ship-tsan: deps
	$(call meson_build,$(TSAN_BUILD),-Db_sanitize=thread -Db_lundef=false,cairn-shipbench)
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./$(TSAN_BUILD)/cairn-shipbench --threads 100 \
	  --events $(SHIP_TSAN_EVENTS) --idle-probe-s 0

# Lifecycle at scale (docs/lifecycle.md): LIFECYCLE_OBJECTS objects loaded
# straight into the metadata (inline: no shard files), expired by one run
# paced to LIFECYCLE_RATE per second (default objects / 20) while a reader's
# GETs are timed; passes when every one went, none faster than the pace,
# every GET answered.  METADATA=postgres for PostgreSQL.  Not part of CI,
# which runs the 5,000-object version in test_lifecycle.
LIFECYCLE_OBJECTS ?= 1000000
LIFECYCLE_RATE ?=
METADATA ?= sqlite
lifecycle-scale: build
	LIFECYCLE_SCALE_OBJECTS=$(LIFECYCLE_OBJECTS) $(if $(LIFECYCLE_RATE),LIFECYCLE_SCALE_RATE=$(LIFECYCLE_RATE)) \
	  CAIRN_BIN=$(CURDIR)/$(BUILD)/cairn $(PYTHON) -m pytest -q -s tests/integration/test_lifecycle.py \
	  -k test_scale_steady_pace_while_serving_gets --metadata=$(METADATA)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(FAULT_BUILD) $(COV_BUILD)
