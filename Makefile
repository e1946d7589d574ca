# Two commands set everything up on a fresh machine: `make sweep` and `make test`.
# Each installs the project into .venv on first use (and again when pyproject.toml changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= sweeps/default.toml
# `make report` renders the newest results folder unless RESULTS=DIR is given.
RESULTS ?= $(shell ls -td results/*/ 2>/dev/null | head -n 1)

.PHONY: venv sweep report test lint docs bench-overhead

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

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check profiler tests

docs: $(STAMP)
	$(BIN)/python -m profiler columns > docs/columns.md
	$(BIN)/python -m profiler keys > docs/keys.md

# The harness's overhead against a bare JAX script, fork vs fresh, --jobs 1 vs 2 (docs/scale.md).
bench-overhead: $(STAMP)
	$(BIN)/python tests/benchmarks/overhead.py $(ARGS)
