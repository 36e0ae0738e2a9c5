# The two commands of the README: `make demo` (the main job) and `make test`; `make test-fast`
# is the edit loop (about a minute: the tests that start no process, server or browser).
# Each creates the virtualenv .venv and installs the project when needed, in one of two ways
# (same dependencies, so switching takes seconds: .ci/install-project):
#   editable, on the tree as you edit it: make install, demo, ui, screenshots, bench, dist and
#     test-dev; after any of them `.venv/bin/python -m pytest tests/test_x.py` tests your edits.
#   the built wheel, not editable: make test (and so CI, .ci/run) builds dist/, installs the
#     wheel and runs the suite from a copy of the tree without cloudglue_dagster/, so a file
#     missing from the wheel fails it. .venv keeps the wheel until another target runs; a
#     `.venv/bin/python -m pytest` in the tree meanwhile stops at once and says so.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export VENV

.PHONY: install lint dist system-packages test test-fast test-dev test-pythons demo ui screenshots bench clean

# The dependencies (the project's, its dev extra's), when pyproject.toml changed.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip show dagster duckdb pandas | grep -E '^(Name|Version)'
	touch $(STAMP)

install: $(STAMP)
	.ci/install-project editable

# ruff: `.venv/bin/ruff format .` and `ruff check --fix .` repair most findings. mypy: the
# package's types ([tool.mypy] in pyproject.toml), run by .venv's mypy so that it reads the stubs
# the dev extra installs there (pandas-stubs, types-requests) and the installed dependencies.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The sdist, then the wheel built from it, into dist/ (emptied first), checked for PyPI. The
# egg-info goes first too: setuptools adds the files an old one lists to the sdist, so a file
# pyproject.toml no longer ships would still reach the wheel.
dist: $(STAMP)
	rm -rf dist cloudglue_dagster.egg-info
	$(BIN)/python -m build --quiet --outdir dist .
	$(BIN)/twine check --strict dist/*

# The system packages the tests need that pip cannot install, when missing (.ci/system-packages:
# Chromium, PostgreSQL; as root or with sudo, else it stops with the command to run).
system-packages:
	.ci/system-packages

# What CI runs. The system packages (above), ruff and mypy (lint), dist/, then the wheel installed and the suite
# run on it (.ci/test-wheel) in two passes (.ci/pytest-passes): every test but the serial ones
# in TEST_WORKERS processes (pytest-xdist, default one per core), then the serial ones alone (they measure time or
# memory); each prints its slowest tests. E.g. make test TEST_ARGS='tests/test_package.py -q'.
TEST_ARGS ?=
TEST_WORKERS ?= auto
export TEST_WORKERS
test: system-packages lint dist
	.ci/install-project wheel
	.ci/test-wheel $(TEST_ARGS)

# The edit loop, on the editable install: every test that starts no child process, server or
# browser and measures no time (pytest --tier fast; one that starts a process fails, naming
# its marker), in FAST_WORKERS processes. No lint, no dist. E.g. make test-fast TEST_ARGS='-k masking'.
FAST_WORKERS ?= 4
test-fast: install
	$(BIN)/python -m pytest --tier fast -n $(FAST_WORKERS) --durations=10 $(TEST_ARGS)

# make test's checks and two passes on the editable install, from the tree.
test-dev: system-packages lint install
	.ci/pytest-passes $(TEST_ARGS)

# The suite under every Python 3.10-3.13 on the machine (pyenv's, else python3.X on PATH),
# each in its own .venv-3.X (editable); one summary line per interpreter, missing ones reported
# as skipped. E.g. make test-pythons PYTHONS='3.10 3.12' TEST_ARGS='tests/test_io_manager.py'.
test-pythons: system-packages
	.ci/test-pythons $(TEST_ARGS)

# Emulator + a real Dagster backfill of two weeks into .dagster_home/warehouse.duckdb + a summary.
# Options: `python -m cloudglue_dagster.demo run --help`, e.g. make demo DEMO_ARGS='--days 7'.
DEMO_ARGS ?=
demo: install
	$(BIN)/python -m cloudglue_dagster.demo run $(DEMO_ARGS)

# Emulator + `dagster dev -w workspace.yaml` on the demo's DAGSTER_HOME (.dagster_home), until Ctrl-C.
UI_PORT ?= 3000
ui: install
	$(BIN)/python -m cloudglue_dagster.demo ui --port $(UI_PORT) $(DEMO_ARGS)

# Re-takes the README's screenshots (docs/*.png) with the browser test (needs Chromium).
screenshots: install
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/test_ui.py -q

# The performance benchmark (not part of the tests): a markdown table per range and latency, then
# a summary with each run against Dagster's floor + the latency bound. Defaults: ranges of 31,
# 180 and 365 days (--ranges 31,180,365) x 1,000 completions, 25, 250 and 0 ms per request
# (--latency-ms 25,250,0), concurrency 8; dlt too when installed in a separate virtualenv
# (bench/run.py --help). About 35 minutes; e.g. make bench BENCH_ARGS='--ranges 31 --latency-ms 25'.
BENCH_ARGS ?=
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .dagster_home build dist *.egg-info
