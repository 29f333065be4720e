# fid_bench — `make help` lists every target.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# mutant name patterns for `make mutate` (empty: every module listed under [tool.mutmut] in pyproject.toml)
MUTANTS ?=
# mutants drawn from each module by `make mutate-sample`
MUTANT_SAMPLE ?= 20

.DEFAULT_GOAL := help
.PHONY: help install install-browser run test test-all test-browser lint format ui bench mutate mutate-sample clean

help: ## list every target with a one-line description
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv with the system python3 and install fid_bench (editable, dev extras)

install-browser: ## install Debian's chromium and chromium-driver for the UI test (skipped when present)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium and chromedriver already installed"; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

run: $(STAMP) ## build the offline demo data, run the demo grid into mlruns/, print a leaderboard
	HF_HUB_OFFLINE=1 $(BIN)/python -m fid_bench experiment=demo_grid

test: $(STAMP) ## run the test suite (without the slow tests)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) ## run every test, slow ones included
	HF_HUB_OFFLINE=1 $(BIN)/pytest $(PYTEST_ARGS)

test-browser: $(STAMP) ## the MLflow UI path in headless Chromium (needs make install-browser)
	FID_BENCH_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1 $(BIN)/pytest -m browser $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: $(STAMP) ## open the MLflow UI on http://127.0.0.1:5000 over mlruns/ (prints each experiment's runs link)
	@$(BIN)/python -m fid_bench.commands.ui --tracking-uri sqlite:///mlruns/mlflow.db --url http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --default-artifact-root ./mlruns/artifacts --host 127.0.0.1 --port 5000

bench: $(STAMP) ## run the speed benchmarks (figures go to docs/BENCHMARKS.md by hand)
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/finetune.py
	$(BIN)/python benchmarks/core.py
	$(BIN)/python benchmarks/onnx_speed.py

mutate: $(STAMP) ## mutation testing of the promise-carrying modules (slow, not in CI; scores in docs/MUTATION.md)
	HF_HUB_OFFLINE=1 nice -n 10 $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/python scripts/mutation_table.py

mutate-sample: $(STAMP) ## mutation testing of a seeded sample (MUTANT_SAMPLE per module, default 20): a score for every module in minutes
	HF_HUB_OFFLINE=1 nice -n 10 $(BIN)/mutmut run --max-children 2 'none-generate-only*' >/dev/null || true
	HF_HUB_OFFLINE=1 nice -n 10 $(BIN)/mutmut run --max-children 2 $$($(BIN)/python scripts/mutation_sample.py --per-module $(MUTANT_SAMPLE))
	$(BIN)/python scripts/mutation_table.py

clean: ## remove Hydra outputs and caches (keeps mlruns/ and .venv)
	rm -rf outputs multirun mutants .pytest_cache .ruff_cache
