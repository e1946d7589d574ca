"""Workload `decode`: a KV-cached decoder at tiny sizes, real compiles and real generation."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from profiler.measurement.measure import measure
from profiler.processes.supervise import worker_environment
from profiler.spec import Point, SpecError, build_spec
from profiler.workloads import build
from profiler.workloads.decode import DecodeSetup
from tests.messages import says

# layers 2, batch 2, max_len 16, kv_heads 2, head_dim 32/4 = 8.
TINY = dict(workload="decode", layers=2, hidden=32, heads=4, kv_heads=2, batch=2, vocab=64,
            max_len=16, prompt_len=5, gen_tokens=6)
VARIANTS = [("loop", "scanned"), ("loop", "carried"), ("scan", "scanned"), ("scan", "carried")]


def restack(loop_params, layers):
    """The loop's per-layer parameters as the scan's stacked ones (same weights)."""
    rest = {k: v for k, v in loop_params.items() if not k.startswith("layer_")}
    blocks = [loop_params[f"layer_{i}"] for i in range(layers)]
    return {**rest, "layers": jax.tree.map(lambda *xs: np.stack(xs), *blocks)}  # NumPy: no eager compiles


@pytest.fixture(scope="module")
def generations():
    """Each stacking variant generates from the same weights and prompt; and the loop
    model recomputes each generated sequence whole, without a cache."""
    out = {}
    for mode, kv_cache in VARIANTS:
        setup = DecodeSetup(Point(**TINY, mode=mode, kv_cache=kv_cache))
        with setup.context():
            if not out:
                loop_setup, loop_params = setup, jax.device_get(setup.params())
            params = loop_params if mode == "loop" else restack(loop_params, setup.point.layers)
            params = jax.device_put(params, setup.param_sharding)
            step = setup.jit(setup.step())
            out[mode, kv_cache] = setup.generate(step, step, params, setup.prompt())
    prompt = np.asarray(loop_setup.prompt())
    recompute = jax.jit(lambda p, t: loop_setup.model.apply({"params": p}, t, 0))
    with loop_setup.context():
        full = {variant: recompute(loop_params, np.concatenate([prompt, gen.tokens[:, :-1]], axis=1))
                for variant, gen in out.items()}
    # The logits at the prompt's last position and at each fed-back token pick the next one.
    return {variant: (gen, np.asarray(full[variant][0])[:, prompt.shape[1] - 1:], full[variant][1])
            for variant, gen in out.items()}


@pytest.mark.parametrize("variant", VARIANTS, ids="-".join)
def test_cached_generation_equals_recomputing_the_whole_sequence(generations, variant):
    gen, expected, no_cache = generations[variant]
    assert no_cache is None
    np.testing.assert_allclose(gen.logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gen.tokens, expected.argmax(-1))
    assert gen.tokens.shape == (2, 6) and len(gen.step_s) == 5


def test_every_stacking_and_cache_form_generates_the_same_tokens(generations):
    tokens = {variant: gen.tokens for variant, (gen, _, _) in generations.items()}
    reference = tokens["loop", "scanned"]
    assert len(set(reference[0])) > 1  # a generation that says something
    for variant, t in tokens.items():
        np.testing.assert_array_equal(t, reference, err_msg=str(variant))


@pytest.mark.parametrize("variant", VARIANTS, ids="-".join)
def test_cache_has_exactly_the_keys_and_values_of_every_layer(variant):
    setup = DecodeSetup(Point(**TINY, mode=variant[0], kv_cache=variant[1]))
    expected = 2 * 2 * 2 * 16 * 2 * 8 * 4  # 2 (k, v) · layers · batch · max_len · kv_heads · head_dim · float32
    assert sum(c.size * c.dtype.itemsize for c in setup.cache_args) == expected
    with setup.context():
        cache = setup.empty_cache()
    assert sum(c.nbytes for c in cache) == expected


@pytest.fixture(scope="module")
def measured():
    """Compile-only rows of one point, with and without donating the cache."""
    return {
        donate: [measure(p) for p in build(Point(**TINY, mode="scan", kv_cache="carried", donate=donate))]
        for donate in (True, False)
    }


def test_two_programs_prefill_and_decode_with_the_cache_donated(measured):
    cache_bytes = 2 * 2 * 2 * 16 * 2 * 8 * 4
    programs = build(Point(**TINY))
    assert [p.phase for p in programs] == ["prefill", "decode"]
    for rows in measured.values():
        for row in rows:
            assert row["mem_kv_cache_bytes"] == cache_bytes
            assert row["mem_output_bytes"] >= cache_bytes
    # Donated, the new cache is written over the old one; not donated, nothing aliases.
    assert [r["mem_alias_bytes"] for r in measured[True]] == [cache_bytes, cache_bytes]
    assert [r["mem_alias_bytes"] for r in measured[False]] == [0, 0]


_MESH_SCRIPT = """
import json, sys
import jax
import numpy as np
from profiler.spec import Point
from profiler.workloads.decode import DecodeSetup

