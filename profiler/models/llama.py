"""The Llama block (Llama 2/3, Mistral), in Flax linen and NNX: block = 'llama'.

x + attention(rms_norm(x)), then x + swiglu(rms_norm(x)): pre-norm RMSNorm, rotary
position embedding on queries and keys, grouped-query attention (`kv_heads` key/value
heads shared by `heads // kv_heads` query heads each), causal mask, a SwiGLU MLP of
width `mlp`, no biases. The math is written once, as functions of the parameters, and
both APIs call it: they differ only in how parameters are declared, so they compute the
same function by construction and share parameter names (tests/test_equivalence.py).

Parameters are stored in `weight_dtype` and cast to `dtype` for compute (MaxText's
`weight_dtype` / `dtype`): float32 weights with bfloat16 compute are fp32 master weights.
Each parameter carries logical axis names (`AXES`) that `profiler.models.sharding` maps onto a
device mesh; activations are pinned to ('batch', 'length', 'act_embed') at block
boundaries, a no-op without a mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

ROPE_THETA = 500_000.0
"""Rotary base of Llama 3 (`rope_theta` in Meta's config.json); it does not change shapes."""
NORM_EPS = 1e-5
"""`rms_norm_eps` of Llama 3's config.json."""
ACTIVATION = ("batch", "length", "act_embed")


def attention_shapes(hidden: int, heads: int, kv_heads: int) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """Parameter name -> (shape, logical axes) of the attention half of a block."""
    head_dim = hidden // heads
    return {
        "attention_norm": ((hidden,), ("norm",)),
        "query": ((hidden, heads, head_dim), ("embed", "heads", "head_dim")),
        "key": ((hidden, kv_heads, head_dim), ("embed", "kv_heads", "head_dim")),
        "value": ((hidden, kv_heads, head_dim), ("embed", "kv_heads", "head_dim")),
        "out": ((heads, head_dim, hidden), ("heads", "head_dim", "embed")),
    }


def mlp_shapes(hidden: int, mlp: int) -> dict[str, tuple[tuple[int, ...], tuple[str, ...]]]:
    """Parameter name -> (shape, logical axes) of the SwiGLU half of a block."""
    return {
        "mlp_norm": ((hidden,), ("norm",)),
        "gate": ((hidden, mlp), ("embed", "mlp")),
        "up": ((hidden, mlp), ("embed", "mlp")),
        "down": ((mlp, hidden), ("mlp", "embed")),
    }


def initializer(name: str) -> Callable[..., Any]:
    """Ones for norm scales; normal(0.02) for kernels (`initializer_range` of Llama's
    config.json). Values do not change what is compiled."""
    return nn.initializers.ones if name.endswith("norm") else nn.initializers.normal(0.02)


def constrain(x: jax.Array, axes: tuple[str | None, ...] = ACTIVATION) -> jax.Array:
    """Pin an activation's sharding by logical names (nothing without a mesh and rules)."""
    return nn.with_logical_constraint(x, axes)


def rms_norm(x: jax.Array, scale: jax.Array) -> jax.Array:
    """RMSNorm, the statistics in float32 whatever the compute dtype."""
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + NORM_EPS)
    return normed.astype(x.dtype) * scale.astype(x.dtype)


def rope(x: jax.Array, positions: jax.Array) -> jax.Array:
    """Rotary position embedding of x (batch, seq, heads, head_dim), halves rotated (the
    layout of Meta's Hugging Face checkpoints)."""
    half = x.shape[-1] // 2
    freq = ROPE_THETA ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions[:, None].astype(jnp.float32) * freq[None, :]  # (seq, half)
    sin, cos = jnp.sin(angle)[None, :, None, :], jnp.cos(angle)[None, :, None, :]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def attention(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    """Causal grouped-query self-attention of x (batch, seq, hidden), before the residual."""
    dtype = x.dtype
    q = jnp.einsum("bse,ehd->bshd", x, p["query"].astype(dtype))
    k = jnp.einsum("bse,ehd->bshd", x, p["key"].astype(dtype))
    v = jnp.einsum("bse,ehd->bshd", x, p["value"].astype(dtype))
    positions = jnp.arange(x.shape[1], dtype=jnp.int32)
    q, k = rope(q, positions), rope(k, positions)
    batch, seq, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    q = q.reshape(batch, seq, kv_heads, heads // kv_heads, head_dim)
    scores = jnp.einsum("bskgd,btkd->bkgst", q, k, preferred_element_type=jnp.float32)
    scores = scores / jnp.sqrt(jnp.float32(head_dim))
    causal = positions[None, :] <= positions[:, None]
    scores = jnp.where(causal, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(dtype)
    out = jnp.einsum("bkgst,btkd->bskgd", weights, v).reshape(batch, seq, heads, head_dim)
    return jnp.einsum("bshd,hde->bse", out, p["out"].astype(dtype))


def swiglu(x: jax.Array, gate: jax.Array, up: jax.Array, down: jax.Array) -> jax.Array:
    dtype = x.dtype
    hidden = jax.nn.silu(x @ gate.astype(dtype)) * (x @ up.astype(dtype))
    return constrain(hidden, ("batch", "length", "act_mlp")) @ down.astype(dtype)


def attention_residual(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    x = constrain(x)
    return constrain(x + attention(rms_norm(x, p["attention_norm"]), p))


def llama_block(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    x = attention_residual(x, p)
    return constrain(x + swiglu(rms_norm(x, p["mlp_norm"]), p["gate"], p["up"], p["down"]))


def linen_params(module: nn.Module, shapes: dict[str, Any], dtype: Any) -> dict[str, jax.Array]:
    """Declare `shapes` as parameters of a linen module (logically partitioned)."""
    return {
        name: module.param(name, nn.with_logical_partitioning(initializer(name), axes), shape, dtype, unbox=True)
        for name, (shape, axes) in shapes.items()
    }


def nnx_params(shapes: dict[str, Any], dtype: Any, rngs: nnx.Rngs) -> dict[str, nnx.Param]:
    """`shapes` as NNX parameters with the same names, initialisers and logical axes.
    Not sharded when created (eager_sharding off): the train workload lays them out."""
    return {
        name: nnx.Param(initializer(name)(rngs.params(), shape, dtype),
                        out_sharding=axes, eager_sharding=False)
        for name, (shape, axes) in shapes.items()
    }


def values(module: nnx.Module, names: Any) -> dict[str, jax.Array]:
    return {name: getattr(module, name)[...] for name in names}


class LlamaBlock(nn.Module):
    """The Llama decoder layer in Flax linen."""

    hidden: int
    heads: int
    kv_heads: int
    mlp: int
    dtype: Any = jnp.float32
    weight_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        shapes = attention_shapes(self.hidden, self.heads, self.kv_heads) | mlp_shapes(self.hidden, self.mlp)
        return llama_block(x, linen_params(self, shapes, self.weight_dtype))


class NnxLlamaBlock(nnx.Module):
    """The Llama decoder layer in Flax NNX: the parameters of `LlamaBlock` as attributes."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, mlp: int, dtype: Any = jnp.float32,
                 weight_dtype: Any = jnp.float32, *, rngs: nnx.Rngs):
        self.shapes = attention_shapes(hidden, heads, kv_heads) | mlp_shapes(hidden, mlp)
        for name, param in nnx_params(self.shapes, weight_dtype, rngs).items():
            setattr(self, name, param)

    def __call__(self, x):
        return llama_block(x, values(self, self.shapes))
