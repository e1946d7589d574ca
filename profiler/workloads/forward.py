"""Workload `forward`: the seed's block stack applied to a batch, `apply(params, x)`."""

from __future__ import annotations

from profiler import model
from profiler.spec import Point
from profiler.workloads import Program


def build(point: Point) -> list[Program]:
    net = model.build(point)
    return [Program(fn=net.apply, args=(net.params, net.x), make_args=net.make_args)]
