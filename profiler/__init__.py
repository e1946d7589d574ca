"""Compile-time, program-size and memory profiling sweeps for stacked JAX/Flax layers.

Public API (everything else is private to the package). `profile`, `sweep`,
`Profile`, `MeasurementError` (profiler/api.py), `figures` (profiler/report/),
`forecast_target` (profiler/analysis/forecast/) and `plan_target` (profiler/analysis/plan.py) are
imported on first use: every measuring process imports this package, and must not pay
for plotting. (Not `forecast` and `plan`: importing a submodule binds its name on the
package.) So are the others, from the modules that define them: `python -m profiler`
imports this package first, and refuses bad input before it imports pyarrow or numpy.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from profiler.processes.runner import SweepResult, run_sweep
    from profiler.spec import Point, Spec, SpecError, Sweep, build_spec, load_spec
    from profiler.storage.record import COLUMNS, SCHEMA_VERSION, Record
    from profiler.storage.store import StoreError, load

_LAZY = {"profile": "profiler.api", "sweep": "profiler.api", "MeasurementError": "profiler.api",
         "Profile": "profiler.api", "figures": "profiler.report", "forecast_target": "profiler.analysis.forecast",
         "plan_target": "profiler.analysis.plan",
         "COLUMNS": "profiler.storage.record", "SCHEMA_VERSION": "profiler.storage.record", "Record": "profiler.storage.record",
         "SweepResult": "profiler.processes.runner", "run_sweep": "profiler.processes.runner",
         "Point": "profiler.spec", "Spec": "profiler.spec", "SpecError": "profiler.spec", "Sweep": "profiler.spec",
         "build_spec": "profiler.spec", "load_spec": "profiler.spec",
         "StoreError": "profiler.storage.store", "load": "profiler.storage.store"}

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "MeasurementError",
    "Point",
    "Profile",
    "Record",
    "Spec",
    "SpecError",
    "StoreError",
    "Sweep",
    "SweepResult",
    "build_spec",
    "figures",
    "forecast_target",
    "load",
    "load_spec",
    "plan_target",
    "profile",
    "run_sweep",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'profiler' has no attribute {name!r}")
