"""Stacking modes: the ways one block is repeated `layers` times, in Flax linen and NNX.

- `loop`: a Python loop over distinct blocks (the seed's `MyIterativeModule`); tracing
  unrolls it, so the program grows with the layer count.
- `scan`: a scan with per-layer parameters stacked on axis 0 (the seed's scan
  configuration 2); the program holds one loop body.
- `scan_shared`: a scan with one set of parameters broadcast to every layer (the seed's
  scan configuration 1).

A block returns `x` or `(x, aux)`; the stack always sees `(x, aux)` (aux = () for a block
that returns x alone), since a scan needs a (carry, output) pair: x is carried and aux
stacked per layer. Every mode composes with `remat` (per block) and, for scans,
`unroll`. `Stack` writes the modes with `nn.scan`/`nn.remat`, `NnxStack` with
`nnx.vmap`/`nnx.scan`/`nnx.remat`; both produce the same parameter layout (up to names)
and the same function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

SCAN_ARGS: dict[str, dict[str, Any]] = {
    "scan": dict(
        variable_axes={"params": 0},
        variable_broadcast=False,
        split_rngs={"params": True},
        in_axes=nn.broadcast,
        out_axes=0,
        # Logically partitioned parameters gain a leading 'layers' axis (never sharded).
        metadata_params={nn.PARTITION_NAME: "layers"},
    ),
    "scan_shared": dict(
        variable_axes={},
        variable_broadcast="params",
        split_rngs={"params": False},
        in_axes=0,
        out_axes=0,
    ),
}

def checkpoint_options(remat: str, mode: str) -> dict[str, Any]:
    """Keyword arguments of `nn.remat` / `nnx.remat` for the named policy ('full' = save
    nothing). A scan body is already protected from XLA's CSE undoing the remat, so only
    the unrolled loop needs `prevent_cse`."""
    policy = None if remat == "full" else getattr(jax.checkpoint_policies, remat)
    return dict(policy=policy, prevent_cse=(mode == "loop"))


def as_pair(out: Any) -> tuple[Any, Any]:
    """A block's output as (x, aux)."""
    return out if isinstance(out, tuple) else (out, ())


@functools.cache
def paired(block: type[nn.Module]) -> type[nn.Module]:
    """`block` with its output as (x, aux); the same fields, parameters and names."""

    class Paired(block):  # type: ignore[valid-type, misc]  # a base class chosen at run time
        def __call__(self, x):
            return as_pair(super().__call__(x))

    Paired.__name__ = Paired.__qualname__ = block.__name__
    return Paired


def remat_block(block: type[nn.Module], remat: str, mode: str) -> type[nn.Module]:
    """`block`, returning (x, aux), wrapped in `nn.remat` as `remat` says ('none' = not)."""
    block = paired(block)  # type: ignore[arg-type]  # a class hashes by identity
    if remat == "none":
        return block
    return nn.remat(block, **checkpoint_options(remat, mode))


class Stack(nn.Module):
    """`layers` copies of `block(**block_kwargs)`, stacked as `mode` says (Flax linen)."""

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


def _call_block(block: nnx.Module, x: Any) -> tuple[Any, Any]:
    return as_pair(block(x))


class NnxStack(nnx.Module):
    """`layers` copies of `block(**block_kwargs, rngs=rngs)`, stacked as `mode` says
    (Flax NNX). `scan` creates its layers with `nnx.vmap` under `nnx.split_rngs`, so each
    layer is initialised from its own key and the parameters carry a leading layer axis;
    `scan_shared` creates one block and broadcasts it into `nnx.scan`."""

    def __init__(
        self,
        block: Callable[..., nnx.Module],
        block_kwargs: dict[str, Any],
        mode: str,
        layers: int,
        unroll: int = 1,
        remat: str = "none",
        *,
        rngs: nnx.Rngs,
    ):
        self.mode, self.layers, self.unroll, self.remat = mode, layers, unroll, remat
        if mode == "loop":
            self.blocks: nnx.Module = nnx.List([block(**block_kwargs, rngs=rngs) for _ in range(layers)])
        elif mode == "scan":
            @nnx.split_rngs(splits=layers)
            @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def create(rngs: nnx.Rngs) -> nnx.Module:
                return block(**block_kwargs, rngs=rngs)

            self.blocks = create(rngs)
        else:
            self.blocks = block(**block_kwargs, rngs=rngs)

    def __call__(self, x):
        call: Callable[[nnx.Module, Any], Any] = _call_block
        if self.remat != "none":
            call = nnx.remat(call, **checkpoint_options(self.remat, self.mode))
        if self.mode == "loop":
            out = {}
            for i, block in enumerate(self.blocks):
                x, out[f"layer_{i}"] = call(block, x)
            return x, out
        # The blocks are scanned along their layer axis ('scan') or broadcast ('scan_shared').
        block_axis = 0 if self.mode == "scan" else None
        scanned = nnx.scan(
            call, in_axes=(block_axis, nnx.Carry), out_axes=(nnx.Carry, 0),
            length=self.layers, unroll=self.unroll,
        )
        return scanned(self.blocks, x)
