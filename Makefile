# The two promises of the README: `make quickstart` and `make test`, from a machine with only
# python3 and make. uv comes from PyPI when it is not already on PATH; everything else from uv.lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
INTENT := $(UV) run --frozen intent
PORT ?= 3000

.PHONY: help install browser quickstart test test-fast lint format bench serve bento ui clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

# Bytecode is compiled at install (plain and -O, which the servers run under): with
# PYTHONDONTWRITEBYTECODE set, or a read-only install, every start compiled ~1,800 modules.
.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode
	PYTHONDONTWRITEBYTECODE= .venv/bin/python -O -m compileall -q -j 0 .venv/lib > /dev/null || true
	@touch $@

install: .venv/.synced  ## create .venv from uv.lock

quickstart: install  ## simulate -> features -> train -> register -> export -> serve, with an example request
	$(INTENT) quickstart --port $(PORT)

# The dashboard's browser test drives Debian's chromium + chromedriver (tests skip without them).
browser:  ## install chromium and chromedriver when missing (apt-get, as root)
	@command -v chromium > /dev/null || ( [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver \
		|| echo "chromium missing and not root: the browser test will be skipped" )

test: install browser  ## ruff, then the whole test suite (slow tests included)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen pytest -q

test-fast: install  ## the suite without tests marked slow
	$(UV) run --frozen pytest -q -m "not slow"

lint: install  ## ruff check and format check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: install  ## apply ruff fixes and formatting
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

bench: install  ## the benchmarks that need no prepared data, JSON on stdout
	$(INTENT) bench simulate
	$(INTENT) bench ingest
	$(INTENT) bench features
	$(INTENT) bench decide
	$(INTENT) bench serve

serve: install  ## scoring server on PORT with the champion model
	$(INTENT) serve --port $(PORT)

bento: install  ## Bento with the registry champion pinned (bentoml serve / containerize it)
	$(INTENT) bento build

ui: install  ## MLflow UI over the local tracking store
	$(UV) run --frozen mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000

clean:  ## remove generated data, models and MLflow runs (keeps .venv)
	rm -rf data models/*/ mlruns/mlflow.db mlruns/artifacts
