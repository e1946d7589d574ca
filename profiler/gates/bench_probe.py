"""One side of a same-run benchmark (profiler/gates/bench.py): cold compiles of points in this
fresh process, timed in CPU and wall-clock seconds.

Run as a script by the driver, once per round and side, with the side's checkout first
on PYTHONPATH and `python -P` (so this file's own folder is not on the path): the
`profiler` it imports below is that checkout's, which is what makes the base revision
measure its own code. It reads {"points": {name: Point fields}, "order": [names],
"repeats": n} on stdin and prints {"profiler": its profiler's folder, "results":
{name: [{"cpu_s", "wall_s", "cold"}, ...]}} on stdout.

Only long-standing APIs are used here (`Point`, `workloads.build`, `Program.context`,
`measure.compile_stages`, `Stages.cold`), because the base side runs this file against
an older `profiler`.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

# A first compile in a process also pays one-time initialisation inside JAX and XLA;
# this tiny point pays it before anything is timed.
_WARM_UP: dict[str, Any] = dict(mode="scan", layers=2, hidden=32, heads=2, batch=2, seq=8)


def phase_of(workload: str) -> str:
    """The program a benchmark times: the decode workload's one-token step (its prefill
    is covered by the golden values), every other workload's only program."""
    return "decode" if workload == "decode" else "main"


def fresh_program(point: Any, phase: str, build: Callable[[Any], list[Any]] | None = None) -> Any:
    """`point`'s program `phase`, built afresh after clearing JAX's in-process caches, so
    that its next compile is cold (a new model and function: no trace cache answers)."""
    import jax

    if build is None:
        from profiler.workloads import build as build_of_this_checkout

        build = build_of_this_checkout
    jax.clear_caches()
    (program,) = [p for p in build(point) if p.phase == phase]
    return program


def cold_compile(program: Any) -> dict[str, Any]:
    """Trace, lower and compile `program` once: CPU and wall seconds, whether it was cold
    (JAX's own lowering and backend-compile events fired) and each stage's times."""
    try:
        from profiler.measurement.measure import compile_stages
    except ImportError:  # a base revision from before the stage packages: profiler/measure.py
        import importlib

        compile_stages = importlib.import_module("profiler.measure").compile_stages

    t0, c0 = time.perf_counter(), time.process_time()
    with program.context():
        stages = compile_stages(program)
    return {"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0, "cold": stages.cold,
            **stages.times}


def measure(points: dict[str, dict[str, Any]], order: list[str], repeats: int) -> dict[str, list[dict[str, Any]]]:
    import jax

    from profiler.spec import Point

    jax.config.update("jax_enable_compilation_cache", False)
    cold_compile(fresh_program(Point(**_WARM_UP), "main"))
    # As in a sweep's measuring process (processes/worker.py): the imports' and the warm-up's
    # objects are frozen out of the collections compile_stages runs before each stage, which
    # would otherwise visit every object JAX made (a third of a tiny point's CPU seconds).
    gc.collect()
    gc.freeze()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    for name in order:
        point = Point(**points[name])
        for _ in range(repeats):
            results[name].append(cold_compile(fresh_program(point, phase_of(point.workload))))
    return results


def main() -> int:
    request = json.load(sys.stdin)
    results = measure(request["points"], request["order"], request["repeats"])
    # The package measure() imported, found without importing it here (a probe imports
    # nothing above the spec and the measuring side).
    folder = sys.modules["profiler"].__path__[0]
    json.dump({"profiler": str(folder), "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
