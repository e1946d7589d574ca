"""A results folder: one Parquet dataset per sweep, written so that nothing is ever lost.

Layout of a folder:
  _manifest.json            spec, resolved grid, environment, start time (written first)
  part-<point>-r<k>.parquet the rows of one (point, repeat); written aside, then renamed

Readers (`pandas.read_parquet(DIR)`, `load`) ignore names starting with `_` or `.`, so a
folder is readable at any moment of a sweep, even one killed mid-write. Existing parts
are never rewritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from profiler.record import ARROW_SCHEMA, COLUMN_NAMES, SCHEMA_VERSION

MANIFEST = "_manifest.json"


class StoreError(ValueError):
    """A results folder cannot be used as asked. The message is one line."""


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


def open_for_sweep(folder: str | Path, manifest: dict[str, Any], *, resume: bool) -> Path:
    """Prepare `folder` for a sweep. A new sweep needs an empty or absent folder; a
    resumed one needs the manifest of the same spec."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"'{folder}' exists and is not a folder")
    existing = read_manifest(folder)
    if resume:
        if existing is None:
            raise StoreError(f"'{folder}' has no {MANIFEST}: nothing to resume")
        if existing.get("spec") != manifest["spec"]:
            raise StoreError(f"'{folder}' holds a sweep of a different spec; resume it with the same spec or use another --out")
        for stale in folder.glob(".*.tmp"):  # half-written by a killed sweep, never renamed
            stale.unlink()
        return folder
    if folder.exists() and any(not p.name.startswith(".") for p in folder.iterdir()):
        raise StoreError(f"'{folder}' already holds files; pass --resume to continue that sweep, or choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2, default=str)))
    return folder


def write_rows(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """Write the rows of one (point, repeat) as one part, atomically."""
    table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
    path = Path(folder) / f"part-{name}.parquet"
    _atomic_write(path, lambda p: pq.write_table(table, p))
    return path


def done(folder: Path) -> set[tuple[str, int]]:
    """(point id, repeat) pairs that already have rows."""
    pairs: set[tuple[str, int]] = set()
    for path in part_files(folder):
        table = pq.read_table(path, columns=["run_point_id", "run_repeat"])
        pairs.update(zip(table["run_point_id"].to_pylist(), table["run_repeat"].to_pylist(), strict=True))
    return pairs


def load(folder: str | Path) -> pd.DataFrame:
    """Every row of a results folder, in the current schema. Bad folders raise StoreError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StoreError(f"'{folder}' is not a results folder (no such directory)")
    paths = part_files(folder)
    if not paths:
        raise StoreError(f"'{folder}' holds no Parquet results")
    tables = [_read_part(p) for p in paths]
    return pa.concat_tables(tables).to_pandas()


def _read_part(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"'{path}': not a readable Parquet file ({str(e).splitlines()[0]})") from None
    if "run_schema_version" not in table.column_names:
        raise StoreError(f"'{path}': not a profiler results file (no run_schema_version column)")
    versions = set(table["run_schema_version"].to_pylist())
    if versions != {SCHEMA_VERSION}:
        raise StoreError(f"'{path}': schema version {sorted(versions)} cannot be read by this version ({SCHEMA_VERSION})")
    missing = [name for name in COLUMN_NAMES if name not in table.column_names]
    for name in missing:
        table = table.append_column(ARROW_SCHEMA.field(name), pa.nulls(len(table), ARROW_SCHEMA.field(name).type))
    return table.select(list(COLUMN_NAMES)).cast(ARROW_SCHEMA)
