"""Compile-time, program-size and memory profiling sweeps for stacked JAX/Flax layers.

Public API (everything else is private to the package):
"""

from profiler.record import COLUMNS, SCHEMA_VERSION, Record
from profiler.runner import SweepResult, run_sweep
from profiler.spec import Point, Spec, SpecError, Sweep, build_spec, load_spec
from profiler.store import StoreError, load

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "Point",
    "Record",
    "Spec",
    "SpecError",
    "StoreError",
    "Sweep",
    "SweepResult",
    "build_spec",
    "load",
    "load_spec",
    "run_sweep",
]
