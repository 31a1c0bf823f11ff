# Offramp: `make run` starts everything on a fresh machine; `make test` runs every test.
# Everything the project needs is installed by these targets: uv and the locked Python
# dependencies into .venv, Kafka (Maven Central) and PostgreSQL (Debian) under .local/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3.11
UV_VERSION := 0.13.9
UV := .local/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
PYTEST_FLAGS ?=

.PHONY: help install infra-up infra-down infra-status run demo test test-unit test-handler \
        test-integration test-e2e test-fault soak lint format asyncapi docs bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-17s %s\n", $$1, $$2}'

$(UV):
	@echo "setup: installing uv $(UV_VERSION) into .local/uv" >&2
	@$(PYTHON_BOOTSTRAP) -m venv .local/uv
	@.local/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	@echo "setup: installing locked Python dependencies into $(VENV)" >&2
	@$(UV) sync --frozen --python $(PYTHON_BOOTSTRAP) --quiet
	@touch $@

install: $(VENV)/.synced ## Install the locked Python dependencies into .venv

infra-up: ## Provision and start Kafka and PostgreSQL (reuses what is up)
	@bash deploy/local/infra.sh up >/dev/null

infra-down: ## Stop exactly the Kafka and PostgreSQL that infra-up started
	@bash deploy/local/infra.sh down

infra-status: ## Show the local infrastructure
	@bash deploy/local/infra.sh status

run: install ## Start Kafka, PostgreSQL and the four services in the foreground (Ctrl-C stops all)
	@bash deploy/local/run.sh

demo: install ## With `make run` up: play the reply-exits-the-workflow flow and print what happened
	@$(PY) -m shared.cli demo

test: install ## Every test: unit, handler, integration, end to end (provisions what it needs)
	@$(PY) -m pytest $(PYTEST_FLAGS)

test-unit: install ## Pure domain tests (no I/O)
	@$(PY) -m pytest -m unit $(PYTEST_FLAGS)

test-handler: install ## Handler tests with in-memory fakes
	@$(PY) -m pytest -m handler $(PYTEST_FLAGS)

test-integration: install ## Integration tests on the real broker and database
	@$(PY) -m pytest -m integration $(PYTEST_FLAGS)

test-e2e: install ## The four services as processes on the real broker and database
	@$(PY) -m pytest -m e2e $(PYTEST_FLAGS)

test-fault: install ## Fault injection: poison, broker and database outages, kill -9, replicas, replays
	@$(PY) -m pytest -m fault $(PYTEST_FLAGS)

soak: install ## The fault scenarios with OFFRAMP_FAULT_SCALE (default 5) times the volume
	@OFFRAMP_FAULT_SCALE=$${OFFRAMP_FAULT_SCALE:-5} $(PY) -m pytest -m fault --timeout=3600 $(PYTEST_FLAGS)

lint: install ## ruff lint, ruff format check, mypy strict
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy shared services tests

format: install ## Apply ruff's formatting and safe fixes
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

asyncapi: install ## Regenerate the AsyncAPI document of every service into deploy/asyncapi/
	@$(PY) -m shared.asyncapi deploy/asyncapi

docs: install ## Regenerate the topic and setting tables in README.md
	@$(PY) -m shared.docs README.md --write

bench: install ## Throughput and latency figures (needs the local infrastructure)
	@$(PY) -m tests.bench
	@$(PY) -m tests.bench_exclusions

clean: ## Remove the virtualenv and caches (keeps .local: Kafka jars and data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
