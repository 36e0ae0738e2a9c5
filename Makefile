# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates the virtualenv and installs the project when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-pythons demo ui screenshots bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip show dagster dagster-duckdb-pandas | grep -E '^(Name|Version)'
	touch $(STAMP)

install: $(STAMP)

# First installs the system packages the tests need when missing (.ci/system-packages: Chromium,
# PostgreSQL; as root or with sudo, else it stops with the command to run), then checks the
# tree with ruff (`.venv/bin/ruff format .` and `ruff check --fix .` repair most findings).
test: $(STAMP)
	.ci/system-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The suite under every Python 3.10-3.13 on the machine (pyenv's, else python3.X on PATH),
# each in its own .venv-3.X; one summary line per interpreter, missing ones reported as skipped.
# E.g. make test-pythons PYTHONS='3.10 3.12' TEST_ARGS='tests/test_io_manager.py'.
TEST_ARGS ?=
test-pythons:
	.ci/system-packages
	.ci/test-pythons $(TEST_ARGS)

# Emulator + a real Dagster backfill of two weeks into .dagster_home/warehouse.duckdb + a summary.
# Options: `python -m cloudglue_dagster.demo run --help`, e.g. make demo DEMO_ARGS='--days 7'.
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/python -m cloudglue_dagster.demo run $(DEMO_ARGS)

# Emulator + `dagster dev -w workspace.yaml` on the demo's DAGSTER_HOME (.dagster_home), until Ctrl-C.
UI_PORT ?= 3000
ui: $(STAMP)
	$(BIN)/python -m cloudglue_dagster.demo ui --port $(UI_PORT) $(DEMO_ARGS)

# Re-takes the README's screenshots (docs/*.png) with the browser test (needs Chromium).
screenshots: $(STAMP)
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/test_ui.py -q

# The performance benchmark (not part of the tests): a markdown table per range, then a summary.
# Defaults: ranges of 31, 180 and 365 days (--ranges 31,180,365) x 1,000 completions, 25 ms per
# request, concurrency 8; dlt too when installed in a separate virtualenv (bench/run.py --help).
# About 15 minutes; e.g. make bench BENCH_ARGS='--ranges 31 --skip dlt,sequential'.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .dagster_home build *.egg-info
