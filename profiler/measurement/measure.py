"""Measure one program: JAX's own stages, XLA's analyses, and (optionally) running it.

This module knows nothing about grids, processes or files: it takes a `Program` and
returns a flat dict of metrics whose keys are `Record` columns.
"""

from __future__ import annotations

import contextlib
import gc
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import jax

from profiler.measurement.compat import jaxprs_in_params
from profiler.measurement.cost import loop_corrected
from profiler.measurement.hlo import HloText
from profiler.models.program import Program

# JAX reports its own stage durations through jax.monitoring. They cross-check our
# wall-clock timings; nested compilations (e.g. a scan body traced inside the outer
# trace) emit their own events, so the outermost (longest) one per stage is kept.
_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "time_event_trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "time_event_lower_s",
    "/jax/core/compile/backend_compile_duration": "time_event_compile_s",
}
_recorded: dict[str, float] | None = None


def _on_event(event: str, duration_secs: float, **_: str | int) -> None:
    if _recorded is not None and event in _EVENTS:
        column = _EVENTS[event]
        _recorded[column] = max(_recorded.get(column, 0.0), duration_secs)


jax.monitoring.register_event_duration_secs_listener(_on_event)


@dataclass(frozen=True)
class Stages:
    """The outcome of one trace → lower → compile of a program, with its timings."""

    traced: Any
    lowered: Any
    compiled: Any
    times: dict[str, float]
    """Wall-clock seconds of each stage (`time_trace_s`, ...) and JAX's own compile
    events (`time_event_*_s`); an event is missing when its stage did not run, e.g.
    because a cache answered."""

    @property
    def cold(self) -> bool:
        """Whether lowering and the backend compile really ran: a cached trace still emits
        a (tiny) trace event, but a cached lowering or executable emits neither of these."""
        return "time_event_lower_s" in self.times and "time_event_compile_s" in self.times


