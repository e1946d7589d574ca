"""Compile-time anatomy: where the trace, the lowering and XLA's compile spend their time.

One *profiled* trace → lower → compile of a program (a twin of the measured one, never
the measured one itself: profiling slows what it watches) is broken down into a fixed
set of disjoint components:

- the trace and the lowering are Python: cProfile's self time of every function,
  attributed to the component of the module that defines it (Flax, JAX, the MLIR
  bindings, the user's code, the rest of Python); a built-in function's time goes to the
  module of the function that called it.
- the compile is XLA's: the TraceMe events (HLO pass pipelines and passes, fusion
  emitters, LLVM, thunk emission, ...) that `jax.profiler` captures in memory. Events
  nest and run on several threads; each instant of the compile's wall time is split
  equally between the threads busy in an event at that instant, and a thread's share
  goes to its innermost event (self time). An event takes the component of the first
  rule in COMPILE_RULES its name matches, or else that of the event it is nested in.

So the components of a stage are disjoint and add up, with `*_unattributed_s` (the time
no event or function covers), to the stage's wall time in the profiled compile
(`time_anatomy_<stage>_s`). docs/anatomy.md documents the taxonomy and what was measured.

This module knows nothing about grids, processes or files: `profile` takes a `Program`
and returns the row's columns and the per-event detail.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import re
import sys
import sysconfig
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# The compile-stage taxonomy: (component, pattern on the event name, doc). First match
# wins; an event that matches nothing inherits the component of its enclosing event.
# CPU names were read from jaxlib 0.10.2's own traces on this machine. The GPU names
# come from XLA's sources (TraceMe in xla/service/gpu/gpu_compiler.cc:
# GpuCompiler::OptimizeHloModule, GpuCompiler::CompileToBackendResult; llvm_gpu_backend:
# CompileSingleModule; nvptx_compiler.cc: PTX->CUBIN; autotuning/autotuner_compile_util.cc:
# AutotunerCompile; the autotuners run as passes named *autotuner*/*algorithm-picker*) and
# were not checked on a GPU here (docs/anatomy.md).
COMPILE_RULES: tuple[tuple[str, str, str], ...] = (
    ("autotuning", r"(?i)autotun|algorithm.?picker|conv-algorithm|gemm-algorithm",
     "GPU: choosing kernels and their configurations by timing them (gemm, fusion, convolution autotuners)."),
    ("ptx_compilation", r"^PTX->CUBIN$|[Pp][Tt][Xx][Aa][Ss]|CompileGpuAsm|nvlink|LinkGpuAsm|PtxCompile",
     "GPU: PTX to device code (ptxas or the in-process PTX compiler) and linking."),
    ("hlo_verifier", r"^(RunInvariantCheckers|hlo-verifier|cpu-verifier|gpu-verifier)$",
     "The HLO verifier XLA runs after passes (invariant checkers)."),
    ("layout_assignment", r"^((cpu|gpu)-)?layout[-_]assignment$",
     "The layout-assignment pass itself."),
    ("copy_insertion", r"copy[-_]insertion$",
     "The copy-insertion pass itself (adds the copies that make buffer aliasing safe; its alias analysis is whole-program)."),
    ("hlo_fusion", r"^[a-z0-9_\-]*fusion[a-z0-9_\-]*$",
     "HLO fusion decisions: the fusion passes (fusion, priority-fusion, multi-output, horizontal)."),
    ("hlo_passes_after_layout",
     r"^HLO passes after|^simplification after layout|^GpuCompiler::OptimizeHloPostLayoutAssignment$|^post-layout",
     "Other HLO passes of the pipelines after layout assignment (simplification after layout, scheduling pipelines)."),
    ("hlo_passes_before_layout",
     r"^HLO passes through layout|^GpuCompiler::(OptimizeHloModule|RunHloPasses|RunPreSPMDPartitionerPasses)$",
     "Other HLO passes of the pipeline that runs layout assignment (simplification, expanders, dot decomposition, SPMD on GPU)."),
    ("kernel_emission",
     r"^FusionCompiler::|^IrEmitter|^EmitLlvmIr|^GpuCompiler::CompileModuleToLlvmIr|^EmitFusion|^KernelEmitter|Emitter::Emit(?!EntryComputation)",
     "Fusion/kernel code generation: HLO fusions to MLIR to LLVM IR (the emitters and their MLIR passes)."),
    ("thunk_emission", r"^ThunkEmitter::|^ThunkSequence|EmitThunk|^Thunk",
     "Emitting the thunks, the runtime's sequence of operations (and, on CPU, collecting the kernels they call)."),
    ("llvm", r"^(JitCompiler::|Codegen$|TaskDispatcher::|SplitModule$|CpuCompiler::CloneAsThreadSafeModule$)"
     r"|^CompileSingleModule$|^(NVPTX|AMDGPU)Compiler::CompileTargetBinary|^GpuCompiler::CompileAndLink",
     "LLVM: optimising the emitted modules and generating machine code (CPU: the JIT's per-module tasks; GPU: LLVM to PTX)."),
    ("scheduling_buffers",
     r"^CpuCompiler::(RunBackend|CompileCpuExecutable)$|^GpuCompiler::(RunBackend|CompileToBackendResult)$"
     r"|[Bb]uffer.?[Aa]ssign|AssignBuffers|[Ss]chedul",
     "Self time of the backend compile outside the events above: HLO scheduling, buffer assignment and assembling the "
     "executable (jaxlib 0.10.2 emits no finer events for them on CPU)."),
    ("client", r"^backend_compile_and_load$|Client::Compile|^PjRt|^CompileAndLoad|^Compile$",
     "The client's entry points outside the backend: StableHLO to HLO conversion, compile options, loading the executable."),
)
HLO_PASSES_OTHER = ("hlo_passes_other", "HLO pass pipelines outside the main two, run by the client or the "
                    "compiler directly (sharding removal, HLO normalisation, dot-library rewrites, sub-byte packing).")
OTHER = ("other", "Named events that match no rule and sit in no event that does.")
# An HLO pass or pipeline is named in words ('copy-insertion', 'dot-library-passes');
# C++ scopes ('Foo::Bar') and MLIR passes ('CSEPass') are not.
_HLO_PASS = re.compile(r"^[a-z][A-Za-z0-9_\- ]*$")
UNATTRIBUTED = "unattributed"

# A thread in one of these is waiting for work it handed to other threads: it gets a
# share of an instant only when no other thread is busy then.
WAITING = re.compile(r"^(backend_compile_and_load|JitCompiler::Compile|Codegen)$")

# Python stages: component of a function by the path of its module.
PYTHON_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("flax", "Flax: module machinery (setup, scopes, variable creation, nn.scan/remat transforms)."),
    ("jax", "JAX (jax, jaxlib but the MLIR bindings): primitive binding, tracing, lowering rules."),
    ("mlir", "The MLIR Python bindings (jaxlib.mlir): building StableHLO operations."),
    ("user", "The user's code: the block, the model, the program (here: the harness's workloads too)."),
    ("python", "The rest of Python: the standard library, other packages (NumPy, ...), the interpreter."),
)
STAGES = ("trace", "lower", "compile")
DETAIL_KEY = "_anatomy_detail"
"""Key of a measured row's dict (worker → runner) that carries its detail rows; the runner
takes it out before the row becomes a Record and stores the detail beside the rows."""
COMPILE_COMPONENTS: tuple[str, ...] = (
    *dict.fromkeys(c for c, _, _ in COMPILE_RULES), HLO_PASSES_OTHER[0], OTHER[0])
_COMPILE_RULES = [(c, re.compile(p)) for c, p, _ in COMPILE_RULES]


def column(stage: str, component: str) -> str:
    """The row column of a component: `time_xla_<c>_s` for the compile, `time_<stage>_<c>_s` else."""
    return f"time_xla_{component}_s" if stage == "compile" else f"time_{stage}_{component}_s"


def component_docs() -> list[tuple[str, str, str]]:
    """(column, stage, meaning) of every component column, the `unattributed` ones included."""
    docs = []
    for stage in ("trace", "lower"):
        docs += [(column(stage, c), stage, doc) for c, doc in PYTHON_COMPONENTS]
        docs.append((column(stage, UNATTRIBUTED), stage, "Time of the stage no profiled Python function accounts for (profiler start-up and the gaps between calls)."))
    seen = set()
    for c, _, doc in COMPILE_RULES:
        if c not in seen:
            seen.add(c)
            docs.append((column("compile", c), "compile", doc))
    docs.append((column("compile", HLO_PASSES_OTHER[0]), "compile", HLO_PASSES_OTHER[1]))
    docs.append((column("compile", OTHER[0]), "compile", OTHER[1]))
    docs.append((column("compile", UNATTRIBUTED), "compile", "Wall time of the compile no XLA event covers (JAX's Python around the backend: cache keys, compile options)."))
    return docs


# --- the compile: XLA's TraceMe events -------------------------------------------------

@dataclass
class Event:
    name: str
    line: str
    start: int
    end: int
    parent: Event | None = None
    component: str = ""
    self_ns: int = 0
    outermost: bool = True
    """No enclosing event on its thread has the same name (its duration counts once in total_s)."""


_MODULE_SUFFIX = re.compile(r" \([^()]*\)$")


def event_name(raw: str) -> str:
    """An event's name without the module it ran on ('simplification (jit_apply)' →
    'simplification'), so that the same pass compares across programs."""
    return _MODULE_SUFFIX.sub("", raw)


def classify(events: list[Event]) -> None:
    """Nest the events of each thread and give each its component and self time."""
    by_line: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_line[e.line].append(e)
    for line_events in by_line.values():
        line_events.sort(key=lambda e: (e.start, -e.end))
        stack: list[Event] = []
        for e in line_events:
            while stack and stack[-1].end <= e.start:
                stack.pop()
            e.parent = stack[-1] if stack else None
            e.self_ns = e.end - e.start
            if e.parent is not None:
                e.parent.self_ns -= min(e.end, e.parent.end) - e.start
            e.outermost = all(a.name != e.name for a in stack)
            e.component = next((c for c, p in _COMPILE_RULES if p.search(e.name)), "")
            if not e.component:
                inherited = e.parent.component if e.parent is not None else OTHER[0]
                if inherited in ("client", OTHER[0]) and _HLO_PASS.match(e.name):
                    inherited = HLO_PASSES_OTHER[0]
                e.component = inherited
            stack.append(e)


def wall_shares(events: list[Event]) -> dict[int, float]:
    """Seconds of wall time each event (by id) owns: every instant is split equally
    between the threads busy then, a thread's part going to its innermost event, and
    threads that only wait (WAITING) count only when no other thread is busy."""
    by_line: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_line[e.line].append(e)
    segments = [seg for line_events in by_line.values() for seg in _innermost(line_events)]
    boundaries: list[tuple[int, int, int]] = []  # (time, +1 start / -1 end, segment index)
    for i, (a, b, _) in enumerate(segments):
        boundaries += [(a, 1, i), (b, -1, i)]
    boundaries.sort(key=lambda x: (x[0], x[1]))
    shares: dict[int, float] = defaultdict(float)
    active: set[int] = set()
    last = None
    for t, kind, i in boundaries:
        if active and last is not None and t > last:
            busy = [j for j in active if not WAITING.match(segments[j][2].name)] or list(active)
            dt = (t - last) / 1e9 / len(busy)
            for j in busy:
                shares[id(segments[j][2])] += dt
        last = t
        if kind == 1:
            active.add(i)
        else:
            active.discard(i)
    return shares


def _innermost(line_events: list[Event]) -> list[tuple[int, int, Event]]:
    """The intervals of one thread where each of its events is the innermost one."""
    segments: list[tuple[int, int, Event]] = []
    stack: list[tuple[Event, int]] = []  # (event, where its current innermost stretch began)

    def close_until(t: int) -> None:
        while stack and stack[-1][0].end <= t:
            ev, since = stack.pop()
            if ev.end > since:
                segments.append((since, ev.end, ev))
            if stack:
                stack[-1] = (stack[-1][0], ev.end)

    for e in sorted(line_events, key=lambda e: (e.start, -e.end)):
        close_until(e.start)
        if stack:
            parent, since = stack[-1]
            if e.start > since:
                segments.append((since, e.start, parent))
        stack.append((e, e.start))
    close_until(max((e.end for e in line_events), default=0) + 1)
    return segments


def compile_anatomy(events: list[Event], wall_s: float) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Component columns of the compile stage and its per-event detail, from the events
    captured during it and its wall time."""
    classify(events)
    shares = wall_shares(events)
    columns = dict.fromkeys((column("compile", c) for c in COMPILE_COMPONENTS), 0.0)
    detail: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        columns[column("compile", e.component)] += shares.get(id(e), 0.0)
        d = detail.setdefault((e.component, e.name), {
            "stage": "compile", "component": e.component, "event": e.name,
            "calls": 0, "self_s": 0.0, "total_s": 0.0, "wall_s": 0.0, "threads": set()})
        d["calls"] += 1
        d["self_s"] += e.self_ns / 1e9
        d["total_s"] += (e.end - e.start) / 1e9 if e.outermost else 0.0
        d["wall_s"] += shares.get(id(e), 0.0)
        d["threads"].add(_thread_kind(e.line))
    columns[column("compile", UNATTRIBUTED)] = max(0.0, wall_s - sum(columns.values()))
    rows = [{**d, "threads": len(d["threads"])} for d in detail.values()]
    return columns, rows


