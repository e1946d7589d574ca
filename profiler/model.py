"""The model under test: a point's block stack as a pure function of (params, x), whichever
Flax API wrote it.

Workloads build on `Model` and never see the API: linen's `apply` is already pure; an NNX
module is split once into a graph definition and a parameter state, so the jitted
function takes only pytrees and merges them back inside the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from profiler.blocks import NnxSimpleBlock, SimpleBlock
from profiler.spec import Point
from profiler.stacking import NnxStack, Stack
from profiler.workloads import random_like


@dataclass(frozen=True)
class Model:
    apply: Callable[[Any, jax.Array], tuple[jax.Array, Any]]
    """`(params, x) -> (y, intermediates)`, a pure function."""
    params: Any
    """Abstract parameters: a pytree of `jax.ShapeDtypeStruct`."""
    x: jax.ShapeDtypeStruct
    """Abstract input batch."""

    def make_args(self) -> tuple[Any, jax.Array]:
        """Real parameters and input for running (see `random_like` for why not `init`)."""
        return random_like((self.params, self.x))


def build(point: Point) -> Model:
    dtype = jnp.dtype(point.dtype)
    x = jax.ShapeDtypeStruct((point.batch, point.seq, point.hidden), dtype)
    stack = dict(
        block_kwargs=dict(hidden_dim=point.hidden, num_heads=point.heads, dtype=dtype),
        mode=point.mode, layers=point.layers, unroll=point.unroll, remat=point.remat,
    )
    if point.api == "nnx":
        return _nnx(stack, x)
    return _linen(stack, x)


def _linen(stack: dict[str, Any], x: jax.ShapeDtypeStruct) -> Model:
    net = Stack(block=SimpleBlock, **stack)
    # The seed initialises with a batch of one; parameter shapes do not depend on it.
    init_x = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)

    params = jax.eval_shape(net.init, jax.random.key(0), init_x)
    return Model(apply=net.apply, params=params, x=x)


def _nnx(stack: dict[str, Any], x: jax.ShapeDtypeStruct) -> Model:
    graphdef, params = nnx.split(
        nnx.eval_shape(lambda: NnxStack(NnxSimpleBlock, **stack, rngs=nnx.Rngs(0))))

    def apply(params: nnx.State, x: jax.Array) -> tuple[jax.Array, Any]:
        return nnx.merge(graphdef, params)(x)

    return Model(apply=apply, params=params, x=x)
