"""Every stacking mode, remat policy and Flax API computes the same function.

A profiling harness that compared different functions would measure nothing. Parameters
of a reference (the linen loop) are restacked into each layout (per-layer dicts ↔ a
leading layer axis, linen ↔ NNX names); outputs, per-layer intermediates and gradients of
the train workload's loss must then agree to float tolerance.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
import pytest
from flax import nnx

from profiler.models import stacked
from profiler.models.program import random_like
from profiler.spec import Point
from profiler.workloads import train

SIZES = dict(layers=3, hidden=32, heads=2, batch=2, seq=4)
RTOL = 1e-5
# linen names its dense layer automatically; the NNX block names it as an attribute.
NNX_NAMES = {"Dense_0": "dense"}
LINEN_NAMES = {v: k for k, v in NNX_NAMES.items()}


def _rename(layer: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {names.get(k, k): v for k, v in layer.items()}


def to_layers(point: Point, params: Any) -> list[dict[str, Any]]:
    """Per-layer parameters (or gradients) in linen names, from any layout. A shared
    scan has a single layer."""
    if point.api == "nnx":
        tree = nnx.to_pure_dict(params)["blocks"]
        tree = {k: _rename(v, LINEN_NAMES) for k, v in tree.items()} if point.mode == "loop" else _rename(tree, LINEN_NAMES)
    else:
        tree = params["params"]
        tree = [tree[f"layer_{i}"] for i in range(point.layers)] if point.mode == "loop" else tree["blocks"]
    if point.mode == "loop":
        return list(tree.values()) if isinstance(tree, dict) else tree
    if point.mode == "scan":
        return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(point.layers)]
    return [tree]


def from_layers(point: Point, net: stacked.Model, layers: list[dict[str, Any]]) -> Any:
    """Parameters in `point`'s layout from per-layer parameters in linen names."""
    if point.mode == "scan":
        layers = [jax.tree.map(lambda *a: np.stack(a), *layers)]
    if point.api == "linen":
        if point.mode == "loop":
            return {"params": {f"layer_{i}": layer for i, layer in enumerate(layers)}}
        return {"params": {"blocks": layers[0]}}
    renamed = [_rename(layer, NNX_NAMES) for layer in layers]
    blocks = dict(enumerate(renamed)) if point.mode == "loop" else renamed[0]
    state = jax.tree.map(lambda a: a, net.params)  # a copy: replace_by_pure_dict works in place
    nnx.replace_by_pure_dict(state, {"blocks": blocks})
    return state


_JITTED: dict[str, tuple[stacked.Model, Any]] = {}
BACKEND_O0 = {"xla_backend_optimization_level": 0}
"""XLA's own passes (fusion, CSE, the remat it must not undo) run as always; only the CPU
backend's LLVM code generation is unoptimised, for every layout and the reference alike:
what is compared is the function each layout computes, not the machine code's speed, and
this is about half of each compile's CPU time."""


def jitted(point: Point, outputs: Any) -> tuple[stacked.Model, Any]:
    """`point`'s model and `jax.jit` of its outputs, `outputs(net, params, x)`, built and
    compiled once per module: a reference evaluated again with other parameters (the
    shared-scan references) runs the executable it already has."""
    key = f"{outputs.__name__} {point.model_dump_json()}"
    if key not in _JITTED:
        net = stacked.build(point)
        _JITTED[key] = net, jax.jit(functools.partial(outputs, net), compiler_options=BACKEND_O0)
    return _JITTED[key]


def forward_and_grad(net: stacked.Model, params: Any, x: jax.Array) -> tuple[Any, ...]:
    return *net.apply(params, x), *jax.value_and_grad(functools.partial(train.loss, net))(params, x)


