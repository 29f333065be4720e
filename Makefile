# fid_bench — `make help` lists every target.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-all lint format ui bench clean

help: ## list every target with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv with the system python3 and install fid_bench (editable, dev extras)

run: $(STAMP) ## build the offline demo data, run the demo grid into mlruns/, print a leaderboard
	HF_HUB_OFFLINE=1 $(BIN)/python -m fid_bench experiment=demo_grid

test: $(STAMP) ## run the test suite (without the slow tests)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, slow ones included
	HF_HUB_OFFLINE=1 $(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: $(STAMP) ## open the MLflow UI on http://127.0.0.1:5000 over mlruns/
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root ./mlruns/artifacts --host 127.0.0.1 --port 5000

bench: $(STAMP) ## run the speed benchmarks (figures go to docs/BENCHMARKS.md by hand)
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/finetune.py
	$(BIN)/python benchmarks/onnx_speed.py

clean: ## remove Hydra outputs and caches (keeps mlruns/ and .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
