"""Benchmarks of the cold trace+lower+compile of the representative points
(profiler.gates.POINTS). `make bench` compares them with the committed baseline in
.benchmarks/; `make bench-baseline` records a new one (docs/gates.md)."""

import pytest
from cold import TIMER, benchmark_cold_compile

from profiler.gates import POINTS

# Rounds per point: enough for a median whose run-to-run spread stays well inside the
# gate's threshold (docs/gates.md has the measurement).
ROUNDS = 11


@pytest.mark.benchmark(timer=TIMER)
@pytest.mark.parametrize("name", list(POINTS))
def test_cold_compile(benchmark, name):
    benchmark_cold_compile(benchmark, POINTS[name], rounds=ROUNDS)
