"""The layer that gets stacked: the seed notebook's `SimpleBlock`, in Flax linen and NNX.

Both versions compute the same function; their parameters differ only in names (linen's
auto-named `Dense_0` is NNX's attribute `dense`), which `tests/test_equivalence.py` maps.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
from flax import nnx


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


class NnxSimpleBlock(nnx.Module):
    """`SimpleBlock` written in Flax NNX: the same layers, initialisers and dtypes
    (`nn.SelfAttention` is `MultiHeadAttention` attending to its own input)."""

    def __init__(self, hidden_dim: int, num_heads: int, dtype: Any, *, rngs: nnx.Rngs):
        self.self_attention = nnx.MultiHeadAttention(
            num_heads=num_heads,
            in_features=hidden_dim,
            kernel_init=nnx.initializers.xavier_uniform(),
            bias_init=nnx.initializers.zeros,
            dtype=dtype,
            decode=False,
            rngs=rngs,
        )
        self.dense = nnx.Linear(hidden_dim, hidden_dim, rngs=rngs)

    def __call__(self, x, attention_mask=None):
        out = {"input_hidden_state": x}
        x = x + self.self_attention(x, mask=attention_mask)
        out["+self_attention"] = x
        x = x + self.dense(x)
        out["+dense"] = x
        return x, out


BUILTIN: dict[str, type[nn.Module] | type[nnx.Module]] = {"linen": SimpleBlock, "nnx": NnxSimpleBlock}
"""The block of each Flax API when the spec names none (key `block` = '')."""

FIELD_ALIASES: dict[str, str] = {"hidden_dim": "hidden", "num_heads": "heads"}
"""Constructor fields that receive a spec key of another name (field -> key). The seed's
SimpleBlock names its fields so; any block may use either name."""


def forward_matmul_flops(*, layers: int, batch: int, seq: int, hidden: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of `layers` stacked `SimpleBlock`s applied to a
    (batch, seq, hidden) input, from the configuration alone. Per block: the Q, K, V and
    output projections and the dense layer (five hidden x hidden matmuls per token), and
    QK^T and AV (seq x seq x head_dim per head; the head count cancels, since heads x
    head_dim = hidden). Element-wise work (biases, softmax, residual adds) is left out;
    XLA counts it, so measured FLOPs run a little higher, relatively more at small
    hidden sizes. A training step costs about 3x this (the backward pass does two
    matmuls per forward matmul), plus one more forward per rematerialised block."""
    tokens = batch * seq
    projections = 5 * 2 * tokens * hidden * hidden
    attention = 2 * 2 * tokens * seq * hidden
    return layers * (projections + attention)
