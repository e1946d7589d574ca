"""The block families at real shapes: presets against the published parameter counts,
XLA's FLOPs of a training step against the PaLM formula, a training step sharded on a
simulated 8-device mesh, and the families' bad input through the command line.
"""

from __future__ import annotations

import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import jax
import pytest

from profiler import api
from profiler.measurement.measure import measure
from profiler.models import palm, stacked
from profiler.spec import Point, SpecError, build_spec
from profiler.workloads import build

FLOPS_TOLERANCE = 0.05
"""|XLA's count / formula - 1| for a llama training step (docs/models.md): the formula
counts matmuls only; XLA adds the element-wise work (norms, softmax, SwiGLU, the loss,
AdamW), a few percent at these sizes and less at real ones."""

# Small, with the published shape's proportions: grouped-query attention, an MLP 3x
# wide, a vocabulary larger than hidden. T = 256 tokens keep element-wise work small.
SMALL = dict(workload="train", block="llama", layers=2, hidden=128, heads=4, kv_heads=2, mlp=384,
             vocab=512, batch=2, seq=128)


@pytest.mark.parametrize(("preset", "published"), [
    # Parameter totals of the published checkpoints (Hugging Face model pages of
    # meta-llama/Meta-Llama-3-8B, meta-llama/Meta-Llama-3-70B, mistralai/Mixtral-8x7B-v0.1).
    ("llama3-8b", 8_030_261_248),
    ("llama3-70b", 70_553_706_496),
    ("mixtral-8x7b", 46_702_792_704),
])
def test_presets_have_the_published_parameter_counts(preset, published):
    net = stacked.build(Point(workload="train", preset=preset))
    assert sum(math.prod(a.shape) for a in jax.tree.leaves(net.params)) == published


def test_keys_beside_a_preset_override_it_and_rows_record_the_resolved_values():
    point = Point(workload="train", preset="llama3-8b", layers=2, vocab=1024)
    cfg = point.model_dump()
    assert (cfg["block"], cfg["layers"], cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["mlp"], cfg["vocab"]) == (
        "llama", 2, 4096, 32, 8, 14336, 1024)
    assert cfg["preset"] == "llama3-8b"
    mixtral = Point(workload="train", preset="mixtral-8x7b", top_k=1).model_dump()
    assert (mixtral["block"], mixtral["experts"], mixtral["top_k"]) == ("moe", 8, 1)


# The PaLM formula for SMALL, by hand. N: per layer the q and o kernels (128x128), k and v
# (128 x 2 kv heads of 32), the MLP's gate, up and down (128x384); then the LM head (128x512).
N = 2 * (2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 384) + 128 * 512
TOKENS = 2 * 128
ATTENTION = 2 * 128 * 128 * TOKENS  # L·h·s·T
PALM = {"none": 6 * N * TOKENS + 12 * ATTENTION, "full": 8 * N * TOKENS + 16 * ATTENTION}
# remat 'full' does not repeat the o and down projections of each layer, nor the LM head.
NOT_RECOMPUTED = 2 * TOKENS * (2 * (128 * 128 + 384 * 128) + 128 * 512)


@pytest.mark.parametrize("remat", ["none", "full"])
def test_train_flops_agree_with_the_palm_formula(remat):
    point = Point(**SMALL, remat=remat)
    measured = measure(build(point)[0])
    published = PALM[remat]
    assert palm.train_flops(point) == measured["cost_analytic_flops"] == published
    if remat == "none":
        assert abs(measured["cost_flops"] / published - 1) < FLOPS_TOLERANCE
    else:
        # One more forward, less what it provably does not repeat.
        assert palm.not_recomputed_flops(point) == NOT_RECOMPUTED
        expected = published - NOT_RECOMPUTED
        assert abs(measured["cost_flops"] / expected - 1) < FLOPS_TOLERANCE
        # ... which is why the formula as published overestimates a full remat.
        assert measured["cost_flops"] < published


def test_formula_parameters_are_the_models_matmul_parameters():
    """N of the formula, from the configuration, is the model's parameters less the
    embedding table (a lookup) and the norm scales."""
    point = Point(**SMALL)
    params = stacked.build(point).params["params"]
    norms = sum(a.size for path, a in jax.tree_util.tree_leaves_with_path(params) if "norm" in jax.tree_util.keystr(path))
    total = sum(a.size for a in jax.tree.leaves(params))
    assert palm.matmul_params(point) == total - params["embed"].size - norms


@pytest.fixture(scope="module")
def sharded():
    """A training step of a small llama on two 8-device meshes, through the runner (the
    measuring process gets 8 CPU devices), compiled and run once; the two meshes measured
    at once, each on its own core (their bytes and FLOPs do not depend on it)."""
    spec = {**SMALL, "batch": 8, "seq": 64, "devices": 8, "mesh": ["8x1", "4x2"], "run": True, "steps": 1,
            "name": "sharded", "repeats": 1}
    df = api.sweep(spec, jobs=2, progress=False)
    assert (df["run_status"] == "ok").all(), df["run_error"].tolist()
    return {row["cfg_mesh"]: row for _, row in df.iterrows()}


