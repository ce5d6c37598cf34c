# treeoflife: `make shards` builds the bundled sample end to end; `make test` runs the tests.
# Both create the virtual environment from pyproject.toml on first use.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/sample.yaml
STAMP := $(VENV)/.installed

# Prefect's temporary server starts slowly on small machines; keep its state out of $HOME.
export PREFECT_HOME ?= $(CURDIR)/data/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export HF_HUB_OFFLINE ?= 1

.PHONY: venv shards verify test lint format train evaluate flow bench clean clean-data

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

shards: $(STAMP)
	$(BIN)/treeoflife build --config $(CONFIG)

# Read every shard of the release back against its manifest, index and the catalog.
verify: $(STAMP)
	$(BIN)/treeoflife verify --config $(CONFIG)

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

train: shards
	$(BIN)/treeoflife train --config $(CONFIG)

evaluate: $(STAMP)
	$(BIN)/treeoflife evaluate --config $(CONFIG)

# The same build as a Prefect flow run (starts a temporary local Prefect server).
flow: $(STAMP)
	$(BIN)/python -m flows.tree_of_life

# Every benchmark prints ours vs a named peer measured in the same run (files starting with _
# are shared helpers). One benchmark: make bench BENCH=bench/dedup.py
BENCH ?= $(filter-out bench/_%,$(wildcard bench/*.py))
bench: $(STAMP)
	@test -n "$(BENCH)" || { echo "no benchmarks"; exit 0; }
	@for b in $(BENCH); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-data:
	rm -rf data/catalog data/images data/taxonomy data/hashes data/dedup data/release data/state data/models data/eval

clean: clean-data
	rm -rf data/sample $(VENV)
