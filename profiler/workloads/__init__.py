"""Workloads: what gets compiled for a point.

A workload turns a `Point` into one or more `Program`s (profiler/models/program.py): a function
plus abstract arguments. Each workload is one module of this package, registered in
`build`.
"""

from __future__ import annotations

from collections.abc import Callable

from profiler.models.program import Program
from profiler.spec import Point
from profiler.workloads import decode, forward, train, user_program

BUILDERS: dict[str, Callable[[Point], list[Program]]] = {
    "forward": forward.build, "train": train.build, "program": user_program.build, "decode": decode.build}
"""Each value of the spec key `workload` and the function that builds its programs."""


def build(point: Point) -> list[Program]:
    """The programs that measure `point`."""
    return BUILDERS[point.workload](point)
