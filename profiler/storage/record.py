"""The record: one flat row per (point, phase, repeat). Its columns are the Parquet schema.

Prefixes: `run_` identity and outcome, `cfg_` configuration, `time_` seconds, `size_`
program sizes, `cost_` FLOPs/bytes, `mem_` bytes, `env_` environment. Units are in the
names. XLA's raw numbers keep their own columns (`cost_xla_*`, `mem_xla_*`).

The schema's version and its history are in profiler/storage/versions.py: a new column
keeps the version (old files read it as null; say in its doc what null means there); a
renamed, retyped or re-meant column needs a new version and an upgrade there.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from profiler.measurement import anatomy
from profiler.spec import Point
from profiler.storage.versions import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "COLUMNS", "COLUMN_NAMES", "ARROW_SCHEMA", "DETAIL_COLUMNS", "DETAIL_SCHEMA",
           "Record", "make_row", "columns_markdown"]

_ARROW = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "floats": pa.list_(pa.float64()),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of _ARROW
    unit: str
    doc: str


def _column_type(annotation: Any) -> str:
    """Column type of a Point field: `int | None` is int, `Literal["a"]` is str."""
    if typing.get_origin(annotation) is typing.Literal:
        annotation = type(typing.get_args(annotation)[0])
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return {int: "int", bool: "bool", float: "float"}.get(annotation, "str")


def _cfg_columns() -> list[Column]:
    return [
        Column(f"cfg_{name}", _column_type(f.annotation), "", f.description or "")
        for name, f in Point.model_fields.items() if name != "knobs"  # knobs: cfg_<knob> columns of their own
    ]


COLUMNS: tuple[Column, ...] = (
    # identity and outcome
    Column("run_schema_version", "int", "", "Version of this schema (see profiler/storage/record.py)."),
    Column("run_id", "str", "", "Id of the sweep invocation that wrote the row."),
    Column("run_sweep", "str", "", "Name of the sweep (spec key `name`)."),
    Column("run_point_id", "str", "", "Hash of the point's configuration (the cfg_ columns)."),
    Column("run_repeat", "int", "", "Repeat index, 0-based; each repeat is a fresh process."),
    Column("run_status", "str", "", "ok | error | timeout | oom | crash."),
    Column("run_error", "str", "", "Error message when run_status is not ok."),
    Column("run_anatomy_error", "str", "", "Anatomy on: why the row has no anatomy (the profiled twin's error); the row's own measurement is unaffected."),
    Column("run_started_utc", "str", "ISO 8601", "When the measuring process was started."),
    Column("run_wall_s", "float", "s", "Wall time of the whole measuring process, its start (see run_start) included."),
    Column("run_start", "str", "", "How the measuring process started: 'fork' = forked from a server that had imported JAX and Flax but started no backend (profiler/processes/forkserver.py); 'fresh' = a new Python interpreter. Both compile cold (docs/scale.md)."),
    Column("run_jobs", "int", "measurements", "Measurements the sweep ran at once at most on the host that ran this one: --jobs (local executor), or the Dask worker threads on that host. Above 1, measurements may have competed for the host's cores (docs/scale.md)."),
    Column("run_cpus", "int", "cores", "Cores the measuring process was allowed to run on (its CPU affinity). With --jobs N > 1 the runner pins each of the N processes to its own share of the host's cores, so that XLA's and Eigen's thread pools (sized from the affinity) do not fight; with --jobs 1, every core. Compare timings only between rows with the same run_jobs and run_cpus (docs/scale.md)."),
    Column("run_cpu_affinity", "str", "", "The measuring process's CPU affinity as taskset writes it ('0-1', '0'): the cores run_cpus counts. A run_ column, not an env_ one: under --jobs N the processes of one sweep differ in it by design."),
    # configuration
    *_cfg_columns(),
    Column("cfg_phase", "str", "", "Which program of the workload the row measures ('main' if only one)."),
    # durations
    # where a measurement's wall time goes, in order (docs/scale.md, "Where a sweep's time goes")
    Column("time_server_start_s", "float", "s", "Wall time this measurement waited for its fork server to start (the server imports JAX, Flax and the harness once per environment): 0 once it is up; null with run_start 'fresh'. Not part of run_wall_s."),
    Column("time_process_start_s", "float", "s", "From the runner starting the measuring process (a fork request, or a new interpreter) to the process being ready to measure, its imports done. Part of run_wall_s."),
    Column("time_backend_start_s", "float", "s", "Starting JAX's backend in the measuring process (and reading the env_ columns), before the build."),
    Column("time_build_s", "float", "s", "Building the point's programs before they are measured, in the same process: for the built-in workloads the model and its abstract arguments (jax.eval_shape of the initialiser traces the model once); for workload 'program' the factory's call, with whatever it builds (real arrays included). Not part of the measured phases; the same for every program of the point."),
    Column("time_trace_s", "float", "s", "jax.jit(f).trace(*args): Python tracing to a jaxpr."),
    Column("time_lower_s", "float", "s", "traced.lower(): jaxpr to StableHLO."),
    Column("time_compile_s", "float", "s", "lowered.compile(): XLA optimisation and code generation."),
    Column("time_trace_cpu_s", "float", "s", "CPU time (user + system, all threads) of the measuring process during the trace. Well below time_trace_s: the process waited for a core (a loaded machine, see docs/scale.md)."),
    Column("time_lower_cpu_s", "float", "s", "CPU time of the measuring process during the lowering, like time_trace_cpu_s."),
    Column("time_compile_cpu_s", "float", "s", "CPU time of the measuring process during the compile, like time_trace_cpu_s; above time_compile_s when XLA compiled on several threads."),
    Column("time_event_trace_s", "float", "s", "JAX's own /jax/core/compile/jaxpr_trace_duration event (longest of the stage)."),
    Column("time_event_lower_s", "float", "s", "JAX's own /jax/core/compile/jaxpr_to_mlir_module_duration event."),
    Column("time_event_compile_s", "float", "s", "JAX's own /jax/core/compile/backend_compile_duration event."),
    Column("time_gc_collect_s", "float", "s", "Python's garbage collections run before the trace, the lowering and the compile (gc.collect(), outside their clocks), added up; during each stage the collector is off, so no stage absorbs a collection of what the build or an earlier stage left (docs/reliability.md). Null in rows written before it existed."),
    Column("time_analysis_s", "float", "s", "After the compile: the optimised HLO text and its parsing, the program sizes, XLA's cost and memory analyses and the trip-count cost correction (profiler/measurement/cost.py)."),
    Column("time_run_s", "float", "s", "Running the compiled program (run on): its arguments made, the first call and the steps; null when compile-only."),
    Column("time_process_exit_s", "float", "s", "From the measuring process done measuring to the runner holding its result: writing the result file, the process's exit, the runner noticing. Part of run_wall_s; the same for every program of the process."),
    # compile-time anatomy (anatomy on): a profiled twin's stages broken into components
    *(Column(f"time_anatomy_{stage}_s", "float", "s", f"Anatomy: wall time of the {stage} in the profiled twin compile (anatomy on); the time_{'xla' if stage == 'compile' else stage}_* components of the stage add up to it. Profiled, so not a timing to compare with time_{stage}_s: the profilers' overhead is in it (docs/anatomy.md).") for stage in anatomy.STAGES),
    *(Column(name, "float", "s", f"Anatomy ({stage}): {doc}") for name, stage, doc in anatomy.component_docs()),
    Column("time_first_call_s", "float", "s", "First call of the compiled program (run on), results ready."),
    Column("time_step_median_s", "float", "s", "Median of the steady-state calls after the first (run on)."),
    Column("time_step_samples_s", "floats", "s", "Every steady-state call time (run on): the raw samples."),
    # greedy generation (workload decode, run on): on the decode row
    Column("time_prefill_s", "float", "s", "Prefill call of a timed greedy generation (after a warm-up generation), results ready."),
    Column("time_per_token_s", "float", "s", "Median decode step call of the timed generation: one new token for the whole batch."),
    Column("time_per_token_samples_s", "floats", "s", "Every decode step call of the timed generation (gen_tokens - 1 samples)."),
    Column("run_tokens_per_s", "float", "tokens/s", "Decode, run on: batch · gen_tokens / wall time of the timed generation, prefill and token picking included."),
    # program sizes
    Column("size_jaxpr_eqns", "int", "equations", "Jaxpr equations, nested bodies (scan, remat, pjit) counted once each."),
    Column("size_stablehlo_bytes", "int", "bytes", "Text of the lowered StableHLO module."),
    Column("size_stablehlo_ops", "int", "ops", "Operations in the lowered StableHLO module."),
    Column("size_hlo_bytes", "int", "bytes", "Text of the optimised HLO module (compiled.as_text())."),
    Column("size_hlo_instructions", "int", "instructions", "Instructions in the optimised HLO, all computations."),
    Column("size_hlo_while_loops", "int", "loops", "while instructions in the optimised HLO."),
    Column("size_params", "int", "parameters", "Train: parameters of the model (all of them, embedding table included), from their abstract shapes."),
    # cost, every loop counted once per trip (profiler/measurement/cost.py, docs/cost.md)
    Column("cost_flops", "float", "FLOP", "FLOPs of the whole run: XLA's analysis with each while body counted once per trip (known_trip_count), nested loops multiplied. Equals cost_xla_flops for a program without loops."),
    Column("cost_transcendentals", "float", "ops", "Transcendental ops (exp, tanh, ...) of the whole run, loops counted per trip like cost_flops."),
    Column("cost_bytes_accessed", "float", "bytes", "XLA's bytes-accessed estimate of the whole run, loops counted per trip. Describes the compiled program: a scan moves different bytes (slicing stacked weights, stacking outputs) than the unrolled loop."),
    Column("cost_basis", "str", "", "Where cost_flops, cost_transcendentals and cost_bytes_accessed come from: 'xla' = XLA's cost_analysis() of the target's compiler, loops re-weighted (measurement/cost.py); 'host-hlo' = cost_analysis() was None (a deviceless GPU compile), so the host's HloCostAnalysis of the optimised HLO, loops re-weighted (cost_xla_* null)."),
    Column("cost_exact", "bool", "", "False if a while loop has no known trip count (data-dependent while_loop): its body is counted once, as XLA does, so the cost_ columns are a lower bound."),
    Column("cost_analytic_flops", "float", "FLOP", "Matmul FLOPs from the configuration alone (projections, QK^T, AV, dense; see blocks.forward_matmul_flops); element-wise work left out. Train workload: 3x the forward, 4x with remat=full (train.analytic_flops). Block 'llama': the PaLM formula, 6·N·T + 12·L·h·s·T per train step, 8·N·T + 16·L·h·s·T with remat=full (profiler/models/palm.py, docs/models.md). A sanity check for cost_flops. Built-in blocks only: null for block 'moe', a user's block or program."),
    # cost, as XLA reports it
    Column("cost_xla_flops", "float", "FLOP", "XLA cost_analysis()['flops']: loop bodies counted once."),
    Column("cost_xla_transcendentals", "float", "ops", "XLA cost_analysis()['transcendentals']: loop bodies counted once."),
    Column("cost_xla_bytes_accessed", "float", "bytes", "XLA cost_analysis()['bytes accessed']: loop bodies counted once."),
    Column("cost_xla_optimal_seconds", "float", "s", "XLA cost_analysis()['optimal_seconds'] where the backend reports it."),
    # memory
    Column("mem_footprint_bytes", "int", "bytes", "generated code + arguments + outputs - aliased + temp: XLA's lower bound for the device memory the program needs. The memory number to show."),
    Column("mem_argument_bytes", "int", "bytes", "memory_analysis(): arguments of the program (parameters and inputs)."),
    Column("mem_output_bytes", "int", "bytes", "memory_analysis(): outputs of the program."),
    Column("mem_alias_bytes", "int", "bytes", "memory_analysis(): outputs aliased to (donated) arguments; counted in both arguments and outputs."),
    Column("mem_temp_bytes", "int", "bytes", "memory_analysis(): temporary buffers (activations, loop state) live during the run."),
    Column("mem_generated_code_bytes", "int", "bytes", "memory_analysis(): generated code; 0 on CPU (jaxlib 0.10.2 does not report it there)."),
    Column("mem_xla_peak_bytes", "int", "bytes", "memory_analysis().peak_memory_in_bytes as reported; on CPU it is arguments + outputs - aliased and leaves temp out (docs/cost.md)."),
    Column("mem_optimizer_state_bytes", "int", "bytes", "Optimizer state of the train workload (AdamW: two moments and a step count), from its abstract shapes."),
    Column("mem_param_device_bytes", "int", "bytes", "Train, blocks 'llama' and 'moe': parameters one device holds, from their shardings on the mesh (weight_dtype bytes each)."),
    Column("mem_grad_device_bytes", "int", "bytes", "Train, blocks 'llama' and 'moe': gradients one device holds: the parameters' shapes, dtypes and shardings."),
    Column("mem_optimizer_state_device_bytes", "int", "bytes", "Train, blocks 'llama' and 'moe': AdamW state one device holds (two moments laid out like the parameters, a replicated step count)."),
    Column("mem_kv_cache_bytes", "int", "bytes", "Decode: the KV cache on one device, from the configuration: 2·layers·batch·max_len·kv_heads·head_dim·itemsize / devices of the mesh."),
    Column("mem_hbm_per_chip_bytes", "int", "bytes", "TPU or GPU target: the chip's published HBM (Google's TPU documentation, NVIDIA's datasheets; profiler/targets/chips.py, docs/tpu.md)."),
    Column("mem_hbm_bytes", "int", "bytes", "TPU or GPU target: HBM of one device, the chip's HBM divided by the devices libtpu makes of a chip (two on v2, v3, v4, TPU7x); what mem_footprint_bytes, per device, is set against."),
    Column("mem_hbm_fits", "bool", "", "TPU or GPU target: mem_footprint_bytes <= mem_hbm_bytes, the program's per-device footprint fits one device's HBM (docs/tpu.md says what the footprint counts on a TPU)."),
    Column("mem_hbm_headroom_bytes", "int", "bytes", "TPU or GPU target: mem_hbm_bytes - mem_footprint_bytes; negative = the program is short of HBM by that much."),
    Column("mem_host_rss_peak_bytes", "int", "bytes", "Peak resident memory of the measuring process (getrusage ru_maxrss); for a process the runner stopped (timeout, oom, crash), the highest RSS it sampled every 50 ms."),
    # environment
    Column("env_hostname", "str", "", "Host name."),
    Column("env_cpu_model", "str", "", "CPU model name."),
    Column("env_target_device_kind", "str", "", "TPU or GPU target: device_kind of its devices as the compiler sees them ('TPU v5 lite', 'NVIDIA H100 80GB HBM3')."),
    Column("env_target_chips", "int", "chips", "TPU or GPU target: chips of the topology (GPUs)."),
    Column("env_target_devices", "int", "devices", "TPU or GPU target: JAX devices of the target, what the mesh spans (a chip is two devices on TPU v2, v3, v4, TPU7x)."),
    Column("env_target_library_version", "str", "", "TPU or GPU target: version of the library that compiled for it (libtpu; jax-cuda12-plugin)."),
    Column("env_cpu_flags", "str", "", "The CPU's feature flags as the kernel lists them (/proc/cpuinfo flags or Features), sorted, space-separated: the same CPU model differs between hosts in them (AVX-512 or not), and timings with them (profiler/analysis/machines.py)."),
    Column("env_cpu_count", "int", "cores", "Logical CPUs of the host."),
    Column("env_python", "str", "", "Python version."),
    Column("env_platform", "str", "", "Operating system (platform.platform())."),
    Column("env_git_commit", "str", "", "Commit of the harness checkout."),
    Column("env_git_dirty", "bool", "", "Whether the checkout had uncommitted changes."),
    Column("env_xla_flags", "str", "", "XLA_FLAGS of the measuring process."),
    Column("env_time_utc", "str", "ISO 8601", "When the environment was read."),
    Column("env_jax_version", "str", "", "jax.__version__."),
    Column("env_jaxlib_version", "str", "", "jaxlib.__version__."),
    Column("env_flax_version", "str", "", "flax.__version__."),
    Column("env_backend", "str", "", "jax.default_backend(): cpu, gpu or tpu."),
    Column("env_device_kind", "str", "", "Kind of the first device (CPU model string or GPU name)."),
    Column("env_device_count", "int", "devices", "Devices visible to the measuring process."),
    Column("env_persistent_cache", "bool", "", "Whether JAX's persistent compilation cache was on (it should be off)."),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
ARROW_SCHEMA = pa.schema(
    [pa.field(c.name, _ARROW[c.type]) for c in COLUMNS],
    metadata={"profiler.schema_version": str(SCHEMA_VERSION)},
)

# The anatomy's per-event detail: a long table beside the rows (one file per point and
# repeat in a results folder's _anatomy/, see profiler/storage/store.py), joined to them on
# (run_point_id, run_repeat, cfg_phase). Versioned with the rows.
DETAIL_COLUMNS: tuple[Column, ...] = (
    Column("run_schema_version", "int", "", "Version of this schema (see profiler/storage/record.py)."),
    Column("run_id", "str", "", "Id of the sweep invocation that wrote the row."),
    Column("run_point_id", "str", "", "The point, as in the rows."),
    Column("run_repeat", "int", "", "The repeat, as in the rows."),
    Column("cfg_phase", "str", "", "The program of the point, as in the rows."),
    Column("stage", "str", "", "trace | lower | compile."),
    Column("component", "str", "", "Component the event's time is attributed to (docs/anatomy.md)."),
    Column("event", "str", "", "Compile: XLA's event (pass, pipeline or phase) without its module suffix. Trace, lower: the module (file) the functions are defined in."),
    Column("calls", "int", "calls", "Occurrences of the event (compile) or calls of the module's functions (trace, lower)."),
    Column("self_s", "float", "s", "Self time summed over threads: the event's duration less its nested events (compile); cProfile's own time of the module's functions, built-ins billed to their caller (trace, lower)."),
    Column("total_s", "float", "s", "Compile: the event's duration summed over threads, occurrences nested in one of the same name counted once. Null for trace and lower."),
    Column("wall_s", "float", "s", "Wall time attributed to the event: its share of each instant split between the busy threads; the wall_s of a component's events add up to its time_*_s column."),
    Column("threads", "int", "threads", "Kinds of threads (XLA thread pools) the event ran on."),
)
DETAIL_SCHEMA = pa.schema(
    [pa.field(c.name, _ARROW[c.type]) for c in DETAIL_COLUMNS],
    metadata={"profiler.schema_version": str(SCHEMA_VERSION)},
)

Record = dataclasses.make_dataclass(
    "Record",
    [(c.name, Any, dataclasses.field(default=None, metadata={"unit": c.unit, "doc": c.doc})) for c in COLUMNS],
    frozen=True,
)
Record.__doc__ = "One row of the results; see COLUMNS for each field's unit and meaning."


def make_row(point: Point, **values: Any) -> dict[str, Any]:
    """A full row: the point's cfg_ columns (null for keys that do not apply to it,
    Point.config), the given values, None for the rest.

    Unknown names raise TypeError: every value must be a documented column.
    """
    cfg = {f"cfg_{k}": v for k, v in point.config().items()}
    knobs = {k: v for k, v in cfg.items() if k not in COLUMN_NAMES}  # a program factory's own: knob_fields
    cfg = {k: v for k, v in cfg.items() if k not in knobs}
    record = Record(run_schema_version=SCHEMA_VERSION, run_point_id=point.id, **cfg, **values)
    return {**dataclasses.asdict(record), **knobs}


def knob_fields(rows: list[dict[str, Any]] | pa.Schema) -> list[pa.Field]:
    """The Arrow fields of the knob columns (cfg_<knob>, spec key knobs) of `rows` or of a
    table's schema: the cfg_ columns that COLUMNS does not list, typed by their values
    (bool, int64, double, string). They are not in the versioned schema: which exist
    depends on the factory, so every reader takes them as they come."""
    if isinstance(rows, pa.Schema):
        return [f for f in rows if f.name.startswith("cfg_") and f.name not in COLUMN_NAMES]
    names = dict.fromkeys(k for row in rows for k in row if k.startswith("cfg_") and k not in COLUMN_NAMES)
    fields = []
    for name in names:
        values = [row.get(name) for row in rows if row.get(name) is not None]
        kinds = {type(v) for v in values}
        kind = (pa.bool_() if kinds == {bool} else pa.int64() if kinds == {int}
                else pa.float64() if kinds <= {int, float} and kinds else pa.string())
        fields.append(pa.field(name, kind))
    return fields


def columns_markdown() -> str:
    """The column reference (docs/columns.md is generated from this)."""
    lines = [
        f"# Result columns (schema version {SCHEMA_VERSION})",
        "",
        "Generated by `python -m profiler columns`; do not edit by hand.",
        "",
        "A `cfg_` column is null where its key does not apply to the row's point (a key its",
        "workload does not read, or a program's factory does not take).",
        "",
        "A program factory's own knobs (its parameters that no spec key names, set in the spec",
        "as keys of their own: `emb_dim = [256, 512]`) add a column `cfg_<knob>` each, typed by",
        "their values (bool, int, float, else text). They are not listed below and do not change",
        "the schema version: which exist depends on the factory; a folder whose parts differ in",
        "them loads with each null where a part lacks it (docs/own-model.md).",
        "",
        "| column | type | unit | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{c.name}` | {c.type} | {c.unit} | {c.doc} |" for c in COLUMNS]
    lines += [
        "",
        "## Anatomy detail (`_anatomy/` of a results folder)",
        "",
        "One row per (point, repeat, phase, stage, component, event) of a point with `anatomy = true`; "
        "`profiler.storage.store.load_anatomy(DIR)` or `pandas.read_parquet(DIR / '_anatomy')` reads it (docs/anatomy.md).",
        "",
        "| column | type | unit | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| `{c.name}` | {c.type} | {c.unit} | {c.doc} |" for c in DETAIL_COLUMNS]
    return "\n".join(lines) + "\n"
