"""Workload `train`: one optimizer step on the block stack.

loss = mean of squares of the stack's output; `jax.value_and_grad`; an optax AdamW
update. Parameters and optimizer state are donated, as a training loop would, so XLA
may update them in place (`mem_alias_bytes`); when the point runs, each step's new state
feeds the next.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from profiler import model
from profiler.blocks import forward_matmul_flops
from profiler.model import Model
from profiler.program import Program
from profiler.spec import Point

OPTIMIZER = optax.adamw(learning_rate=1e-3)


def loss(net: Model, params: Any, x: jax.Array) -> jax.Array:
    y, _ = net.apply(params, x)
    return jnp.mean(jnp.square(y.astype(jnp.float32)))


def tree_bytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or `jax.ShapeDtypeStruct`s."""
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(tree))


def analytic_flops(point: Point) -> float | None:
    """Matmul FLOPs of the step with the built-in block (None for a user's block): forward
    and backward (two matmuls per forward matmul), plus a second forward where
    remat='full' recomputes every block. Policies that save the dots (dots_saveable, ...)
    recompute no matmul; the AdamW update is element-wise."""
    if point.block:
        return None
    forward = forward_matmul_flops(layers=point.layers, batch=point.batch, seq=point.seq, hidden=point.hidden)
    return float(forward * (4 if point.remat == "full" else 3))


def build(point: Point) -> list[Program]:
    net = model.build(point)
    grad_fn = jax.value_and_grad(functools.partial(loss, net))

    def step(params: Any, opt_state: Any, x: jax.Array) -> tuple[Any, Any, jax.Array]:
        value, grads = grad_fn(params, x)
        updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    def make_args() -> tuple[Any, Any, jax.Array]:
        params, x = net.make_args()
        return params, OPTIMIZER.init(params), x

    def next_args(args: tuple[Any, Any, jax.Array], out: tuple[Any, Any, jax.Array]):
        params, opt_state, _ = out
        return params, opt_state, args[2]

    opt_state = jax.eval_shape(OPTIMIZER.init, net.params)
    return [Program(
        fn=step,
        args=(net.params, opt_state, net.x),
        make_args=make_args,
        donate_argnums=(0, 1),
        next_args=next_args,
        info={
            "mem_optimizer_state_bytes": tree_bytes(opt_state),
            "cost_analytic_flops": analytic_flops(point),
        },
    )]
