"""Spec key `target`: real deviceless compiles for TPU topologies (libtpu) and described GPUs
(the CUDA plugin), from this CPU host. Both are installed by the project's extras (make
venv): nothing here skips."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from profiler import targets
from profiler.processes.forkserver import ServerPool
from profiler.processes.supervise import measure_in_subprocess, worker_environment
from profiler.spec import Point
from profiler.storage import store

TINY = dict(layers=2, hidden=32, heads=2, batch=4, seq=8, repeats=1)


@pytest.mark.parametrize("generation", sorted(targets.TPU_GENERATIONS))
def test_the_generation_table_is_what_libtpu_builds(generation):
    from jax.experimental import topologies

    gen = targets.TPU_GENERATIONS[generation]
    name = f"tpu:{generation}:{'2x2' if gen.dims == 2 else '2x2x1'}"
    target = targets.parse(name)
    chips = topologies.get_topology_desc(platform="tpu", topology_name=target.name).devices
    assert (len(chips), chips[0].device_kind) == (target.devices, gen.device_kind)
    assert target.chips == 4


def test_a_topology_of_one_host_is_its_own_host_bounds():
    from jax.experimental import topologies

    target = targets.parse("tpu:v5p:2x1x1")
    assert target.host_bounds == (2, 1, 1)
    chips = topologies.get_topology_desc(platform="tpu", topology_name=target.name,
                                         chips_per_host_bounds=target.host_bounds).devices
    assert len(chips) == target.devices == 2


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The same forward program for the CPU, a 2-chip v5e and 2 H100s, through the command line."""
    folder = tmp_path_factory.mktemp("targets") / "out"
    spec = folder.parent / "t.toml"
    spec.write_text(textwrap.dedent("""\
        name = "targets"
        mode = ["loop", "scan"]
        layers = 2
        hidden = 32
        heads = 2
        batch = 4
        seq = 8
        repeats = 1
        mesh = "2x1"
        target = ["cpu", "tpu:v5e:2x1", "gpu:h100:2"]
        """))
    done = subprocess.run([sys.executable, "-m", "profiler", "sweep", str(spec), "--out", str(folder), "--no-report"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done, store.load(folder), folder


def test_every_target_compiles_and_says_what_it_was_compiled_for(mixed):
    _, df, _ = mixed
    assert (df["run_status"] == "ok").all(), df["run_error"].tolist()
    by = df.set_index(["cfg_target", "cfg_mode"])
    assert set(df["cfg_target"]) == {"cpu", "tpu:v5e:2x1", "gpu:h100:2"}
    tpu, gpu, cpu = by.loc[("tpu:v5e:2x1", "loop")], by.loc[("gpu:h100:2", "loop")], by.loc[("cpu", "loop")]
    assert tpu["env_target_device_kind"] == "TPU v5 lite" and tpu["env_target_chips"] == 2
    assert tpu["env_target_library_version"].startswith("0.0.")
    assert tpu["mem_hbm_bytes"] == 16 * targets.GIB
    assert gpu["env_target_device_kind"] == "NVIDIA H100 80GB HBM3" and gpu["mem_hbm_bytes"] == 80 * targets.GIB
    for row in (tpu, gpu):
        assert row["mem_hbm_fits"] and row["mem_hbm_headroom_bytes"] == row["mem_hbm_bytes"] - row["mem_footprint_bytes"]
        assert row["cfg_devices"] == 2
    assert pd.isna(cpu["env_target_device_kind"]) and pd.isna(cpu["mem_hbm_fits"])


def test_a_deviceless_gpu_compile_is_costed_from_its_hlo(mixed):
    _, df, _ = mixed
    gpu = df[df["cfg_target"] == "gpu:h100:2"]
    assert gpu["cost_xla_flops"].isna().all()  # the plugin's cost_analysis() is None
    assert (gpu["cost_basis"] == "host-hlo").all() and (gpu["cost_flops"] > 0).all()
    assert (df[df["cfg_target"] != "gpu:h100:2"]["cost_basis"] == "xla").all()


def test_libtpu_stays_out_of_the_terminal(mixed):
    done, _, _ = mixed
    assert "TPU_WORKER_HOSTNAMES" not in done.stderr + done.stdout
    assert "cudart_stub" not in done.stderr + done.stdout


@pytest.fixture(scope="module")
def tpu_server():
    """Measuring processes forked from one fork server (what a sweep does): every TPU point
    below has the same environment, so one server's imports serve them all, where a fresh
    interpreter per point imported JAX each time (about 3 s of CPU each here)."""
    pool = ServerPool()
    yield pool
    pool.close()


def test_every_workload_compiles_for_a_tpu(tmp_path, tpu_server):
    points = [
        Point(workload="train", target="tpu:v5p:2x1x1", mesh="2x1", **{k: v for k, v in TINY.items() if k != "repeats"}),
        Point(workload="train", preset="llama-tiny", target="tpu:v6e:2x1", mesh="1x2", batch=2, seq=8),
        Point(workload="forward", preset="moe-tiny", target="tpu:v5e:2x1", mesh="2x1", batch=2, seq=8),
        Point(workload="decode", target="tpu:v5e:1x1", layers=2, hidden=32, heads=2, batch=2),
        Point(workload="program", program="tests.faults:ok", target="gpu:a100"),
    ]
    # The GPU point starts a fresh interpreter (a server of its own environment would cost
    # as much): the fresh start stays checked for a target, the forked one for the TPUs.
    rows = [row for point in points for row in measure_in_subprocess(
        point, servers=None if point.target.startswith("gpu:") else tpu_server).rows]
    assert [r["run_status"] for r in rows] == ["ok"] * 6, [r.get("run_error") for r in rows]
    llama = rows[1]
    assert llama["env_target_device_kind"] == "TPU v6 lite"
    # Tensor parallel over the two chips: each holds half the parameters (weight_dtype float32).
    assert llama["mem_param_device_bytes"] < llama["size_params"] * 4


def test_a_failing_target_point_keeps_its_stderr_in_run_error(tpu_server):
    # A program whose factory raises: the row's error carries what libtpu logged (in the
    # forked child's stderr file, as a sweep's fork server gives it).
    point = Point(program="tests.faults:raises", target="tpu:v5e:1x1")
    row = measure_in_subprocess(point, servers=tpu_server).rows[0]
    assert row["run_status"] == "error"
    assert "stderr:" in row["run_error"] and "TPU" in row["run_error"]


def test_a_tpu_target_without_libtpu_is_refused_before_any_work(tmp_path):
    code = ("import sys; sys.modules['libtpu'] = None\n"
            "from profiler.cli import main\n"
            "sys.exit(main(['sweep', 'sweeps/smoke.toml', 'target=\"tpu:v5e:2x2\"', 'mesh=\"4x1\"', 'run=false',"
            f" '--out', {str(tmp_path / 'out')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "libtpu" in lines[0] and "pip install -e '.[tpu]'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_cpu_point_keeps_its_id_and_its_measuring_process_starts_only_the_cpu():
    assert Point().id == Point(target="cpu").id != Point(target="tpu:v5e:1x1").id
    assert worker_environment(Point()).get("JAX_PLATFORMS") == "cpu"


def test_tpu_loops_are_counted_once_per_trip(mixed):
    # libtpu annotates no trip count: the scan's is read from its loop condition, so the
    # scanned and the looped stack cost the same FLOPs per chip, as they do on the CPU.
    _, df, _ = mixed
    tpu = df[df["cfg_target"] == "tpu:v5e:2x1"].set_index("cfg_mode")
    assert tpu.loc["scan", "cost_xla_flops"] < 0.75 * tpu.loc["loop", "cost_xla_flops"]
    assert tpu.loc["scan", "cost_flops"] == pytest.approx(tpu.loc["loop", "cost_flops"], rel=0.05)
    assert not tpu.loc["scan", "cost_exact"] and tpu.loc["loop", "cost_exact"]


def test_plan_takes_the_chips_hbm_as_its_budget(mixed):
    from profiler.analysis.forecast import ForecastError
    from profiler.analysis.plan import plan_target

    _, _, folder = mixed
    plan = plan_target(folder, ['target="tpu:v5e:2x1"'])
    assert plan.memory == 16 * targets.GIB
    assert plan_target(folder, ['target="gpu:h100:2"']).memory == 80 * targets.GIB
    with pytest.raises(ForecastError, match="gpu:h100:2, tpu:v5e:2x1"):
        plan_target(folder)
    with pytest.raises(ForecastError, match="no TPU or GPU target"):
        plan_target(folder, ['target="cpu"'])


def test_the_report_puts_the_targets_side_by_side(mixed):
    from profiler.report.analysis import Analysis
    from profiler.report.views import targets as view

    _, df, _ = mixed
    an = Analysis(df)
    table = view.targets_section(an).tables[0]
    assert table.columns == ["mode", "target", "compile", "× CPU", "footprint / device", "HBM / device", "fits"]
    rows = {(r[0].text, r[1].text): [c.text for c in r[2:]] for r in table.rows}
    assert set(rows) == {(m, t) for m in ("loop", "scan") for t in ("cpu", "tpu:v5e:2x1", "gpu:h100:2")}
    compile_s = df.set_index(["cfg_mode", "cfg_target"])["time_compile_s"]
    ratio = compile_s[("loop", "tpu:v5e:2x1")] / compile_s[("loop", "cpu")]
    assert rows[("loop", "tpu:v5e:2x1")][1] == f"{ratio:.1f}×" and rows[("loop", "cpu")][1] == "1.0×"
    assert rows[("loop", "tpu:v5e:2x1")][4] == "yes" and rows[("loop", "cpu")][4] == ""
    lines = view.targets_lines(an)
    assert any(line.startswith("Compiling for tpu:v5e:2x1 took") and "2 of 2 programs fit" in line for line in lines)


def test_the_html_report_of_a_target_sweep_renders(mixed, tmp_path):
    from profiler.report import write_report

    _, df, folder = mixed
    # CPU rows off a mesh have no cfg_mesh, TPU rows do: the report must take both.
    cpu = df[df["cfg_target"] == "cpu"].assign(cfg_mesh=None)
    page = write_report(folder, tmp_path / "r.html", rows=pd.concat([cpu, df[df["cfg_target"] != "cpu"]]))
    html = page.read_text()
    assert "Targets side by side" in html and "Compiling for tpu:v5e:2x1 took" in html
