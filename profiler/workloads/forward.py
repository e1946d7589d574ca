"""Workload `forward`: the block stack applied to a batch, `apply(params, x)`.

On a mesh (a 'DxM' other than 1x1, or a TPU or GPU target), the batch is split on the
'data' axis and the parameters are laid out by their logical axes (replicated for a block
that names none), as the train workload does.
"""

from __future__ import annotations

from typing import Any

from profiler.models import palm, sharding, stacked
from profiler.models.blocks import forward_matmul_flops
from profiler.models.program import Program
from profiler.spec import Point


def analytic_flops(point: Point) -> float | None:
    """Matmul FLOPs of one forward pass of the stack: the seed's block counted
    (`blocks.forward_matmul_flops`), block 'llama' by the PaLM formula; None for any other
    block (a user's block has no analytic count, nor has 'moe')."""
    if point.block == "llama":
        return palm.forward_flops(point)
    if point.block:
        return None
    return float(forward_matmul_flops(layers=point.layers, batch=point.batch, seq=point.seq, hidden=point.hidden))


def build(point: Point) -> list[Program]:
    net = stacked.build(point)
    flops = analytic_flops(point)
    info = {} if flops is None else {"cost_analytic_flops": flops}
    laid_out: dict[str, Any] = {}
    if point.on_mesh:
        mesh = sharding.make_mesh(*point.mesh_shape)
        params, batch = sharding.params_and_batch(mesh, net.logical_axes, net.params)
        laid_out = dict(jit_kwargs=dict(in_shardings=(params, batch)),
                        context=lambda: sharding.context(mesh, sharding.TRAIN_RULES))
    return [Program(fn=net.apply, args=(net.params, net.x), make_args=net.make_args, info=info, **laid_out)]
