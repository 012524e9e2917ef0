# The two commands a newcomer needs: `make run` and `make test`.
# Everything else is set up by cargo from Cargo.toml on first use.

CARGO ?= cargo
# The example keeps its cluster id here, not in the working tree.
EXAMPLE_STORAGE ?= target/example-storage

.PHONY: run test lint doc bench bench-checkpoint ci

## The example service with an embedded local receiver: several reports within half a minute.
run:
	ELECTRIC_STORAGE_DIR=$(EXAMPLE_STORAGE) \
	ELECTRIC_TELEMETRY_FIRST_REPORT_IN=3s \
	ELECTRIC_TELEMETRY_INTERVAL=8s \
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
