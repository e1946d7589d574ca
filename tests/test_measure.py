"""Measurements of real compiles at tiny sizes (in-process)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from profiler.measurement.measure import measure
from profiler.spec import Point
from profiler.workloads import build

TINY = dict(hidden=32, heads=2, batch=2, seq=8)


def _measure(**kw):
    return measure(build(Point(**TINY, **kw))[0])


@pytest.fixture(scope="module")
def sizes():
    return {
        (mode, layers): _measure(mode=mode, layers=layers)
        for mode in ("loop", "scan", "scan_shared")
        for layers in (2, 4, 8)
    }


@pytest.mark.parametrize("metric", ["size_jaxpr_eqns", "size_stablehlo_ops", "size_hlo_instructions", "size_hlo_bytes"])
def test_loop_program_grows_with_layers_and_scan_stays_flat(sizes, metric):
    # (A one-layer scan is left out: XLA removes a loop that runs once.)
    loop = [sizes["loop", n][metric] for n in (2, 4, 8)]
    assert loop[0] < loop[1] < loop[2]
    assert loop[2] > 0.8 * 4 * loop[0]  # close to linear in the layer count
    for mode in ("scan", "scan_shared"):
        assert len({sizes[mode, n][metric] for n in (2, 4, 8)}) == 1, mode


def test_scan_compiles_to_one_while_loop(sizes):
    assert sizes["loop", 8]["size_hlo_while_loops"] == 0
    assert sizes["scan", 8]["size_hlo_while_loops"] == 1


def test_every_stage_is_timed_and_cross_checked(sizes):
    m = sizes["loop", 8]
    for stage in ("trace", "lower", "compile"):
        assert m[f"time_{stage}_s"] > 0
        # JAX's own event for the stage happens inside our wall-clock window.
        assert 0 < m[f"time_event_{stage}_s"] <= m[f"time_{stage}_s"]


def test_memory_analysis_counts_the_parameters(sizes):
    m = sizes["scan", 4]
    # Per layer: q, k, v, out kernels and biases (4·32·32 + 4·32) and the dense layer
    # (32·32 + 32), float32, four layers; plus x of 2·8·32 floats.
    param_bytes = 4 * 4 * ((4 * 32 * 32 + 4 * 32) + (32 * 32 + 32))
    assert m["mem_argument_bytes"] == param_bytes + 4 * 2 * 8 * 32
    assert m["mem_temp_bytes"] > 0
    assert m["mem_host_rss_peak_bytes"] > 0


def test_run_times_first_call_and_steady_steps():
    m = measure(build(Point(**TINY, mode="scan", layers=2))[0], run=True, steps=3)
    assert len(m["time_step_samples_s"]) == 3
    assert m["time_first_call_s"] > 0 and m["time_step_median_s"] > 0


class _SeedBlock(nn.Module):
    """The seed notebook's SimpleBlock and MyIterativeModule, copied as the notebook has
    them, as an independent reference for what plain JAX reports."""

    hidden_dim: int
    num_heads: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, attention_mask=None):
        x += nn.SelfAttention(num_heads=self.num_heads, kernel_init=nn.initializers.xavier_uniform(),
                              bias_init=nn.initializers.zeros, dtype=self.dtype, name="self_attention")(x, attention_mask)
        x += nn.Dense(features=self.hidden_dim)(x)
        return x, {}


class _SeedLoop(nn.Module):
    num_layers: int

    def setup(self):
        self.blocks = [_SeedBlock(name=f"layer_{i}", hidden_dim=32, num_heads=2, dtype=jnp.float32)
                       for i in range(self.num_layers)]

    def __call__(self, x):
        for block in self.blocks:
            x, _ = block(x)
        return x


def test_xla_flops_equal_plain_jax_for_the_seed_model():
    model = _SeedLoop(num_layers=3)
    x = jnp.zeros((2, 8, 32))
    params = model.init(jax.random.key(0), x[:1])
    plain = jax.jit(model.apply).lower(params, x).compile().cost_analysis()
    ours = _measure(mode="loop", layers=3)
    assert ours["cost_xla_flops"] == plain["flops"]
    assert ours["cost_xla_transcendentals"] == plain["transcendentals"]


def test_no_collection_runs_inside_a_timed_stage():
    """A trace that leaves cyclic garbage by the thousand would set off collections in the
    middle of the stage; the collector is run before each stage and kept out of it, and
    is on again afterwards."""
    import gc

    from profiler.measurement.measure import compile_stages
    from profiler.models.program import Program

    def littering(x):
        for _ in range(20_000):  # cycles, freed only by the collector
            cycle = []
            cycle.append(cycle)
        return jnp.tanh(x)

    args = (jax.ShapeDtypeStruct((4, 4), jnp.float32),)
    program = Program(fn=littering, args=args, make_args=lambda: args)
    stage: list[str] = []
    during: list[str] = []

    def on_collection(phase, info):
        if phase == "start" and stage:
            during.append(stage[-1])

    def around(name):
        class Mark:
            def __enter__(self):
                stage.append(name)

            def __exit__(self, *exc):
                stage.clear()

        return Mark()

    gc.callbacks.append(on_collection)
    try:
        times = compile_stages(program, around).times
        assert during == [] and times["time_gc_collect_s"] > 0 and gc.isenabled()
        jax.clear_caches()  # trace again, with the collector left on
        compile_stages(program, around, collect=False)
        assert "trace" in during
    finally:
        gc.callbacks.remove(on_collection)
