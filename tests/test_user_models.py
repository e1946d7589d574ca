"""Profiling code the project has never seen: blocks and a program written into a
temporary folder at test time (and a block and a function defined inside a test),
profiled from a spec file on the command line, from Python dicts and paths, and with
`profiler.profile`, with no change to the project's code. Their corrected FLOPs are
checked against analytic counts and against the same program unrolled.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import profiler
from profiler import workloads
from profiler.measurement.measure import measure
from profiler.processes.forkserver import ServerPool
from profiler.processes.runner import check_user_blocks
from profiler.spec import Point, SpecError, build_spec
from tests.messages import says

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
MODULE = "unseen_models"
SIZES = dict(layers=4, hidden=32, batch=4, seq=16)
TOKENS = SIZES["batch"] * SIZES["seq"]

USER_CODE = '''
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


class Bottleneck(nn.Module):
    """linen, returns x alone; its field has the seed's name hidden_dim."""

    hidden_dim: int
    dtype: Any

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(2 * self.hidden_dim, dtype=self.dtype)(x))
        return x + nn.Dense(self.hidden_dim, dtype=self.dtype)(h)


class TanhPair(nnx.Module):
    """NNX, returns (x, aux)."""

    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.up = nnx.Linear(hidden, 3 * hidden, use_bias=False, rngs=rngs)
        self.down = nnx.Linear(3 * hidden, hidden, use_bias=False, rngs=rngs)

    def __call__(self, x):
        h = jnp.tanh(self.up(x))
        return x + self.down(h), {"h_mean": h.mean()}


class Widening(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2 * self.hidden)(x)