def _thread_kind(line: str) -> str:
    return line.split("/")[0]


def _capture_compile() -> Any:
    """Start XLA's host tracer (no Python tracer: the compile is C++), in memory."""
    from jax._src.lib import _profiler

    options = _profiler.ProfileOptions()
    options.python_tracer_level = 0
    options.host_tracer_level = 2
    options.enable_hlo_proto = False  # the HLO is the row's business, not the profile's
    options.raise_error_on_start_failure = True  # no events must not read as "all unattributed"
    return _profiler.ProfilerSession(options)


def _events(profile_data: Any, window: tuple[int, int]) -> list[Event]:
    """The host's events inside `window` (ns since the epoch), clipped to it. Events are
    stamped relative to the session's start, which the 'Task Environment' plane records."""
    started = next((int(value) for plane in profile_data.planes if plane.name == "Task Environment"
                    for key, value in plane.stats if key == "profile_start_time"), None)
    if started is None:
        raise RuntimeError("anatomy: the profile does not say when it started (no profile_start_time)")
    lo, hi = window[0] - started, window[1] - started
    events = []
    for plane in profile_data.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for ev in line.events:
                start, end = int(ev.start_ns), int(ev.end_ns)
                if end <= lo or start >= hi:
                    continue
                events.append(Event(event_name(ev.name), line.name, max(start, lo), min(end, hi)))
    return events


