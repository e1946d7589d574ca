"""Compile-time anatomy: real profiled compiles of tiny programs, and the sweep path."""

from __future__ import annotations

import hashlib
import json

import jax
import jax.numpy as jnp
import pandas as pd
import pytest

from profiler.measurement import anatomy
from profiler.processes.runner import run_sweep
from profiler.spec import Point, build_spec
from profiler.storage import store
from profiler.storage.record import COLUMN_NAMES, DETAIL_SCHEMA, make_row
from profiler.workloads import Program

XLA = [c for c in COLUMN_NAMES if c.startswith("time_xla_")]
NAMED = [c for c in XLA if c != anatomy.column("compile", anatomy.UNATTRIBUTED)]


def _program(fn, *shapes) -> Program:
    args = tuple(jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes)
    return Program(fn=fn, args=args, make_args=lambda: args)


def _small(x):
    return jnp.tanh(x) + 1


def _wide(x):
    # Eight element-wise chains XLA cannot merge into one another: eight kernels to emit.
    return tuple(jnp.sin(x * (i + 1)) * jnp.exp(x - i) for i in range(8))


def _many_dots(x):
    # Many small computations codegen has nothing to do for (dots are library calls on
    # CPU) and that XLA may not merge (the barriers): each a buffer and an op to schedule.
    # 2000 of them: at 1000, scheduling and buffers (0.08 s) led the client's conversion
    # (0.05-0.07 s) by too little to decide on a loaded machine; they grow superlinearly.
    for _ in range(2000):
        x = jax.lax.optimization_barrier(x @ x)
    return x


def _slow_python(x):
    sum(i * i for i in range(200_000))  # the user's own Python, run while tracing
    return x + 1


@pytest.fixture(scope="module")
def profiles():
    """Anatomies in one process, after a warm-up compile: a process's first compile also
    pays one-time start-up (LLVM's, XLA's) that belongs to no program."""
    anatomy.profile(_program(_small, (8, 8)))
    return {name: anatomy.profile(_program(fn, (8, 8)))
            for name, fn in (("small", _small), ("wide", _wide), ("dots", _many_dots), ("python", _slow_python))}


def test_components_add_up_to_the_profiled_compile(profiles):
    for name, (columns, _) in profiles.items():
        wall = columns["time_anatomy_compile_s"]
        named = sum(columns[c] for c in NAMED)
        # Disjoint: the named components never exceed the wall time they split, and the
        # unattributed rest makes up the difference.
        assert named <= wall * 1.001 + 1e-4, name
        assert columns[anatomy.column("compile", anatomy.UNATTRIBUTED)] == pytest.approx(wall - named, abs=1e-6)
        assert all(columns[c] >= 0 for c in NAMED), name


# How much of the compile the events cover, and which component grows most, are timings
# of parts of one compile: a test running beside them shifts them. They run alone, in
# `make test`'s serial phase; the structure they rest on is checked above and below.
@pytest.mark.serial
def test_events_cover_nearly_all_of_a_larger_compile(profiles):
    # Past the fixed ~10-30 ms of JAX's Python around the backend, events cover nearly all.
    for name in ("wide", "dots"):
        columns = profiles[name][0]
        assert sum(columns[c] for c in NAMED) >= 0.9 * columns["time_anatomy_compile_s"], name


def _calls(profiles, name):
    detail = pd.DataFrame(profiles[name][1])
    return detail[detail["stage"] == "compile"].groupby("component")["calls"].sum().to_dict()


def test_many_kernels_are_many_code_generation_events(profiles):
    # Eight unmergeable chains: the emitters and the LLVM JIT run once per kernel, so their
    # events (counted, not timed) multiply against the one-kernel program's.
    small, wide = _calls(profiles, "small"), _calls(profiles, "wide")
    assert wide["kernel_emission"] >= 4 * small["kernel_emission"]
    assert wide["llvm"] >= 4 * small["llvm"]


def test_many_small_computations_emit_no_kernels_and_are_scheduled(profiles):
    # Dots are library calls on CPU: no fusion kernel to emit, however many there are;
    # scheduling and buffer assignment run over all of them.
    dots = _calls(profiles, "dots")
    assert "kernel_emission" not in dots and dots["scheduling_buffers"] >= 1
    events = {d["event"] for d in profiles["dots"][1] if d["component"] == "scheduling_buffers"}
    assert "CpuCompiler::RunBackend" in events


def test_detail_adds_up_to_the_columns(profiles):
    for columns, detail in profiles.values():
        df = pd.DataFrame(detail)
        for stage in anatomy.STAGES:
            per_component = df[df["stage"] == stage].groupby("component")["wall_s"].sum()
            for component, seconds in per_component.items():
                assert columns[anatomy.column(stage, component)] == pytest.approx(seconds, rel=1e-9, abs=1e-9)
        compile_events = df[df["stage"] == "compile"]
        # A thread's self time is at least the wall share it gets, and total includes self.
        assert (compile_events["self_s"] >= compile_events["wall_s"] - 1e-9).all()
        assert (compile_events["total_s"] >= compile_events["self_s"] - 1e-9).all()
        assert "copy-insertion" in set(compile_events["event"])


