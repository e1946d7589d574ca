"""The schema's version history, in one place, and the upgrades that read a results file
of an older version as rows of the current one.

A version changes only for a change that old files need upgrading for: a renamed,
retyped or re-meant column. A new column does not change it: a file without the column
reads it as null (store.load), and the column's doc in record.COLUMNS says what null means
in old rows. So a version has an upgrade from the version before it, except versions 5 to
7, which came before that rule and only added columns: their files read alike.

An upgrade holds the values it needs as they were at its version (the keys' defaults at
version 2, the keys each workload read at version 3), so that changing a default later
does not change how old rows read. Old files written by every version are in
tests/old_files/ (tests/test_old_files.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 7

HISTORY: dict[int, str] = {
    1: "first version: forward workload, XLA's raw costs and memory.",
    2: "spec keys unroll, remat, api, block, program and the decode keys (their cfg_ columns); corrected "
       "costs (cost_flops, cost_transcendentals, cost_bytes_accessed, cost_exact, cost_analytic_flops); "
       "mem_footprint_bytes, mem_optimizer_state_bytes, mem_kv_cache_bytes; decode timings; CPU time per "
       "phase; run_jobs, run_start. Upgrade: the new cfg_ columns hold the version-2 defaults.",
    3: "a row's cfg_ columns describe its point only: those of keys that do not apply to its workload are "
       "null (a program: the model keys its factory does not take). Upgrade: the keys a workload did not "
       "read at version 3 become null.",
    4: "compile-time anatomy (spec key anatomy): cfg_anatomy, time_anatomy_*, the component columns and the "
       "per-event detail in _anatomy/. Upgrade: cfg_anatomy is false in older rows.",
    5: "added columns only: spec keys preset, mlp, experts, top_k, capacity_factor, weight_dtype (null where "
       "they do not apply, so in older rows); mesh for train; size_params and the per-device memory columns.",
    6: "added columns only: the phase columns (time_server_start_s ... time_process_exit_s), run_cpus, "
       "run_cpu_affinity.",
    7: "added columns only: env_cpu_flags. From here on a new column keeps the version.",
}
"""What each version changed. A new version is a new entry here and, when files of the
version before need changing, an entry in UPGRADES from it."""

Upgrade = Callable[[pa.Table, pa.Schema], pa.Table]
"""(a table of version v, the current Arrow schema) -> the table as version v + 1."""


V2_POINT_DEFAULTS: dict[str, Any] = {
    "workload": "forward", "program": "", "block": "", "mode": "scan", "layers": 8, "hidden": 256,
    "heads": 4, "batch": 16, "seq": 32, "dtype": "float32", "unroll": 1, "remat": "none",
    "api": "linen", "run": False, "steps": 5, "devices": 1, "prompt_len": 16, "max_len": 64,
    "kv_heads": None, "vocab": 256, "mesh": "1x1", "donate": True, "kv_cache": "scanned",
    "gen_tokens": 8,
}
"""The defaults of the spec keys at schema version 2, written out here: an upgrade must
read old files the same way forever, whatever later versions make the defaults."""


def _from_v1(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Version 1 rows were measured before the spec keys of version 2 existed, that is
    with what were those keys' defaults at version 2 (no remat, no unroll, linen, the
    built-in block): their cfg_ columns get those values. Measured columns new in
    version 2 stay null: they were not measured."""
    for name, default in V2_POINT_DEFAULTS.items():
        column = schema.field(f"cfg_{name}")
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


def _from_v2(table: pa.Table, schema: pa.Schema) -> pa.Table:
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


def _from_v3(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Version 3 rows had no anatomy: cfg_anatomy is false; the anatomy columns stay null."""
    column = schema.field("cfg_anatomy")
    if column.name in table.column_names:
        return table
    return table.append_column(column, pa.array([False] * len(table), column.type))


UPGRADES: dict[int, Upgrade] = {1: _from_v1, 2: _from_v2, 3: _from_v3}
"""UPGRADES[v] turns a table of version v into version v + 1. A version without an entry
(4, 5, 6) only added columns: its files need nothing but the nulls store.load gives
every missing column."""


def upgrade(table: pa.Table, version: int, schema: pa.Schema) -> pa.Table:
    """`table`, written at schema `version`, in SCHEMA_VERSION (ValueError if impossible).
    Columns it lacks are left to the caller (store.load reads them as null)."""
    if version > SCHEMA_VERSION:
        raise ValueError(f"schema version {version} is newer than this profiler reads "
                         f"({SCHEMA_VERSION}); update the profiler to read it")
    if version not in HISTORY:
        raise ValueError(f"schema version {version} cannot be upgraded to {SCHEMA_VERSION} "
                         f"(no such version in profiler/storage/versions.py HISTORY)")
    for v in range(version, SCHEMA_VERSION):
        if v in UPGRADES:
            table = UPGRADES[v](table, schema)
    if version != SCHEMA_VERSION:
        index = table.column_names.index("run_schema_version")
        table = table.set_column(index, "run_schema_version", pa.array([SCHEMA_VERSION] * len(table), pa.int64()))
    return table


def reads_as_current(version: int) -> bool:
    """Whether a file of `version` needs no upgrade: only columns were added since."""
    return version in HISTORY and version <= SCHEMA_VERSION and not any(
        v in UPGRADES for v in range(version, SCHEMA_VERSION))