@pytest.mark.parametrize("mesh", ["8x1", "4x2"])
def test_sharded_step_holds_an_eighth_of_the_parameters_per_device(sharded, mesh):
    row = sharded[mesh]
    assert row["env_device_count"] == 8
    # Every kernel has a hidden axis (FSDP over data) and, on 4x2, a heads/MLP/vocab axis
    # (model): 1/8 of each; only the norm scales (640 parameters) are replicated.
    eighth = row["size_params"] * 4 / 8
    assert eighth <= row["mem_param_device_bytes"] <= eighth + 640 * 4
    assert row["mem_grad_device_bytes"] == row["mem_param_device_bytes"]
    # AdamW: two moments like the parameters and a replicated int32 step count.
    assert row["mem_optimizer_state_device_bytes"] == 2 * row["mem_param_device_bytes"] + 4
    # XLA's per-device arguments are exactly those, plus this device's share of the tokens.
    data = int(mesh.split("x")[0])
    tokens = row["cfg_batch"] // data * row["cfg_seq"] * 4
    assert row["mem_argument_bytes"] == (row["mem_param_device_bytes"] + row["mem_optimizer_state_device_bytes"]
                                         + tokens)
    assert row["time_step_median_s"] > 0


@pytest.mark.parametrize("mesh", ["8x1", "4x2"])
def test_sharded_step_flops_add_up_to_the_formula(sharded, mesh):
    """On a mesh XLA analyses one device's program: the devices' counts add up to the
    step's (within the tolerance: collectives and the formula's element-wise gap)."""
    row = sharded[mesh]
    assert abs(row["cost_flops"] * 8 / row["cost_analytic_flops"] - 1) < FLOPS_TOLERANCE


BAD = [
    ("unknown-preset", ["preset=llama3-8", "workload=train"], "key 'preset': unknown preset 'llama3-8'; did you mean 'llama3-8b'?"),
    ("kv-heads", ["block=llama", "heads=4", "kv_heads=3"], "key 'kv_heads': heads=4 is not divisible by kv_heads=3"),
    ("top-k", ["block=moe", "heads=4", "experts=2", "top_k=3"], "key 'top_k': 3 is more than experts=2"),
    ("mesh-size", ["preset=llama-tiny", "workload=train", "mesh=4x2", "devices=4"], "key 'mesh': 4x2 has 8 devices, devices=4"),
    ("axis-divides", ["preset=llama-tiny", "workload=train", "mesh=1x8", "devices=8"],
     "key 'heads': 4 is not divisible by the model axis (8) of mesh 1x8"),
    ("moe-key-on-llama", ["block=llama", "heads=4", "experts=4"], "key 'experts': only applies to block 'moe'"),
]


def test_bad_family_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "bad"\nlayers = 1\nhidden = 32\nbatch = 2\nseq = 8\nrepeats = 1\n')

    def run(case):
        name, overrides, _ = case
        return subprocess.run([sys.executable, "-m", "profiler", "sweep", str(spec), *overrides,
                               "--out", str(tmp_path / name), "--no-report"], capture_output=True, text=True)

    with ThreadPoolExecutor(len(BAD)) as pool:
        results = list(pool.map(run, BAD))
    for (name, _, message), proc in zip(BAD, results, strict=True):
        assert proc.returncode == 2, (name, proc.stderr)
        assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, (name, proc.stderr)
        assert not (tmp_path / name).exists(), name


def test_bad_family_keys_raise_spec_errors_naming_the_key():
    with pytest.raises(SpecError, match="key 'capacity_factor'"):
        build_spec({"name": "x", "block": "llama", "capacity_factor": 2.0})
    with pytest.raises(SpecError, match="key 'preset': applies only to workloads 'forward' and 'train'"):
        build_spec({"name": "x", "preset": "llama-tiny", "workload": "decode"})
    # The forward pass is sharded too (spec key target, docs/tpu.md): on all its devices.
    with pytest.raises(SpecError, match="key 'mesh': 2x1 has 2 devices, devices=4"):
        build_spec({"name": "x", "preset": "llama-tiny", "mesh": "2x1", "devices": 4})


def test_family_keys_are_columns_of_family_points_only():
    seed = Point(workload="train").config()
    llama = Point(workload="train", preset="llama-tiny").config()
    moe = Point(workload="forward", preset="moe-tiny").config()
    assert "experts" not in seed and "preset" not in seed and "mesh" not in seed
    assert llama["preset"] == "llama-tiny" and llama["mesh"] == "1x1" and "experts" not in llama
    assert moe["experts"] == 4 and "mesh" not in moe


def test_report_shows_memory_per_device_against_the_budget(sharded):
    import pandas as pd

    from profiler.report import figures, report_html
    from profiler.report.views.mesh import BUDGET_BYTES

    df = pd.DataFrame(list(sharded.values()))
    page = report_html(df)
    assert "Sharded training" in page and f"fits {BUDGET_BYTES // 2**30} GiB" in page
    assert "2 of 2 sharded training layouts fit 80 GiB per device" in page
    assert "mesh" in figures(df)
    # Results without per-device bytes (the seed's block) have no such section.
    assert "mesh" not in figures(df.assign(mem_param_device_bytes=None))
