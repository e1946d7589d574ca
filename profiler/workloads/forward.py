"""Workload `forward`: the block stack applied to a batch, `apply(params, x)`."""

from __future__ import annotations

from profiler.models import palm, stacked
from profiler.models.blocks import forward_matmul_flops
from profiler.models.program import Program
from profiler.spec import Point


def build(point: Point) -> list[Program]:
    net = stacked.build(point)
    # Known for the built-in block only; a user's block has no analytic count.
    info = {} if point.block else {"cost_analytic_flops": float(forward_matmul_flops(
        layers=point.layers, batch=point.batch, seq=point.seq, hidden=point.hidden))}
    if point.block == "llama":
        info = {"cost_analytic_flops": palm.forward_flops(point)}
    return [Program(fn=net.apply, args=(net.params, net.x), make_args=net.make_args, info=info)]