class Upcast(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x.astype(jnp.float32)


class NeedsWidth(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return x


def needs_depth(depth: int):
    return (lambda x: x), ()


def two_matmul_loop(layers: int, hidden: int, batch: int):
    """layers trips of x <- (x @ a) @ b in a fori_loop."""

    def fn(x, a, b):
        return jax.lax.fori_loop(0, layers, lambda i, x: (x @ a) @ b, x)

    x, w = jax.ShapeDtypeStruct((batch, hidden), jnp.float32), jax.ShapeDtypeStruct((hidden, hidden), jnp.float32)
    return fn, (x, w, w)


def power_iteration(hidden=64, batch=8, steps=10):
    """The issue's factory: its steps are the program's, not the timing's."""
    return (lambda x: x), ()


def chain(hidden=64, batch=8, layers=3):
    """layers matmuls of a (batch, hidden) by a (hidden, hidden), unrolled."""

    def fn(x, w):
        for _ in range(layers):
            x = x @ w
        return x

    return fn, (jax.ShapeDtypeStruct((batch, hidden), jnp.float32), jax.ShapeDtypeStruct((hidden, hidden), jnp.float32))


def no_depth(hidden=16, batch=4):
    """No layers parameter: its x axis is whatever varies. Builds real arrays."""

    def fn(x, w):
        return jnp.tanh(x @ w)

    return fn, (jnp.ones((batch, hidden)), jnp.ones((hidden, hidden)))


def knobbed(emb_dim: int, act: str = "tanh", batch=4):
    """Its own knobs, emb_dim and act, that no spec key names."""

    def fn(x, w):
        return getattr(jnp, act)(x @ w)

    x, w = jax.ShapeDtypeStruct((batch, emb_dim), jnp.float32), jax.ShapeDtypeStruct((emb_dim, emb_dim), jnp.float32)
    return fn, (x, w)


import dataclasses
import functools


@dataclasses.dataclass(frozen=True)
class StepConfig:
    width: int
    rate: float


@functools.partial(jax.jit, static_argnames=("config",), donate_argnums=(0,))
def jitted_step(w, x, *, key, config):
    """A training step as another project writes it: jitted with its own static config,
    donating its weights, dropout from a typed key passed by keyword."""
    def loss(w):
        h = x @ w
        keep = jax.random.bernoulli(key, 1 - config.rate, h.shape)
        return jnp.mean(jnp.where(keep, h / (1 - config.rate), 0.0) ** 2)

    return w - 0.1 * jax.grad(loss)(w)


def step_factory(width: int = 16, batch=4):
    w = jax.ShapeDtypeStruct((width, width), jnp.float32)
    x = jnp.ones((batch, width))  # a real array, as a factory may build
    return jitted_step, (w, x), {"key": jax.random.key(0), "config": StepConfig(width, 0.1)}


def plain_step(w, x, scale):
    return w - scale * (x.T @ x)


def dict_factory(width: int = 16, batch=4):
    w, x = jax.ShapeDtypeStruct((width, width), jnp.float32), jax.ShapeDtypeStruct((batch, width), jnp.float32)
    return {"fn": plain_step, "args": (w, x), "kwargs": {"scale": 0.5},
            "static_argnames": ("scale",), "donate_argnums": (0,)}
'''

# Matmul FLOPs per layer and token (2 per multiply-add) of the blocks above.
PER_TOKEN = {"Bottleneck": 2 * 2 * 2, "TanhPair": 2 * 2 * 3}


def analytic(block: str, layers: int = SIZES["layers"], hidden: int = SIZES["hidden"]) -> int:
    return layers * TOKENS * PER_TOKEN[block] * hidden * hidden


@pytest.fixture(scope="module", autouse=True)
def user_dir(tmp_path_factory):
    """The user's folder, holding their module, as the current directory."""
    folder = tmp_path_factory.mktemp("user")
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(USER_CODE))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        yield folder
    sys.modules.pop(MODULE, None)


@pytest.fixture(scope="module")
def servers(user_dir):
    """The fork servers of this module's run_sweep calls: one server (its imports take
    seconds) for all of them instead of one per sweep. Each measurement is still a fresh
    fork that starts its own backend and compiles cold."""
    pool = ServerPool()
    yield pool
    pool.close()


_MEASURED: dict[tuple, dict] = {}


def _measure(run: bool = False, **keys) -> dict:
    """measure() of the point SIZES | keys in this process, with two steps run if `run`:
    compiled once per module for the tests that read the same point (a measurement that
    ran answers one that only compiles, too)."""
    ran, compiled = (True, *sorted(keys.items())), (False, *sorted(keys.items()))
    for key in [ran] + ([] if run else [compiled]):
        if key in _MEASURED:
            return _MEASURED[key]
    point = Point(**(SIZES | keys), **(dict(run=True, steps=2) if run else {}))
    [program] = workloads.build(point)
    _MEASURED[ran if run else compiled] = measure(program, run=run, steps=2)
    return _MEASURED[ran if run else compiled]


# (api, block): the linen block returns x, the NNX block returns (x, aux).
BLOCKS = [("linen", "Bottleneck"), ("nnx", "TanhPair")]
# Every mode, every remat kind, partial unrolling with and without a remainder.
VARIANTS = [
    dict(mode="loop"), dict(mode="loop", remat="full"),
    dict(mode="scan"), dict(mode="scan", unroll=2, remat="full"),
    dict(mode="scan_shared", remat="dots_saveable"), dict(mode="scan_shared", unroll=3),
]


@pytest.mark.parametrize(("api", "block"), BLOCKS)
def test_forward_flops_of_a_user_block_in_every_mode_match_the_analytic_count(api, block):
    flops = [_measure(api=api, block=f"{MODULE}:{block}", **v)["cost_flops"] for v in VARIANTS]
    # Element-wise work (bias, relu or tanh, residual add) adds a few percent at hidden 32.
    for variant, f in zip(VARIANTS, flops, strict=True):
        assert analytic(block) <= f <= 1.06 * analytic(block), variant
        assert f == pytest.approx(flops[0], rel=1e-3), variant


def test_a_user_block_trains_for_real():
    """(Before test_train_step_of_a_user_block_costs_the_same_however_its_scan_is_cut, which
    reads this measurement as its linen scan remat='full' point.)"""
    metrics = _measure(api="linen", block=f"{MODULE}:Bottleneck", workload="train", mode="scan", remat="full",
                       run=True)
    assert len(metrics["time_step_samples_s"]) == 2
    assert metrics["mem_alias_bytes"] > 0  # donated parameters and optimizer state


@pytest.mark.parametrize(("api", "block"), BLOCKS)
@pytest.mark.parametrize("mode", ["scan", "scan_shared"])
def test_train_step_of_a_user_block_costs_the_same_however_its_scan_is_cut(api, block, mode):
    keys = dict(api=api, block=f"{MODULE}:{block}", workload="train", mode=mode)
    one = _measure(**keys)  # forward and backward loops of 4 trips over one layer
    two = _measure(unroll=2, **keys)  # ... of 2 trips over two layers
    assert one["size_hlo_while_loops"] >= 2 and two["size_hlo_while_loops"] >= 2
    assert two["cost_flops"] == pytest.approx(one["cost_flops"], rel=1e-3)
    assert one["cost_xla_flops"] < one["cost_flops"] / 2  # XLA's own count: one trip
    # Forward and backward (two matmuls per forward matmul), then AdamW's element-wise
    # update, and a few percent more: the scan body still computes the first layer's
    # input gradient, which an unrolled program drops (docs/cost.md).
    assert 3 * analytic(block) <= one["cost_flops"] <= 1.1 * 3 * analytic(block)
    assert one["cost_analytic_flops"] is None
    # remat='full' recomputes each block's forward in the backward pass, except its last
    # matmul, whose output the backward pass does not need: half the block's matmuls.
    # (The linen scan one is test_a_user_block_trains_for_real's point, measured there.)
    remat = _measure(remat="full", **keys)
    assert remat["cost_flops"] - one["cost_flops"] == pytest.approx(analytic(block) / 2, rel=0.05)


def test_a_user_block_from_a_spec_file_on_the_command_line(user_dir):
    (user_dir / "spec.toml").write_text(textwrap.dedent(f'''
        name = "unseen"
        block = "{MODULE}:Bottleneck"
        mode = ["loop", "scan", "scan_shared"]
        repeats = 1
    ''') + "".join(f"{key} = {value}\n" for key, value in SIZES.items()))
    done = subprocess.run(
        [sys.executable, "-m", "profiler", "sweep", "spec.toml", "--out", "results", "--no-report", "--jobs", "2"],
        cwd=user_dir, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    df = profiler.load(user_dir / "results")
    assert set(df.run_status) == {"ok"} and set(df.cfg_mode) == {"loop", "scan", "scan_shared"}
    assert set(df.cfg_block) == {f"{MODULE}:Bottleneck"}
    for f in df.cost_flops:
        assert analytic("Bottleneck") <= f <= 1.06 * analytic("Bottleneck")
    assert df.cost_flops.max() == pytest.approx(df.cost_flops.min(), rel=1e-3)
    scan = df[df.cfg_mode == "scan"].iloc[0]
    assert scan.cost_xla_flops == pytest.approx(scan.cost_flops / SIZES["layers"], rel=0.01)


def test_a_block_class_defined_in_python_is_swept_from_a_dict():
    class Local(nnx.Module):  # defined here, as in a notebook: it travels pickled by value
        def __init__(self, hidden: int, *, rngs: nnx.Rngs):
            self.w = nnx.Linear(hidden, hidden, use_bias=False, rngs=rngs)

        def __call__(self, x):
            return x + self.w(x)

    df = profiler.sweep({"block": Local, "api": "nnx", "workload": ["forward", "train"], "mode": "scan",
                         "remat": "full", "repeats": 1, **SIZES}, jobs=2, progress=False)
    assert set(df.run_status) == {"ok"}
    assert df.cfg_block.str.endswith(":Local").all()
    per_layer = 2 * TOKENS * SIZES["hidden"] ** 2
    forward = df[df.cfg_workload == "forward"].iloc[0]
    assert per_layer * SIZES["layers"] <= forward.cost_flops <= 1.05 * per_layer * SIZES["layers"]
    train = df[df.cfg_workload == "train"].iloc[0]
    assert train.cost_flops >= 3 * per_layer * SIZES["layers"]  # forward and backward


def test_a_program_from_a_spec_path_counts_every_trip(user_dir):
    (user_dir / "program.toml").write_text(
        f'name = "loop"\nprogram = "{MODULE}:two_matmul_loop"\nlayers = [2, 7]\nhidden = 32\nbatch = 4\nrepeats = 1\n')
    df = profiler.sweep(user_dir / "program.toml", jobs=2, progress=False)
    assert set(df.run_status) == {"ok"} and df.cost_exact.all()
    for row in df.itertuples():
        per_trip = 2 * 2 * 4 * 32 * 32
        # Every trip's matmuls, and the loop counter's add and compare.
        assert row.cost_flops == pytest.approx(row.cfg_layers * per_trip, abs=3 * (row.cfg_layers + 1))
        assert row.cost_xla_flops == pytest.approx(per_trip, abs=6)


def test_profile_measures_a_notebook_function_in_a_fresh_process():
    trips, m, k = 6, 4, 16

    def scaled_loop(x, w):
        return jax.lax.fori_loop(0, trips, lambda i, x: jnp.tanh(x @ w), x)

    record = profiler.profile(scaled_loop, jnp.ones((m, k)), jnp.ones((k, k)), run=True, steps=2)
    assert record["run_status"] == "ok" and record["cfg_program"].endswith(":scaled_loop")
    # Only what describes the function and how it was measured (the run keys, anatomy
    # included): no model keys of other workloads (cfg_mode, cfg_layers...).
    assert set(record.row) <= {c.name for c in profiler.COLUMNS}
    assert {c for c in record.row if c.startswith("cfg_")} == {
        "cfg_workload", "cfg_program", "cfg_run", "cfg_steps", "cfg_devices", "cfg_anatomy", "cfg_target",
        "cfg_phase"}
    assert record.to_frame().shape == (1, len(record.row))
    shown = repr(record)
    assert shown.startswith("Profile of scaled_loop") and "cost_flops" in shown and "time_compile_s" in shown
    assert "cost_flops" in record._repr_html_()
    # Every trip's matmul, and the loop counter's add and compare.
    assert record["cost_flops"] == pytest.approx(trips * 2 * m * k * k, abs=3 * (trips + 1))
    assert record["cost_transcendentals"] == trips * m * k
    assert len(record["time_step_samples_s"]) == 2

    def broken(x):
        raise ValueError("no such layer")

    with pytest.raises(profiler.MeasurementError, match="no such layer") as failed:
        profiler.profile(broken, jax.ShapeDtypeStruct((2,), jnp.float32))
    assert failed.value.record["run_status"] == "error"


@pytest.mark.parametrize(("keys", "message"), [
    (dict(block="nowhere_at_all:Block"), ("key 'block'", "'nowhere_at_all'")),
    (dict(block=f"{MODULE}:Missing"), ("key 'block'", "'Missing'")),
    (dict(block=f"{MODULE}:Widening"), ("key 'block'", "Widening", "(4, 16, 32) float32", "(4, 16, 64) float32")),
    (dict(block=f"{MODULE}:Upcast", dtype="bfloat16"),
     ("key 'block'", "Upcast", "(4, 16, 32) bfloat16", "(4, 16, 32) float32")),
    (dict(block=f"{MODULE}:TanhPair"), ("key 'block'", "flax.linen.Module", "api = 'nnx'")),
    (dict(block=f"{MODULE}:NeedsWidth"), ("key 'block'", "'width'")),
    (dict(block=f"{MODULE}:two_matmul_loop"), ("key 'block'", "flax.linen.Module")),
    (dict(block=f"{MODULE}:Bottleneck", program=f"{MODULE}:two_matmul_loop"), ("key 'block'", "program")),
    (dict(program=f"{MODULE}:needs_depth"), ("key 'program'", "needs_depth", "'depth'")),
])
def test_bad_user_code_is_one_line_before_any_work(keys, message):
    with pytest.raises(SpecError) as error:  # the spec's checks, then the sweep's first
        check_user_blocks(build_spec({"name": "bad", "repeats": 1, **SIZES, **keys}).points)
    assert str(error.value).startswith(message[0]) and says(str(error.value), message)


@pytest.fixture(scope="module")
def driver(user_dir):
    """One fresh interpreter (its imports of JAX, Flax and the user's module take seconds)
    for what only a new process shows. First the command line, as `python -m profiler` runs
    it, given a block that cannot be stacked: its exit status is the process's, its error
    the process's stderr. Then each block of BLOCKS checked in turn, as a sweep's driver
    does, with a line 'api block True|False' after each: whether a JAX backend exists."""
    code = textwrap.dedent(f'''
        import sys

        from profiler.cli import main

        status = main(["sweep", {str(REPO / "sweeps/smoke.toml")!r}, 'block="{MODULE}:Widening"', "--out", "never"])

        from jax._src import xla_bridge

        from profiler.processes.runner import check_user_blocks
        from profiler.spec import build_spec

        for api, block in {BLOCKS!r}:
            points = build_spec({{"name": "x", "block": "{MODULE}:" + block, "api": api, "mode": ["loop", "scan"]}}).points
            check_user_blocks(points)
            print(api, block, bool(xla_bridge._backends), flush=True)
        sys.exit(status)
    ''')
    return subprocess.run([sys.executable, "-c", code], cwd=user_dir, env=ENV, capture_output=True, text=True)


def test_a_bad_block_on_the_command_line_exits_2_with_one_line(user_dir, driver):
    assert driver.returncode == 2, driver.stderr
    assert driver.stderr.startswith("error: key 'block':") and driver.stderr.count("\n") == 1, driver.stderr
    assert not (user_dir / "never").exists()


def test_examples_run_as_their_readme_says(monkeypatch):
    """Each example spec, shrunk, validates and measures its first point in process."""
    monkeypatch.chdir(REPO)  # the README runs them from the repository root
    from examples.blocks import matmul_flops

    shrink = ["layers=[3]", "hidden=32", "batch=2", "seq=4"]
    for spec_file, block in (("prenorm_mlp", "PreNormMLP"), ("prenorm_mlp_unroll", "PreNormMLP"),
                             ("gated_nnx", "GatedMLP"), ("fori", None)):
        spec = profiler.load_spec(REPO / "examples" / f"{spec_file}.toml", shrink)
        point = spec.points[0]
        metrics = measure(workloads.build(point)[0])
        if block is None:
            assert metrics["cost_flops"] == pytest.approx(3 * 2 * 2 * 32 * 32, rel=1e-3)
        elif point.workload == "forward":
            expected = matmul_flops(block, layers=3, batch=2, seq=4, hidden=32)
            assert expected <= metrics["cost_flops"] <= 1.1 * expected
        else:
            assert metrics["cost_flops"] >= 3 * matmul_flops(block, layers=3, batch=2, seq=4, hidden=32)
    # The training step of a model from "another repository", swept over its own knobs.
    spec = profiler.load_spec(REPO / "examples" / "lm_train.toml",
                              ["num_layers=[1]", "emb_dim=[16]", "num_heads=2", "batch=2", "seq=8", "vocab=32"])
    [point] = spec.points
    assert point.knobs == {"num_layers": 1, "emb_dim": 16, "num_heads": 2, "dropout_rate": 0.1}
    metrics = measure(workloads.build(point)[0])
    # Dropout's threefry loops (docs/cost.md): counted per trip, above XLA's count of one trip.
    assert metrics["size_hlo_while_loops"] > 0 and metrics["cost_flops"] > metrics["cost_xla_flops"]
    assert metrics["mem_alias_bytes"] > 0  # the train state, donated by the step's own jit


def test_profiler_exports_the_notebook_api_without_importing_it_in_workers():
    assert callable(profiler.profile) and callable(profiler.sweep) and callable(profiler.figures)
    code = "import sys, profiler.processes.worker; print('profiler.api' in sys.modules, 'plotly' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.parametrize(("api", "block"), BLOCKS)
def test_checking_a_block_starts_no_backend_in_the_driver(driver, api, block):
    """On a GPU a started backend would hold most of the memory the measuring processes need."""
    lines = driver.stdout.splitlines()
    assert len(lines) == len(BLOCKS), driver.stderr
    assert lines[BLOCKS.index((api, block))] == f"{api} {block} False", driver.stderr


def test_folders_of_notebook_code_reach_the_measuring_process_as_an_argument():
    """Not through os.environ, which every thread of the process shares."""
    from profiler.processes.supervise import worker_environment

    path = worker_environment(Point(), ["/tmp/notebook-code"])["PYTHONPATH"].split(os.pathsep)
    assert path.index("/tmp/notebook-code") < path.index(os.getcwd())
    assert "/tmp/notebook-code" not in os.environ.get("PYTHONPATH", "")


def test_a_factory_parameter_named_like_a_measurement_key_is_refused_on_the_command_line(user_dir, capsys):
    """The command line's main() in this process, as `python -m profiler` calls it: that a
    fresh interpreter importing user code exits 2 with one line on stderr is
    test_a_bad_block_on_the_command_line_exits_2_with_one_line's (a process start costs seconds)."""
    from profiler.cli import main

    status = main(["sweep", str(REPO / "sweeps/smoke.toml"), f'program="{MODULE}:power_iteration"', "mode=scan",
                   "layers=1", "--out", "never"])
    out, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1 and out == ""
    assert err.startswith("error: key 'program':") and "'steps'" in err
    assert not (user_dir / "never").exists()


def test_a_factory_gets_its_own_defaults_and_rows_record_the_values_it_was_built_with(tmp_path, servers):
    """The spec sets batch only: hidden and layers are the factory's defaults (64, 3), not
    Point's (256, 8), and the keys it does not take (heads, seq, mode...) are null."""
    spec = build_spec({"name": "chain", "program": f"{MODULE}:chain", "batch": [2, 4], "repeats": 1})
    assert [(p.hidden, p.layers, p.batch) for p in spec.points] == [(64, 3, 2), (64, 3, 4)]
    assert profiler.run_sweep(spec, tmp_path / "res", servers=servers).ok
    rows = profiler.load(tmp_path / "res").sort_values("cfg_batch")
    assert list(rows["cfg_hidden"]) == [64, 64] and list(rows["cfg_layers"]) == [3, 3]
    # What was built: 3 matmuls of (batch, 64) by (64, 64).
    assert list(rows["cost_flops"]) == [3 * 2 * b * 64 * 64 for b in (2, 4)]
    for key in ("heads", "seq", "mode", "remat", "api", "block", "kv_heads", "vocab", "mesh"):
        assert rows[f"cfg_{key}"].isna().all(), key
    assert set(rows["cfg_steps"]) == {5} and set(rows["cfg_run"]) == {False}


def _visible_text(page: str) -> str:
    """A report's words as a reader sees them: the page without its scripts and styles,
    and the figures' series names and axis titles."""
    import json
    import re

    body = re.sub(r"<(script|style).*?</\1>", " ", page, flags=re.S)
    words = [re.sub(r"<[^>]+>", " ", body)]
    figures = re.search(r'id="figures"[^>]*>(.*?)</script>', page, re.S)
    for figure in json.loads(figures.group(1)).values() if figures else ():
        words += [str(t.get("name", "")) for t in figure["data"]]
        words += [str(v.get("title", {}).get("text", "")) for k, v in figure["layout"].items() if k.startswith("xaxis")]
    return " ".join(words)


@pytest.mark.parametrize(("grid", "x_title"), [(dict(hidden=[8, 16]), "hidden"), (dict(), None)])
def test_a_factory_without_layers_reports_with_the_key_that_varies_on_x(user_dir, tmp_path, servers, grid, x_title):
    """The issue's report crash (int of NaN layers), the labels 'nan'/'None' of keys that do
    not apply, progress lines naming keys the factory does not take."""
    from profiler.report import write_report

    spec = build_spec({"name": "nodepth", "program": f"{MODULE}:no_depth", "repeats": 1, **grid})
    assert [p.label() for p in spec.points][0].startswith("no_depth hidden=")
    assert not any("L=" in p.label() for p in spec.points)
    assert profiler.run_sweep(spec, tmp_path / "res", servers=servers).ok
    page = write_report(tmp_path / "res", tmp_path / "report.html").read_text()
    text = _visible_text(page)
    assert not re.search(r"\b(None|nan|NaN)\b", text), re.search(r".{60}\b(None|nan|NaN)\b.{20}", text)
    if x_title:  # curves against the knob; the factory built real arrays, and no caption says otherwise
        assert f"x axis: {x_title}" in text and "time_to_compiled_s" in page and "real arrays included" in text
    else:  # one point: its numbers, no curves
        assert "no curves" in text and "Medians and spread" in text and "time_to_compiled_s" not in page


def test_a_factorys_own_knobs_are_keys_axes_and_columns(user_dir, tmp_path, servers):
    """emb_dim is no spec key: a grid axis of the factory that takes it, a cfg_emb_dim
    column, null for a factory beside it that does not take it; resumed, loaded, reported."""
    from profiler.report.analysis import Analysis

    table = {"name": "knob", "program": [f"{MODULE}:knobbed", f"{MODULE}:no_depth"], "emb_dim": [8, 16],
             "act": "tanh", "repeats": 1}
    spec = build_spec(table)
    assert sorted(p.label() for p in spec.points) == [
        "knobbed batch=4 emb_dim=16 act=tanh", "knobbed batch=4 emb_dim=8 act=tanh", "no_depth hidden=16 batch=4"]
    assert profiler.run_sweep(spec, tmp_path / "res", servers=servers).ok
    rows = profiler.load(tmp_path / "res").sort_values(["cfg_program", "cfg_emb_dim"])
    assert rows["cfg_emb_dim"].tolist()[:2] == [8, 16] and rows["cfg_emb_dim"].isna().tolist() == [False, False, True]
    assert rows["cfg_act"].tolist()[:2] == ["tanh", "tanh"]
    assert rows["cost_flops"].tolist()[:2] == [2 * 4 * e * e for e in (8, 16)]  # built with each emb_dim
    assert Analysis(rows[rows["cfg_program"].str.endswith("knobbed")]).x == "cfg_emb_dim"
    again = profiler.run_sweep(build_spec(table), tmp_path / "res", resume=True, servers=servers)
    assert again.skipped == 3 and not again.rows
    with pytest.raises(SpecError) as error:
        build_spec({**table, "emb_dimm": 3})
    assert str(error.value) == "unknown key 'emb_dimm'; did you mean 'emb_dim'?"
    with pytest.raises(SpecError, match="unknown key 'emb_dim'"):  # not a knob of a block's workload
        build_spec({"name": "x", "emb_dim": 8})


def test_a_jitted_step_with_static_and_keyword_arguments_is_measured_as_it_is(user_dir, tmp_path, servers):
    """(fn, args, kwargs) with fn jitted by its own project: no jit of ours in its trace, its
    static config passed as a value, its donation kept, run for real (fresh donated buffers
    each step); swept with its knob on the x axis, and reported."""
    from profiler.measurement.measure import compile_stages
    from profiler.report import write_report

    [program] = workloads.build(Point(program=f"{MODULE}:step_factory"))
    assert program.jitted and program.kwargs["config"].width == 16
    stages = compile_stages(program)
    # The step's own equations at the top of the trace: a jit of ours around it would leave
    # one equation there, a "jit" holding them all.
    assert stages.traced.jaxpr.eqns[0].primitive.name == "dot_general" and len(stages.traced.jaxpr.eqns) > 5
    measured = measure(program, run=True, steps=2)
    assert measured["mem_alias_bytes"] == 16 * 16 * 4  # the weights, donated by the step's own jit
    assert len(measured["time_step_samples_s"]) == 2
    spec = build_spec({"name": "step", "program": f"{MODULE}:step_factory", "width": [8, 16], "repeats": 1})
    assert profiler.run_sweep(spec, tmp_path / "res", servers=servers).ok
    write_report(tmp_path / "res", tmp_path / "r.html")
    assert "x axis: width" in (tmp_path / "r.html").read_text()


def test_a_plain_function_gets_static_arguments_and_donation_from_a_dict():
    [program] = workloads.build(Point(program=f"{MODULE}:dict_factory"))
    assert not program.jitted and program.jit_kwargs == {"static_argnames": ("scale",)}
    measured = measure(program, run=True, steps=2)
    assert measured["mem_alias_bytes"] == 16 * 16 * 4 and measured["cost_flops"] > 2 * 16 * 16 * 4
    with pytest.raises(TypeError, match="already jitted"):
        workloads.user_program.program_of({"fn": jax.jit(abs), "static_argnums": (0,)}, "f")
    with pytest.raises(TypeError, match="key 'donate'"):
        workloads.user_program.program_of({"fn": abs, "donate": (0,)}, "f")


FARAWAY = '''
import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("rate",))
def step(params, x, *, key, rate):
    keep = jax.random.bernoulli(key, 1 - rate, x.shape)
    h = jnp.where(keep, x / (1 - rate), 0.0) @ params["w"] + params["b"]
    return jnp.tanh(h).sum()


def scaled(x, times):
    for _ in range(times):
        x = jnp.sin(x)
    return x
'''


def test_profile_takes_what_a_jax_function_takes(tmp_path, monkeypatch):
    """Typed keys, a pytree, keyword and static arguments, a jitted function with its own
    static argument, from a module that only the caller's sys.path reaches (not the
    current directory, not PYTHONPATH)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "faraway_model.py").write_text(FARAWAY)
    monkeypatch.syspath_prepend(str(folder))
    import faraway_model

    params = {"w": jnp.ones((8, 8)), "b": jnp.zeros(8)}
    record = profiler.profile(faraway_model.step, params, jnp.ones((4, 8)),
                              kwargs={"key": jax.random.key(0), "rate": 0.5})
    assert record["run_status"] == "ok" and record["cfg_program"].endswith(":step")
    assert record["cost_flops"] >= 2 * 4 * 8 * 8
    plain = profiler.profile(faraway_model.scaled, jax.ShapeDtypeStruct((4, 8), jnp.float32), 3,
                             static_argnums=1, run=True, steps=1)
    assert plain["cost_transcendentals"] == 3 * 4 * 8 and len(plain["time_step_samples_s"]) == 1
    sys.modules.pop("faraway_model", None)


def test_repeated_profile_calls_fork_from_one_server_each_measurement_cold():
    """The second call of a session starts no server (it forks from the first call's) and
    is still measured cold: its own process, its own backend, its stages compiled anew."""
    from profiler import api

    def tanh_layer(x, w):
        return jnp.tanh(x @ w)

    x, w = jax.ShapeDtypeStruct((4, 8), jnp.float32), jax.ShapeDtypeStruct((8, 8), jnp.float32)
    first = profiler.profile(tanh_layer, x, w)
    servers = {s._proc.pid for s in api._servers()._servers.values()}
    second = profiler.profile(tanh_layer, x, w)
    assert servers and {s._proc.pid for s in api._servers()._servers.values()} == servers
    assert second["time_server_start_s"] < 0.05 and second["run_start"] == "fork"  # a start takes seconds
    for record in (first, second):  # cold: the lowering and the compile ran (JAX's events), the backend started
        assert record["time_event_lower_s"] > 0 and record["time_event_compile_s"] > 0
        assert record["time_backend_start_s"] > 0
    assert first["run_started_utc"] != second["run_started_utc"]
    assert second["size_hlo_instructions"] == first["size_hlo_instructions"]
