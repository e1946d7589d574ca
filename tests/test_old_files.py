"""Results folders written by every schema version the project has had (tests/old_files/,
made from the old revisions by tests/old_files/make.py) read as rows of today's schema.

Two references that are not the upgrade code: what the next version's own code wrote for
the same sweep (each upgrade step must turn a file into that), and the configuration
today's Point gives the same spec keys (a loaded row must describe the point a sweep
would measure today).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from profiler.spec import Point
from profiler.storage import store, versions
from profiler.storage.record import ARROW_SCHEMA, COLUMN_NAMES, SCHEMA_VERSION

HERE = Path(__file__).resolve().parent / "old_files"
MAKE = HERE / "make.py"
WORKLOADS = ("forward", "train", "decode", "program")
VERSIONS = tuple(range(1, SCHEMA_VERSION + 1))
CASES = [(v, w) for v in VERSIONS for w in WORKLOADS]
IDS = [f"v{v}-{w}" for v, w in CASES]


def _make_module():
    spec = importlib.util.spec_from_file_location("old_files_make", MAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MADE = _make_module()


@pytest.fixture(scope="module", autouse=True)
def user_program(tmp_path_factory):
    """The user's program the sweeps measured, importable as they imported it."""
    folder = tmp_path_factory.mktemp("program")
    (folder / "old_files_program.py").write_text(MADE.PROGRAM)
    sys.path.insert(0, str(folder))
    yield
    sys.path.remove(str(folder))
    sys.modules.pop("old_files_program", None)


def _raw(version: int, workload: str):
    (part,) = (HERE / f"v{version}" / workload).glob("part-*.parquet")
    return pq.read_table(part)


def _spec_keys(version: int, workload: str) -> dict:
    """The spec keys the sweep of make.py gave, as Point fields."""
    text = MADE.TINY + MADE.SPECS[workload]
    if workload == "forward" and version >= MADE.ANATOMY_SINCE:
        text += "anatomy = true\n"
    keys = {k.strip(): json.loads(v.strip()) for k, v in
            (line.split("=", 1) for line in text.splitlines() if line)}
    keys.pop("repeats")
    return keys


def _cfg(row: dict) -> dict:
    """A row's configuration, nulls left out, the phase apart."""
    return {k: v for k, v in row.items() if k.startswith("cfg_") and k != "cfg_phase" and not pd.isna(v)}


def test_every_version_and_workload_has_a_folder():
    assert set(MADE.REVISIONS) == set(VERSIONS) == set(versions.HISTORY)
    for version, workload in CASES:
        assert _raw(version, workload)["run_schema_version"].to_pylist()[0] == version, (version, workload)


@pytest.mark.parametrize(("version", "workload"), CASES, ids=IDS)
def test_an_old_folder_reads_as_the_point_today_s_spec_describes(version, workload):
    rows = store.load(HERE / f"v{version}" / workload)
    assert (rows["run_schema_version"] == SCHEMA_VERSION).all() and list(rows.columns) == list(COLUMN_NAMES)
    assert set(rows["run_status"]) == {"ok"}
    assert list(rows["cfg_phase"]) == (["prefill", "decode"] if workload == "decode" else ["main"])
    expected = {f"cfg_{k}": v for k, v in Point(**_spec_keys(version, workload)).config().items() if v is not None}
    # Keys added since the newest folder here was written (target, ...) took no version
    # (the schema policy): their columns read as null in every old row.
    later = {c for c in COLUMN_NAMES if c.startswith("cfg_")} - set(_raw(SCHEMA_VERSION, workload).column_names)
    expected = {k: v for k, v in expected.items() if k not in later}
    assert rows[sorted(later)].isna().all().all()
    for row in rows.to_dict("records"):
        got = _cfg(row)
        if workload == "program" and version < 3:
            # Version 2 recorded every key on a program's row, and which keys its factory
            # took was not: the upgrade keeps them (versions.py). Today's keys agree.
            assert expected.items() <= got.items(), (expected, got)
        else:
            assert got == expected, (version, workload)
        # what was measured survives the upgrade
        assert row["time_compile_s"] > 0 and row["size_hlo_instructions"] > 0 and row["cost_xla_flops"] > 0


