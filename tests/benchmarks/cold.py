"""Cold trace → lower → compile under pytest-benchmark.

Every round starts cold: the setup clears JAX's in-process caches and builds the
workload afresh (a new model and a new function, so no trace cache can answer), and the
persistent compilation cache is off. Each round's own JAX compile events prove it
(`Stages.cold`): a round answered from a cache emits no lowering and no backend-compile
event.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

from profiler import workloads
from profiler.gates.bench_probe import cold_compile, fresh_program
from profiler.measurement.env import jax_env
from profiler.models.program import Program
from profiler.spec import Point

jax.config.update("jax_enable_compilation_cache", False)

# The benchmarks' clock: process CPU time, not wall time. On a shared machine other
# processes stretch the wall clock of a compile far more than its CPU time
# (docs/gates.md has both measured). Use as `@pytest.mark.benchmark(timer=TIMER)`.
TIMER = time.process_time


def benchmark_cold_compile(
    benchmark: Any,
    point: Point,
    *,
    rounds: int,
    phase: str = "main",
    build: Callable[[Point], list[Program]] = workloads.build,
) -> None:
    """Benchmark the cold compile of `point`'s program `phase` over `rounds` rounds.
    Fails if a round was not cold.

    One warm-up round, cold as well, goes first: a process's first compile also pays
    one-time initialisation inside JAX and XLA, which would make the first benchmark of
    a session slower than the same benchmark run later."""
    stages: list[dict[str, Any]] = []  # each round's stage times, the warm-up round first

    def setup() -> tuple[tuple[Program], dict[str, Any]]:
        return (fresh_program(point, phase, build),), {}

    def target(program: Program) -> None:
        stages.append(cold_compile(program))

    benchmark.group = "cold trace+lower+compile"
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=1, iterations=1)

    environment = jax_env()
    assert not environment["env_persistent_cache"], "the persistent compilation cache is on"
    warm = [i for i, times in enumerate(stages) if not times["cold"]]
    assert not warm, f"rounds {warm} of {len(stages)} were answered from a cache: not cold"

    if benchmark.disabled:  # run once as a test (pytest without --benchmark-enable): no statistics
        return
    benchmark.extra_info.update(
        point={**point.model_dump(), "phase": phase},
        environment=environment,
        # Wall-clock seconds of every round (the warm-up first), beside the timer's.
        wall_rounds_s=[t["wall_s"] for t in stages],
        wall_stage_medians_s={
            stage: statistics.median(t[stage] for t in stages[1:])
            for stage in ("time_trace_s", "time_lower_s", "time_compile_s")
        },
    )
