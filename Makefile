# hastack — one entry point per job. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
export HASTACK_CACHE ?= $(HOME)/.cache/hastack
# The repository root holds a folder named `operator`, which would shadow the stdlib module for
# any `python -m` started here: never put the working directory on sys.path.
export PYTHONSAFEPATH := 1

.PHONY: help setup venv binaries crds lint test test-unit test-integration test-system test-e2e bench demo clean

help:
	@echo "make setup      install Debian packages, build/cache the Kubernetes binaries, create .venv"
	@echo "make test       lint + every test tier (unit, integration, system, e2e)"
	@echo "make demo       the operator on a real multi-node lab on this machine"
	@echo "make bench      benchmarks, each beside its anchor, printed as ratios"
	@echo "make crds       regenerate crds/ and the chart's CRDs from sidecars/common/crds/"
	@echo "make lint       ruff, mypy, import-linter, helm lint"

setup: venv
	bash .ci/install-deps
	tests/harness/build-binaries all

$(PY): pyproject.toml sidecars/blockrepl/_fast.c sidecars/blockrepl/_fast.h sidecars/blockrepl/_primary.c sidecars/blockrepl/_gmac.c  # the compiled write path is built by the install
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(PY)

venv: $(PY)

binaries:
	tests/harness/build-binaries all

crds: venv
	$(PY) -m hastack_common.crds.render

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy operator sidecars tests/harness
	$(VENV)/bin/lint-imports
	$$(ls -d $(HASTACK_CACHE)/bin/helm-*/helm | tail -n 1) lint charts/hastack --strict

test: lint
	$(PYTEST) tests

test-unit: venv
	$(PYTEST) tests/unit

test-integration: venv
	$(PYTEST) tests/integration

test-system: venv
	$(PYTEST) tests/system

test-e2e: venv
	$(PYTEST) tests/e2e

bench: venv
	@for b in bench/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

demo: venv
	PYTHONPATH=tests $(PY) -m harness.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
