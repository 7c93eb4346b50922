# drlrec: `make run` (the main job on the embedded default data) and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.drlrec-installed
# Keep every library offline (see ../shared/STACK.md).
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run data repro test lint bench clean help system-tools serve bench-serve bench-recommend drift-demo full-scale

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the pinned dependencies (torch first, CPU build)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "drlrec needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

data: setup  ## generate data/UserBehavior.csv (the embedded default) unless it exists
	$(BIN)/drlrec synth --if-missing

repro: data  ## run the DVC pipeline
	$(BIN)/dvc repro

run: repro  ## the main job: default data, dvc repro (ingest ... register), then the metrics, artifacts and UIs
	$(BIN)/dvc status
	$(BIN)/drlrec summary

# Real services and tools the tests and `make serve` use: Debian's redis-server, wrk (load generator) and
# chromium (headless report screenshots). Installed with apt when missing and we are root; otherwise the
# tests that need them skip with the reason (CI sets DRLREC_REQUIRE_SYSTEM_TOOLS=1, which makes it fail).
SYSTEM_TOOLS := redis-server:redis-server wrk:wrk chromium:chromium
system-tools:  ## apt-get install redis-server, wrk and chromium when missing (needs root)
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing system tools:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing fonts-dejavu-core >/dev/null; \
	else echo "note: missing$$missing (not root or no apt-get): the tests that need them will skip"; fi

test: setup system-tools  ## run the test suite
	$(BIN)/pytest -q --durations=15

lint: setup  ## ruff
	$(BIN)/ruff check .

bench: setup  ## benchmarks that print figures (not timed tests)
	$(BIN)/python bench/bench_synth.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_featurize.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_evaluate.py

serve: setup  ## run the recommendation API with a local redis-server (needs a registered @champion)
	$(BIN)/drlrec serve --with-redis

full-scale: setup  ## the whole pipeline on a generated ~100M-row log (987,994 users), per-stage time and peak RSS
	$(BIN)/python bench/full_scale.py $(ARGS)

bench-serve: setup  ## serving benchmark: real server + wrk, cached and uncached (100k-item model)
	$(BIN)/python bench/serve/bench_serve.py

bench-recommend: setup  ## single-user latency in process: exact vs scan vs faiss ANN (100k and 4.2M items), recall@10
	$(BIN)/python bench/bench_recommend.py $(ARGS)

drift-demo: setup  ## serve, replay a shifted period, monitoring detects drift, retrain, new champion (own workspace)
	$(BIN)/python scripts/drift_demo.py

clean:  ## remove generated artifacts (not data/, not .venv)
	rm -rf artifacts .pytest_cache .ruff_cache
