# b24watch: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PROFILE ?= debug

.PHONY: run test test-noroot deps build release package bench-agent bench-logs bench-sla bench-ingest bench-remote-write fmt lint clean

## run: build, then run a collector and a local agent on loopback (Ctrl-C stops both)
run:
	PROFILE=$(PROFILE) scripts/run-local.sh

## test: install what the tests need when missing, then run the whole suite
# --all-targets: the binaries the end-to-end tests run are built with the same features as the
# tests, so `cargo test` does not compile the dependency tree a second time.
# TEST_THREADS: the end-to-end tests mostly wait on real processes (ticks, restarts, receivers),
# so four at a time on a 2-core machine shorten the run (e2e: 358 s for 63 tests at four threads,
# 443 s for 60 at two).
TEST_THREADS ?= 4
test: deps
	cargo build --workspace --all-targets
	PACKAGE_PROFILE=package-check scripts/package.sh
	cargo test --workspace -- --test-threads=$(TEST_THREADS)

## test-noroot: the whole suite but the tests that need root (the `e2e_root` target, which installs
## the packages); `deps` asks for sudo only when a tool is missing. Same build as `make test`.
test-noroot: deps
	cargo build --workspace --all-targets
	cargo test --workspace --lib --bins --test e2e --test tidy -- --test-threads=$(TEST_THREADS)
	cargo test --workspace --doc

## deps: install test dependencies (promtool, logrotate, mariadb-server) when missing
deps:
	scripts/install-test-deps.sh

build:
	cargo build --workspace --bins

## release: optimised binaries (the agent with the size-optimised agent-release profile)
release:
	cargo build --release -p b24watch-collector --bin b24watch-collector
	cargo build --profile agent-release -p b24watch-agent --bin b24watch-agent

## package: .deb and .rpm of agent and collector, binaries for glibc 2.28, into target/package/
package:
	scripts/package.sh

## bench-agent: the agent's steady RSS and CPU per tick next to node_exporter's per scrape
bench-agent:
	scripts/bench-agent.sh

## bench-logs: log scanning throughput next to grep on the same 1 GiB file (SIZE_MB=...)
bench-logs:
	scripts/bench-logs.sh

## bench-sla: the 30-day SLA of 1,000 hosts, pure and read from SQLite (budget 50 ms)
bench-sla:
	cargo run --release -q -p b24watch-collector --example sla_bench

## bench-ingest: N agents (AGENTS=200) over gRPC into a release collector: samples/s, ack latency,
## bytes per sample on disk and written, RSS, /metrics render; VictoriaMetrics on the same samples
bench-ingest:
	cargo build --release -q -p b24watch-collector --bin b24watch-collector --example ingest_bench
	target/release/examples/ingest_bench

## bench-remote-write: remote write into a local VictoriaMetrics next to the store's ingest rate
bench-remote-write:
	cargo run --release -q -p b24watch-collector --example remote_write_bench

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf .run
	cargo clean
