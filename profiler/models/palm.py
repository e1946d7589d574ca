"""The published estimate of a decoder-only transformer's training FLOPs (PaLM,
Chowdhery et al. 2022, appendix B), for the 'llama' block family:

    per step  6·N·T + 12·L·h·s·T          (forward and backward)
              8·N·T + 16·L·h·s·T          (remat 'full': one more forward)

N the parameters that take part in matmuls (here: attention and MLP kernels of every
layer and the LM head; not the embedding table, a lookup, nor the norm scales), T the
tokens of the batch (batch·seq), L layers, h the attention width (heads·head_dim =
hidden), s the sequence length. 6 = 2 FLOPs per multiply-add times (1 forward + 2
backward) matmuls; 12·L·h·s per token is QK^T and AV, computed over the full s x s
square (the causal mask does not skip work in a plain einsum). It is independent of XLA:
docs/models.md checks the measured `cost_flops` against it.
"""

from __future__ import annotations

from profiler.spec import Point

# Remat policies by what they recompute: nothing (every matmul output saved), every
# matmul of a block ('full' saves nothing), or only the batched ones (attention's
# QK^T and AV einsums; the projections are saved).
_SAVE_ALL = ("none", "everything_saveable", "dots_saveable", "checkpoint_dots")
_SAVE_NONE = ("full", "nothing_saveable")
_SAVE_UNBATCHED = ("dots_with_no_batch_dims_saveable", "checkpoint_dots_with_no_batch_dims")


def matmul_params(point: Point) -> int:
    """N: parameters in matmuls of a 'llama' language model."""
    heads_width = point.hidden  # heads · head_dim
    kv_width = (point.kv_heads or point.heads) * (point.hidden // point.heads)
    mlp = point.mlp or 4 * point.hidden
    per_layer = 2 * point.hidden * heads_width + 2 * point.hidden * kv_width + 3 * point.hidden * mlp
    return point.layers * per_layer + point.hidden * point.vocab


def train_flops(point: Point) -> float | None:
    """The PaLM estimate of one training step's FLOPs; None for a remat policy it does
    not model."""
    n, tokens = matmul_params(point), point.batch * point.seq
    attention = point.layers * point.hidden * point.seq * tokens  # L·h·s·T
    if point.remat in _SAVE_ALL:
        return float(6 * n * tokens + 12 * attention)
    if point.remat in _SAVE_NONE:
        return float(8 * n * tokens + 16 * attention)
    if point.remat in _SAVE_UNBATCHED:  # projections saved, attention recomputed
        return float(6 * n * tokens + 16 * attention)
    return None


def forward_flops(point: Point) -> float:
    """One forward pass: 2·N·T + 4·L·h·s·T."""
    n, tokens = matmul_params(point), point.batch * point.seq
    return float(2 * n * tokens + 4 * point.layers * point.hidden * point.seq * tokens)


def not_recomputed_flops(point: Point) -> float:
    """What remat 'full' does not repeat of the forward that 8·N·T counts twice: matmuls
    whose outputs the backward pass never reads, so that JAX drops them from the
    rematerialised forward (the attention output and MLP down projections of every
    layer: a matmul's gradients need its inputs, not its output), and the LM head, which
    lies outside the rematerialised blocks. The formula minus this is what a full remat
    should cost; docs/models.md compares both with XLA's count."""
    tokens = point.batch * point.seq
    mlp = point.mlp or 4 * point.hidden
    per_layer = point.hidden * point.hidden + mlp * point.hidden
    return float(2 * tokens * (point.layers * per_layer + point.hidden * point.vocab))
