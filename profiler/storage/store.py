"""A results folder: one Parquet dataset per sweep, written so that nothing is ever lost.

Layout of a folder:
  _manifest.json            spec, resolved grid, environment, start time (written first)
  part-<point>-r<k>.parquet the rows of one (point, repeat); written aside, then renamed
  _anatomy/anatomy-<point>-r<k>.parquet
                            the anatomy's per-event detail of one (point, repeat), when
                            the point has anatomy on (record.DETAIL_COLUMNS)

Readers (`pandas.read_parquet(DIR)`, `load`) ignore names starting with `_` or `.`, so a
folder is readable at any moment of a sweep, even one killed mid-write. Existing parts
are never rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from profiler.errors import StoreError
from profiler.storage.files import TMP_GLOB, write_atomic
from profiler.storage.record import (
    ARROW_SCHEMA,
    COLUMN_NAMES,
    DETAIL_SCHEMA,
    SCHEMA_VERSION,
    knob_fields,
)

if TYPE_CHECKING:  # pandas is imported by to_pandas() when a folder is loaded, not before
    import pandas

MANIFEST = "_manifest.json"
DETAIL_FOLDER = "_anatomy"
"""Under a name readers skip: `pandas.read_parquet(DIR)` reads the rows alone."""



def part_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.parquet") if not p.name.startswith(("_", ".")))


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"'{path}': unreadable manifest ({e})") from None


@contextlib.contextmanager
def open_for_sweep(folder: str | Path, manifest: dict[str, Any], *, resume: bool) -> Iterator[Path]:
    """Hold `folder` for one sweep. A new sweep needs an empty or absent folder and writes
    the manifest before anything else; a resumed one needs a manifest of this schema
    version. (Whether its sweep is the same one is the caller's to decide, before: a
    manifest, once written, never changes.)

    Nothing is written before every check passed, and one sweep at a time holds a folder
    (an advisory lock on the folder itself, released however the process ends).
    """
    folder = Path(folder)
    _check_for_sweep(folder, manifest, resume)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"'{folder}' is in use by another running sweep; wait for it to end or choose another --out") from None
        _check_for_sweep(folder, manifest, resume)  # again: a sweep may have started in between
        if resume:
            for stale in [*folder.glob(TMP_GLOB), *(folder / DETAIL_FOLDER).glob(TMP_GLOB)]:  # half-written by a killed sweep, never renamed
                stale.unlink()
        else:
            write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2, default=str))
        yield folder
    finally:
        os.close(fd)


def _check_for_sweep(folder: Path, manifest: dict[str, Any], resume: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"'{folder}' exists and is not a folder")
    existing = read_manifest(folder)
    if not resume:
        if folder.exists() and any(not p.name.startswith(".") for p in folder.iterdir()):
            raise StoreError(f"'{folder}' already holds files; pass --resume to continue that sweep, or choose another --out")
        return
    if existing is None:
        raise StoreError(f"'{folder}' has no {MANIFEST}: nothing to resume")
    if existing.get("schema_version") != manifest.get("schema_version"):
        raise StoreError(f"'{folder}' was written with schema version {existing.get('schema_version')} and this "
                         f"version writes {manifest.get('schema_version')}; start the sweep in another --out")


def write_rows(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """Write the rows of one (point, repeat) as one part, atomically."""
    knobs = knob_fields(rows)
    text = {f.name for f in knobs if f.type == pa.string()}
    if text:  # a knob of mixed types (1 and "a") is stored as text
        rows = [{k: str(v) if k in text and v is not None else v for k, v in row.items()} for row in rows]
    table = pa.Table.from_pylist(rows, schema=pa.schema([*ARROW_SCHEMA, *knobs], metadata=ARROW_SCHEMA.metadata))
    path = Path(folder) / f"part-{name}.parquet"
    write_atomic(path, lambda p: pq.write_table(table, p))
    return path


def write_detail(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """Write the anatomy detail of one (point, repeat), atomically, beside its rows."""
    table = pa.Table.from_pylist([{"run_schema_version": SCHEMA_VERSION, **r} for r in rows], schema=DETAIL_SCHEMA)
    path = Path(folder) / DETAIL_FOLDER / f"anatomy-{name}.parquet"
    path.parent.mkdir(exist_ok=True)
    write_atomic(path, lambda p: pq.write_table(table, p))
    return path


def load_detail(folder: str | Path) -> pandas.DataFrame:
    """The anatomy detail of a results folder (empty when no point had anatomy on).
    Join it to `load`'s rows on (run_point_id, run_repeat, cfg_phase)."""
    paths = sorted(p for p in (Path(folder) / DETAIL_FOLDER).glob("*.parquet") if not p.name.startswith("."))
    if not paths:
        return DETAIL_SCHEMA.empty_table().to_pandas()
    tables = []
    for path in paths:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"'{path}': not a readable Parquet file ({str(e).splitlines()[0]})") from None
        versions = set(table["run_schema_version"].to_pylist()) if "run_schema_version" in table.column_names else {None}
        if versions != {SCHEMA_VERSION}:  # the detail exists since version 4; no upgrades yet
            raise StoreError(f"'{path}': anatomy detail of schema version {sorted(map(str, versions))}, this profiler reads {SCHEMA_VERSION}")
        tables.append(table.select(DETAIL_SCHEMA.names).cast(DETAIL_SCHEMA))
    return pa.concat_tables(tables).to_pandas()