@pytest.mark.parametrize(("version", "workload"), CASES, ids=IDS)
def test_columns_the_version_did_not_write_read_as_null_and_the_rest_as_written(version, workload):
    raw = _raw(version, workload)
    rows = store.load(HERE / f"v{version}" / workload)
    written = set(raw.column_names)
    for name in COLUMN_NAMES:
        if name not in written and not name.startswith("cfg_"):  # cfg_: the upgrades' business
            assert rows[name].isna().all(), name
    for name in written & set(COLUMN_NAMES) - {"run_schema_version"}:
        if name.startswith("cfg_") or ARROW_SCHEMA.field(name).type != raw.schema.field(name).type:
            continue
        assert rows[name].tolist() == raw.to_pandas()[name].tolist() or rows[name].equals(raw.to_pandas()[name]), name


@pytest.mark.parametrize("version", sorted(versions.UPGRADES))
@pytest.mark.parametrize("workload", WORKLOADS)
def test_each_upgrade_step_gives_what_the_next_version_wrote(version, workload):
    """UPGRADES[v] on a file of version v: its cfg_ columns are those the code of version
    v + 1 wrote for the same sweep."""
    upgraded = versions.UPGRADES[version](_raw(version, workload), ARROW_SCHEMA).to_pylist()
    written = _raw(version + 1, workload).to_pylist()
    for before, after in zip(upgraded, written, strict=True):
        got, want = _cfg(before), _cfg(after)
        if workload == "program" and version == 2:
            assert want.items() <= got.items()  # the kept keys, as above
            continue
        if workload == "forward" and version + 1 >= MADE.ANATOMY_SINCE:
            got.pop("cfg_anatomy"), want.pop("cfg_anatomy")  # make.py turned anatomy on there
        assert got == want, (version, workload)


def test_versions_without_an_upgrade_only_added_columns():
    """A version with no upgrade from the one before it (4 to 7) dropped, renamed and
    retyped nothing: every column of the older file is in the newer one, alike."""
    for version in VERSIONS[:-1]:
        if version in versions.UPGRADES:
            continue
        for workload in WORKLOADS:
            old, new = _raw(version, workload).schema, _raw(version + 1, workload).schema
            for field in old:
                assert new.field(field.name).type == field.type, (version, workload, field.name)
            assert versions.reads_as_current(version)


@pytest.mark.parametrize("version", [v for v in VERSIONS if v >= MADE.ANATOMY_SINCE])
def test_an_old_anatomy_detail_reads(version):
    detail = store.load_detail(HERE / f"v{version}" / "forward")
    rows = store.load(HERE / f"v{version}" / "forward")
    assert len(detail) > 10 and (detail["run_schema_version"] == SCHEMA_VERSION).all()
    assert set(detail["run_point_id"]) == set(rows["run_point_id"])
    assert {"trace", "lower", "compile"} == set(detail["stage"]) and (detail["wall_s"] >= 0).all()


def test_which_versions_read_as_current():
    """Files of versions 4 to 7 read alike (only columns were added since 4); older ones
    need their upgrades, unknown and newer ones are not read."""
    assert [v for v in range(0, SCHEMA_VERSION + 3) if versions.reads_as_current(v)] == list(range(4, SCHEMA_VERSION + 1))


def test_an_anatomy_detail_of_a_newer_version_is_refused(tmp_path):
    folder = tmp_path / "res"
    shutil.copytree(HERE / f"v{SCHEMA_VERSION}" / "forward", folder)
    (detail,) = (folder / "_anatomy").glob("*.parquet")
    table = pq.read_table(detail)
    newer = pa.array([SCHEMA_VERSION + 1] * len(table), pa.int64())
    pq.write_table(table.set_column(table.column_names.index("run_schema_version"), "run_schema_version", newer), detail)
    with pytest.raises(store.StoreError, match=f"anatomy detail of schema version \\['{SCHEMA_VERSION + 1}'\\]"):
        store.load_detail(folder)


def test_a_column_added_without_a_version_bump_reads_as_null(tmp_path):
    """The schema policy: today's file without a column (written before the column was
    added) reads it as null; a file with a column this profiler does not know (written
    after one was added) reads without it. Neither changes the version."""
    raw = _raw(SCHEMA_VERSION, "train")
    assert raw["run_schema_version"].to_pylist() == [SCHEMA_VERSION]
    before = tmp_path / "before"
    before.mkdir()
    pq.write_table(raw.drop_columns(["mem_temp_bytes"]), before / "part-x-r0.parquet")
    loaded = store.load(before)
    assert loaded["mem_temp_bytes"].isna().all() and loaded["size_hlo_instructions"].notna().all()
    after = tmp_path / "after"
    after.mkdir()
    pq.write_table(raw.append_column("time_new_thing_s", pq.read_table(before / "part-x-r0.parquet")
                                     ["time_compile_s"]), after / "part-x-r0.parquet")
    assert list(store.load(after).columns) == list(COLUMN_NAMES)
