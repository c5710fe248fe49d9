# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STATE ?= $(CURDIR)/.adrel
export DAGSTER_HOME ?= $(STATE)/dagster_home

.PHONY: install run test ui bench clean

# torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@

## Materialize every asset on the default world, then print the AUCs.
run: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster asset materialize -m adrel_pipeline --select '*'
	$(PY) -m adrel_pipeline.report

## The test suite (small worlds, a few minutes on 2 cores).
test: install
	$(PY) -m pytest

## The Dagster UI on http://127.0.0.1:3000, on the same DAGSTER_HOME as `make run`.
ui: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## Per-asset wall time and peak memory of the default world (median of 3 runs).
bench: install
	$(PY) benchmarks/asset_timings.py --repeats 3

clean:
	rm -rf $(STATE)
