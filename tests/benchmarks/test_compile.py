"""Benchmarks of the cold trace+lower+compile of the representative points
(profiler.gates.golden.POINTS), under pytest-benchmark: the history of this machine's compile
times. `make bench-baseline` records one in .benchmarks/<machine fingerprint>/, `make
bench-history` compares with this machine's newest (tests/benchmarks/history.py); the
same-run gate against a revision is `make bench` (profiler/gates/bench.py, docs/gates.md)."""

import pytest
from cold import TIMER, benchmark_cold_compile

from profiler.gates.bench_probe import phase_of
from profiler.gates.golden import POINTS

# Rounds per point: enough for a median whose run-to-run spread stays well inside the
# gate's threshold (docs/gates.md has the measurement).
ROUNDS = 11


PHASES = {name: phase_of(point.workload) for name, point in POINTS.items()}


@pytest.mark.benchmark(timer=TIMER)
@pytest.mark.parametrize("name", list(POINTS))
def test_cold_compile(benchmark, name):
    benchmark_cold_compile(benchmark, POINTS[name], rounds=ROUNDS, phase=PHASES[name])
