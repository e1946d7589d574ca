"""Device meshes and logical axis rules: how named parameter and activation axes are laid
out on a 'data' x 'model' mesh.

Models name their axes logically ('embed', 'heads', 'batch', ...); a rules table maps
each name to a mesh axis or to None (replicated), as flax's logical partitioning and
MaxText's `logical_axis_rules` do. The decoder of workload 'decode' has its own table
(profiler/models/decoder.py RULES); the train workload's block families use `TRAIN_RULES`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec

from profiler.models import devices

Rules = tuple[tuple[str, str | None], ...]

TRAIN_RULES: Rules = (
    # Data parallel: the batch of every activation on 'data'.
    ("batch", "data"),
    # FSDP (ZeRO-3): every parameter's hidden dimension on 'data' as well, so parameters,
    # gradients and optimizer state are split D ways and gathered layer by layer.
    ("embed", "data"),
    # Tensor parallel (Megatron): attention heads, the MLP's width and the vocabulary on
    # 'model'; the MLP's and the logits' activations follow their weights.
    ("heads", "model"),
    ("kv_heads", "model"),
    ("mlp", "model"),
    ("act_mlp", "model"),
    ("vocab", "model"),
    # Replicated: activations' hidden dimension, sequence, per-head width, norm scales,
    # the router, the expert and the stacked-layer axes.
    ("act_embed", None),
    ("length", None),
    ("head_dim", None),
    ("norm", None),
    ("router", None),
    ("experts", None),
    ("layers", None),
)


def make_mesh(data: int, model: int) -> jax.sharding.Mesh:
    # Auto axes: JAX's partitioner propagates the shardings we pin on arguments, outputs
    # and a few activations, instead of every op having to state its own.
    # The devices are the target's (profiler/models/devices.py): a TPU topology's chips
    # are laid out by their physical coordinates, as on the TPU.
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh((data, model), ("data", "model"), axis_types=(auto, auto),
                         devices=devices.devices()[:data * model])


@contextlib.contextmanager
def context(mesh: jax.sharding.Mesh, rules: Rules) -> Iterator[None]:
    """The mesh and the logical-axis rules the models' constraints resolve against."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def named(logical: Any, mesh: jax.sharding.Mesh, rules: Rules) -> Any:
    """A tree of logical `PartitionSpec`s as a tree of `NamedSharding`s on `mesh`."""
    return nn.logical_to_mesh_sharding(logical, mesh, rules)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def device_bytes(abstract: Any, shardings: Any) -> int:
    """Bytes one device holds of a tree of arrays laid out by a matching tree of
    shardings (the largest shard; shards are equal when every axis divides)."""
    return sum(
        math.prod(sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
        for leaf, sharding in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True)
    )


def params_and_batch(mesh: jax.sharding.Mesh, logical_axes: Any, params: Any) -> tuple[Any, NamedSharding]:
    """Shardings of a stack's parameters (by their logical axes, `TRAIN_RULES`; a block
    without them is replicated) and of its input batch (batch on 'data'): how the forward
    and train workloads lay a point out on its mesh."""
    if logical_axes is None:
        laid = jax.tree.map(lambda _: replicated(mesh), params)
    else:
        laid = named(logical_axes, mesh, TRAIN_RULES)
    return laid, named(PartitionSpec("batch"), mesh, TRAIN_RULES)
