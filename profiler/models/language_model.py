"""A decoder-only language model around a stack of the built-in families' blocks
('llama', 'moe'), in Flax linen and NNX: token embedding, the stack, a final RMSNorm and
an untied LM head, as Llama 3 and Mixtral have them.

The families' workloads run whole models because the models users size are whole: the
embedding table and the LM head hold 1.05 of Llama 3 8B's 8.03 billion parameters, the
(batch, seq, vocab) logits are its widest activation, and the PaLM FLOPs formula the
train workload is checked against (docs/models.md) counts the head among the matmul
parameters.
`(params, tokens) -> (logits, aux)`, logits in the compute dtype.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from profiler.models import llama
from profiler.models.stacking import NnxStack, Stack


def outer_shapes(vocab: int, hidden: int) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """Parameters outside the stack: name -> (shape, logical axes)."""
    return {
        "embed": ((vocab, hidden), ("vocab", "embed")),
        "final_norm": ((hidden,), ("norm",)),
        "lm_head": ((hidden, vocab), ("embed", "vocab")),
    }


def embed(tokens: jax.Array, table: jax.Array, dtype: Any) -> jax.Array:
    return llama.constrain(jnp.take(table, tokens, axis=0).astype(dtype))


def head(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    x = llama.rms_norm(x, p["final_norm"])
    return llama.constrain(x @ p["lm_head"].astype(x.dtype), ("batch", "length", "vocab"))


class LanguageModel(nn.Module):
    """Flax linen: parameters 'embed', 'stack' (the `Stack`), 'final_norm', 'lm_head'."""

    stack: dict[str, Any]
    """`Stack`'s fields."""
    vocab: int
    hidden: int
    dtype: Any
    weight_dtype: Any

    @nn.compact
    def __call__(self, tokens):
        p = llama.linen_params(self, outer_shapes(self.vocab, self.hidden), self.weight_dtype)
        x, aux = Stack(**self.stack, name="stack")(embed(tokens, p["embed"], self.dtype))
        return head(x, p), aux


class NnxLanguageModel(nnx.Module):
    """Flax NNX: the same parameters as `LanguageModel`, as attributes."""

    def __init__(self, stack: dict[str, Any], vocab: int, hidden: int, dtype: Any, weight_dtype: Any,
                 *, rngs: nnx.Rngs):
        self.dtype = dtype
        self.shapes = outer_shapes(vocab, hidden)
        for name, param in llama.nnx_params(self.shapes, weight_dtype, rngs).items():
            setattr(self, name, param)
        self.stack = NnxStack(**stack, rngs=rngs)

    def __call__(self, tokens):
        p = llama.values(self, self.shapes)
        x, aux = self.stack(embed(tokens, p["embed"], self.dtype))
        return head(x, p), aux
