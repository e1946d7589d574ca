"""Benchmarks of the cold trace+lower+compile of the representative points
(profiler.gates.POINTS). `make bench` compares them with the committed baseline in
.benchmarks/; `make bench-baseline` records a new one (docs/gates.md)."""

import pytest
from cold import TIMER, benchmark_cold_compile

from profiler.gates import POINTS

# Rounds per point: enough for a median whose run-to-run spread stays well inside the
# gate's threshold (docs/gates.md has the measurement).
ROUNDS = 11


# The program benchmarked for each point: the decode workload's one-token step (its
# prefill is checked by the golden values only), every other workload's only program.
PHASES = {name: "decode" if point.workload == "decode" else "main" for name, point in POINTS.items()}


@pytest.mark.benchmark(timer=TIMER)
@pytest.mark.parametrize("name", list(POINTS))
def test_cold_compile(benchmark, name):
    benchmark_cold_compile(benchmark, POINTS[name], rounds=ROUNDS, phase=PHASES[name])
