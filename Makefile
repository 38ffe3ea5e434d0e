# chatkeep: `make run` starts it, `make test` checks everything. `make help` lists the rest.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Where `make run` keeps its SQLite database and other state.
export CHATKEEP_DATA_DIR ?= data

# Extra arguments, e.g. `make run ARGS="--port 9000"` or `make test PYTEST_ARGS="-x -k turns"`.
ARGS        ?=
PYTEST_ARGS ?=

# apt-get needs root; use sudo when we are not root and it exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && echo sudo; })
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: help venv system-deps run lint test bench bench-peers chaos clean

help:
	@echo "make run          start chatkeep (data in \$$CHATKEEP_DATA_DIR, default data/)"
	@echo "make test         lint, then every test except chaos ones"
	@echo "make lint         ruff check, ruff format --check, mypy"
	@echo "make bench        run the benchmarks (python -m bench)"
	@echo "make bench-peers  chatkeep against LangChain and Open WebUI (python -m bench.peers)"
	@echo "make chaos        run the chaos tests"
	@echo "make venv         create .venv and install chatkeep with its test extras"
	@echo "make system-deps  apt-install PostgreSQL, Chromium, redis-server, nginx if missing"
	@echo "make clean        remove .venv, data/ and caches"

# ---- environment ------------------------------------------------------------------------

venv: $(STAMP)

# Re-installs only when pyproject.toml changes; otherwise instant.
$(STAMP): pyproject.toml
	@if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "installing python3-venv (apt)"; \
	    $(APT_GET) update -qq && $(APT_GET) install -y -qq python3-venv >/dev/null; \
	  else \
	    echo "error: '$(PYTHON) -m venv' is unavailable; install your Python's venv module" >&2; exit 1; \
	  fi; \
	fi
	@if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c '' >/dev/null 2>&1; then \
	  echo "creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv --clear $(VENV); \
	fi
	@echo "installing chatkeep and its test extras into $(VENV)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

# PostgreSQL (the second store backend, tested for real), Chromium (browser tests), and
# redis-server and nginx (the scale-out tests: Redis relay, a real load balancer in front).
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "warning: missing$$missing and no apt-get here; install them yourself" >&2; exit 0; \
	fi; \
	echo "installing$$missing (apt)"; \
	$(APT_GET) update -qq || echo "warning: apt-get update failed; trying the install anyway" >&2; \
	$(APT_GET) install -y -qq$$missing >/dev/null

# ---- running ------------------------------------------------------------------------------

run: venv
	$(BIN)/chatkeep serve $(ARGS)

bench: venv system-deps
	$(BIN)/python -m bench $(ARGS)

# The peers get virtualenvs of their own under $$CHATKEEP_BENCH_SCRATCH (first run: ~3 GB).
bench-peers: venv system-deps
	$(BIN)/python -m bench.peers $(ARGS)

# ---- checking -----------------------------------------------------------------------------

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
test: venv system-deps lint
	@rc=0; $(BIN)/pytest -q -m "not chaos" $(PYTEST_ARGS) || rc=$$?; \
	case $$rc in \
	  0) ;; \
	  5) echo "make test: FAILED, pytest collected no tests" >&2 ;; \
	  *) echo "make test: FAILED (pytest exit $$rc)" >&2 ;; \
	esac; \
	exit $$rc

chaos: venv system-deps
	$(BIN)/pytest -q -m chaos $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	rm -rf src/*.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
