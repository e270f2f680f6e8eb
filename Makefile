# ftpalg: the commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
RULES ?= rules/default.yaml

.PHONY: run build build-bench test unit script-tests e2e deps lint fmt bench demo check-rules fuzz-build clean

## Build and run the gateway on the default rules (explicit proxy on 127.0.0.1:2121).
run:
	$(CARGO) build --release
	./target/release/ftpalg run --rules $(RULES)

build:
	$(CARGO) build --release

## What bench/run.sh runs: the gateway and the load generator (examples/ftpload.rs).
build-bench:
	$(CARGO) build --release --bins --examples

## Install what the tests need, then run every test: lint, unit, property,
## loopback integration, rules examples, and the namespace end-to-end suite.
test: deps lint unit script-tests check-rules e2e

deps:
	bash scripts/install-test-deps.sh

unit:
	$(CARGO) test --all-targets

## The shell scripts' own logic (no root, no network).
script-tests:
	bash tests/scripts/apt-backports.sh

check-rules: build
	@for f in rules/*.yaml; do ./target/release/ftpalg check --rules $$f || exit 1; done

## Real servers and clients through a real NAT, in network namespaces (root).
e2e: build
	bash tests/e2e/run.sh
	bash tests/e2e/ops.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

## Speed and footprint against a direct route and the kernel helper.
bench: deps build-bench
	bash bench/run.sh

## The seed's case live: a download through CGNAT to a 21-only server fails
## without ftpalg and succeeds with it.
demo: deps build
	bash tests/e2e/demo.sh

## Build the fuzz targets (needs cargo-fuzz and a nightly toolchain; see docs/fuzzing.md).
fuzz-build:
	cd fuzz && cargo fuzz build

clean:
	$(CARGO) clean
