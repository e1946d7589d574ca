"""Workload `train`: one optimizer step on the block stack.

loss = mean of squares of the stack's output (next-token cross-entropy for the block
families' language model); `jax.value_and_grad`; an optax AdamW update. Parameters and
optimizer state are donated, as a training loop would, so XLA may update them in place
(`mem_alias_bytes`); when the point runs, each step's new state feeds the next.

The block families are laid out on the point's 'data' x 'model' mesh
(`profiler.models.sharding.TRAIN_RULES`: batch and FSDP on 'data', tensor parallel on 'model'):
parameters by their logical axes, the AdamW moments like their parameters, the tokens by
batch. The per-device bytes of each follow from those shardings.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from profiler.models import palm, sharding, stacked
from profiler.models.program import Program
from profiler.models.stacked import Model
from profiler.spec import Point
from profiler.workloads.forward import analytic_flops as forward_analytic_flops

OPTIMIZER = optax.adamw(learning_rate=1e-3)


def loss(net: Model, params: Any, x: jax.Array) -> jax.Array:
    y, _ = net.apply(params, x)
    if jnp.issubdtype(x.dtype, jnp.integer):  # a language model: logits of the next token
        targets = jnp.roll(x, -1, axis=1)
        return optax.softmax_cross_entropy_with_integer_labels(y.astype(jnp.float32), targets).mean()
    return jnp.mean(jnp.square(y.astype(jnp.float32)))


def tree_bytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or `jax.ShapeDtypeStruct`s."""
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(tree))


def analytic_flops(point: Point) -> float | None:
    """Matmul FLOPs of the step with the built-in block (None for a user's block): forward
    and backward (two matmuls per forward matmul), plus a second forward where
    remat='full' recomputes every block. Policies that save the dots (dots_saveable, ...)
    recompute no matmul; the AdamW update is element-wise. Block 'llama': the PaLM
    formula (`palm.train_flops`)."""
    if point.block == "llama":  # its remat policies recompute parts of attention: not a multiple of the forward
        return palm.train_flops(point)
    forward = forward_analytic_flops(point)
    return None if forward is None else forward * (4 if point.remat == "full" else 3)


def layout(point: Point, net: Model, opt_state: Any) -> dict[str, Any]:
    """Shardings of the step's arguments and outputs on the point's mesh, the context
    they resolve in, and the per-device bytes they imply (block families, and any block
    on a mesh or a TPU or GPU target)."""
    mesh = sharding.make_mesh(*point.mesh_shape)
    params, tokens = sharding.params_and_batch(mesh, net.logical_axes, net.params)
    replicated = sharding.replicated(mesh)
    # The AdamW moments are trees shaped like the parameters, laid out like them; the
    # step count is replicated.
    state = optax.tree_map_params(OPTIMIZER, lambda _, s: s, opt_state, params,
                                  transform_non_params=lambda _: replicated)
    param_bytes = sharding.device_bytes(net.params, params)
    return dict(
        jit_kwargs=dict(in_shardings=(params, state, tokens), out_shardings=(params, state, replicated)),
        context=lambda: sharding.context(mesh, sharding.TRAIN_RULES),
        info={
            "mem_param_device_bytes": param_bytes,
            # Gradients have the parameters' shapes and dtypes, and their layout.
            "mem_grad_device_bytes": param_bytes,
            "mem_optimizer_state_device_bytes": sharding.device_bytes(opt_state, state),
        },
    )


def build(point: Point) -> list[Program]:
    net = stacked.build(point)
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
    info = {
        "mem_optimizer_state_bytes": tree_bytes(opt_state),
        "cost_analytic_flops": analytic_flops(point),
        "size_params": sum(math.prod(a.shape) for a in jax.tree.leaves(net.params)),
    }
    sharded = {}
    if point.block in stacked.FAMILIES or point.on_mesh:
        sharded = layout(point, net, opt_state)
        info |= sharded.pop("info")
        in_shardings = sharded["jit_kwargs"]["in_shardings"]
        unsharded = make_args

        def make_args() -> tuple[Any, Any, jax.Array]:
            return jax.device_put(unsharded(), in_shardings)
    return [Program(
        fn=step,
        args=(net.params, opt_state, net.x),
        make_args=make_args,
        donate_argnums=(0, 1),
        next_args=next_args,
        info=info,
        **sharded,
    )]
