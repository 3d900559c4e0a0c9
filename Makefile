# svidgate — the one entry point. `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO   ?= cargo
VENV    := .venv
PY      := $(VENV)/bin/python
WASM    := target/wasm32-wasip1/release/svidgate_filter.wasm
SETUP_STAMP := $(VENV)/.setup-done

.PHONY: help setup wasm-target build wasm image test test-unit test-observability test-playground e2e lint fmt bench bench-core bench-envoy demo oci fuzz clean playground playground-serve

help:
	@echo "make demo   - set up, build and run the demo (CA, agents, Envoys, filter)"
	@echo "make test   - set up and run every test (unit, CLI, real-Envoy end to end)"
	@echo "make setup  - install what builds and tests need (idempotent)"
	@echo "make playground - the policy playground (target/playground/) and npm package (target/npm/)"
	@echo "make playground-serve - serve the playground on 127.0.0.1 (PLAYGROUND_PORT, default 8787)"
	@echo "make build | wasm | image | lint | bench | bench-core | bench-envoy | oci | fuzz"

# Idempotent: the wasm target, Debian tools the tests use, the Python venv with Envoy 1.40.
# Only the targets that run Envoy, wrk or the venv need it; build, lint and unit tests do not.
setup: $(SETUP_STAMP)
$(SETUP_STAMP): scripts/setup.sh requirements.txt playground/package-lock.json Cargo.lock
	scripts/setup.sh
	@touch $@

# The Rust target the filter compiles to (no network when it is installed already).
wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

build:
	$(CARGO) build --workspace --all-targets

# opt-level "z" for the module only (6% smaller than the profile's "s", no measurable Envoy CPU
# difference per request; a per-package profile override made it larger, so it is set here).
wasm: wasm-target
	CARGO_PROFILE_RELEASE_OPT_LEVEL=z $(CARGO) build -p svidgate-filter --target wasm32-wasip1 --release
	@ls -l $(WASM) | awk '{print "wasm module: " $$NF " (" $$5 " bytes)"}'

# Unit, table, CLI and end-to-end tests (the e2e tests start real Envoys on loopback; the image
# tests run the static binary under chroot), the alert rules under promtool, then the
# playground's npm package and browser tests.
test: setup wasm image test-observability
	RUST_TEST_THREADS=2 $(CARGO) test --workspace --all-targets
	$(MAKE) test-playground

# The policy playground: a static site (wasm-bindgen over core) and the npm package.
playground: setup
	CARGO=$(CARGO) scripts/build-playground.sh

PLAYGROUND_PORT ?= 8787
playground-serve: playground
	node playground/tools/serve.mjs target/playground $(PLAYGROUND_PORT)

# The npm package under `node --test`, and the site in headless chromium (playwright-core),
# both compared with `svidgate policy eval`. Screenshots: target/playground-test/.
test-playground: playground
	$(CARGO) build -p sidecar-host
	cd playground && node --test --test-concurrency=1 tests/

# Alerts and dashboard (deploy/observability/): generated files up to date, promtool checks and
# the alert unit tests (every alert firing and not firing). The real-Prometheus test is
# tests/tests/operations_e2e.rs (in `cargo test`).
test-observability: setup
	$(PY) scripts/observability.py check
	promtool check rules deploy/observability/svidgate.rules.yml
	promtool test rules tests/observability/svidgate.rules.test.yml

# Every crate's own tests (the filter's natively), without the end-to-end crate.
test-unit:
	$(CARGO) test

# Only the end-to-end tests against real processes (Envoy 1.40, svidgate ca, svidgate agent).
e2e: setup wasm image
	$(CARGO) build -p sidecar-host
	RUST_TEST_THREADS=2 $(CARGO) test -p svidgate-e2e

lint: wasm-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p svidgate-core -p svidgate-filter --target wasm32-wasip1 -- -D warnings

fmt:
	$(CARGO) fmt --all

bench-core:
	$(CARGO) bench -p svidgate-core --bench policy_eval

# Only the filter's part of `make bench` (docs/bench.md). BENCH_ENVOY_ARGS e.g. "--bisect".
bench-envoy: setup wasm
	$(CARGO) build -p sidecar-host
	$(PY) scripts/bench_envoy.py $(BENCH_ENVOY_ARGS)

# Everything in one bounded run (a few minutes): the filter in Envoy (variants, allowlist sizes,
# RSS by workers, compile time), the agent (first secret, idle RSS), the CA (1,000-agent storm,
# signatures/s); target/bench/report.json and charts, copied to docs/bench/ (docs/bench.md).
bench: setup wasm
	$(CARGO) build -p sidecar-host
	$(CARGO) build --release -p sidecar-host -p svidgate-e2e --bin svidgate --bin ca_storm
	$(PY) scripts/bench.py $(BENCH_ARGS)

# Coverage-guided fuzzing of the core parsers (cargo-fuzz + libFuzzer, nightly); docs/fuzzing.md.
# FUZZ_TIME seconds per target. New corpus entries go to fuzz/corpus/<target> (not committed).
FUZZ_TARGETS ?= spiffe_id svid_leaf policy_document document_shape request_path header_view istio_import jwt h2_authority
FUZZ_TIME    ?= 30
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then tc=+nightly; boot=; \
	else echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"; tc=; boot=RUSTC_BOOTSTRAP=1; fi; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t; \
	  dict=; if [ -f fuzz/dict/$$t.dict ]; then dict=-dict=$(CURDIR)/fuzz/dict/$$t.dict; fi; \
	  echo "== fuzz $$t ($(FUZZ_TIME)s)"; \
	  env $$boot $(CARGO) $$tc fuzz run -O $$t $(CURDIR)/fuzz/corpus/$$t $(CURDIR)/fuzz/seeds/$$t \
	    -- -max_total_time=$(FUZZ_TIME) $$dict || exit 1; \
	done

# The filter as OCI images (Wasm artifact + compat) under target/oci/, no Docker needed.
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
oci: wasm
	python3 scripts/oci.py --wasm $(WASM) --out target/oci --tag $(OCI_TAG)

# The svidgate container image, no Docker: a static binary (musl) alone in one layer, written as an
# OCI image layout (target/oci/svidgate/ and .tar) by scripts/oci.py; docs/deploy.md shows the push.
# The `image` profile (Cargo.toml) keeps this build to about a minute.
IMAGE_TARGET    := x86_64-unknown-linux-musl
SVIDGATE_STATIC := target/$(IMAGE_TARGET)/image/svidgate
IMAGE_SOURCE    ?= $(shell git config --get remote.origin.url 2>/dev/null)
image: setup
	$(CARGO) build -p sidecar-host --bin svidgate --target $(IMAGE_TARGET) --profile image
	python3 scripts/oci.py --image $(SVIDGATE_STATIC) --out target/oci --tag $(OCI_TAG) \
	  --source "$(IMAGE_SOURCE)" --revision "$$(git rev-parse HEAD 2>/dev/null)"

demo: setup wasm
	$(CARGO) build -p sidecar-host
	scripts/demo.sh

clean:
	$(CARGO) clean
