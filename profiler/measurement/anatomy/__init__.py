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

This package knows nothing about grids, processes or files: `profile` takes a `Program`
and returns the row's columns and the per-event detail.

Modules, one job each:
  taxonomy       the components, their meanings and row columns (no profiling)
  xla            the compile: XLA's events, classified and shared out in wall time
  python_stages  the trace and the lowering: cProfile's functions by module
  recorder       one profiled compile of a program: Recorder, profile
"""

from profiler.measurement.anatomy.python_stages import module_of, python_anatomy
from profiler.measurement.anatomy.recorder import Recorder, profile
from profiler.measurement.anatomy.taxonomy import (
    COMPILE_COMPONENTS,
    COMPILE_RULES,
    DETAIL_KEY,
    HLO_PASSES_OTHER,
    OTHER,
    PYTHON_COMPONENTS,
    STAGES,
    UNATTRIBUTED,
    column,
    component_docs,
)
from profiler.measurement.anatomy.xla import (
    WAITING,
    Event,
    classify,
    compile_anatomy,
    event_name,
    wall_shares,
)

__all__ = [
    "COMPILE_COMPONENTS",
    "COMPILE_RULES",
    "DETAIL_KEY",
    "HLO_PASSES_OTHER",
    "OTHER",
    "PYTHON_COMPONENTS",
    "STAGES",
    "UNATTRIBUTED",
    "WAITING",
    "Event",
    "Recorder",
    "classify",
    "column",
    "compile_anatomy",
    "component_docs",
    "event_name",
    "module_of",
    "profile",
    "python_anatomy",
    "wall_shares",
]
