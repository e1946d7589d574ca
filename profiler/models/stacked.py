"""The model under test: a point's block stack as a pure function of (params, x), whichever
Flax API wrote it and whoever wrote the block.

Workloads build on `Model` and never see the API: linen's `apply` is already pure; an NNX
module is split once into a graph definition and a parameter state, so the jitted
function takes only pytrees and merges them back inside the trace.

The block is the spec's `block` (a user's class) or the seed's `SimpleBlock` of the API;
both go through the same path: the constructor gets the spec keys named like its fields.
The built-in families ('llama', 'moe') are stacked inside a language model instead
(profiler/models/language_model.py): the input is tokens and the parameters carry logical axes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from profiler import refs
from profiler.models import language_model, llama, moe
from profiler.models.blocks import BUILTIN, FIELD_ALIASES
from profiler.models.program import random_like
from profiler.models.stacking import NnxStack, Stack
from profiler.spec import MODEL_KEYS, Point

FAMILIES: dict[str, dict[str, type]] = {
    "llama": {"linen": llama.LlamaBlock, "nnx": llama.NnxLlamaBlock},
    "moe": {"linen": moe.MoeBlock, "nnx": moe.NnxMoeBlock},
}
"""The built-in block families, by spec name and API."""

_MODULE_BASE = {"linen": (nn.Module, "flax.linen.Module"), "nnx": (nnx.Module, "flax.nnx.Module")}


@dataclass(frozen=True)
class Model:
    apply: Callable[[Any, jax.Array], Any]
    """`(params, x) -> (y, intermediates)`, a pure function."""
    params: Any
    """Abstract parameters: a pytree of `jax.ShapeDtypeStruct`."""
    x: jax.ShapeDtypeStruct
    """Abstract input batch."""
    logical_axes: Any = None
    """The parameters' logical axis names: a tree of `PartitionSpec`s shaped like
    `params` (block families; None otherwise)."""

    def make_args(self) -> tuple[Any, jax.Array]:
        """Real parameters and input for running (see `random_like` for why not `init`)."""
        return random_like((self.params, self.x))


def build(point: Point) -> Model:
    if point.block in FAMILIES:
        return _language_model(point)
    block, kwargs = block_and_kwargs(point)
    stack: dict[str, Any] = dict(
        block=block, block_kwargs=kwargs,
        mode=point.mode, layers=point.layers, unroll=point.unroll, remat=point.remat,
    )
    if point.api == "nnx":
        return _nnx(lambda rngs: NnxStack(**stack, rngs=rngs), _input(point))
    return _linen(Stack(**stack), _input(point))


def family_kwargs(point: Point) -> dict[str, Any]:
    """Constructor arguments of a family's block (the unset widths resolved)."""
    kwargs = dict(hidden=point.hidden, heads=point.heads, kv_heads=point.kv_heads or point.heads,
                  mlp=point.mlp or 4 * point.hidden, dtype=jnp.dtype(point.dtype),
                  weight_dtype=jnp.dtype(point.weight_dtype))
    if point.block == "moe":
        kwargs |= dict(experts=point.experts, top_k=point.top_k, capacity_factor=point.capacity_factor)
    return kwargs


def _language_model(point: Point) -> Model:
    stack: dict[str, Any] = dict(block=FAMILIES[point.block][point.api], block_kwargs=family_kwargs(point),
                 mode=point.mode, layers=point.layers, unroll=point.unroll, remat=point.remat)
    outer: dict[str, Any] = dict(vocab=point.vocab, hidden=point.hidden, dtype=jnp.dtype(point.dtype),
                 weight_dtype=jnp.dtype(point.weight_dtype))
    tokens = jax.ShapeDtypeStruct((point.batch, point.seq), jnp.int32)
    if point.api == "nnx":
        return _nnx(lambda rngs: language_model.NnxLanguageModel(stack, **outer, rngs=rngs), tokens)
    return _linen(language_model.LanguageModel(stack=stack, **outer), tokens)