def done(folder: Path) -> dict[tuple[str, int], list[str]]:
    """The run_status of each row, by the (point id, repeat) pairs that have rows."""
    pairs: dict[tuple[str, int], list[str]] = {}
    for path in part_files(folder):
        table = _read_part(path, columns=["run_point_id", "run_repeat", "run_status"])
        for point_id, repeat, status in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
            pairs.setdefault((point_id, repeat), []).append(status)
    return pairs


def load(folder: str | Path) -> pandas.DataFrame:
    """Every row of a results folder, in the current schema. Bad folders raise StoreError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StoreError(f"'{folder}' is not a results folder (no such directory)")
    paths = part_files(folder)
    if not paths:
        raise StoreError(f"'{folder}' holds no Parquet results")
    tables = [_read_part(p) for p in paths]
    # Parts of different factories carry different knob columns: each is null where absent.
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


# Schema upgrades: UPGRADES[v] turns a table of schema version v into version v + 1
# (renames, changed units, values for new cfg_ columns: a column added later and absent
# from an old file is otherwise read as null). Every change of SCHEMA_VERSION registers
# the upgrade from the version before it, so every results folder ever written stays
# readable; files of a newer version than this code are refused.
Upgrade = Callable[[pa.Table], pa.Table]


V2_POINT_DEFAULTS: dict[str, Any] = {
    "workload": "forward", "program": "", "block": "", "mode": "scan", "layers": 8, "hidden": 256,
    "heads": 4, "batch": 16, "seq": 32, "dtype": "float32", "unroll": 1, "remat": "none",
    "api": "linen", "run": False, "steps": 5, "devices": 1, "prompt_len": 16, "max_len": 64,
    "kv_heads": None, "vocab": 256, "mesh": "1x1", "donate": True, "kv_cache": "scanned",
    "gen_tokens": 8,
}
"""The defaults of the spec keys at schema version 2, written out here: an upgrade must
read old files the same way forever, whatever later versions make the defaults."""


def _from_v1(table: pa.Table) -> pa.Table:
    """Version 1 rows were measured before the spec keys of version 2 existed, that is
    with what were those keys' defaults at version 2 (no remat, no unroll, linen, the
    built-in block): their cfg_ columns get those values. Measured columns new in
    version 2 stay null: they were not measured."""
    for name, default in V2_POINT_DEFAULTS.items():
        column = ARROW_SCHEMA.field(f"cfg_{name}")
        if column.name not in table.column_names:
            table = table.append_column(column, pa.array([default] * len(table), column.type))
    return table


_V3_STACK_KEYS = ("block", "mode", "layers", "hidden", "heads", "batch", "seq", "dtype", "unroll", "remat", "api")
V3_WORKLOAD_KEYS: dict[str, tuple[str, ...]] = {
    "forward": _V3_STACK_KEYS,
    "train": _V3_STACK_KEYS,
    "decode": ("mode", "layers", "hidden", "heads", "batch", "dtype", "unroll", "prompt_len", "max_len",
               "kv_heads", "vocab", "mesh", "donate", "kv_cache", "gen_tokens"),
}
"""The model keys each workload read at schema version 3 (spec.WORKLOAD_KEYS then), written
out here for the same reason as V2_POINT_DEFAULTS."""
_V3_ALWAYS = ("workload", "run", "steps", "devices")


def _from_v2(table: pa.Table) -> pa.Table:
    """Version 2 rows carry every spec key's value, also where it does not apply (the
    layers of a decode-free program, the seq of a decode point). In version 3 those are
    null: each model key not read by the row's workload becomes null. A program's rows
    keep their values: which keys its factory took was not recorded."""
    if "cfg_workload" not in table.column_names:
        return table
    workloads = table["cfg_workload"].to_pylist()
    for index, name in enumerate(table.column_names):
        key = name.removeprefix("cfg_")
        if not name.startswith("cfg_") or key in _V3_ALWAYS or key not in V2_POINT_DEFAULTS:
            continue
        keep = pa.array([w not in V3_WORKLOAD_KEYS or key in V3_WORKLOAD_KEYS[w] for w in workloads])
        column = pc.if_else(keep, table[name], pa.scalar(None, table[name].type))
        table = table.set_column(index, name, column)
    return table


def _from_v3(table: pa.Table) -> pa.Table:
    """Version 3 rows had no anatomy: cfg_anatomy is false; the anatomy columns stay null."""
    column = ARROW_SCHEMA.field("cfg_anatomy")
    if column.name in table.column_names:
        return table
    return table.append_column(column, pa.array([False] * len(table), column.type))


def _from_v4(table: pa.Table) -> pa.Table:
    """Version 5 added spec keys (preset, mlp, experts, ...) that no version-4 point had:
    their absent cfg_ columns read as null, as a key that does not apply."""
    return table


def _from_v5(table: pa.Table) -> pa.Table:
    """Version 6 only added measured columns (phase times, cores): absent from version 5
    files, they read as null, as they were not measured."""
    return table


def _from_v6(table: pa.Table) -> pa.Table:
    """Version 7 added env_cpu_flags: absent from version 6 files, it reads as null (not
    recorded); machine comparisons then rest on the CPU model alone."""
    return table


UPGRADES: dict[int, Upgrade] = {1: _from_v1, 2: _from_v2, 3: _from_v3, 4: _from_v4, 5: _from_v5, 6: _from_v6}


def upgrade(table: pa.Table, version: int) -> pa.Table:
    """`table`, of schema `version`, in the current schema version (ValueError if impossible)."""
    if version > SCHEMA_VERSION:
        raise ValueError(f"schema version {version} is newer than this profiler reads "
                         f"({SCHEMA_VERSION}); update the profiler to read it")
    missing = [v for v in range(version, SCHEMA_VERSION) if v not in UPGRADES]
    if missing:
        raise ValueError(f"schema version {version} cannot be upgraded to {SCHEMA_VERSION} "
                         f"(no upgrade from version {missing[0]} in profiler/storage/store.py UPGRADES)")
    for v in range(version, SCHEMA_VERSION):
        table = UPGRADES[v](table)
    if version != SCHEMA_VERSION:
        index = table.column_names.index("run_schema_version")
        table = table.set_column(index, "run_schema_version", pa.array([SCHEMA_VERSION] * len(table), pa.int64()))
    return table


def _read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"'{path}': not a readable Parquet file ({str(e).splitlines()[0]})") from None
    if "run_schema_version" not in table.column_names:
        raise StoreError(f"'{path}': not a profiler results file (no run_schema_version column)")
    versions = set(table["run_schema_version"].to_pylist())
    if len(versions) != 1 or None in versions:
        raise StoreError(f"'{path}': mixed or missing schema versions {sorted(map(str, versions))}")
    try:
        table = upgrade(table, versions.pop())
    except ValueError as e:
        raise StoreError(f"'{path}': {e}") from None
    present = set(table.column_names)  # a list built afresh at every access: once, not once per column
    missing = [name for name in COLUMN_NAMES if name not in present]
    for name in missing:
        table = table.append_column(ARROW_SCHEMA.field(name), pa.nulls(len(table), ARROW_SCHEMA.field(name).type))
    knobs = knob_fields(table.schema)
    table = table.select([*COLUMN_NAMES, *(f.name for f in knobs)])
    try:
        table = table.cast(pa.schema([*ARROW_SCHEMA, *knobs], metadata=ARROW_SCHEMA.metadata))
    except (pa.ArrowException, ValueError) as e:
        raise StoreError(f"'{path}': columns do not match schema version {SCHEMA_VERSION} ({str(e).splitlines()[0]})") from None
    return table.select(columns) if columns else table