def _growth(profiles, name):
    small, big = profiles["small"][0], profiles[name][0]
    return {c: big[c] - small[c] for c in NAMED}


@pytest.mark.serial
def test_many_kernels_grow_code_generation(profiles):
    growth = _growth(profiles, "wide")
    codegen = growth["time_xla_llvm_s"] + growth["time_xla_kernel_emission_s"]
    assert codegen > 0.5 * sum(max(g, 0) for g in growth.values())
    assert max(growth, key=growth.get) in ("time_xla_llvm_s", "time_xla_kernel_emission_s")


@pytest.mark.serial
def test_many_small_computations_grow_scheduling_and_buffers(profiles):
    growth = _growth(profiles, "dots")
    assert max(growth, key=growth.get) == "time_xla_scheduling_buffers_s"
    assert growth["time_xla_llvm_s"] < growth["time_xla_scheduling_buffers_s"] / 5


def test_the_users_python_is_billed_to_the_user(profiles):
    _, detail = profiles["python"]
    modules = {d["event"] for d in detail if d["stage"] == "trace" and d["component"] == "user"}
    assert any(m.endswith("test_anatomy.py") for m in modules)
    assert any(d["component"] == "jax" and d["event"].startswith("jax/") for d in detail if d["stage"] == "trace")
    assert not any(d["event"].endswith("test_anatomy.py") for d in detail if d["component"] != "user")


@pytest.mark.serial
def test_the_users_python_is_the_largest_part_of_its_trace(profiles):
    columns, _ = profiles["python"]
    trace = {c: columns[anatomy.column("trace", c)] for c, _ in anatomy.PYTHON_COMPONENTS}
    assert max(trace, key=trace.get) == "user"


def test_detail_round_trips_and_leaves_the_rows_readable(tmp_path, profiles):
    point = Point(layers=1, anatomy=True)
    columns, detail = profiles["small"]
    rows = [{"run_id": "r", "run_point_id": point.id, "run_repeat": 0, "cfg_phase": "main", **d} for d in detail]
    store.write_detail(tmp_path, f"{point.id}-r0", rows)
    store.write_rows(tmp_path, f"{point.id}-r0", [make_row(point, run_status="ok", cfg_phase="main", **columns)])
    back = store.load_detail(tmp_path)
    assert list(back.columns) == DETAIL_SCHEMA.names
    assert len(back) == len(detail)
    original = pd.DataFrame(rows).sort_values(["stage", "component", "event"]).reset_index(drop=True)
    back = back.sort_values(["stage", "component", "event"]).reset_index(drop=True)
    for column in ("event", "component", "calls", "self_s", "wall_s"):
        assert back[column].tolist() == original[column].tolist()
    rows_back = pd.read_parquet(tmp_path)  # the detail folder is not mistaken for rows
    assert len(rows_back) == 1 and rows_back["time_xla_llvm_s"].iloc[0] == columns["time_xla_llvm_s"]


def test_anatomy_off_leaves_rows_and_ids_as_they_were(tmp_path):
    plain = Point(layers=1, hidden=32, heads=2, batch=2, seq=8)
    # The id of a point without anatomy (on the CPU target) is the hash it had before the
    # key existed (nor the later keys knobs, jax, flax and target, at their defaults).
    before = json.dumps({k: v for k, v in plain.model_dump().items()
                         if k not in ("anatomy", "knobs", "jax", "flax", "target")},
                        sort_keys=True)
    assert plain.id == hashlib.sha256(before.encode()).hexdigest()[:16]
    assert plain.id != Point(**{**plain.model_dump(), "anatomy": True}).id
    spec = build_spec({"name": "a", "mode": "loop", "layers": 1, "hidden": 32, "heads": 2, "batch": 2,
                       "seq": 8, "repeats": 1, "anatomy": [False, True]})
    result = run_sweep(spec, tmp_path / "r", jobs=1)
    assert result.ok, result.failures
    df = store.load(tmp_path / "r").set_index("cfg_anatomy")
    off, on = df.loc[False], df.loc[True]
    assert pd.isna(off[[*XLA, "time_anatomy_compile_s", "run_anatomy_error"]]).all()
    assert pd.isna(on["run_anatomy_error"])
    assert on["time_anatomy_compile_s"] > 0
    assert sum(on[c] for c in XLA) == pytest.approx(on["time_anatomy_compile_s"])
    detail = store.load_detail(tmp_path / "r")
    assert set(detail["run_point_id"]) == {on["run_point_id"]}
    assert set(detail["stage"]) == set(anatomy.STAGES)


def _synthetic_rows() -> pd.DataFrame:
    """Rows whose components follow known laws: copy insertion a·L^1.5, llvm flat."""
    rows = []
    for layers in (2, 8, 32, 128):
        for repeat in range(2):
            point = Point(layers=layers, mode="loop", anatomy=True)
            parts = {"time_xla_copy_insertion_s": 0.001 * layers**1.5, "time_xla_llvm_s": 0.5,
                     "time_xla_client_s": 0.01 * layers, "time_xla_unattributed_s": 0.01}
            rows.append(make_row(point, run_status="ok", cfg_phase="main", run_repeat=repeat,
                                 time_compile_s=sum(parts.values()), time_anatomy_compile_s=sum(parts.values()), **parts))
    return pd.DataFrame(rows)


