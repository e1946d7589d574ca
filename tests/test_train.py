"""The train workload: an AdamW step whose state is donated and fed back."""

from __future__ import annotations

from typing import Any

import jax
import pytest

from profiler import workloads
from profiler.measurement.measure import measure
from profiler.spec import Point
from profiler.workloads import train

SIZES = dict(workload="train", layers=2, hidden=32, heads=2, batch=2, seq=4)

_MEASURED: dict[tuple[str, str, bool], tuple[Any, dict[str, Any]]] = {}


def _measured(api: str, mode: str, run: bool = False) -> tuple[Any, dict[str, Any]]:
    """(program, measure() of it) of the point (api, mode), with two steps run if `run`:
    compiled once per module for the tests that read the same point (a measurement that
    ran answers one that only compiles, too)."""
    for key in [(api, mode, True)] + ([] if run else [(api, mode, False)]):
        if key in _MEASURED:
            return _MEASURED[key]
    point = Point(api=api, mode=mode, run=run, steps=2, **SIZES)
    [program] = workloads.build(point)
    _MEASURED[api, mode, run] = program, measure(program, run=run, steps=point.steps)
    return _MEASURED[api, mode, run]


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("mode", ["loop", "scan", "scan_shared"])
def test_optimizer_state_is_two_moments_and_a_count(api, mode):
    [program] = workloads.build(Point(api=api, mode=mode, **SIZES))
    params = program.args[0]
    # AdamW keeps a first and a second moment per parameter and one int32 step count.
    expected = 2 * train.tree_bytes(params) + 4
    assert program.info["mem_optimizer_state_bytes"] == expected


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_steps_donate_their_state_and_lower_the_loss(api):
    [program] = workloads.build(Point(api=api, mode="scan", remat="full", **SIZES))
    compiled = jax.jit(program.fn, donate_argnums=program.donate_argnums).lower(*program.args).compile()
    args = program.make_args()
    losses = []
    for _ in range(3):
        out = compiled(*args)
        donated = jax.tree.leaves(args[:2])
        assert all(leaf.is_deleted() for leaf in donated)
        assert not args[2].is_deleted()
        losses.append(float(out[2]))
        args = program.next_args(args, out)
    assert losses[2] < losses[1] < losses[0]


def test_measured_train_step_reports_optimizer_and_aliased_bytes():
    program, metrics = _measured("nnx", "loop", run=True)
    assert metrics["mem_optimizer_state_bytes"] == program.info["mem_optimizer_state_bytes"]
    # Donated parameters and moments come back as aliased outputs, not fresh buffers.
    assert metrics["mem_alias_bytes"] >= 2 * train.tree_bytes(program.args[0])
    assert len(metrics["time_step_samples_s"]) == 2


@pytest.mark.parametrize("mode", ["loop", "scan"])
def test_linen_and_nnx_steps_cost_the_same(mode):
    """Corrected FLOPs agree across APIs. In scan mode this also corrects a donated
    program's loops (whose module header aliases the entry's arguments)."""
    flops = {api: _measured(api, mode)[1]["cost_flops"] for api in ("linen", "nnx")}
    assert flops["nnx"] == pytest.approx(flops["linen"], rel=0.02)
