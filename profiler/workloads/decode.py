"""Workload `decode`: a decoder-only language model serving tokens from a KV cache.

Two programs, one step function `(params, cache, tokens, pos) -> (logits, cache)` at two
shapes: phase 'prefill' writes a prompt of `prompt_len` tokens into an empty cache, phase
'decode' writes one token at a traced position (one program serves every position). The
cache is donated to both when `donate` is on, so XLA may update it in place.

Everything is laid out on a 'data' x 'model' mesh: the shardings of arguments and
outputs come from the model's logical axis names (see `profiler.models.decoder.RULES`).
With `run` on, the decode row times a greedy generation of `gen_tokens` tokens.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from profiler.models import decoder, sharding
from profiler.models.decoder import KVCache
from profiler.models.program import Program, random_like
from profiler.spec import Point


@dataclass(frozen=True)
class Generation:
    """What a greedy generation produced and how long its calls took."""

    tokens: np.ndarray
    """(batch, gen_tokens) generated token ids."""
    logits: np.ndarray
    """(batch, gen_tokens, vocab) logits each token was picked from."""
    prefill_s: float
    step_s: list[float]
    """Each decode step's call, results ready."""
    total_s: float
    """The whole generation, prefill and token picking included."""


class DecodeSetup:
    """The model, mesh, shardings and arguments of one decode point."""

    def __init__(self, point: Point):
        self.point = point
        kv_heads = point.kv_heads or point.heads
        self.model = decoder.Decoder(
            vocab=point.vocab, hidden=point.hidden, heads=point.heads, kv_heads=kv_heads,
            mlp=4 * point.hidden, layers=point.layers, max_len=point.max_len, mode=point.mode,
            kv_cache=point.kv_cache, unroll=point.unroll, dtype=jnp.dtype(point.dtype),
        )
        self.mesh = sharding.make_mesh(*point.mesh_shape)
        dtype = jnp.dtype(point.dtype)
        cache_shape = (point.layers, point.batch, point.max_len, kv_heads, point.hidden // point.heads)
        self.cache_args = KVCache(*[jax.ShapeDtypeStruct(cache_shape, dtype)] * 2)
        self.cache_bytes = decoder.cache_bytes(*cache_shape, dtype)

        boxed = jax.eval_shape(self.model.init, jax.random.key(0), self.tokens_args(point.prompt_len),
                               jax.ShapeDtypeStruct((), jnp.int32))["params"]
        self.param_args = nn.unbox(boxed)
        shard = functools.partial(decoder.logical_sharding, self.mesh)
        self.param_sharding = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), self.mesh, decoder.RULES)
        self.cache_sharding = KVCache(*[shard(*decoder.CACHE_AXES)] * 2)
        self.token_sharding = shard("batch", "length")
        self.pos_sharding = shard()
        self.jit_kwargs: dict[str, Any] = dict(
            in_shardings=(self.param_sharding, self.cache_sharding, self.token_sharding, self.pos_sharding),
            out_shardings=(shard("batch", "length", "vocab"), self.cache_sharding),
        )
        self.donate_argnums = (1,) if point.donate else ()

    def context(self) -> AbstractContextManager[None]:
        return decoder.sharding_context(self.mesh)

    def tokens_args(self, length: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((self.point.batch, length), jnp.int32)

    def step(self) -> Callable[..., Any]:
        """A new step function: each program gets its own, so none finds the other's
        traces in JAX's caches."""
        def step(params, cache, tokens, pos):
            return self.model.apply({"params": params}, tokens, pos, cache)
        return step

    def jit(self, fn: Callable[..., Any]) -> Any:
        return jax.jit(fn, donate_argnums=self.donate_argnums, **self.jit_kwargs)

    # Concrete arrays, laid out as the programs expect them (call inside `context()`).

    def params(self) -> Any:
        return jax.device_put(random_like(self.param_args, scale=self.point.hidden ** -0.5),
                              self.param_sharding)

    @functools.cached_property
    def _zeros(self) -> Callable[[], KVCache]:
        return jax.jit(lambda: KVCache(*(jnp.zeros(c.shape, c.dtype) for c in self.cache_args)),
                       out_shardings=self.cache_sharding)

    def empty_cache(self) -> KVCache:
        return self._zeros()

    def prompt(self) -> jax.Array:
        shape = self.tokens_args(self.point.prompt_len).shape
        tokens = np.random.default_rng(1).integers(0, self.point.vocab, shape, np.int32)
        return jax.device_put(tokens, self.token_sharding)

    @functools.cached_property
    def _pick(self) -> Callable[[jax.Array], jax.Array]:
        """Greedy choice: the most likely next token of each sequence."""
        return jax.jit(lambda logits: jnp.argmax(logits[:, -1:], axis=-1).astype(jnp.int32),
                       out_shardings=self.token_sharding)

    def position(self, pos: int) -> jax.Array:
        return jax.device_put(np.int32(pos), self.pos_sharding)

    def generate(self, prefill: Callable[..., Any], decode: Callable[..., Any], params: Any,
                 prompt: jax.Array) -> Generation:
        """Greedy generation of `gen_tokens` tokens after `prompt`: the prefill picks the
        first, each decode step the next."""
        cache, first = self.empty_cache(), self.position(0)
        start = time.perf_counter()
        logits, cache = jax.block_until_ready(prefill(params, cache, prompt, first))
        prefill_s = time.perf_counter() - start
        tokens, all_logits, step_s = [self._pick(logits)], [logits], []
        for pos in range(self.point.prompt_len, self.point.prompt_len + self.point.gen_tokens - 1):
            position = self.position(pos)
            t0 = time.perf_counter()
            logits, cache = jax.block_until_ready(decode(params, cache, tokens[-1], position))
            step_s.append(time.perf_counter() - t0)
            tokens.append(self._pick(logits))
            all_logits.append(logits)
        jax.block_until_ready(tokens[-1])
        total_s = time.perf_counter() - start
        return Generation(
            tokens=np.concatenate([np.asarray(t) for t in tokens], axis=1),
            logits=np.stack([np.asarray(x)[:, -1] for x in all_logits], axis=1),
            prefill_s=prefill_s, step_s=step_s, total_s=total_s,
        )

    def time_generation(self, decode: Any) -> dict[str, Any]:
        """Run columns of the decode row: a first generation warms up (and compiles the
        prefill), a second one is timed."""
        prefill = self.jit(self.step())
        params = self.params()
        warm = self.generate(prefill, decode, params, self.prompt())
        timed = self.generate(prefill, decode, params, self.prompt())
        return {
            "time_first_call_s": warm.step_s[0],
            "time_prefill_s": timed.prefill_s,
            "time_per_token_s": statistics.median(timed.step_s),
            "time_per_token_samples_s": timed.step_s,
            "run_tokens_per_s": self.point.batch * self.point.gen_tokens / timed.total_s,
        }


def build(point: Point) -> list[Program]:
    setup = DecodeSetup(point)
    data, model = point.mesh_shape
    info = {"mem_kv_cache_bytes": setup.cache_bytes // (data * model)}
    pos = jax.ShapeDtypeStruct((), jnp.int32)
    common: dict[str, Any] = dict(donate_argnums=setup.donate_argnums, jit_kwargs=setup.jit_kwargs,
                  info=info, context=setup.context)

    def prefill_args():
        return setup.params(), setup.empty_cache(), setup.prompt(), setup.position(0)

    def decode_args():
        token = jax.device_put(np.zeros((point.batch, 1), np.int32), setup.token_sharding)
        return setup.params(), setup.empty_cache(), token, setup.position(point.prompt_len)

    return [
        Program(
            fn=setup.step(), phase="prefill",
            args=(setup.param_args, setup.cache_args, setup.tokens_args(point.prompt_len), pos),
            make_args=prefill_args,
            # The donated cache is gone after a call; the next call takes the one returned.
            next_args=lambda args, out: (args[0], out[1], *args[2:]),
            **common,
        ),
        Program(
            fn=setup.step(), phase="decode",
            args=(setup.param_args, setup.cache_args, setup.tokens_args(1), pos),
            make_args=decode_args, run=setup.time_generation,
            **common,
        ),
    ]
