# Herdsman — the interface every script, test and user relies on.
#   make demo          local cluster, Prometheus, the operator: the judge promotes one release, rolls back the next
#   make test          everything CI runs: lint, types, unit and e2e tests on the real control plane
#   make cluster       start (or reuse) the local control plane; kubeconfig in .cluster/kubeconfig
#   make cluster-down  stop every process `make cluster` started
#   make install       apply crds/ to the cluster $KUBECONFIG names
#   make run           run the operator in the foreground against it
#   make test-providers  the metric providers against local servers speaking their APIs
#   make crds          regenerate crds/ from the pydantic models
#   make chaos         fault injection on the real control plane: kills, API faults, bad metrics, fuzzed manifests
#   make bench         print the benchmark figures (README performance table)
#   make bench-scale   N rollouts released at once on one operator (N=100 by default; N=1000 ...)
#   make bench-floor   the same release as N Deployments, no operator: the control plane's floor
#   make chart         lint the Helm chart, validate what it renders, lint the Dockerfile
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV ?= $(ROOT)/.venv
PY := $(VENV)/bin/python
export KUBECONFIG ?= $(ROOT)/.cluster/kubeconfig
CLUSTER ?= kwok
export CLUSTER
BIN = $(shell $(ROOT)/tests/cluster/build.sh 2>/dev/null)
KUBECTL = $(BIN)/kubectl
PYTEST_ARGS ?=

.PHONY: help
help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

# --- setup -------------------------------------------------------------------------------------

$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed

.PHONY: binaries
binaries:
	$(ROOT)/tests/cluster/build.sh >/dev/null

.PHONY: prometheus
prometheus:
	@command -v prometheus >/dev/null || $(ROOT)/tests/cluster/install-prometheus.sh

.PHONY: deps
deps: venv binaries prometheus

# --- cluster -----------------------------------------------------------------------------------

.PHONY: cluster
cluster: binaries
	$(ROOT)/tests/cluster/cluster.sh up

.PHONY: cluster-down
cluster-down:
	$(ROOT)/tests/cluster/cluster.sh down

.PHONY: crds
crds: venv
	$(PY) -m herdsman.api.crd $(ROOT)/crds

.PHONY: install
install: binaries
	$(KUBECTL) apply --server-side --force-conflicts -f $(ROOT)/crds/
	$(KUBECTL) wait --for=condition=Established crd -l app.kubernetes.io/part-of=herdsman --timeout=60s

.PHONY: run
run: venv
	$(PY) -m herdsman run $(RUN_ARGS)

# --- quality -----------------------------------------------------------------------------------

.PHONY: lint
lint: venv
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests
	$(VENV)/bin/mypy

.PHONY: chart helm-lint
chart helm-lint: venv binaries
	$(BIN)/helm lint --strict $(ROOT)/charts/herdsman
	PATH="$(BIN):$$PATH" $(PY) -m pytest -m unit $(ROOT)/tests/unit/test_chart*.py $(PYTEST_ARGS)

.PHONY: test
test: deps lint
	PATH="$(BIN):$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

.PHONY: test-providers
test-providers: venv
	$(PY) -m pytest -m providers $(PYTEST_ARGS)

# Knobs: HERDSMAN_CHAOS_KILLS (100), HERDSMAN_CHAOS_MANIFESTS (1000), HERDSMAN_CHAOS_FAULT_RATE
# (0.38). `make test` runs the same suite (marker `chaos`, under tests/).
.PHONY: chaos
chaos: deps
	PATH="$(BIN):$$PATH" $(PY) -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

.PHONY: bench
bench: deps
	PATH="$(BIN):$$PATH" $(PY) tests/bench/run_all.py

N ?= 100
.PHONY: bench-scale
bench-scale: deps
	N=$(N) PATH="$(BIN):$$PATH" $(PY) tests/bench/bench_scale.py

.PHONY: bench-floor
bench-floor: deps
	N=$(N) PATH="$(BIN):$$PATH" $(PY) tests/bench/bench_floor.py

# --- demo --------------------------------------------------------------------------------------

.PHONY: demo
demo: deps
	PATH="$(BIN):$$PATH" $(ROOT)/examples/demo.sh