def block_and_kwargs(point: Point) -> tuple[type, dict[str, Any]]:
    """The point's block class and its constructor's keyword arguments. ValueError if the
    class cannot be imported, is not a Module of the point's API, or needs an argument
    that no spec key provides."""
    block = refs.load(point.block) if point.block else BUILTIN[point.api]
    name = point.block or block.__name__
    base, base_name = _MODULE_BASE[point.api]
    if not (isinstance(block, type) and issubclass(block, base)):
        other = next((api for api, (other_base, _) in _MODULE_BASE.items()
                      if isinstance(block, type) and issubclass(block, other_base)), None)
        hint = f"; set api = '{other}'" if other else ""
        raise ValueError(f"{name!r} is not a {base_name} class (api = '{point.api}'){hint}")
    keys = point.model_dump(include=set(MODEL_KEYS)) | {"dtype": jnp.dtype(point.dtype)}
    values = keys | {field: keys[key] for field, key in FIELD_ALIASES.items()}
    try:
        return block, refs.keyword_arguments(block, values, supplied=("rngs",) if point.api == "nnx" else ())
    except ValueError as e:
        raise ValueError(f"{name!r} {e}") from None


def check_stackable(points: Iterable[Point]) -> None:
    """Run each distinct block configuration of `points` once on abstract input: ValueError
    unless it maps x to x's shape and dtype (or to (x, aux)), as stacking needs."""
    seen = set()
    for point in points:
        block, kwargs = block_and_kwargs(point)
        x = _input(point)
        key = (point.block, point.api, repr(sorted(kwargs.items())), x.shape, x.dtype)
        if key in seen:
            continue
        seen.add(key)
        try:
            if point.api == "nnx":
                single = _nnx(functools.partial(_make_nnx, block, kwargs), x)
            else:
                single = _linen(block(**kwargs), x)
            out = jax.eval_shape(single.apply, single.params, x)
        except Exception as e:  # the user's block may fail in any way
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(f"{point.block!r} fails on an input of {_describe(x)} "
                             f"({type(e).__name__}: {first})") from None
        y = out[0] if isinstance(out, tuple) and len(out) == 2 else out
        if not (isinstance(y, jax.ShapeDtypeStruct) and y.shape == x.shape and y.dtype == x.dtype):
            raise ValueError(f"{point.block!r} maps an input of {_describe(x)} to {_describe(out)}; "
                             "a stacked block must return x's shape and dtype, or (x, aux)")


def _describe(tree: Any) -> str:
    if isinstance(tree, jax.ShapeDtypeStruct):
        return f"shape {tree.shape} {tree.dtype}"
    if isinstance(tree, tuple):
        return f"a tuple of {len(tree)} ({', '.join(map(_describe, tree))})"
    return type(tree).__name__


def _input(point: Point) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((point.batch, point.seq, point.hidden), jnp.dtype(point.dtype))


def _linen(module: nn.Module, x: jax.ShapeDtypeStruct) -> Model:
    # The seed initialises with a batch of one; parameter shapes do not depend on it.
    init_x = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    # The key is made inside the trace: a concrete one would start a backend, and the
    # sweep's driver checks blocks with this function (on a GPU, a started backend
    # reserves most of its memory away from the measuring processes).
    boxed = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), init_x)
    return Model(apply=module.apply, params=nn.unbox(boxed), x=x, logical_axes=nn.get_partition_spec(boxed))


def _make_nnx(block: Callable[..., nnx.Module], kwargs: dict[str, Any], rngs: nnx.Rngs) -> nnx.Module:
    return block(**kwargs, rngs=rngs)


def _nnx(make: Callable[[nnx.Rngs], nnx.Module], x: jax.ShapeDtypeStruct) -> Model:
    graphdef, params = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))

    def apply(params: nnx.State, x: jax.Array) -> Any:
        return nnx.merge(graphdef, params)(x)

    return Model(apply=apply, params=params, x=x, logical_axes=nnx.get_partition_spec(params))
