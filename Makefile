# ftpalg: the commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo
RULES ?= rules/default.yaml

.PHONY: run build build-bench test unit script-tests e2e deps lint fmt bench demo check-rules fuzz-build clean man install deb packaging-tests

# Where `make install` puts things; DESTDIR is prefixed to every path.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCS_OUT ?= target/docs

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
test: deps lint unit script-tests check-rules packaging-tests e2e diagnose-live soak-short

deps:
	bash scripts/install-test-deps.sh

unit:
	$(CARGO) test --all-targets

## The test scripts' own logic, and the lab's pyftpdlib fix (no root; loopback only).
script-tests:
	bash tests/scripts/apt-backports.sh
	/usr/bin/python3 -W ignore::DeprecationWarning tests/scripts/pyftpd-fd-reuse.py

check-rules: build
	@for f in rules/*.yaml; do ./target/release/ftpalg check --rules $$f || exit 1; done

## Real servers and clients through a real NAT, in network namespaces (root).
e2e: build
	bash tests/e2e/run.sh
	bash tests/e2e/ops.sh
	bash tests/readme.sh

## `ftpalg diagnose --live` on the lab gateway's interface (root).
.PHONY: diagnose-live
diagnose-live: build
	bash tests/captures/live.sh

## The gateway under faults: 10,000 transfers at 200 sessions in the lab,
## every file checked, fds and RSS back to baseline (root; docs/soak.md).
.PHONY: soak soak-short
soak: build
	$(CARGO) build --release --example soak
	bash tests/soak/soak.sh full

soak-short: build
	$(CARGO) build --release --example soak
	bash tests/soak/soak.sh short

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

## Man pages and shell completions, generated from the clap definitions.
man:
	$(CARGO) run --quiet --example gen-docs -- $(DOCS_OUT)

## The binary, unit, man pages, completions, nftables snippets, the licence
## files, and the rules (only if none are there: an operator's rules are
## never replaced).
install: build man
	install -Dm755 target/release/ftpalg $(DESTDIR)$(BINDIR)/ftpalg
	install -d $(DESTDIR)$(UNITDIR)
	sed 's#/usr/bin/ftpalg#$(BINDIR)/ftpalg#g; s#/etc/ftpalg#$(SYSCONFDIR)/ftpalg#g' packaging/systemd/ftpalg.service >$(DESTDIR)$(UNITDIR)/ftpalg.service
	chmod 644 $(DESTDIR)$(UNITDIR)/ftpalg.service
	install -Dm644 -t $(DESTDIR)$(MANDIR)/man8 $(DOCS_OUT)/man8/*.8
	install -Dm644 -t $(DESTDIR)$(MANDIR)/man5 $(DOCS_OUT)/man5/*.5
	install -Dm644 $(DOCS_OUT)/completions/ftpalg.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/ftpalg
	install -Dm644 $(DOCS_OUT)/completions/_ftpalg $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_ftpalg
	install -Dm644 $(DOCS_OUT)/completions/ftpalg.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/ftpalg.fish
	install -Dm644 -t $(DESTDIR)$(DATADIR)/doc/ftpalg LICENSE-MIT LICENSE-APACHE
	install -Dm644 -t $(DESTDIR)$(DATADIR)/doc/ftpalg/nftables docs/nftables-transparent.nft docs/nftables-tproxy.nft docs/nftables-fail-open.nft
	install -Dm644 -t $(DESTDIR)$(DATADIR)/doc/ftpalg/systemd packaging/systemd/fail-open.conf
	install -Dm644 -t $(DESTDIR)$(DATADIR)/doc/ftpalg/rules rules/*.yaml
	[ -e $(DESTDIR)$(SYSCONFDIR)/ftpalg/rules.yaml ] || install -Dm644 packaging/rules.yaml $(DESTDIR)$(SYSCONFDIR)/ftpalg/rules.yaml

## A Debian package in target/deb/, built with dpkg-dev's tools: the
## dependencies from dpkg-shlibdeps, the control file from dpkg-gencontrol
## (see packaging/deb/build.sh and packaging/deb/debian/).
deb: build man
	bash packaging/deb/build.sh

## The unit passes systemd-analyze verify and security; the .deb has
## versioned shared-library dependencies and passes lintian (an error or a
## warning fails), installs, its rules pass check, and it purges cleanly
## (dpkg-dev and lintian; root to install).
packaging-tests: build man
	bash tests/packaging/systemd.sh
	bash tests/packaging/deb.sh

## Speed and footprint against a direct route and the kernel helper.
bench: deps build-bench
	bash bench/run.sh
	bash bench/diagnose.sh

## The seed's case live: a download through CGNAT to a 21-only server fails
## without ftpalg and succeeds with it.
demo: deps build
	bash tests/e2e/demo.sh

## Build the fuzz targets (needs cargo-fuzz and a nightly toolchain; see docs/fuzzing.md).
fuzz-build:
	cd fuzz && cargo fuzz build

clean:
	$(CARGO) clean
