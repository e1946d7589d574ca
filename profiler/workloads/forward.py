"""Workload `forward`: the seed's block stack applied to a batch, `model.apply(params, x)`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from profiler.blocks import SimpleBlock, forward_matmul_flops
from profiler.spec import Point
from profiler.stacking import Stack
from profiler.workloads import Program, random_like


def model(point: Point) -> Stack:
    kwargs = dict(hidden_dim=point.hidden, num_heads=point.heads, dtype=jnp.dtype(point.dtype))
    return Stack(
        block=SimpleBlock, block_kwargs=kwargs, mode=point.mode, layers=point.layers,
        unroll=point.unroll, remat=point.remat,
    )


def build(point: Point) -> list[Program]:
    net = model(point)
    dtype = jnp.dtype(point.dtype)
    # The seed initialises with a batch of one; parameter shapes do not depend on it.
    init_x = jax.ShapeDtypeStruct((1, point.seq, point.hidden), dtype)
    x = jax.ShapeDtypeStruct((point.batch, point.seq, point.hidden), dtype)
    params = jax.eval_shape(net.init, jax.random.key(0), init_x)

    def make_args():
        return random_like((params, x))

    analytic = forward_matmul_flops(layers=point.layers, batch=point.batch, seq=point.seq, hidden=point.hidden)
    return [Program(fn=net.apply, args=(params, x), make_args=make_args, info={"cost_analytic_flops": float(analytic)})]