def test_report_finds_the_fastest_growing_component():
    from profiler.report import anatomy_figures

    rows = _synthetic_rows()
    fits = anatomy_figures.fits(rows).set_index("metric")
    assert fits.loc["time_xla_copy_insertion_s", "k"] == pytest.approx(1.5)
    assert fits.loc["time_xla_llvm_s", "k"] == pytest.approx(0.0, abs=1e-9)
    [finding] = anatomy_figures.fastest(anatomy_figures.fits(rows))
    assert finding.component == "time_xla_copy_insertion_s" and finding.layers == 128
    total = 0.001 * 128**1.5 + 0.5 + 1.28 + 0.01
    assert finding.share == pytest.approx(0.001 * 128**1.5 / total)
    assert "copy insertion grows fastest, as L^1.50" in finding.sentence()
    figures = anatomy_figures.stacked_areas(rows)
    assert list(figures) == ["loop"] and len(figures["loop"].data) == 4


def test_the_report_side_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, profiler.report.anatomy_figures, profiler.storage.store; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compare_names_the_component_that_moved():
    from profiler.report import anatomy_figures

    a = _synthetic_rows()
    b = a.copy()
    b["time_xla_copy_insertion_s"] *= 2  # "a new JAX whose copy insertion is twice as slow"
    table = anatomy_figures.moved(a, b)
    top = table.iloc[0]
    assert top["metric"] == "time_xla_copy_insertion_s" and top["cfg_layers"] == 128
    assert top["ratio"] == pytest.approx(2.0)
    unchanged = table[table["metric"] == "time_xla_llvm_s"]
    assert (unchanged["ratio"] == 1.0).all() and (unchanged["delta_s"] == 0).all()


def test_version_3_rows_read_as_anatomy_off(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from profiler.storage.record import ARROW_SCHEMA

    point = Point(layers=3)
    table = pa.Table.from_pylist([make_row(point, run_status="ok", cfg_phase="main", time_compile_s=1.5)],
                                 schema=ARROW_SCHEMA)
    new_in_4 = [c for c in table.column_names if c == "cfg_anatomy" or c.startswith(("time_xla_", "time_anatomy_"))
                or c in anatomy_columns() or c == "run_anatomy_error"]
    table = table.drop_columns(new_in_4)
    table = table.set_column(table.column_names.index("run_schema_version"), "run_schema_version", pa.array([3]))
    pq.write_table(table, tmp_path / "part-old.parquet")
    df = store.load(tmp_path)
    assert df["cfg_anatomy"].tolist() == [False] and df["time_compile_s"].tolist() == [1.5]
    assert df["time_xla_llvm_s"].isna().all()


def anatomy_columns() -> set[str]:
    return {name for name, _, _ in anatomy.component_docs()}


def test_the_report_page_has_the_anatomy_section():
    from profiler.report import anatomy_figures
    from profiler.report.render import report_html

    rows = _synthetic_rows()
    detail = pd.DataFrame([{"run_schema_version": 4, "run_id": "r", "run_point_id": r["run_point_id"],
                            "run_repeat": r["run_repeat"], "cfg_phase": "main", "stage": "compile",
                            "component": "copy_insertion", "event": "copy-insertion", "calls": 1,
                            "self_s": r["time_xla_copy_insertion_s"], "total_s": r["time_xla_copy_insertion_s"],
                            "wall_s": r["time_xla_copy_insertion_s"], "threads": 1} for _, r in rows.iterrows()])
    rows.attrs[anatomy_figures.DETAIL_ATTR] = detail
    page = report_html(rows)
    assert "Compile-time anatomy" in page and "fig-anatomy-loop" in page and "fig-anatomy-trace-loop" not in page
    assert "copy insertion grows fastest, as L^1.50" in page  # the summary's sentence
    assert "copy-insertion" in page  # the top events table, from the detail
    assert "fig-time_compile_s" in page and "fig-time_xla_llvm_s" not in page  # components not drawn one by one


def test_compare_page_lists_the_component_that_moved_first_per_point():
    from profiler.analysis import stats
    from profiler.gates import compare

    a = _synthetic_rows()
    b = a.copy()
    b["time_xla_copy_insertion_s"] *= 2
    table = compare._anatomy_moved(a, b, stats.common_config_columns(a, b))
    by_layers = {}
    for row in table.rows:
        by_layers.setdefault(row[0].text, []).append(row)
    assert sorted(by_layers, key=int) == ["2", "8", "32", "128"]
    for rows in by_layers.values():  # the doubled component leads each point, the others did not move
        assert rows[0][1].text == "copy insertion" and rows[0][5].text.startswith("2.00×")
        assert all(r[4].text.startswith("+0 s") for r in rows[1:])
    assert compare._anatomy_moved(a.assign(time_anatomy_compile_s=None), b, ["cfg_layers"]) is None
