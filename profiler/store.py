"""A results folder: one Parquet dataset per sweep, written so that nothing is ever lost.

Layout of a folder:
  _manifest.json            spec, resolved grid, environment, start time (written first)
  part-<point>-r<k>.parquet the rows of one (point, repeat); written aside, then renamed

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
import pyarrow.parquet as pq

from profiler.files import TMP_GLOB, write_atomic
from profiler.record import ARROW_SCHEMA, COLUMN_NAMES, SCHEMA_VERSION
from profiler.spec import LIMIT_KEYS

if TYPE_CHECKING:  # pandas is imported by to_pandas() when a folder is loaded, not before
    import pandas

MANIFEST = "_manifest.json"


class StoreError(ValueError):
    """A results folder cannot be used as asked. The message is one line."""



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
    the manifest before anything else; a resumed one needs the manifest of the same spec.

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
            for stale in folder.glob(TMP_GLOB):  # half-written by a killed sweep, never renamed
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
    theirs, ours = existing.get("spec") or {}, _jsonable(manifest["spec"])
    changed = sorted(k for k in theirs.keys() | ours.keys() if k not in LIMIT_KEYS and theirs.get(k) != ours.get(k))
    if changed:
        diffs = "; ".join(f"{k} = {_show(theirs.get(k))} there, {_show(ours.get(k))} here" for k in changed[:3])
        raise StoreError(f"'{folder}' holds a sweep of a different spec ({diffs}); resume with the same spec or choose another --out")
    if "points" in manifest and {p["id"] for p in existing.get("points", [])} != {p["id"] for p in manifest["points"]}:
        # Same spec, other ids: a newer profiler added a point key. Resuming would measure
        # every point again under its new id, next to its old rows.
        raise StoreError(f"'{folder}' was started by a version of the profiler that identifies points "
                         "differently; start the sweep in another --out")


def _jsonable(value: Any) -> Any:
    """`value` as the manifest stores it, so that a comparison sees what a reader sees."""
    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


def write_rows(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """Write the rows of one (point, repeat) as one part, atomically."""
    table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
    path = Path(folder) / f"part-{name}.parquet"
    write_atomic(path, lambda p: pq.write_table(table, p))
    return path


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
    return pa.concat_tables(tables).to_pandas()


# Schema upgrades: UPGRADES[v] turns a table of schema version v into version v + 1
# (renames, changed units, values for new cfg_ columns: a column added later and absent
# from an old file is otherwise read as null). Every change of SCHEMA_VERSION registers
# the upgrade from the version before it, so every results folder ever written stays
# readable; files of a newer version than this code are refused.
Upgrade = Callable[[pa.Table], pa.Table]


def _from_v1(table: pa.Table) -> pa.Table:
    """Version 1 rows were measured before the spec keys of version 2 existed, that is
    with what are now those keys' defaults (no remat, no unroll, linen, the built-in
    block): their cfg_ columns get the defaults. Measured columns new in version 2 stay
    null: they were not measured."""
    from profiler.spec import Point

    for name, field in Point.model_fields.items():
        column = ARROW_SCHEMA.field(f"cfg_{name}")
        if column.name not in table.column_names:
            table = table.append_column(column, pa.array([field.default] * len(table), column.type))
    return table


# Version 2 -> 3 added spec keys (preset, mlp, experts, ...) with defaults, like 1 -> 2.
UPGRADES: dict[int, Upgrade] = {1: _from_v1, 2: _from_v1}


def upgrade(table: pa.Table, version: int) -> pa.Table:
    """`table`, of schema `version`, in the current schema version (ValueError if impossible)."""
    if version > SCHEMA_VERSION:
        raise ValueError(f"schema version {version} is newer than this profiler reads "
                         f"({SCHEMA_VERSION}); update the profiler to read it")
    missing = [v for v in range(version, SCHEMA_VERSION) if v not in UPGRADES]
    if missing:
        raise ValueError(f"schema version {version} cannot be upgraded to {SCHEMA_VERSION} "
                         f"(no upgrade from version {missing[0]} in profiler/store.py UPGRADES)")
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
    missing = [name for name in COLUMN_NAMES if name not in table.column_names]
    for name in missing:
        table = table.append_column(ARROW_SCHEMA.field(name), pa.nulls(len(table), ARROW_SCHEMA.field(name).type))
    table = table.select(list(COLUMN_NAMES))
    try:
        table = table.cast(ARROW_SCHEMA)
    except (pa.ArrowException, ValueError) as e:
        raise StoreError(f"'{path}': columns do not match schema version {SCHEMA_VERSION} ({str(e).splitlines()[0]})") from None
    return table.select(columns) if columns else table
