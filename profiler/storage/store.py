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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from profiler.errors import StoreError
from profiler.storage import versions
from profiler.storage.files import TMP_GLOB, write_atomic
from profiler.storage.record import ARROW_SCHEMA, DETAIL_SCHEMA, SCHEMA_VERSION, knob_fields

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
        table = _read_file(path)
        found = set(table["run_schema_version"].to_pylist()) if "run_schema_version" in table.column_names else {None}
        # The detail exists since version 4, and no version since has changed it but by adding columns.
        if len(found) != 1 or not versions.reads_as_current(next(iter(found)) or 0):
            raise StoreError(f"'{path}': anatomy detail of schema version {sorted(map(str, found))}, "
                             f"this profiler reads {SCHEMA_VERSION}")
        table = _with_schema(table, DETAIL_SCHEMA)
        tables.append(table.set_column(0, "run_schema_version", pa.array([SCHEMA_VERSION] * len(table), pa.int64()))
                      .cast(DETAIL_SCHEMA))
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


def _with_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table`'s columns in `schema`'s order; a column it lacks (added to the schema after
    the file was written) is null, a column it has beyond `schema` is left out."""
    present = set(table.column_names)  # a list built afresh at every access: once, not once per column
    for name in schema.names:
        if name not in present:
            table = table.append_column(schema.field(name), pa.nulls(len(table), schema.field(name).type))
    return table.select(schema.names)


def _read_file(path: Path) -> pa.Table:
    """One Parquet file, whole. Read as one file, not through pq.read_table, which builds a
    pyarrow dataset around it: twice the time for a sweep's small parts (181 one-row parts:
    0.6 s against 1.2 s)."""
    try:
        with pq.ParquetFile(path) as file:
            return file.read()
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"'{path}': not a readable Parquet file ({str(e).splitlines()[0]})") from None


def _read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    table = _read_file(path)
    if "run_schema_version" not in table.column_names:
        raise StoreError(f"'{path}': not a profiler results file (no run_schema_version column)")
    found = set(table["run_schema_version"].to_pylist())
    if len(found) != 1 or None in found:
        raise StoreError(f"'{path}': mixed or missing schema versions {sorted(map(str, found))}")
    try:
        table = versions.upgrade(table, found.pop(), ARROW_SCHEMA)
    except ValueError as e:
        raise StoreError(f"'{path}': {e}") from None
    knobs = knob_fields(table.schema)  # a factory's own keys: beside the schema, as they come
    table = _with_schema(table, pa.schema([*ARROW_SCHEMA, *knobs]))
    try:
        table = table.cast(pa.schema([*ARROW_SCHEMA, *knobs], metadata=ARROW_SCHEMA.metadata))
    except (pa.ArrowException, ValueError) as e:
        raise StoreError(f"'{path}': columns do not match schema version {SCHEMA_VERSION} ({str(e).splitlines()[0]})") from None
    return table.select(columns) if columns else table