def evaluate(point: Point, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Output, per-layer intermediates, loss and per-layer gradients of `point`'s stack."""
    net, compute = jitted(point, forward_and_grad)
    params = from_layers(point, net, layers)
    x = random_like(net.x, seed=1, scale=1.0)
    # Sliced and summed as NumPy arrays: each eager op on a jax.Array compiles a program.
    y, intermediates, loss, grads = jax.device_get(compute(params, x))
    if point.mode == "loop":
        intermediates = [intermediates[f"layer_{i}"] for i in range(point.layers)]
    else:
        intermediates = [jax.tree.map(lambda a, i=i: a[i], intermediates) for i in range(point.layers)]
    return dict(y=y, intermediates=intermediates, loss=loss, grads=to_layers(point, grads))


def assert_close(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal to float tolerance, absolute errors measured against the largest value of the
    same quantity: some gradients are exactly zero in exact arithmetic (a key bias does
    not change the softmax) and only float noise in either layout."""
    assert actual.keys() == expected.keys()
    for name in expected:
        assert jax.tree.structure(actual[name]) == jax.tree.structure(expected[name]), name
        scale = max(float(np.max(np.abs(e))) for e in jax.tree.leaves(expected[name]))
        for a, e in zip(jax.tree.leaves(actual[name]), jax.tree.leaves(expected[name]), strict=True):
            np.testing.assert_allclose(a, e, rtol=RTOL, atol=RTOL * scale, err_msg=name)


@pytest.fixture(scope="module")
def reference() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Distinct per-layer parameters and what the linen loop computes with them."""
    point = Point(mode="loop", **SIZES)
    layers = to_layers(point, random_like(jitted(point, forward_and_grad)[0].params, seed=0, scale=0.1))
    return layers, evaluate(point, layers)


@pytest.fixture(scope="module")
def shared_reference(reference) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Layer 0's parameters in every layer of a linen loop: what a shared scan computes;
    a shared parameter's gradient is the sum over the layers that use it."""
    layers = [reference[0][0]] * SIZES["layers"]
    out = evaluate(Point(mode="loop", **SIZES), layers)
    out["grads"] = [jax.tree.map(lambda *g: sum(g), *out["grads"])]
    return layers[:1], out


VARIANTS = [
    dict(api=api, mode=mode, remat=remat, unroll=unroll)
    for api in ("linen", "nnx")
    for mode in ("loop", "scan")
    for remat in ("none", "full", "dots_saveable")
    for unroll in ((1, 2) if (mode, remat) == ("scan", "full") else (1,))
    if (api, mode, remat) != ("linen", "loop", "none")  # the reference itself
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_same_function_as_linen_loop(variant, reference):
    layers, expected = reference
    assert_close(evaluate(Point(**SIZES, **variant), layers), expected)


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("remat", ["none", "full"])
def test_shared_scan_is_a_loop_of_one_layer(api, remat, shared_reference):
    layers, expected = shared_reference
    point = Point(mode="scan_shared", api=api, remat=remat, **SIZES)
    assert_close(evaluate(point, layers), expected)


def test_restacking_round_trips(reference):
    """The layout converters themselves lose nothing (otherwise the tests above could
    compare garbage with garbage)."""
    layers, _ = reference
    for api in ("linen", "nnx"):
        for mode in ("loop", "scan"):
            point = Point(api=api, mode=mode, **SIZES)
            restacked = to_layers(point, from_layers(point, jitted(point, forward_and_grad)[0], layers))
            assert_close({"params": restacked}, {"params": layers})


# The block families ('llama', 'moe') inside their language model: parameters outside the
# stack (embedding, final norm, LM head) plus per-layer parameters, the same names in
# both APIs. Sizes keep grouped-query attention (kv_heads < heads), a real routing
# (4 experts, top 2, 5 slots per expert for 8 tokens: some are dropped) and stay tiny.
FAMILY_SIZES = dict(layers=2, hidden=32, heads=4, kv_heads=2, mlp=48, vocab=64, batch=2, seq=8)
FAMILY_KEYS = {"llama": {}, "moe": dict(experts=4, top_k=2)}
OUTER = ("embed", "final_norm", "lm_head")


def family_point(block: str, **variant: Any) -> Point:
    return Point(workload="train", block=block, **FAMILY_SIZES, **FAMILY_KEYS[block], **variant)


def split_family(point: Point, params: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(parameters outside the stack, per-layer parameters) from any layout."""
    if point.api == "nnx":
        tree = nnx.to_pure_dict(params)
        stack = tree["stack"]["blocks"]
    else:
        tree = params["params"]
        stack = ([tree["stack"][f"layer_{i}"] for i in range(point.layers)] if point.mode == "loop"
                 else tree["stack"]["blocks"])
    outer = {name: tree[name] for name in OUTER}
    if point.mode == "loop":
        return outer, list(stack.values()) if isinstance(stack, dict) else stack
    if point.mode == "scan":
        return outer, [jax.tree.map(lambda a, i=i: a[i], stack) for i in range(point.layers)]
    return outer, [stack]


def join_family(point: Point, net: stacked.Model, outer: dict[str, Any], layers: list[dict[str, Any]]) -> Any:
    if point.mode == "scan":
        layers = [jax.tree.map(lambda *a: np.stack(a), *layers)]
    if point.api == "linen":
        stack = ({f"layer_{i}": layer for i, layer in enumerate(layers)} if point.mode == "loop"
                 else {"blocks": layers[0]})
        return {"params": {**outer, "stack": stack}}
    blocks = dict(enumerate(layers)) if point.mode == "loop" else layers[0]
    state = jax.tree.map(lambda a: a, net.params)
    nnx.replace_by_pure_dict(state, {**outer, "stack": {"blocks": blocks}})
    return state


def logits_and_grad(net: stacked.Model, params: Any, tokens: jax.Array) -> tuple[Any, ...]:
    return net.apply(params, tokens)[0], *jax.value_and_grad(functools.partial(train.loss, net))(params, tokens)


def evaluate_family(point: Point, outer: dict[str, Any], layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Logits, loss and gradients (outside the stack and per layer) of `point`'s model."""
    net, compute = jitted(point, logits_and_grad)
    params = join_family(point, net, outer, layers)
    tokens = np.random.default_rng(1).integers(0, point.vocab, net.x.shape, np.int32)
    logits, loss, grads = jax.device_get(compute(params, tokens))
    grad_outer, grad_layers = split_family(point, grads)
    return dict(logits=logits, loss=loss, grad_outer=grad_outer, grads=grad_layers)


@pytest.fixture(scope="module", params=list(FAMILY_KEYS))
def family_reference(request) -> tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    block = request.param
    point = family_point(block, mode="loop")
    outer, layers = split_family(point, random_like(jitted(point, logits_and_grad)[0].params, seed=0, scale=0.2))
    return block, outer, layers, evaluate_family(point, outer, layers)


# Each API, mode and kind of remat at least once (a family's compile costs seconds).
FAMILY_VARIANTS = [
    dict(api="nnx", mode="loop", remat="full"),
    dict(api="linen", mode="scan", remat="full", unroll=2),
    dict(api="nnx", mode="scan", remat="dots_with_no_batch_dims_saveable"),
]


@pytest.mark.parametrize("variant", FAMILY_VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_family_same_function_as_linen_loop(variant, family_reference):
    block, outer, layers, expected = family_reference
    point = family_point(block, **variant)
    assert_close(evaluate_family(point, outer, layers), expected)


def test_family_shared_scan_is_a_loop_of_one_layer(family_reference):
    block, outer, layers, _ = family_reference
    expected = evaluate_family(family_point(block, mode="loop"), outer, [layers[0]] * FAMILY_SIZES["layers"])
    expected["grads"] = [jax.tree.map(lambda *g: sum(g), *expected["grads"])]
    assert_close(evaluate_family(family_point(block, mode="scan_shared", api="nnx"), outer, layers[:1]), expected)


def test_family_layers_differ(family_reference):
    """The reference's layers are distinct and its gradients reach every parameter, so
    the tests above would notice a layout that dropped or repeated a layer."""
    _, _, layers, expected = family_reference
    assert not np.allclose(layers[0]["query"], layers[1]["query"])
    for grads in expected["grads"]:
        for name, g in grads.items():
            assert np.abs(np.asarray(g)).max() > 0, name
