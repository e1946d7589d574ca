"""How each result column reads on a page: title, short name, unit, whether it is drawn.

The schema (profiler/storage/record.py) says what a column holds and in which unit; this module
says how the report names it. A column without an entry here still reads well: its title
comes from its name (`time_foo_s` -> "Foo"), its unit from the schema or its suffix, and a
measurement column lands in the figure section of its prefix (views/curves.py).
Pandas-free, so that text-only commands (`check`) can use it.
"""

from __future__ import annotations

from profiler.analysis.breakdown import OVERHEAD_COLUMNS
from profiler.measurement import anatomy
from profiler.storage.record import COLUMNS

_COLUMN = {c.name: c for c in COLUMNS}
ANATOMY_COLUMNS = {name for name, _, _ in anatomy.component_docs()} | {f"time_anatomy_{s}_s" for s in anatomy.STAGES}
# Columns the statistics derive per repeat (profiler/analysis/derived.py DERIVED).
_DERIVED_DOC = {
    "time_trace_lower_s": "trace + lower, per repeat.",
    "time_to_compiled_s": "trace + lower + compile, per repeat: time to a compiled program.",
}
TITLES = {
    "time_to_compiled_s": "Time to a compiled program (trace + lower + compile)",
    "time_trace_lower_s": "Trace + lower",
    "time_trace_s": "Trace (Python → jaxpr)",
    "time_lower_s": "Lower (jaxpr → StableHLO)",
    "time_compile_s": "Compile (XLA)",
    "time_step_median_s": "Steady-state step (median)",
    "time_first_call_s": "First call of the compiled program",
    "time_prefill_s": "Prefill of a generation",
    "time_per_token_s": "Time per decoded token (median)",
    "run_tokens_per_s": "Tokens per second (generation)",
    "mem_kv_cache_bytes": "KV cache (per device)",
    "size_jaxpr_eqns": "Jaxpr equations",
    "size_stablehlo_ops": "StableHLO operations",
    "size_hlo_instructions": "Optimised HLO instructions",
    "size_hlo_bytes": "Optimised HLO text",
    "cost_flops": "FLOPs",
    "cost_transcendentals": "Transcendentals",
    "cost_bytes_accessed": "Bytes accessed",
    "cost_xla_flops": "FLOPs (XLA raw)",
    "cost_xla_transcendentals": "Transcendentals (XLA raw)",
    "cost_xla_bytes_accessed": "Bytes accessed (XLA raw)",
    "cost_analytic_flops": "Analytic matmul FLOPs",
    "mem_temp_bytes": "Temp buffers",
    "mem_footprint_bytes": "Device footprint (code + args + outputs − aliased + temp)",
    "mem_argument_bytes": "Arguments",
    "mem_output_bytes": "Outputs",
    "mem_alias_bytes": "Aliased (donated) outputs",
    "mem_generated_code_bytes": "Generated code",
    "mem_optimizer_state_bytes": "Optimizer state",
    "mem_host_rss_peak_bytes": "Peak host RSS of the measuring process",
}
# Column headers of tables, where the title is too long.
SHORT = {
    "time_trace_s": "trace", "time_lower_s": "lower", "time_compile_s": "compile",
    "time_to_compiled_s": "to compiled", "time_trace_lower_s": "trace + lower",
    "time_step_median_s": "step", "time_per_token_s": "per token", "size_jaxpr_eqns": "jaxpr eqns",
    "size_hlo_instructions": "HLO instr.", "cost_flops": "FLOPs", "cost_xla_flops": "FLOPs (XLA raw)",
    "mem_temp_bytes": "temp", "mem_footprint_bytes": "footprint",
}
# Units shown in table cells; counts are plain numbers under their column's name.
CELL_UNITS = {"s", "bytes", "FLOP"}
# Corrected cost column → XLA's raw one (loop bodies counted once).
RAW_OF = {
    "cost_flops": "cost_xla_flops",
    "cost_transcendentals": "cost_xla_transcendentals",
    "cost_bytes_accessed": "cost_xla_bytes_accessed",
}
# Measurements that get no figure of their own: parts of others, JAX's duplicate event
# timings, XLA's raw counts (one click away on the corrected figure).
NOT_PLOTTED = {
    "time_trace_lower_s", "time_event_trace_s", "time_event_lower_s", "time_event_compile_s",
    *ANATOMY_COLUMNS,  # drawn together by views/anatomy.py
    *OVERHEAD_COLUMNS,  # tabled together by views/overhead.py
    "size_stablehlo_bytes", "size_hlo_while_loops", "cost_xla_optimal_seconds",
    "cost_analytic_flops", "mem_xla_peak_bytes", *RAW_OF.values(),
}
# Metrics whose power law in the layer count the scaling table shows.
FITTED = ["time_to_compiled_s", "time_compile_s", "time_trace_lower_s",
          "size_jaxpr_eqns", "size_hlo_instructions", "mem_temp_bytes"]


def unit_of(column: str) -> str:
    if column in _COLUMN:
        return _COLUMN[column].unit
    if column.endswith("_per_s"):
        return "/s"
    if column.endswith("_s"):
        return "s"
    return "bytes" if column.endswith("_bytes") else ""


def cell_unit(column: str) -> str:
    """The unit written in a table cell: seconds, bytes and FLOPs; '' for counts."""
    unit = unit_of(column)
    return unit if unit in CELL_UNITS else ""


def doc_of(column: str) -> str:
    return _COLUMN[column].doc if column in _COLUMN else _DERIVED_DOC.get(column, "")


def title_of(column: str) -> str:
    return TITLES.get(column) or column.split("_", 1)[1].removesuffix("_s").replace("_", " ").capitalize()


def short_of(column: str) -> str:
    """A table header: the short name, else the title."""
    return SHORT.get(column, title_of(column))
