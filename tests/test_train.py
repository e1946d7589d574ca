"""The train workload: an AdamW step whose state is donated and fed back."""

from __future__ import annotations

import jax
import pytest

from profiler import workloads
from profiler.measurement.measure import measure
from profiler.spec import Point
from profiler.workloads import train

SIZES = dict(workload="train", layers=2, hidden=32, heads=2, batch=2, seq=4)


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
    point = Point(api="nnx", mode="loop", run=True, steps=2, **SIZES)
    [program] = workloads.build(point)
    metrics = measure(program, run=True, steps=point.steps)
    assert metrics["mem_optimizer_state_bytes"] == program.info["mem_optimizer_state_bytes"]
    # Donated parameters and moments come back as aliased outputs, not fresh buffers.
    assert metrics["mem_alias_bytes"] >= 2 * train.tree_bytes(program.args[0])
    assert len(metrics["time_step_samples_s"]) == 2


@pytest.mark.parametrize("mode", ["loop", "scan"])
def test_linen_and_nnx_steps_cost_the_same(mode):
    """Corrected FLOPs agree across APIs. In scan mode this also corrects a donated
    program's loops (whose module header aliases the entry's arguments)."""
    flops = {
        api: measure(workloads.build(Point(api=api, mode=mode, **SIZES))[0])["cost_flops"]
        for api in ("linen", "nnx")
    }
    assert flops["nnx"] == pytest.approx(flops["linen"], rel=0.02)
