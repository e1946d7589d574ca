"""Stacking modes: the ways one block is repeated `layers` times.

- `loop`: a Python loop over distinct blocks (the seed's `MyIterativeModule`); tracing
  unrolls it, so the program grows with the layer count.
- `scan`: `nn.scan` with per-layer parameters stacked on axis 0 (the seed's scan
  configuration 2); the program holds one loop body.
- `scan_shared`: `nn.scan` with one set of parameters broadcast to every layer (the
  seed's scan configuration 1).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

SCAN_ARGS: dict[str, dict[str, Any]] = {
    "scan": dict(
        variable_axes={"params": 0},
        variable_broadcast=False,
        split_rngs={"params": True},
        in_axes=nn.broadcast,
        out_axes=0,
    ),
    "scan_shared": dict(
        variable_axes={},
        variable_broadcast="params",
        split_rngs={"params": False},
        in_axes=0,
        out_axes=0,
    ),
}

MODES = ("loop", *SCAN_ARGS)


def remat_block(block: type[nn.Module], remat: str, mode: str) -> type[nn.Module]:
    """Wrap `block` in `nn.remat` with the named policy ('none' = no remat, 'full' = save
    nothing). A scan body is already protected from XLA's CSE undoing the remat, so only
    the unrolled loop needs `prevent_cse`."""
    if remat == "none":
        return block
    policy = None if remat == "full" else getattr(jax.checkpoint_policies, remat)
    return nn.remat(block, policy=policy, prevent_cse=(mode == "loop"))


class Stack(nn.Module):
    """`layers` copies of `block(**block_kwargs)`, stacked as `mode` says."""

    block: type[nn.Module]
    block_kwargs: dict[str, Any]
    mode: str
    layers: int
    unroll: int = 1
    remat: str = "none"

    def setup(self):
        block = remat_block(self.block, self.remat, self.mode)
        if self.mode == "loop":
            self.blocks = [block(name=f"layer_{i}", **self.block_kwargs) for i in range(self.layers)]
        else:
            scanned = nn.scan(block, length=self.layers, unroll=self.unroll, **SCAN_ARGS[self.mode])
            self.blocks = scanned(**self.block_kwargs)

    def __call__(self, x):
        if self.mode != "loop":
            return self.blocks(x)
        out = {}
        for i, block in enumerate(self.blocks):
            x, out[f"layer_{i}"] = block(x)
        return x, out
