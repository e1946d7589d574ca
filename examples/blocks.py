"""Blocks the profiler has never seen, for `block = "examples.blocks:<Class>"`.

Each constructor names the spec keys it needs (hidden, dtype); fields no key names keep
their defaults (write a subclass to change them). `PreNormMLP` returns x alone,
`GatedMLP` returns (x, aux): the stack takes either.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx


class PreNormMLP(nn.Module):
    """x + W2 gelu(W1 LayerNorm(x)): the feed-forward half of a pre-norm transformer layer."""

    hidden: int
    dtype: Any = jnp.float32
    expansion: int = 4

    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm(dtype=self.dtype)(x)
        h = nn.gelu(nn.Dense(self.expansion * self.hidden, dtype=self.dtype)(h))
        return x + nn.Dense(self.hidden, dtype=self.dtype)(h)


class GatedMLP(nnx.Module):
    """x + W_out (silu(W_gate x) * W_up x), in Flax NNX; also returns the mean gate."""

    def __init__(self, hidden: int, dtype: Any, *, expansion: int = 2, rngs: nnx.Rngs):
        inner = expansion * hidden
        self.gate = nnx.Linear(hidden, inner, use_bias=False, dtype=dtype, rngs=rngs)
        self.up = nnx.Linear(hidden, inner, use_bias=False, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(inner, hidden, use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        gate = nnx.silu(self.gate(x))
        return x + self.out(gate * self.up(x)), {"mean_gate": gate.mean()}


def matmul_flops(block: str, *, layers: int, batch: int, seq: int, hidden: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of `layers` stacked blocks at their default
    expansion: PreNormMLP does two hidden x 4 hidden matmuls per token, GatedMLP three
    hidden x 2 hidden ones."""
    per_token = {"PreNormMLP": 2 * 4, "GatedMLP": 3 * 2}[block] * hidden * hidden
    return 2 * layers * batch * seq * per_token
