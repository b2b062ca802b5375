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
checkgenerate: proto ## Fail when regenerating changes any committed file
	@if [ -n "$$(git status --porcelain -- clients)" ]; then \
	  echo "generated code is out of date with proto/; run 'make proto' and commit:"; \
	  git status --porcelain -- clients; git --no-pager diff --stat -- clients; exit 1; fi

# ---------------------------------------------------------------- lint
.PHONY: lint
lint: venv $(BUF) ## ruff, mypy --strict and buf lint
	$(VENV)/bin/ruff check service tests clients/python bench
	$(VENV)/bin/ruff format --check service tests clients/python bench
	$(VENV)/bin/mypy
	$(BUF) lint

.PHONY: breaking
breaking: $(BUF) ## buf breaking against main (WIRE_JSON)
	$(BUF) breaking --against '.git#branch=main'

.PHONY: fmt
fmt: venv ## Format Python code
	$(VENV)/bin/ruff format service tests clients/python
	$(VENV)/bin/ruff check --fix service tests clients/python

# ---------------------------------------------------------------- run and test
.PHONY: run
run: venv ## Run the service (starts a local Redis and a dev secret when none is configured)
	@scripts/run.sh

.PHONY: test-deps
test-deps: system-deps venv node-deps node-client-deps ferretdb ## Install everything the tests need

.PHONY: test
test: test-deps checkgenerate lint test-service test-python test-go test-node ## Everything CI runs: generated code, lint, every test

.PHONY: test-service
test-service: system-deps venv node-deps ferretdb ## The service's tests: unit, integration, Express parity, differential
	$(PY) -m pytest

.PHONY: test-abuse
test-abuse: system-deps venv ## Attacks on the real service (floods, huge sessions, log volume), bounded to about a minute
	$(PY) -m pytest tests/abuse

.PHONY: test-topologies
test-topologies: system-deps venv ## Redis Sentinel and Cluster failovers against the real service
	$(PY) -m pytest tests/topologies

.PHONY: test-python
test-python: system-deps venv ## The Python client and its middleware against a live, seeded service
	$(HARNESS) $(PY) -m pytest clients/python/tests

.PHONY: test-go
test-go: system-deps venv ## The Go client against a live, seeded service
	cd clients/go && go vet ./... && test -z "$$(gofmt -l .)"
	$(HARNESS) bash -c 'cd clients/go && go test -count=1 ./...'

.PHONY: test-node
test-node: system-deps venv node-client-deps ## The Node client against a live, seeded service
	cd clients/node && npm run lint
	$(HARNESS) bash -c 'cd clients/node && npm test'

.PHONY: test-mongo
test-mongo: venv node-deps ferretdb ## The MongoDB store's tests: store, service, Express parity (connect-mongo), fault
	$(PY) -m pytest tests/mongo tests/parity/test_mongo_parity.py tests/faults/test_fault_mongo_kill.py

.PHONY: test-unit
test-unit: venv ## Fast tests without Redis, Node or a server
	$(PY) -m pytest tests/unit

# ---------------------------------------------------------------- load and benchmark (docs/performance.md)
.PHONY: bench-deps
bench-deps: system-deps venv ## Install the benchmark's pinned chart packages (ghz is built on first use)
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt

.PHONY: load
load: venv ## ghz (pinned, via reflection) against a running service, e.g. SESSIONVALIDATOR_RATE_LIMIT=off make run
	$(PY) bench/load.py

.PHONY: bench
bench: bench-deps ## Ours vs the Go and Node references on one machine, one run; BENCH_ARGS=--quick for a smoke test, --mongo adds ours over MongoDB
	$(PY) bench/bench.py $(BENCH_ARGS)

# ---------------------------------------------------------------- fuzzing and timing
FUZZ_SECONDS ?= 300
FUZZ_TARGET ?= all

.PHONY: fuzz
fuzz: venv ## Coverage-guided fuzzing (atheris): FUZZ_SECONDS per target (300), FUZZ_TARGET=cookie|stored|profile|all
	$(PY) tests/fuzz/run.py --target $(FUZZ_TARGET) --seconds $(FUZZ_SECONDS)

.PHONY: fuzz-properties
fuzz-properties: system-deps venv ## The Hypothesis properties, random and FUZZ_EXAMPLES_SCALE (100) times longer
	HYPOTHESIS_PROFILE=long FUZZ_EXAMPLES_SCALE=$(or $(FUZZ_EXAMPLES_SCALE),100) $(PY) -m pytest tests/fuzz/test_properties.py

.PHONY: timing
timing: venv ## dudect-style constant-time test of the signature check (run on a quiet machine)
	TIMING=1 $(PY) -m pytest tests/timing -m timing -s

.PHONY: clean
clean: ## Remove the venv, tool binaries and caches
	rm -rf $(VENV) $(TMP) .mypy_cache .ruff_cache .pytest_cache tests/parity/node_modules \
	  clients/node/node_modules clients/node/dist clients/node/dist-test