def _no_hook(stage: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


@contextlib.contextmanager
def collector_paused(spent: list[float], collect: bool = True) -> Iterator[None]:
    """Collect garbage now (its seconds appended to `spent`), then keep Python's cyclic
    garbage collector out of the block: a stage of a tenth of a second would otherwise
    absorb a collection of whatever the model's build left behind (docs/reliability.md).
    `collect` False leaves the collector alone (the A/B comparison of that document)."""
    if not collect:
        yield
        return
    t0 = time.perf_counter()
    gc.collect()
    spent.append(time.perf_counter() - t0)
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compile_stages(
    program: Program, around: Callable[[str], AbstractContextManager[Any]] = _no_hook, *, collect: bool = True
) -> Stages:
    """Trace, lower and compile `program` once with a fresh `jax.jit` of its function (an
    already-jitted one as it is), inside `program.context()` entered by the caller.
    `around(stage)` is entered around each stage ('trace', 'lower', 'compile'), outside its
    clock (profiler/measurement/anatomy/ profiles the stages with it). Garbage is collected
    before each stage and the collector kept out of it (collector_paused; `collect`).

    Cold only if nothing cached it before: callers clear JAX's caches (outside whatever
    they time) or run in a fresh process."""
    global _recorded
    jax.devices()  # start the backend now so its start-up is not billed to a stage
    jitted: Any = program.fn if program.jitted else jax.jit(
        program.fn, donate_argnums=program.donate_argnums, **program.jit_kwargs)
    _recorded = {}
    gc_s: list[float] = []
    try:
        with collector_paused(gc_s, collect), around("trace"):
            t0, c0 = time.perf_counter(), time.process_time()
            traced = jitted.trace(*program.args, **program.kwargs)
            t1, c1 = time.perf_counter(), time.process_time()
        with collector_paused(gc_s, collect), around("lower"):
            t1b, c1b = time.perf_counter(), time.process_time()
            lowered = traced.lower()
            t2, c2 = time.perf_counter(), time.process_time()
        with collector_paused(gc_s, collect), around("compile"):
            t2b, c2b = time.perf_counter(), time.process_time()
            compiled = lowered.compile()
            t3, c3 = time.perf_counter(), time.process_time()
        events = dict(_recorded)
    finally:
        _recorded = None
    times = {
        **({"time_gc_collect_s": sum(gc_s)} if collect else {}),
        "time_trace_s": t1 - t0,
        "time_lower_s": t2 - t1b,
        "time_compile_s": t3 - t2b,
        "time_trace_cpu_s": c1 - c0,
        "time_lower_cpu_s": c2 - c1b,
        "time_compile_cpu_s": c3 - c2b,
        **events,
    }
    return Stages(traced, lowered, compiled, times)


def measure(program: Program, *, run: bool = False, steps: int = 5, clear: bool = True) -> dict[str, Any]:
    """Trace, lower and compile `program` once, cold for this process, and analyse it.

    `clear` empties JAX's caches first: a workload's second program would otherwise reuse
    traces of helpers the first one jitted (and their source info). A process's first
    program needs no clearing, and is compiled without it: clearing would also drop what
    building the model warmed, which a script that builds a model and then compiles it
    keeps (docs/scale.md, overhead (a))."""
    with program.context():
        return _measure(program, run, steps, clear)


def _measure(program: Program, run: bool, steps: int, clear: bool) -> dict[str, Any]:
    if clear:
        jax.clear_caches()
    stages = compile_stages(program)
    compiled = stages.compiled
    t0 = time.perf_counter()
    hlo = compiled.as_text()
    parsed = HloText.parse(hlo)
    metrics: dict[str, Any] = {
        **stages.times,
        **program_sizes(stages.traced.jaxpr, stages.lowered.as_text(), hlo, parsed),
        **cost(compiled, parsed),
        **xla_memory(compiled),
        **program.info,
    }
    t1 = time.perf_counter()
    metrics["time_analysis_s"] = t1 - t0
    if run and program.run is not None:
        metrics.update(program.run(compiled))
    elif run:
        metrics.update(run_compiled(compiled, program, steps))
    if run:
        metrics["time_run_s"] = time.perf_counter() - t1
    metrics["mem_host_rss_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return metrics


def count_eqns(jaxpr: Any) -> int:
    """Equations of a jaxpr including those of nested jaxprs (scan bodies, remat, pjit),
    each nested body counted once, as it appears in the program."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = len(jaxpr.eqns)
    for eqn in jaxpr.eqns:
        for sub in jaxprs_in_params(eqn.params):
            total += count_eqns(sub)
    return total


# A StableHLO/MLIR operation line: `[%results = ]dialect.op ...` or `"dialect.op"(...)`.
_MLIR_OP = re.compile(r"^\s*(?:%[^=]+=\s*)?\"?([a-z_]+\.[a-z_.]+)", re.M)


def program_sizes(jaxpr: Any, stablehlo: str, hlo: str, parsed: HloText) -> dict[str, int]:
    """Sizes of the program at each stage; `parsed` is the optimised HLO text `hlo` parsed."""
    opcodes = parsed.opcodes
    return {
        "size_jaxpr_eqns": count_eqns(jaxpr),
        "size_stablehlo_bytes": len(stablehlo.encode()),
        "size_stablehlo_ops": len(_MLIR_OP.findall(stablehlo)),
        "size_hlo_bytes": len(hlo.encode()),
        "size_hlo_instructions": len(opcodes),
        "size_hlo_while_loops": opcodes.count("while"),
    }


def cost(compiled: Any, hlo: HloText) -> dict[str, float | bool | str | None]:
    """XLA's `cost_analysis()` exactly as reported (loop bodies counted once), and the
    same with every loop counted once per trip (profiler/measurement/cost.py)."""
    counted = loop_corrected(compiled, hlo)
    return {
        "cost_flops": counted.flops,
        "cost_transcendentals": counted.transcendentals,
        "cost_bytes_accessed": counted.bytes_accessed,
        "cost_exact": counted.exact,
        "cost_basis": counted.basis,
        "cost_xla_flops": counted.raw.get("flops"),
        "cost_xla_transcendentals": counted.raw.get("transcendentals"),
        "cost_xla_bytes_accessed": counted.raw.get("bytes accessed"),
        "cost_xla_optimal_seconds": counted.raw.get("optimal_seconds"),
    }


def xla_memory(compiled: Any) -> dict[str, int | None]:
    """`memory_analysis()` as reported, and the footprint built from it. What each
    field includes differs per backend; docs/cost.md has the measured details."""
    stats = compiled.memory_analysis()
    if stats is None:
        return {}

    def get(name: str) -> int | None:
        value = getattr(stats, name, None)
        return None if value is None else int(value)

    args, outs, alias, temp, code = (
        get(f"{name}_size_in_bytes") for name in ("argument", "output", "alias", "temp", "generated_code")
    )
    # XLA's lower bound for what the program needs on the device. On CPU the reported
    # peak leaves temp buffers out, so the footprint is the number to show.
    footprint = None
    if args is not None and outs is not None and alias is not None and temp is not None and code is not None:
        footprint = code + args + outs - alias + temp
    return {
        "mem_argument_bytes": args,
        "mem_output_bytes": outs,
        "mem_alias_bytes": alias,
        "mem_temp_bytes": temp,
        "mem_generated_code_bytes": code,
        "mem_footprint_bytes": footprint,
        "mem_xla_peak_bytes": get("peak_memory_in_bytes"),
    }


def run_compiled(compiled: Any, program: Program, steps: int) -> dict[str, Any]:
    """Execute the compiled program: the first call, then `steps` steady-state calls."""
    args = program.make_args()
    kwargs = dict(program.kwargs if program.make_kwargs is None else program.make_kwargs())
    jax.block_until_ready((args, kwargs))
    samples: list[float] = []
    gc.collect()  # the steps' timings keep the collector out too; what they allocate is freed by reference
    enabled = gc.isenabled()
    gc.disable()
    try:
        _steps(compiled, program, steps, args, kwargs, samples)
    finally:
        if enabled:
            gc.enable()
    first = samples.pop(0)
    return {
        "time_first_call_s": first,
        "time_step_median_s": statistics.median(samples),
        "time_step_samples_s": samples,
    }


def _steps(compiled: Any, program: Program, steps: int, args: tuple[Any, ...], kwargs: dict[str, Any],
           samples: list[float]) -> None:
    for _ in range(steps + 1):
        call_args, call_kwargs = dynamic_arguments(program, compiled, args, kwargs)
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*call_args, **call_kwargs))
        samples.append(time.perf_counter() - t0)
        if program.next_args is not None:
            args = program.next_args(args, out)
            if program.make_kwargs is not None:  # donated keyword arguments are gone too
                kwargs = dict(program.make_kwargs())
        del out


def dynamic_arguments(program: Program, compiled: Any, args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments a compiled program is called with: the call's, less its static ones
    (the compiled program has them built in and takes only the others)."""
    positional, keywords = compiled.args_info
    if len(positional) != len(args):
        options = getattr(program.fn, "_jit_info", None) if program.jitted else None  # a jitted fn's own options
        static = getattr(options, "static_argnums", None) or program.jit_kwargs.get("static_argnums", ())
        static = {i % len(args) for i in ((static,) if isinstance(static, int) else static)}
        args = tuple(a for i, a in enumerate(args) if i not in static)
    return args, {k: v for k, v in kwargs.items() if k in keywords}
