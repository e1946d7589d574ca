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


@dataclass(frozen=True)
class Model:
    apply: Callable[[Any, jax.Array], tuple[jax.Array, Any]]
    """`(params, x) -> (y, intermediates)`, a pure function."""
    params: Any
    """Abstract parameters: a pytree of `jax.ShapeDtypeStruct`."""
    x: jax.ShapeDtypeStruct
    """Abstract input batch."""
    init: Callable[[jax.Array], Any]
    """Concrete parameters from a PRNG key (allocates: only for running)."""

    def make_args(self) -> tuple[Any, jax.Array]:
        """Concrete parameters and input batch, always from the same seed."""
        init_key, x_key = jax.random.split(jax.random.key(0))
        # Jitted: op-by-op initialisation of a deep unrolled stack takes minutes.
        params = jax.jit(self.init)(init_key)
        return params, jax.random.normal(x_key, self.x.shape, self.x.dtype)


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
    init_x = jnp.zeros((1, *x.shape[1:]), x.dtype)

    def init(key: jax.Array) -> Any:
        return net.init(key, init_x)

    return Model(apply=net.apply, params=jax.eval_shape(init, jax.random.key(0)), x=x, init=init)


def _nnx(stack: dict[str, Any], x: jax.ShapeDtypeStruct) -> Model:
    def create(key: jax.Array) -> NnxStack:
        return NnxStack(NnxSimpleBlock, **stack, rngs=nnx.Rngs(key))

    graphdef, params = nnx.split(nnx.eval_shape(lambda: create(jax.random.key(0))))

    def apply(params: nnx.State, x: jax.Array) -> tuple[jax.Array, Any]:
        return nnx.merge(graphdef, params)(x)

    def init(key: jax.Array) -> nnx.State:
        return nnx.split(create(key))[1]

    return Model(apply=apply, params=params, x=x, init=init)
