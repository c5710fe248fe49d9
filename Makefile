# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# A team's own data ($ADREL_SOURCE, README "Your own data") keeps its state apart, one folder per source.
SOURCE_ID := $(if $(filter-out synthetic,$(ADREL_SOURCE)),source-$(shell printf %s "$(ADREL_SOURCE)" | md5sum | cut -c1-8))
STATE ?= $(CURDIR)/.adrel$(if $(SOURCE_ID),/$(SOURCE_ID))
export DAGSTER_HOME ?= $(STATE)/dagster_home
# The code finds its default MLflow store (sqlite) here too: $(STATE)/mlflow.db, artifacts beside it.
export ADREL_STATE_DIR := $(STATE)
MLFLOW_URI := $(or $(MLFLOW_TRACKING_URI),sqlite:///$(STATE)/mlflow.db)
# dg (dagster-dg-cli) finds the project ([tool.dg] in pyproject.toml: adrel_pipeline.definitions:defs)
# from the checkout; VIRTUAL_ENV tells it that $(VENV) is the project's environment.
DG := VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/dg
# The default run: the first week of days, and the model of its last day (a full 7-day window).
FIRST_DAY := 2026-01-01
RUN_DAY := 2026-01-07
# The contextual day: the day after the model's window, served by the week's champions (the GAT
# scores home's pCTR). The contextual group reads no interactions, so that day needs none.
SERVE_DAY := 2026-01-08
# The universal user embeddings (audience group) learn from the same week.
export ADREL_EMBEDDING_DAY ?= $(RUN_DAY)
# The deployment world's advertisers as a partition range (the first run registers them), read
# without loading Dagster.
ADVERTISER_RANGE = $(shell $(PY) -c 'from adrel_pipeline.world import deployment_world; \
	from adrel_pipeline.world.advertisers import advertiser_range; print(advertiser_range(deployment_world()))')

.PHONY: install check run run-source test test-fast ui mlflow-ui deploy-up deploy-down deploy-status bench clean

# torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# sqlite storage, telemetry off (config/dagster.yaml); refreshed when the template changes.
$(DAGSTER_HOME)/dagster.yaml: config/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

## The default world end to end on a fresh instance: users, items, advertisers and a week of daily
## interactions in one run, the model of the week's last day; the audience group: user embeddings
## and every advertiser's seed list, models and expansion in one run; the contextual relevance of the
## next day (candidate log, labels, calibrated model) and its serving funnel (funnel metrics and the
## registration, trend, A/A and A/B tests); then print the model's AUCs, the audience expansion's
## per-method, per-bucket table, the labels' and relevance model's quality figures, and the funnel's
## fraction relevant per stage, holdout gap and revenue.
run: install $(DAGSTER_HOME)/dagster.yaml
	@if [ -n "$(SOURCE_ID)" ]; then echo "ADREL_SOURCE is set: make run is the synthetic world's pipeline; for your data run make run-source" >&2; exit 2; fi
	@echo "== users, items, advertisers, the ad inventory and the interactions of $(FIRST_DAY)...$(RUN_DAY) (one run)"
	$(DG) launch --assets users,items,advertisers,ad_inventory,interaction_edges --partition-range $(FIRST_DAY)...$(RUN_DAY) -c config/console-info.yaml
	@echo "== graph, split, model and evaluation of $(RUN_DAY)"
	$(DG) launch --assets 'hetero_graph*' --partition $(RUN_DAY) -c config/console-info.yaml
	@echo "== audience expansion: user embeddings, then every advertiser's seed list, models and expansion (one run)"
	$(DG) launch --assets 'user_embeddings,seed_lists*' --partition-range $(ADVERTISER_RANGE) -c config/console-info.yaml
	@echo "== contextual relevance of $(SERVE_DAY): the day's candidate log, its labelling job, the calibrated relevance model, and the serving funnel (launch checks, trend, A/A and A/B tests)"
	$(DG) launch --assets 'candidate_log*' --partition $(SERVE_DAY) -c config/console-info.yaml
	$(PY) -m adrel_pipeline.defs.report --partition $(RUN_DAY) --audience --contextual $(SERVE_DAY)

## A team's own data ($$ADREL_SOURCE: a directory, a postgresql:// URL or a .yaml file; README "Your
## own data"), in its own state folder: users, items and the interactions of FIRST_DAY...RUN_DAY in
## one run, the model of RUN_DAY; with seed lists, every advertiser's expansion (one run); with
## labels, the relevance model of the labels up to RUN_DAY; then the report. Set FIRST_DAY / RUN_DAY
## to your data's days.
run-source: install $(DAGSTER_HOME)/dagster.yaml
	@if [ -z "$(SOURCE_ID)" ]; then echo "set ADREL_SOURCE to your data: a directory, a postgresql:// URL or a .yaml file (README: Your own data)" >&2; exit 2; fi
	@echo "== users, items and the interactions of $(FIRST_DAY)...$(RUN_DAY) from $(ADREL_SOURCE) (one run)"
	$(DG) launch --assets users,items,interaction_edges --partition-range $(FIRST_DAY)...$(RUN_DAY) -c config/console-info.yaml
	@echo "== graph, split, model and evaluation of $(RUN_DAY)"
	$(DG) launch --assets 'hetero_graph*' --partition $(RUN_DAY) -c config/console-info.yaml
	@set -e; tables="$$($(PY) -m adrel_pipeline.sources --tables)"; report=""; \
	if echo "$$tables" | grep -qw seed_lists; then \
	  echo "== audience expansion: the advertisers of the seed lists, the user embeddings, every advertiser's models and expansion"; \
	  $(DG) launch --assets advertisers -c config/console-info.yaml; \
	  $(DG) launch --assets 'user_embeddings,seed_lists*' --partition-range "$$($(PY) -m adrel_pipeline.sources --advertiser-range)" -c config/console-info.yaml; \
	  report="$$report --audience"; fi; \
	if echo "$$tables" | grep -qw labels; then \
	  echo "== contextual relevance: the labels up to $(RUN_DAY) and the calibrated relevance model"; \
	  $(DG) launch --assets 'relevance_labels*' --partition $(RUN_DAY) -c config/console-info.yaml; \
	  report="$$report --contextual"; fi; \
	$(PY) -m adrel_pipeline.defs.report --partition $(RUN_DAY) $$report

## Load the code location as every Dagster process does and validate it; exits non-zero on broken defs (CI).
check: install $(DAGSTER_HOME)/dagster.yaml
	$(DG) check defs

## The test suite (small worlds, a few minutes on 2 cores): everything, as CI runs it.
test: install
	$(PY) -m pytest

## The quick subset (about a minute): without the tests marked slow (whole pipelines, CLI runs) or ui (the browser).
test-fast: install
	$(PY) -m pytest -m "not slow and not ui"

## The Dagster UI on http://127.0.0.1:3000, on the same DAGSTER_HOME as `make run`.
ui: install $(DAGSTER_HOME)/dagster.yaml
	$(DG) dev -w workspace.yaml -h 127.0.0.1 -p 3000

## The MLflow UI on http://127.0.0.1:5000, on the store `make run` records to.
mlflow-ui: install
	mkdir -p $(STATE)
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_URI) --default-artifact-root $(STATE)/mlartifacts \
		--host 127.0.0.1 --port 5000

## The real deployment on 127.0.0.1 (README "Deployment"): Dagster on PostgreSQL with its daemon and
## webserver (http://127.0.0.1:3001), steps on two Celery workers (RabbitMQ), an MLflow server on
## PostgreSQL (http://127.0.0.1:5001). Settings: config/deployment/; state and logs: $(STATE)/deploy.
deploy-up: install
	$(PY) scripts/deploy.py up --state-dir $(STATE)/deploy

## Stops every process of the deployment (its databases, vhost and files stay).
deploy-down:
	$(PY) scripts/deploy.py down --state-dir $(STATE)/deploy

deploy-status:
	$(PY) scripts/deploy.py status --state-dir $(STATE)/deploy

## Per-asset wall time and peak memory of the default world (median of 3 runs).
bench: install
	$(PY) benchmarks/asset_timings.py --repeats 3

clean:
	rm -rf $(STATE)