out = {"devices": jax.device_count()}
for mesh in ("1x1", "2x4"):
    setup = DecodeSetup(Point(**json.loads(sys.argv[1]), mesh=mesh))
    with setup.context():
        params = setup.params()
        step = setup.jit(setup.step())
        gen = setup.generate(step, step, params, setup.prompt())
        cache = setup.empty_cache()
    out[mesh] = {
        "tokens": gen.tokens.tolist(), "logits": gen.logits.tolist(),
        "cache_devices": len(cache.key.sharding.device_set),
        "cache_shard": list(cache.key.addressable_shards[0].data.shape),
    }
print(json.dumps(out))
"""


def test_a_2x4_mesh_on_8_cpu_devices_generates_what_one_device_does():
    # JAX in this process has started with one device; the count is fixed at start-up,
    # so the mesh runs in a fresh process with the environment the runner gives a point.
    point = dict(TINY, mode="scan", kv_cache="carried", heads=8, kv_heads=4, batch=4, devices=8)
    env = worker_environment(Point(**point))
    proc = subprocess.run([sys.executable, "-c", _MESH_SCRIPT, json.dumps(point)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["devices"] == 8
    one, mesh = out["1x1"], out["2x4"]
    assert (one["cache_devices"], mesh["cache_devices"]) == (1, 8)
    # (layers, batch, max_len, kv_heads, head_dim): batch over data=2, kv heads over model=4.
    assert one["cache_shard"] == [2, 4, 16, 4, 4]
    assert mesh["cache_shard"] == [2, 2, 16, 1, 4]
    assert mesh["tokens"] == one["tokens"]
    np.testing.assert_allclose(mesh["logits"], one["logits"], rtol=1e-4, atol=1e-5)


def test_worker_environment_sets_the_device_count_and_keeps_other_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true --xla_force_host_platform_device_count=2")
    flags = worker_environment(Point(workload="decode", devices=8, mesh="2x4", batch=16, heads=4, kv_heads=4,
                                     vocab=256))["XLA_FLAGS"].split()
    assert flags == ["--xla_cpu_use_thunk_runtime=true", "--xla_force_host_platform_device_count=8"]
    assert worker_environment(Point())["XLA_FLAGS"] == " ".join(
        ["--xla_cpu_use_thunk_runtime=true", "--xla_force_host_platform_device_count=2"])


@pytest.mark.parametrize("keys, message", [
    (dict(mesh="2x4"), ("key 'mesh'", "2x4", "8 devices")),
    (dict(mesh="1x4", devices=4, heads=2), ("key 'heads'", "2", "model axis (4)")),
    (dict(mesh="1x4", devices=4, kv_heads=2), ("key 'kv_heads'", "2", "model axis (4)")),
    (dict(mesh="4x1", devices=4, batch=2), ("key 'batch'", "2", "data axis (4)")),
    (dict(mesh="1x2", devices=2, vocab=65), ("key 'vocab'", "65", "model axis (2)")),
    (dict(mesh="2by4"), ("key 'mesh'", "pattern")),
    (dict(kv_heads=3), ("key 'kv_heads'", "heads=4", "kv_heads=3")),
    (dict(prompt_len=16), ("key 'prompt_len'", "16", "max_len=16")),
    (dict(gen_tokens=13), ("key 'gen_tokens'", "17", "max_len=16")),
    (dict(mode="scan_shared"), ("key 'mode'", "'loop'", "'scan'")),
    (dict(remat="full"), ("key 'remat'", "decode")),
    (dict(seq=8), ("key 'seq'", "prompt_len")),
    (dict(workload="forward"), ("key 'prompt_len'", "decode")),
])
def test_bad_decode_keys_are_named(keys, message):
    with pytest.raises(SpecError) as error:
        build_spec({"name": "t", **TINY, **keys})
    assert str(error.value).startswith(message[0]) and says(str(error.value), message)


def test_decode_keys_leave_forward_points_alone():
    forward = build_spec({"name": "t", "layers": [2, 4]}).points
    assert all(p.kv_heads is None and p.mesh == "1x1" and p.donate for p in forward)
    with pytest.raises(SpecError) as error:
        build_spec({"name": "t", "donate": False})
    assert str(error.value).startswith("key 'donate'") and says(str(error.value), "decode")
