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

# `make bench` measures the working tree against BASE (a git ref; default: the merge-base
# with main) in one run and fails when a benchmark is slower by more than BENCH_MAX_SLOWDOWN
# percent with its bootstrap interval (default: profiler.gates.bench.MAX_SLOWDOWN_PCT, chosen
# from the noise measured in docs/gates.md). BENCH_ARGS: more flags of `profiler bench`.
BASE ?=
BENCH_MAX_SLOWDOWN ?=
# `make bench-history` fails when a median is this many percent above this machine's
# newest pytest-benchmark baseline (recorded by `make bench-baseline`).
HISTORY_MAX_SLOWDOWN ?= 30

.PHONY: venv sweep report test lint docs bench bench-baseline bench-history golden bench-overhead bench-forecast mutate

# uv installs what pip would (the same versions) in under half the time: 19 s against 49 s
# for a fresh clone's venv here, both caches warm. Where uv cannot reach an index that pip is
# configured for, pip installs instead. --compile-bytecode writes the .pyc files pip
# writes by default and uv does not: without them every new interpreter (a test's
# subprocess, a fork server, a `profile()` call's server) compiles JAX's sources anew, and
# with PYTHONDONTWRITEBYTECODE set none is ever written.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev,dask,tpu,gpu]' \
		|| $(BIN)/python -m pip install --quiet -e '.[dev,dask,tpu,gpu]'
	touch $(STAMP)

venv: $(STAMP)

sweep: $(STAMP)
	$(BIN)/python -m profiler sweep $(SPEC) $(ARGS)

report: $(STAMP)
	@test -n "$(RESULTS)" || { echo "error: no results folder; run 'make sweep' or pass RESULTS=DIR" >&2; exit 2; }
	$(BIN)/python -m profiler report $(RESULTS)

# Timing benchmarks are skipped here (they run in `make bench`); the golden values of
# the deterministic metrics are checked (tests/test_golden.py). Two phases: the tests run
# TEST_JOBS at a time (pytest-xdist, a module per worker: module fixtures run once), then
# the `serial` ones, which check timings another test beside them would disturb, run
# alone. A phase that selects no test (exit status 5, e.g. PYTEST_ARGS names a file without
# serial tests) is fine; both selecting none is not (a mistyped -k).
TEST_JOBS ?= 2
test: $(STAMP)
	@rc=0; $(BIN)/python -m pytest --benchmark-skip -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder -m "not serial" $(PYTEST_ARGS) || rc=$$?; \
	[ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; \
	rc2=0; $(BIN)/python -m pytest --benchmark-skip -m serial $(PYTEST_ARGS) || rc2=$$?; \
	[ $$rc2 -eq 0 ] || [ $$rc2 -eq 5 ] || exit $$rc2; \
	[ $$rc -eq 0 ] || [ $$rc2 -eq 0 ] || { echo "make test: no test selected" >&2; exit 5; }

bench: $(STAMP)
	$(BIN)/python -m profiler bench $(if $(BASE),--base $(BASE)) $(if $(BENCH_MAX_SLOWDOWN),--max-slowdown $(BENCH_MAX_SLOWDOWN)) $(BENCH_ARGS)

bench-baseline: $(STAMP)
	$(BIN)/python tests/benchmarks/history.py save $(if $(PYTEST_ARGS),-- tests/benchmarks $(PYTEST_ARGS))

bench-history: $(STAMP)
	$(BIN)/python tests/benchmarks/history.py compare --max-slowdown $(HISTORY_MAX_SLOWDOWN) $(if $(PYTEST_ARGS),-- tests/benchmarks $(PYTEST_ARGS))

# Mutation testing (mutmut, configured in pyproject.toml's [tool.mutmut]) of the core rules:
# the loop-cost correction, the schema upgrades, the bench verdicts and the ratio statistics
# the gates decide with. MUTATE: mutant name patterns (default: those functions). The
# survivors and why each is acceptable: docs/testing.md.
MUTATE ?= profiler.measurement.cost.xǁ_Analysisǁmissed* profiler.measurement.cost.xǁ_Analysisǁcorrected* \
	profiler.storage.versions.* profiler.gates.bench.x_decide* profiler.gates.bench.x_interleave* \
	profiler.gates.bench.xǁVerdictǁ* profiler.analysis.stats.x_bootstrap_ratio* profiler.analysis.stats.x_ratio_table*
mutate: $(STAMP)
	$(BIN)/mutmut run $(foreach m,$(MUTATE),"$(m)")
	$(BIN)/mutmut results

golden: $(STAMP)
	$(BIN)/python -m profiler.gates.golden tests/golden/golden.json

# ruff on the package and the tests; mypy on the package ([tool.mypy] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check profiler tests
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/python -m profiler columns > docs/columns.md
	$(BIN)/python -m profiler keys > docs/keys.md

# A forecast of a timing against a deeper measurement of the same sweep (run alone).
bench-forecast: $(STAMP)
	$(BIN)/python tests/benchmarks/forecast_timing.py

# The harness's overhead against a bare JAX script, fork vs fresh, --jobs 1 vs 2 (docs/scale.md).
bench-overhead: $(STAMP)
	$(BIN)/python tests/benchmarks/overhead.py $(ARGS)
