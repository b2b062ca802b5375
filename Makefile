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

.PHONY: node-deps
node-deps: tests/parity/node_modules/.stamp ## Install the parity app's pinned npm packages

$(BUF):
	@mkdir -p $(BIN)
	GOBIN=$(abspath $(BIN)) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@mv $(BIN)/buf $@

# ---------------------------------------------------------------- code generation
.PHONY: proto
proto: venv ## Regenerate code from proto/ with the pinned generators
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
	$(VENV)/bin/ruff check service tests
	$(VENV)/bin/ruff format --check service tests
	$(VENV)/bin/mypy
	$(BUF) lint

.PHONY: breaking
breaking: $(BUF) ## buf breaking against main (WIRE_JSON)
	$(BUF) breaking --against '.git#branch=main'

.PHONY: fmt
fmt: venv ## Format Python code
	$(VENV)/bin/ruff format service tests
	$(VENV)/bin/ruff check --fix service tests

# ---------------------------------------------------------------- run and test
.PHONY: run
run: venv ## Run the service (starts a local Redis and a dev secret when none is configured)
	@scripts/run.sh

.PHONY: test-deps
test-deps: system-deps venv node-deps ## Install everything the tests need

.PHONY: test
test: test-deps checkgenerate lint ## Everything CI runs: generated-code check, lint, all tests
	$(PY) -m pytest

.PHONY: test-unit
test-unit: venv ## Fast tests without Redis, Node or a server
	$(PY) -m pytest tests/unit

.PHONY: clean
clean: ## Remove the venv, tool binaries and caches
	rm -rf $(VENV) $(TMP) .mypy_cache .ruff_cache .pytest_cache tests/parity/node_modules
