# The two commands a newcomer needs: `make run` and `make test`.
# Everything else is set up by cargo from Cargo.toml on first use.

CARGO ?= cargo
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
	$(CARGO) build --quiet -p checkpoint --bin checkpoint
	$(CARGO) build --quiet --example service
	target/debug/checkpoint --listen $(CHECKPOINT_RUN_ADDR) --db $(CHECKPOINT_RUN_DB) --log warn & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' EXIT; \
	ELECTRIC_STORAGE_DIR=$(EXAMPLE_STORAGE) \
	ELECTRIC_TELEMETRY_URL=http://$(CHECKPOINT_RUN_ADDR)/ \
	ELECTRIC_TELEMETRY_FIRST_REPORT_IN=3s \
	ELECTRIC_TELEMETRY_INTERVAL=8s \
	ELECTRIC_TELEMETRY_SPREAD=off \
	target/debug/examples/service --duration 20s --clients 8 \
		--checkpoint-api http://$(CHECKPOINT_RUN_ADDR)/api/overview?days=2

## The example service alone, with the receiver inside the example (no database).
run-local:
	ELECTRIC_STORAGE_DIR=$(EXAMPLE_STORAGE) \
	ELECTRIC_TELEMETRY_FIRST_REPORT_IN=3s \
	ELECTRIC_TELEMETRY_INTERVAL=8s \
	ELECTRIC_TELEMETRY_SPREAD=off \
	$(CARGO) run --example service -- --local-receiver --duration 20s --clients 8

## Every test: unit, integration, examples built, and the doctests (README's included).
test:
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	$(CARGO) test -p checkpoint

## Formatting and clippy, warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --lib --no-default-features -- -D warnings
	$(CARGO) clippy -p checkpoint --all-targets -- -D warnings

## What recording costs, the flood test and the sketches' errors, in one release run
## (a package of its own, so its peer crates never slow `make test`).
bench:
	$(CARGO) run --release --quiet -p electric-telemetry-bench

## The checkpoint receiver: durable ingest rate over HTTP and the overview's latency for a
## year of a 10 000-cluster fleet, in one release run.
bench-checkpoint:
	$(CARGO) run --release --quiet -p checkpoint --bin checkpoint-bench

## API docs, warnings as errors.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

ci: lint test
