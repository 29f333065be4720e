# fid_bench — `make help` lists every target.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# port of `make ui`
PORT ?= 5000
# mutant name patterns for `make mutate` (empty: every module listed under [tool.mutmut] in pyproject.toml)
MUTANTS ?=
# mutants drawn from each module by `make mutate-sample`
MUTANT_SAMPLE ?= 20

.DEFAULT_GOAL := help
.PHONY: help install install-browser run test test-quick test-all test-browser lint format ui bench mutate mutate-sample clean

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
	@echo
	@echo "The tools are in .venv/bin (not on your PATH): run them as .venv/bin/fid-bench and"
	@echo ".venv/bin/python -m fid_bench, or first: source .venv/bin/activate"
	@echo "  .venv/bin/fid-bench leaderboard --experiment demo      # the runs above, best first"
	@echo "  make ui                                                # the MLflow UI (PORT=5000)"

test: $(STAMP) ## run the test suite (without the slow tests)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# one or a few tests per layer: structure, errors, data, evaluation, a whole job of each track, tracking
# and the commands (the full default suite is `make test`)
QUICK_TESTS := tests/test_structure.py tests/test_errors.py tests/test_markdown.py tests/test_metrics.py \
	tests/test_splits.py tests/test_balance.py tests/test_paired.py \
	tests/test_end_to_end.py::test_single_job_logs_metrics_artifacts_and_model \
	tests/test_finetune.py::test_run_job_small_cnn_logs_epochs_final_metrics_and_a_loadable_model \
	tests/test_first_day.py::test_run_id_prefixes_resolve_and_ambiguity_lists_the_candidates \
	tests/test_first_day.py::test_missing_lists_only_what_is_absent

test-quick: $(STAMP) ## a subset touching every layer (under a minute on an idle 2-core CPU)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow" -q $(QUICK_TESTS) $(PYTEST_ARGS)

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

ui: $(STAMP) ## the MLflow UI over mlruns/ on port PORT (default 5000); prints each experiment's runs link once it answers
	@mkdir -p mlruns; $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root ./mlruns/artifacts --host 127.0.0.1 --port $(PORT) >mlruns/ui.log 2>&1 & \
	pid=$$!; trap 'kill $$pid 2>/dev/null' INT TERM EXIT; \
	$(BIN)/python -m fid_bench.commands.ui_command --tracking-uri sqlite:///mlruns/mlflow.db \
		--url http://127.0.0.1:$(PORT) --wait-pid $$pid || { tail -5 mlruns/ui.log; exit 1; }; \
	echo "(server log: mlruns/ui.log; Ctrl-C stops it)"; wait $$pid

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