# --- the trace and the lowering: Python functions -------------------------------------

_STDLIB = sysconfig.get_paths()["stdlib"]
_PACKAGE_DIRS = ("site-packages", "dist-packages")


def module_of(filename: str) -> tuple[str, str]:
    """(component, module path) of the file a function is defined in."""
    if filename.startswith("<") or filename == "~":
        return "python", filename
    path = filename.replace(os.sep, "/")
    for marker in _PACKAGE_DIRS:
        if f"/{marker}/" in path:
            rel = path.split(f"/{marker}/", 1)[1]
            top = rel.split("/", 1)[0]
            if top == "flax":
                return "flax", rel
            if rel.startswith("jaxlib/mlir/"):
                return "mlir", rel
            if top in ("jax", "jaxlib"):
                return "jax", rel
            return "python", rel
    if path.startswith(_STDLIB.replace(os.sep, "/")):
        return "python", "stdlib/" + path[len(_STDLIB):].lstrip("/")
    with contextlib.suppress(ValueError):
        path = os.path.relpath(path)
    return "user", path


def python_anatomy(stage: str, stats: dict[Any, Any], wall_s: float) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Component columns and per-module detail of a Python stage from cProfile's raw
    stats ({(file, line, function): (calls, ncalls, tottime, cumtime, callers)})."""
    columns = dict.fromkeys((column(stage, c) for c, _ in PYTHON_COMPONENTS), 0.0)
    detail: dict[tuple[str, str], dict[str, Any]] = {}

    def add(filename: str, calls: int, seconds: float) -> None:
        component, module = module_of(filename)
        columns[column(stage, component)] += seconds
        d = detail.setdefault((component, module), {
            "stage": stage, "component": component, "event": module,
            "calls": 0, "self_s": 0.0, "total_s": None, "wall_s": 0.0, "threads": 1})
        d["calls"] += calls
        d["self_s"] += seconds
        d["wall_s"] += seconds

    for (filename, _, _), (_, ncalls, tottime, _, callers) in stats.items():
        if filename == "~" and callers:  # a built-in: billed to whoever called it
            for (caller_file, _, _), (calls, _, own, _) in callers.items():  # cProfile: nc, cc, tt, ct
                add(caller_file, calls, own)
        else:
            add(filename, ncalls, tottime)
    columns[column(stage, UNATTRIBUTED)] = max(0.0, wall_s - sum(columns.values()))
    return columns, list(detail.values())


# --- one profiled compile ------------------------------------------------------------

@dataclass
class Recorder:
    """Profiles each stage of one `measure.compile_stages` call (its `around` hook)."""

    python: dict[str, dict[Any, Any]] = field(default_factory=dict)
    compile_events: list[Event] = field(default_factory=list)

    @contextlib.contextmanager
    def around(self, stage: str) -> Iterator[None]:
        if stage == "compile":
            session = _capture_compile()
            lo = time.time_ns()  # the profiler stamps events with the wall clock
            try:
                yield
            finally:
                hi = time.time_ns()
                self.compile_events = _events(session.stop_and_get_profile_data(), (lo, hi))
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            profile.create_stats()
            self.python[stage] = profile.stats

    def anatomy(self, times: dict[str, float]) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Row columns (components and the profiled stage times) and the detail rows."""
        columns: dict[str, float] = {}
        detail: list[dict[str, Any]] = []
        for stage in ("trace", "lower"):
            cols, rows = python_anatomy(stage, self.python.get(stage, {}), times[f"time_{stage}_s"])
            columns.update(cols)
            detail += rows
        cols, rows = compile_anatomy(self.compile_events, times["time_compile_s"])
        columns.update(cols)
        detail += rows
        columns.update({f"time_anatomy_{stage}_s": times[f"time_{stage}_s"] for stage in STAGES})
        return columns, detail


def profile(program: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Trace, lower and compile `program` once, cold, under the profilers. Returns the
    component columns of its row and the per-event detail (one dict per (stage,
    component, event): calls, self_s, total_s, wall_s, threads)."""
    import jax

    from profiler.measure import compile_stages

    if sys.getprofile() is not None:  # cProfile cannot nest under another profiler
        raise RuntimeError("anatomy: a Python profiler is already active in this process")
    recorder = Recorder()
    with program.context():
        jax.clear_caches()
        stages = compile_stages(program, around=recorder.around)
    return recorder.anatomy(stages.times)
