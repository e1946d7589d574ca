"""A small decoder-only language model with a KV cache, written with flax linen.

Token and position embeddings; per layer an RMS-normed causal self-attention with
grouped-query heads and a KV cache, then an RMS-normed MLP, each with a residual add;
a final norm and the logits. Parameters and activations carry *logical* axis names
(`RULES` maps them onto the mesh axes 'data' and 'model'), so the same module runs on
one device or on a mesh.

The cache is one stacked pair of arrays, `(layers, batch, max_len, kv_heads, head_dim)`
each, whatever the stacking; the stacking decides only how it travels through the
layers (see `Decoder`). `Decoder(tokens, pos, cache)` writes the tokens' keys and values
at positions `pos, pos+1, ...` and returns `(logits, new_cache)`; with `cache=None` it is
the plain causal model over `tokens`, the reference the cached path is tested against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from profiler.models import sharding
from profiler.models.stacking import SCAN_ARGS

# Logical axis -> mesh axis. Parameters split over heads / MLP / vocabulary on 'model';
# batch (activations and cache) on 'data'; the cache's kv heads on 'model'.
RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("heads", "model"),
    ("kv_heads", "model"),
    ("mlp", "model"),
    ("vocab", "model"),
    ("embed", None),
    ("head_dim", None),
    ("length", None),
    ("layers", None),
)
CACHE_AXES = ("layers", "batch", "length", "kv_heads", "head_dim")


class KVCache(NamedTuple):
    """Keys and values of every layer: `(layers, batch, max_len, kv_heads, head_dim)` each;
    arrays, or (as a program's abstract arguments and shardings) their shapes or shardings."""

    key: Any  # jax.Array, ShapeDtypeStruct or Sharding: a pytree's leaves
    value: Any


def sharding_context(mesh: jax.sharding.Mesh) -> contextlib.AbstractContextManager[None]:
    """The mesh and the logical-axis rules the model's constraints resolve against."""
    return sharding.context(mesh, RULES)


def logical_sharding(mesh: jax.sharding.Mesh, *axes: str | None) -> jax.sharding.NamedSharding:
    return nn.logical_to_mesh_sharding(jax.sharding.PartitionSpec(*axes), mesh, RULES)


def _init(axes: tuple[str, ...], init: Callable[..., Any] | None = None) -> Callable[..., Any]:
    return nn.with_logical_partitioning(init or nn.initializers.lecun_normal(), axes)


def _write(cache: jax.Array, new: jax.Array, pos: jax.Array, layer: Any) -> tuple[jax.Array, jax.Array]:
    """Write `new` (batch, tokens, kv_heads, head_dim) at sequence position `pos`.

    `cache` is this layer's slice, or the whole stack when `layer` (its index) is given.
    Returns the updated cache and this layer's keys or values to attend to.
    """
    zero = jnp.zeros((), jnp.int32)
    if layer is None:
        cache = lax.dynamic_update_slice(cache, new, (zero, pos, zero, zero))
        return cache, cache
    cache = lax.dynamic_update_slice(cache, new[None], (layer, zero, pos, zero, zero))
    return cache, lax.dynamic_index_in_dim(cache, layer, keepdims=False)


class Attention(nn.Module):
    heads: int
    kv_heads: int
    head_dim: int
    dtype: Any

    @nn.compact
    def __call__(self, x, positions, cache: KVCache | None, layer: Any):
        # Plain kernels and einsums: flax's DenseGeneral initialises a flattened kernel and
        # unboxes it under the mesh, which trips the rank check of its logical constraint.
        def kernel(name: str, shape: tuple[int, ...], axes: tuple[str, ...], fan_in: Any, fan_out: Any):
            init = nn.initializers.lecun_normal(in_axis=fan_in, out_axis=fan_out)
            return self.param(name, _init(axes, init), shape, self.dtype)

        hidden = x.shape[-1]
        q = jnp.einsum("bse,ehd->bshd", x, kernel(
            "query", (hidden, self.heads, self.head_dim), ("embed", "heads", "head_dim"), 0, (1, 2)))
        k = jnp.einsum("bse,ehd->bshd", x, kernel(
            "key", (hidden, self.kv_heads, self.head_dim), ("embed", "kv_heads", "head_dim"), 0, (1, 2)))
        v = jnp.einsum("bse,ehd->bshd", x, kernel(
            "value", (hidden, self.kv_heads, self.head_dim), ("embed", "kv_heads", "head_dim"), 0, (1, 2)))
        if cache is None:
            key_positions = positions
        else:
            pos = positions[0]
            new_key, k = _write(cache.key, k, pos, layer)
            new_value, v = _write(cache.value, v, pos, layer)
            cache = KVCache(new_key, new_value)
            key_positions = jnp.arange(k.shape[1])

        batch, length = q.shape[:2]
        groups = self.heads // self.kv_heads
        q = q.reshape(batch, length, self.kv_heads, groups, self.head_dim)
        scores = jnp.einsum("bskgd,btkd->bkgst", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(self.head_dim))
        # Causal: a query sees keys at its own position and before; cache slots not yet
        # written lie after every query, so the same mask hides them.
        visible = key_positions[None, :] <= positions[:, None]
        scores = jnp.where(visible, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bkgst,btkd->bskgd", weights, v)
        out = out.reshape(batch, length, self.heads, self.head_dim)
        out = jnp.einsum("bshd,hde->bse", out, kernel(
            "out", (self.heads, self.head_dim, hidden), ("heads", "head_dim", "embed"), (0, 1), 2))
        return out, cache


class Block(nn.Module):
    """One decoder layer: x + attention(norm(x)), then x + mlp(norm(x))."""

    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    dtype: Any

    @nn.compact
    def __call__(self, x, positions, cache: KVCache | None, layer: Any):
        hidden = x.shape[-1]

        def norm(name: str) -> nn.RMSNorm:
            return nn.RMSNorm(dtype=self.dtype, param_dtype=self.dtype,
                              scale_init=_init(("embed",), nn.initializers.ones), name=name)

        def dense(features: int, axes: tuple[str, str], name: str) -> nn.Dense:
            return nn.Dense(features, use_bias=False, dtype=self.dtype, param_dtype=self.dtype,
                            kernel_init=_init(axes), name=name)

        attention = Attention(self.heads, self.kv_heads, self.head_dim, self.dtype, name="attention")
        y, cache = attention(norm("attention_norm")(x), positions, cache, layer)
        x = nn.with_logical_constraint(x + y, ("batch", "length", "embed"))
        y = dense(self.mlp, ("embed", "mlp"), "mlp_in")(norm("mlp_norm")(x))
        y = dense(hidden, ("mlp", "embed"), "mlp_out")(nn.gelu(y))
        x = nn.with_logical_constraint(x + y, ("batch", "length", "embed"))
        return x, cache


class Decoder(nn.Module):
    """The language model. `mode` and `kv_cache` choose how layers and cache are stacked:

    - loop + scanned: a Python loop; layer i gets slice i of the cache and the new slices
      are stacked into a new cache.
    - loop + carried: a Python loop threading the whole cache; layer i writes slot i.
    - scan + scanned: `nn.scan` with the cache as scanned input and output (sliced in,
      stacked out per layer, like `variable_axes={"cache": 0}`).
    - scan + carried: `nn.scan` carrying the whole cache; layer i writes slot i in place.
    """

    vocab: int
    hidden: int
    heads: int
    kv_heads: int
    mlp: int
    layers: int
    max_len: int
    mode: str
    kv_cache: str
    unroll: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens, pos, cache: KVCache | None = None):
        positions = pos + jnp.arange(tokens.shape[1], dtype=jnp.int32)
        embed = nn.Embed(self.vocab, self.hidden, dtype=self.dtype, param_dtype=self.dtype,
                         embedding_init=_init(("vocab", "embed"), nn.initializers.normal(1.0)), name="embed")
        position_embed = nn.Embed(self.max_len, self.hidden, dtype=self.dtype, param_dtype=self.dtype,
                                  embedding_init=_init(("length", "embed"), nn.initializers.normal(0.02)),
                                  name="position_embed")
        x = nn.with_logical_constraint(embed(tokens) + position_embed(positions)[None],
                                       ("batch", "length", "embed"))
        block = dict(heads=self.heads, kv_heads=self.kv_heads, head_dim=self.hidden // self.heads,
                     mlp=self.mlp, dtype=self.dtype)
        if self.mode == "loop":
            x, cache = self._loop(x, positions, cache, block)
        else:
            x, cache = self._scan(x, positions, cache, block)
        x = nn.RMSNorm(dtype=self.dtype, param_dtype=self.dtype,
                       scale_init=_init(("embed",), nn.initializers.ones), name="final_norm")(x)
        logits = nn.Dense(self.vocab, use_bias=False, dtype=self.dtype, param_dtype=self.dtype,
                          kernel_init=_init(("embed", "vocab")), name="logits")(x)
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab")), cache

    # Not models/stacking.Stack: a Stack's block maps x alone to (x, aux), with nothing
    # scanned in beside x and nothing broadcast, while a decoder layer also takes the
    # positions (broadcast), its cache slice (scanned in and out, 'scanned') or the whole
    # cache and its layer index (carried, 'carried'). What can be shared is: the layer
    # names of the loop ('layer_<i>') and the scan's parameter layout (stacking.SCAN_ARGS).
    def _loop(self, x, positions, cache, block):
        blocks = [Block(name=f"layer_{i}", **block) for i in range(self.layers)]
        if cache is None or self.kv_cache == "carried":
            for i, layer in enumerate(blocks):
                x, cache = layer(x, positions, cache, None if cache is None else i)
            return x, cache
        slices = []
        for i, layer in enumerate(blocks):
            x, new = layer(x, positions, KVCache(cache.key[i], cache.value[i]), None)
            slices.append(new)
        return x, KVCache(*(jnp.stack(parts) for parts in zip(*slices, strict=True)))

    def _scan(self, x, positions, cache, block):
        # Per-layer parameters on a leading 'layers' axis, as Stack's scan mode has them.
        scan = {**SCAN_ARGS["scan"], "length": self.layers, "unroll": self.unroll}
        layer = Block(name="layers", **block)
        if self.kv_cache == "carried":
            def carried(block, carry, positions):
                x, cache, i = carry
                x, cache = block(x, positions, cache, None if cache is None else i)
                return (x, cache, i + 1), None

            step = nn.scan(carried, **scan)  # positions broadcast (SCAN_ARGS' in_axes)
            (x, cache, _), _ = step(layer, (x, cache, jnp.zeros((), jnp.int32)), positions)
            return x, cache

        def scanned(block, x, layer_cache, positions):
            return block(x, positions, layer_cache, None)

        step = nn.scan(scanned, **{**scan, "in_axes": (0, nn.broadcast)})
        return step(layer, x, cache, positions)


def cache_bytes(layers: int, batch: int, max_len: int, kv_heads: int, head_dim: int, dtype: Any) -> int:
    """Bytes of a whole cache: keys and values of every layer."""
    return 2 * layers * batch * max_len * kv_heads * head_dim * jnp.dtype(dtype).itemsize
