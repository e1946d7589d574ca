"""The mixture-of-experts block (Mixtral), in Flax linen and NNX: block = 'moe'.

The Llama block's attention (`profiler.models.llama`), then a routed MLP: a router picks the
`top_k` of `experts` SwiGLU experts per token (softmax over the chosen logits, as
Mixtral does), and tokens travel to and from the experts through one-hot *dispatch*
and *combine* tensors of shape (batch, seq, experts, capacity), contracted with einsums:
the GShard / Switch Transformer formulation that flaxformer and MaxText (`dense_matmul`
with capacity_factor > 0 in MaxText's layers/moe.py) use on TPUs and GPUs. Each
sequence is one routing group; an expert takes at most `capacity` tokens of a group
(`expert_capacity`), the rest of its tokens are dropped (they pass through on the
residual). The expert matmuls run on (experts, batch, capacity) slots whether full or
not, and the dispatch/combine einsums cost batch·seq·experts·capacity·hidden each:
compile time, FLOPs and memory are those of the real thing.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from profiler.models import llama


def expert_capacity(seq: int, experts: int, top_k: int, capacity_factor: float) -> int:
    """Token slots per expert and sequence: capacity_factor times an even share of the
    seq·top_k assignments, at least 1 and at most seq (an expert sees a token once)."""
    return max(1, min(seq, math.ceil(seq * top_k * capacity_factor / experts)))


def moe_shapes(hidden: int, mlp: int, experts: int) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """Parameter name -> (shape, logical axes) of the routed MLP half of a block."""
    return {
        "mlp_norm": ((hidden,), ("norm",)),
        "router": ((hidden, experts), ("embed", "router")),
        "gate": ((experts, hidden, mlp), ("experts", "embed", "mlp")),
        "up": ((experts, hidden, mlp), ("experts", "embed", "mlp")),
        "down": ((experts, mlp, hidden), ("experts", "mlp", "embed")),
    }


def routing(logits: jax.Array, top_k: int, capacity: int, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """Dispatch and combine tensors (batch, seq, experts, capacity) from router logits
    (batch, seq, experts). A token's choices queue at their experts in token order (its
    first choice before its second); queue position >= capacity is dropped."""
    batch, seq, experts = logits.shape
    weights, chosen = jax.lax.top_k(logits.astype(jnp.float32), top_k)
    weights = jax.nn.softmax(weights, axis=-1)
    mask = jax.nn.one_hot(chosen, experts, dtype=jnp.int32)  # (batch, seq, top_k, experts)
    queue = jnp.cumsum(mask.reshape(batch, seq * top_k, experts), axis=1).reshape(mask.shape)
    # One-hot of the slot; 0 (not chosen) and positions past capacity give no slot.
    slots = jax.nn.one_hot(queue * mask - 1, capacity, dtype=dtype)  # (batch, seq, top_k, experts, capacity)
    dispatch = slots.sum(axis=2)
    combine = jnp.einsum("bsk,bskxc->bsxc", weights.astype(dtype), slots)
    return dispatch, combine


def routed_mlp(x: jax.Array, p: dict[str, jax.Array], top_k: int, capacity_factor: float) -> jax.Array:
    """The MoE MLP of x (batch, seq, hidden), before the residual."""
    dtype = x.dtype
    experts = p["router"].shape[-1]
    capacity = expert_capacity(x.shape[1], experts, top_k, capacity_factor)
    logits = jnp.einsum("bse,ex->bsx", x, p["router"].astype(dtype))
    dispatch, combine = routing(logits, top_k, capacity, dtype)
    tokens = jnp.einsum("bse,bsxc->xbce", x, dispatch)
    hidden = (jax.nn.silu(jnp.einsum("xbce,xem->xbcm", tokens, p["gate"].astype(dtype)))
              * jnp.einsum("xbce,xem->xbcm", tokens, p["up"].astype(dtype)))
    out = jnp.einsum("xbcm,xme->xbce", hidden, p["down"].astype(dtype))
    return jnp.einsum("xbce,bsxc->bse", out, combine)


def moe_block(x: jax.Array, p: dict[str, jax.Array], top_k: int, capacity_factor: float) -> jax.Array:
    x = llama.attention_residual(x, p)
    return llama.constrain(x + routed_mlp(llama.rms_norm(x, p["mlp_norm"]), p, top_k, capacity_factor))


class MoeBlock(nn.Module):
    """The Mixtral decoder layer in Flax linen."""

    hidden: int
    heads: int
    kv_heads: int
    mlp: int
    experts: int
    top_k: int
    capacity_factor: float
    dtype: Any = jnp.float32
    weight_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        shapes = (llama.attention_shapes(self.hidden, self.heads, self.kv_heads)
                  | moe_shapes(self.hidden, self.mlp, self.experts))
        return moe_block(x, llama.linen_params(self, shapes, self.weight_dtype), self.top_k, self.capacity_factor)


class NnxMoeBlock(nnx.Module):
    """The Mixtral decoder layer in Flax NNX: the parameters of `MoeBlock` as attributes."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, mlp: int, experts: int, top_k: int,
                 capacity_factor: float, dtype: Any = jnp.float32, weight_dtype: Any = jnp.float32,
                 *, rngs: nnx.Rngs):
        self.top_k, self.capacity_factor = top_k, capacity_factor
        self.shapes = llama.attention_shapes(hidden, heads, kv_heads) | moe_shapes(hidden, mlp, experts)
        for name, param in llama.nnx_params(self.shapes, weight_dtype, rngs).items():
            setattr(self, name, param)

    def __call__(self, x):
        return moe_block(x, llama.values(self, self.shapes), self.top_k, self.capacity_factor)
