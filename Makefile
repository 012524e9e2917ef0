# The two commands a newcomer needs: `make run` and `make test`.
# Everything else is set up by cargo from Cargo.toml on first use.

CARGO ?= cargo
# Where cargo builds (the binaries `make run` starts are found there too).
CARGO_TARGET_DIR ?= target
# Every package but the benchmark's (whose peer crates build only with `make bench`).
PACKAGES = -p electric-telemetry -p electric-telemetry-report -p checkpoint -p example-service -p host-provider-test
# The example keeps its cluster id here, not in the working tree.
EXAMPLE_STORAGE ?= target/example-storage

.PHONY: run run-local test lint doc bench bench-checkpoint ci

## Both halves: the example service reports into a checkpoint receiver started here (SQLite
## under target/), and the run ends with the receiver's answers checked against the simulation.
## Both start afresh each run, so the answers cover exactly this run.
CHECKPOINT_RUN_DB ?= target/checkpoint-run.db
CHECKPOINT_RUN_ADDR ?= 127.0.0.1:7431
run:
	rm -rf $(EXAMPLE_STORAGE) $(CHECKPOINT_RUN_DB) $(CHECKPOINT_RUN_DB)-wal $(CHECKPOINT_RUN_DB)-shm
	$(CARGO) build -p checkpoint --bin checkpoint -p example-service --bin service
	$(CARGO_TARGET_DIR)/debug/checkpoint --listen $(CHECKPOINT_RUN_ADDR) --db $(CHECKPOINT_RUN_DB) --log warn & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' EXIT; \
	ELECTRIC_STORAGE_DIR=$(EXAMPLE_STORAGE) \
	ELECTRIC_TELEMETRY_URL=http://$(CHECKPOINT_RUN_ADDR)/ \
	ELECTRIC_TELEMETRY_FIRST_REPORT_IN=3s \
	ELECTRIC_TELEMETRY_INTERVAL=8s \
	ELECTRIC_TELEMETRY_SPREAD=off \
	$(CARGO_TARGET_DIR)/debug/service --duration 20s --clients 8 \
		--checkpoint-api http://$(CHECKPOINT_RUN_ADDR)/api/overview?days=2

## The example service alone, with the receiver inside the example (no database).
## EXAMPLE_FLAGS adds flags, e.g. an opt-in service that consents after 5 s:
## make run-local EXAMPLE_FLAGS="--opt-in --consent-after 5s --consent-level usage --status"
EXAMPLE_FLAGS ?=
run-local:
	ELECTRIC_STORAGE_DIR=$(EXAMPLE_STORAGE) \
	ELECTRIC_TELEMETRY_FIRST_REPORT_IN=3s \
	ELECTRIC_TELEMETRY_INTERVAL=8s \
	ELECTRIC_TELEMETRY_SPREAD=off \
	$(CARGO) run -p example-service -- --local-receiver --duration 20s --clients 8 $(EXAMPLE_FLAGS)

## Every test of every package: unit, integration, examples built, and the doctests (README's
## included), in one build.
test:
	$(CARGO) test $(PACKAGES) --all-targets
	$(CARGO) test -p electric-telemetry -p checkpoint --doc

## Formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p electric-telemetry --lib --no-default-features -- -D warnings

## What recording costs, the flood test and the sketches' errors, in one release run
## (a package of its own, so its peer crates never slow `make test`).
bench:
	$(CARGO) run --release --quiet -p electric-telemetry-bench

## The checkpoint receiver: durable ingest rate over HTTP and the overview's latency for a
## year of a 10 000-cluster fleet, in one release run.
bench-checkpoint:
	$(CARGO) run --release --quiet -p checkpoint --bin checkpoint-bench

## API docs of every package, private items included, warnings (a stale link) as errors.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --document-private-items

ci: lint test
