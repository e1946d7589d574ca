"""A language model's training step as another repository would write it, and the factory
that profiles it as it is (`program = "examples.lm_train:make"`, examples/lm_train.toml).

Everything above the factory is the "other repository": a config dataclass, a Flax linen
decoder-only Transformer with dropout, an optax `TrainState`, and a `train_step` jitted
with its own static config and donated state, taking a typed PRNG key. The factory only
builds abstract arguments for it; nothing in the model knows about the profiler.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


@dataclasses.dataclass(frozen=True)
class Config:
    """The model's knobs; frozen (hashable), so that jit can take it as a static argument."""

    vocab_size: int = 512
    emb_dim: int = 128
    num_heads: int = 4
    num_layers: int = 2
    mlp_dim: int = 512
    max_len: int = 64
    dropout_rate: float = 0.1
    dtype: str = "float32"


class DecoderBlock(nn.Module):
    config: Config

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        cfg = self.config
        h = nn.LayerNorm(dtype=cfg.dtype)(x)
        mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
        h = nn.MultiHeadDotProductAttention(num_heads=cfg.num_heads, dtype=cfg.dtype,
                                            dropout_rate=cfg.dropout_rate, deterministic=not train)(h, h, mask=mask)
        x = x + nn.Dropout(cfg.dropout_rate, deterministic=not train)(h)
        h = nn.LayerNorm(dtype=cfg.dtype)(x)
        h = nn.Dense(cfg.mlp_dim, dtype=cfg.dtype)(h)
        h = nn.Dense(cfg.emb_dim, dtype=cfg.dtype)(nn.gelu(h))
        return x + nn.Dropout(cfg.dropout_rate, deterministic=not train)(h)


class TransformerLM(nn.Module):
    config: Config

    @nn.compact
    def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
        cfg = self.config
        embed = nn.Embed(cfg.vocab_size, cfg.emb_dim, dtype=cfg.dtype)
        positions = self.param("positions", nn.initializers.normal(0.02), (cfg.max_len, cfg.emb_dim))
        x = embed(tokens) + positions[: tokens.shape[1]]
        x = nn.Dropout(cfg.dropout_rate, deterministic=not train)(x)
        for _ in range(cfg.num_layers):
            x = DecoderBlock(cfg)(x, train=train)
        return embed.attend(nn.LayerNorm(dtype=cfg.dtype)(x)).astype(jnp.float32)


def create_state(config: Config, key: jax.Array, learning_rate: float = 3e-4) -> train_state.TrainState:
    model = TransformerLM(config)
    tokens = jnp.zeros((1, config.max_len), jnp.int32)
    params = model.init(key, tokens, train=False)["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adamw(learning_rate))


@functools.partial(jax.jit, static_argnames=("config",), donate_argnums=(0,))
def train_step(state: train_state.TrainState, tokens: jax.Array, *, key: jax.Array,
               config: Config) -> tuple[train_state.TrainState, jax.Array]:
    """One AdamW step on next-token cross-entropy, dropout drawn from `key`."""

    def loss_fn(params):
        logits = state.apply_fn({"params": params}, tokens[:, :-1], train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


# ---- the profiler's side: one factory, nothing else --------------------------------------


def make(num_layers: int = 2, emb_dim: int = 128, num_heads: int = 4, dropout_rate: float = 0.1,
         batch: int = 8, seq: int = 64, vocab: int = 512):
    """The training step on abstract state and tokens, as the training loop calls it:
    `train_step(state, tokens, key=..., config=...)`. `batch`, `seq` and `vocab` are spec
    keys; `num_layers`, `emb_dim`, `num_heads` and `dropout_rate` are this model's own knobs."""
    config = Config(vocab_size=vocab, emb_dim=emb_dim, num_heads=num_heads, num_layers=num_layers,
                    mlp_dim=4 * emb_dim, max_len=seq, dropout_rate=dropout_rate)
    state = jax.eval_shape(functools.partial(create_state, config), jax.random.key(0))
    tokens = jax.ShapeDtypeStruct((batch, seq + 1), jnp.int32)
    return train_step, (state, tokens), {"key": jax.random.key(1), "config": config}
