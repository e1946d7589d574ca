"""The layer that gets stacked: the seed notebook's `SimpleBlock`, unchanged."""

from __future__ import annotations

from typing import Any

import flax.linen as nn


class SimpleBlock(nn.Module):
    """Self-attention then a dense layer, each with a residual add.

    Returns `(x, intermediates)` like the seed, so stacking modes must carry `x` and
    collect the per-layer intermediates (a scan stacks them, a loop nests them in a dict).
    """

    hidden_dim: int
    num_heads: int
    dtype: Any

    @nn.compact
    def __call__(self, x, attention_mask=None):
        out = {"input_hidden_state": x}
        x += nn.SelfAttention(
            num_heads=self.num_heads,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
            name="self_attention",
        )(x, attention_mask)
        out["+self_attention"] = x
        x += nn.Dense(features=self.hidden_dim)(x)
        out["+dense"] = x
        return x, out
