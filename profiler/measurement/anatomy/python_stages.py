"""The trace and the lowering: cProfile's self time of every Python function, attributed
to the component of the module that defines it (python_anatomy)."""

from __future__ import annotations

import contextlib
import os
import sysconfig
from typing import Any

from profiler.measurement.anatomy.taxonomy import PYTHON_COMPONENTS, UNATTRIBUTED, column

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
