"""A program with its own loop, for `program = "examples.programs:fori_matmuls"`."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fori_matmuls(layers: int, hidden: int, batch: int, dtype: str):
    """`layers` trips of x <- tanh(x @ w) in a `jax.lax.fori_loop`: (fn, abstract args).

    XLA's cost analysis counts the loop's body once; the profiler's `cost_flops` counts it
    `layers` times: 2 * batch * hidden**2 FLOPs per trip (plus the loop counter's adds).
    """

    def fn(x, w):
        return jax.lax.fori_loop(0, layers, lambda i, x: jnp.tanh(x @ w), x)

    x = jax.ShapeDtypeStruct((batch, hidden), jnp.dtype(dtype))
    w = jax.ShapeDtypeStruct((hidden, hidden), jnp.dtype(dtype))
    return fn, (x, w)
