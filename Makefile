# Two commands set everything up on a fresh machine: `make sweep` and `make test`.
# Each installs the project into .venv on first use (and again when pyproject.toml changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The default interpreter installs into .venv; one given explicitly (make test
# PYTHON=python3.13) gets a venv of its own per version (.venv-3.13), so the supported
# versions (3.11 to 3.13) are tested side by side without reinstalling.
ifeq ($(origin PYTHON),file)
VENV ?= .venv
else
VENV ?= .venv-$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= sweeps/default.toml
# `make report` renders the newest results folder unless RESULTS=DIR is given.
RESULTS ?= $(shell ls -td results/*/ 2>/dev/null | head -n 1)

# `make bench` fails when a benchmark's median is this many percent slower than the
# committed baseline (.benchmarks/); the noise measurement behind it is in docs/gates.md.
BENCH_MAX_SLOWDOWN ?= 30
BENCH := $(BIN)/python -m pytest tests/benchmarks --benchmark-enable --benchmark-only --benchmark-save-data

.PHONY: venv sweep report test lint docs bench bench-baseline golden bench-overhead

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,dask]'
	touch $(STAMP)

venv: $(STAMP)

sweep: $(STAMP)
	$(BIN)/python -m profiler sweep $(SPEC) $(ARGS)

report: $(STAMP)
	@test -n "$(RESULTS)" || { echo "error: no results folder; run 'make sweep' or pass RESULTS=DIR" >&2; exit 2; }
	$(BIN)/python -m profiler report $(RESULTS)

# Timing benchmarks are skipped here (they run in `make bench`); the golden values of
# the deterministic metrics are checked (tests/test_golden.py).
test: $(STAMP)
	$(BIN)/python -m pytest --benchmark-skip $(PYTEST_ARGS)

bench: $(STAMP)
	$(BENCH) --benchmark-compare --benchmark-compare-fail=median:$(BENCH_MAX_SLOWDOWN)% $(PYTEST_ARGS)

bench-baseline: $(STAMP)
	$(BENCH) --benchmark-save=baseline $(PYTEST_ARGS)

golden: $(STAMP)
	$(BIN)/python -m profiler.gates tests/golden/golden.json

lint: $(STAMP)
	$(BIN)/ruff check profiler tests

docs: $(STAMP)
	$(BIN)/python -m profiler columns > docs/columns.md
	$(BIN)/python -m profiler keys > docs/keys.md

# The harness's overhead against a bare JAX script, fork vs fresh, --jobs 1 vs 2 (docs/scale.md).
bench-overhead: $(STAMP)
	$(BIN)/python tests/benchmarks/overhead.py $(ARGS)
