"""Results folders: Parquet round trip, atomic parts, refusal to overwrite."""

import json

import pandas as pd
import pytest

from profiler.processes.runner import check_resumable
from profiler.spec import Point
from profiler.storage import store
from profiler.storage.record import COLUMN_NAMES, SCHEMA_VERSION, make_row
from tests.messages import says

MANIFEST = {"spec": {"name": "t", "layers": [1, 2]}}


def _new_folder(path):
    with store.open_for_sweep(path, MANIFEST, resume=False) as folder:
        return folder


def _rows(point, repeat):
    return [make_row(point, run_repeat=repeat, run_status="ok", time_compile_s=0.5 + repeat,
                     size_hlo_instructions=100 * point.layers, cfg_phase="main",
                     time_step_samples_s=[0.1, 0.2], env_git_dirty=False)]


def test_round_trip_through_pandas_and_load(tmp_path):
    folder = _new_folder(tmp_path / "r")
    points = [Point(layers=1), Point(layers=2)]
    for p in points:
        for r in range(2):
            store.write_rows(folder, f"{p.id}-r{r}", _rows(p, r))
    df = pd.read_parquet(folder)  # what a user does, with no help from us
    assert len(df) == 4
    assert set(COLUMN_NAMES) == set(df.columns)
    assert sorted(df["cfg_layers"]) == [1, 1, 2, 2]
    assert (df["run_schema_version"] == SCHEMA_VERSION).all()
    ours = store.load(folder).sort_values(["cfg_layers", "run_repeat"]).reset_index(drop=True)
    assert list(ours["size_hlo_instructions"]) == [100, 100, 200, 200]
    assert list(ours["time_compile_s"]) == [0.5, 1.5, 0.5, 1.5]
    assert list(ours["time_step_samples_s"][0]) == [0.1, 0.2]
    assert ours["time_trace_s"].isna().all()  # absent values stay null, never invented
    assert set(store.done(folder)) == {(p.id, r) for p in points for r in range(2)}
    assert json.loads((folder / "_manifest.json").read_text()) == MANIFEST


def test_unknown_column_is_rejected():
    with pytest.raises(TypeError):
        make_row(Point(), time_compile_seconds=1.0)


