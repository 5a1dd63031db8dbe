# sfsync - the project's interface. `make test` on a fresh clone does everything CI does.
#
#   make venv             .venv (Python 3.12): requirements/dev.txt + the project, editable
#   make sam-venv         .venv-sam: AWS SAM CLI alone (its pins never meet the Lambda dependencies)
#   make lint             ruff check, ruff format --check, mypy
#   make static           template / state machine / sample-event checks (pytest -m static)
#   make test             venvs + lint + every test tier (pytest -n 2, the chaos tier too) + sam build check
#                         (the venvs side by side, then lint, the tests and the sam build check side by side)
#   make chaos            the chaos tier: 52 seeded fault schedules on the local stack (SEED=17: replay one)
#   make sam-build-check  `sam validate --lint` and `sam build` of template.yaml, no AWS account (~1-5 min, mostly downloads)
#   make demo             the local end-to-end demo (`sfsync demo`); also serves its AWS APIs: prints the endpoint + a command
#   make bench            every benchmark script under bench/, figures printed
#   make clean            build and cache artifacts;  make distclean: also both venvs

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
SAM := $(SAM_VENV)/bin/sam
PYTEST_WORKERS ?= 2
BUILD_DIR := .aws-sam/build-check

# A real python3.12 executable: on PATH, or any pyenv 3.12.x (pyenv shims fail unless 3.12 is selected).
ifndef PYTHON312
PYTHON312 := $(shell for p in "$$(command -v python3.12 2>/dev/null)" $$(ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r); do \
	[ -n "$$p" ] && [ -x "$$p" ] && "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' 2>/dev/null && break; \
	done)
endif

export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv sam-venv lint format static test test-tiers test-fast chaos sam-validate sam-build-check demo bench clean distclean check-python

help:
	@sed -n '3,13p' Makefile | sed 's/^# \{0,1\}//'

check-python:
	@if [ -z "$(PYTHON312)" ]; then \
		echo "error: no Python 3.12 found (tried python3.12 on PATH and \$$(pyenv root)/versions/3.12*); install it, e.g. 'pyenv install 3.12'" >&2; \
		exit 1; \
	fi

# ------------------------------------------------------------------ environments (stamps keyed on the requirement files)
# The pinned files are installed with uv (requirements/uv.txt, bootstrapped into .venv by pip): it fetches and
# unpacks in parallel, several times faster than pip on a fresh clone. Same pins, same packages; bytecode is
# compiled as pip would. Should uv fail (an index only pip is configured for), pip installs the same file.
# $(call install,<venv python>,<pip arguments>)
install = { [ -x $(UV) ] && $(UV) pip install --quiet --python $(1) --compile-bytecode $(2); } || \
	{ echo "uv unavailable or failed: installing with pip" >&2; $(1) -m pip install --quiet $(2); }

$(UV): requirements/uv.txt | check-python
	@[ -x $(PY) ] || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/uv.txt || echo "uv not installed: pip will install the venvs" >&2
	@touch $@ 2>/dev/null || true

$(VENV)/.stamp: requirements/dev.txt layers/engine/requirements.txt pyproject.toml | $(UV) check-python
	@[ -x $(PY) ] || $(PYTHON312) -m venv $(VENV)
	$(call install,$(PY),-r requirements/dev.txt)
	$(call install,$(PY),--no-deps -e .)
	@touch $@

venv: $(VENV)/.stamp

$(SAM_VENV)/.stamp: requirements/sam.txt | $(UV) check-python
	@[ -x $(SAM_VENV)/bin/python ] || $(PYTHON312) -m venv $(SAM_VENV)
	$(call install,$(SAM_VENV)/bin/python,-r requirements/sam.txt)
	@touch $@

sam-venv: $(SAM_VENV)/.stamp

# ------------------------------------------------------------------ checks
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

static: venv sam-venv
	$(PY) -m pytest -m static tests/static -q

sam-validate: sam-venv
	$(SAM) validate --lint --template template.yaml

# `sam build` checks that the runtime's python3.12 is on PATH: put the one found above first.
sam-build-check: sam-venv check-python
	$(SAM) validate --lint --template template.yaml
	rm -rf $(BUILD_DIR)
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM) build --template template.yaml --build-dir $(BUILD_DIR) --cache-dir .aws-sam/cache --cached
	@for fn in DispatcherFunction ObjectSyncFunction FullSyncFunction WriteBackFunction; do \
		test -f $(BUILD_DIR)/$$fn/app.py || { echo "sam build: $$fn/app.py missing from the build" >&2; exit 1; }; \
	done
	@test -d $(BUILD_DIR)/EngineLayer/python/sfsync || { echo "sam build: the layer lacks python/sfsync" >&2; exit 1; }
	@echo "sam build check: OK"

# The venvs are built side by side, then lint, the test tiers and the sam build check run side by side: the
# tests keep both cores busy, while the sam build mostly waits on the network and mypy uses one core for a
# minute. Each job's output is printed in one block when it ends; any failure fails `make test`.
test:
	$(MAKE) --no-print-directory -j2 venv sam-venv
	$(MAKE) --no-print-directory -j3 --output-sync=target lint test-tiers sam-build-check

# worksteal: the chaos tier (52 schedules of ~15 s CPU) comes first in collection order; with xdist's default
# `load` the first worker's initial share holds all of it, worksteal lets the other worker take some.
test-tiers: venv sam-venv
	$(PY) -m pytest tests -n $(PYTEST_WORKERS) --dist worksteal -q

# Everything except lint and the sam build (a quicker loop while developing).
test-fast: venv sam-venv
	$(PY) -m pytest tests -n $(PYTEST_WORKERS) --dist worksteal -q

# The chaos tier alone (also part of `make test`); SEED=17 replays one schedule with its timeline.
chaos: venv
ifdef SEED
	$(PY) bench/chaos.py --seed $(SEED) --verbose
else
	$(PY) -m pytest tests/chaos -m chaos -n $(PYTEST_WORKERS) --dist worksteal -q
endif

# ------------------------------------------------------------------ tools
demo: venv
	$(VENV)/bin/sfsync demo

bench: venv
	@ls bench/*.py >/dev/null 2>&1 || { echo "no benchmark scripts under bench/" >&2; exit 1; }
	@for script in bench/*.py; do echo "== $$script"; $(PY) "$$script"; done

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist bench/results
	find . -name __pycache__ -type d -not -path './.venv*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(SAM_VENV) *.egg-info
