"""Benchmarks of the cold trace+lower+compile of the representative points
(profiler.gates.POINTS). `make bench` compares them with the committed baseline in
.benchmarks/; `make bench-baseline` records a new one (docs/gates.md)."""

import time

import pytest
from cold import benchmark_cold_compile

from profiler.gates import POINTS

# Rounds per point: enough for a median whose run-to-run spread stays well inside the
# gate's threshold (docs/gates.md has the measurement).
ROUNDS = 11


# Process CPU time, not wall time: on a shared machine other processes stretch the wall
# clock of a compile far more than its CPU time (docs/gates.md has both measured).
@pytest.mark.benchmark(timer=time.process_time)
@pytest.mark.parametrize("name", list(POINTS))
def test_cold_compile(benchmark, name):
    benchmark_cold_compile(benchmark, POINTS[name], rounds=ROUNDS)