def test_new_sweep_refuses_a_used_folder_and_leaves_it_intact(tmp_path):
    folder = _new_folder(tmp_path / "r")
    store.write_rows(folder, "a", _rows(Point(), 0))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(store.StoreError, match="--resume"):
        _new_folder(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_half_written_parts_are_invisible(tmp_path):
    folder = _new_folder(tmp_path / "r")
    store.write_rows(folder, "a", _rows(Point(), 0))
    (folder / ".part-b.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert len(pd.read_parquet(folder)) == 1
    assert len(store.load(folder)) == 1


def test_a_folder_is_resumed_by_one_sweep_at_a_time_and_of_its_schema_version(tmp_path):
    manifest = {"schema_version": SCHEMA_VERSION, "spec": {"name": "t"}, "points": [{"id": "a"}]}
    folder = tmp_path / "r"
    with store.open_for_sweep(folder, manifest, resume=False):
        with pytest.raises(store.StoreError, match="in use by another running sweep"), \
                store.open_for_sweep(folder, manifest, resume=True):
            pass
    with store.open_for_sweep(folder, manifest, resume=True):
        pass
    with pytest.raises(store.StoreError, match="schema version"), \
            store.open_for_sweep(folder, {**manifest, "schema_version": SCHEMA_VERSION + 1}, resume=True):
        pass
    with pytest.raises(store.StoreError, match="nothing to resume"), \
            store.open_for_sweep(tmp_path / "empty", manifest, resume=True):
        pass
    assert json.loads((folder / "_manifest.json").read_text()) == manifest


def test_resume_may_change_limits_but_not_what_is_measured(tmp_path):
    """The runner's decision (the store only keeps manifests)."""
    manifest = {"schema_version": SCHEMA_VERSION, "spec": {"name": "t", "layers": [1, 2], "timeout_s": 10.0},
                "points": [{"id": "a"}, {"id": "b"}]}
    longer = {**manifest, "spec": {**manifest["spec"], "timeout_s": 60.0, "max_rss_gb": 4.0}}
    check_resumable(tmp_path, manifest, longer)
    refused = [
        ({**manifest, "spec": {**manifest["spec"], "layers": [1, 3]}}, ("different spec", "layers", "[1, 2]", "[1, 3]")),
        ({**manifest, "spec": {**manifest["spec"], "repeats": 5}}, ("different spec", "repeats", "5")),
        ({**manifest, "points": [{"id": "a"}, {"id": "c"}]}, ("identifies points differently",)),
    ]
    for other, message in refused:
        with pytest.raises(store.StoreError) as error:
            check_resumable(tmp_path, manifest, other)
        assert says(str(error.value), message)


def test_a_version_1_folder_loads_with_the_defaults_of_later_keys(tmp_path):
    """A results file of schema 1 (before remat, unroll, api... existed) reads as rows of
    the current schema: new cfg_ columns hold the defaults it was measured with (those of
    schema version 2, not whatever Point's defaults are today), new measured columns are null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1_columns = ["run_point_id", "run_repeat", "run_status", "cfg_workload", "cfg_mode", "cfg_layers",
                  "cfg_hidden", "cfg_phase", "time_compile_s", "cost_xla_flops"]
    row = make_row(Point(mode="scan", layers=4), run_repeat=0, run_status="ok", cfg_phase="main",
                   time_compile_s=0.25, cost_xla_flops=1e6)
    v1 = {name: [row[name]] for name in v1_columns} | {"run_schema_version": [1]}
    folder = tmp_path / "v1"
    folder.mkdir()
    pq.write_table(pa.table(v1), folder / "part-old-r0.parquet")
    df = store.load(folder)
    assert df.loc[0, "run_schema_version"] == SCHEMA_VERSION
    assert (df.loc[0, "cfg_remat"], df.loc[0, "cfg_unroll"], df.loc[0, "cfg_api"]) == ("none", 1, "linen")
    assert df.loc[0, "time_compile_s"] == 0.25 and df.loc[0, "cfg_layers"] == 4
    assert pd.isna(df.loc[0, "cost_flops"])


def test_the_version_1_upgrade_does_not_follow_todays_defaults(tmp_path, monkeypatch):
    """Changing a default of Point must not change how old files read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from profiler.spec import Point as CurrentPoint

    monkeypatch.setattr(CurrentPoint.model_fields["remat"], "default", "full")
    folder = tmp_path / "v1"
    folder.mkdir()
    pq.write_table(pa.table({"run_schema_version": [1], "run_point_id": ["p"], "run_repeat": [0],
                             "run_status": ["ok"], "cfg_layers": [4]}), folder / "part-old-r0.parquet")
    assert store.load(folder).loc[0, "cfg_remat"] == "none"


def test_a_version_2_folder_reads_with_null_keys_where_they_do_not_apply(tmp_path):
    """Version 2 wrote every key's value on every row; version 3 nulls the model keys a
    row's workload does not read. A program's rows keep theirs (its factory's keys were
    not recorded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"run_schema_version": [2, 2, 2], "run_point_id": ["f", "d", "p"], "run_repeat": [0, 0, 0],
            "run_status": ["ok"] * 3, "cfg_workload": ["forward", "decode", "program"],
            "cfg_program": ["", "", "m:f"], "cfg_seq": [32, 32, 32], "cfg_api": ["linen"] * 3,
            "cfg_vocab": [256, 1024, 256], "cfg_layers": [4, 2, 8], "cfg_steps": [5, 5, 5],
            "cfg_phase": ["main", "decode", "main"]}
    folder = tmp_path / "v2"
    folder.mkdir()
    pq.write_table(pa.table(rows), folder / "part-old-r0.parquet")
    df = store.load(folder).set_index("cfg_workload")
    assert df.loc["forward", "cfg_seq"] == 32 and pd.isna(df.loc["forward", "cfg_vocab"])
    assert pd.isna(df.loc["forward", "cfg_program"]) and df.loc["program", "cfg_program"] == "m:f"
    assert df.loc["decode", "cfg_vocab"] == 1024 and pd.isna(df.loc["decode", "cfg_seq"])
    assert pd.isna(df.loc["decode", "cfg_api"]) and df.loc["decode", "cfg_layers"] == 2
    assert (df.loc["program", "cfg_seq"], df.loc["program", "cfg_layers"]) == (32, 8)
    assert list(df["cfg_steps"]) == [5, 5, 5] and list(df["cfg_phase"]) == ["main", "decode", "main"]
    assert (df["run_schema_version"] == SCHEMA_VERSION).all()
