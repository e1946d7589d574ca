"""Scale: compile-only points allocate nothing, a model larger than the machine compiles in
little memory, and measuring processes forked from a fork server measure what fresh
interpreters measure."""

import typing
from pathlib import Path

import jax
import pandas as pd
import psutil
import pytest

from profiler.analysis import stats
from profiler.measurement.measure import measure
from profiler.processes.forkserver import ServerPool
from profiler.processes.runner import run_sweep
from profiler.processes.supervise import measure_in_subprocess
from profiler.report import environment_warnings
from profiler.spec import Point, load_spec
from profiler.workloads import build

REPO = Path(__file__).resolve().parent.parent

# A tiny compile-only point of every workload: every workload must appear here.
COMPILE_ONLY = {
    "forward": dict(workload="forward", mode="loop", layers=2, hidden=32, heads=2, batch=2, seq=8),
    "program": dict(program="tests.faults:ok", hidden=32, heads=2),
    "train": dict(workload="train", mode="scan", layers=2, hidden=32, heads=2, batch=2, seq=4),
    "decode": dict(workload="decode", layers=2, hidden=32, heads=4, kv_heads=2, batch=2, vocab=64,
                   max_len=16, prompt_len=5, gen_tokens=6),
}
WORKLOADS = typing.get_args(Point.model_fields["workload"].annotation)


def test_every_workload_has_a_compile_only_point_here():
    assert set(WORKLOADS) == set(COMPILE_ONLY)


@pytest.mark.parametrize("workload", sorted(COMPILE_ONLY))
def test_compile_only_points_allocate_nothing(workload):
    before = {id(a) for a in jax.live_arrays()}
    for program in build(Point(**COMPILE_ONLY[workload])):
        leaves = jax.tree.leaves(program.args)  # parameters, optimizer state, caches, inputs
        assert leaves and all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
        assert measure(program)["time_compile_s"] > 0
    assert [a.shape for a in jax.live_arrays() if id(a) not in before] == []


def test_a_model_larger_than_this_machine_compiles_in_little_memory(tmp_path):
    spec = load_spec(REPO / "sweeps/aot-large.toml", ["mode=scan"])  # the loop takes ~5x longer
    assert run_sweep(spec, tmp_path / "res").ok
    row = pd.read_parquet(tmp_path / "res").iloc[0]
    parameters = 64 * 5 * 8192**2 * 4  # per layer: q, k, v, out projections and the dense
    assert row["mem_argument_bytes"] > parameters >= 80 * 2**30
    assert row["mem_host_rss_peak_bytes"] < 2**30  # measured: 0.23 GiB
    if psutil.virtual_memory().total < parameters:  # the point of it, on most machines
        assert row["mem_host_rss_peak_bytes"] < psutil.virtual_memory().total / 20


# Columns that depend on the program alone, not on timing or on how the process started.
DETERMINISTIC = ["size_jaxpr_eqns", "size_stablehlo_ops", "size_hlo_instructions", "size_hlo_while_loops",
                 "cost_flops", "cost_bytes_accessed", "cost_xla_flops", "mem_argument_bytes",
                 "mem_output_bytes", "mem_temp_bytes", "mem_footprint_bytes"]


def deterministic(rows):
    """The rows' identity and deterministic metrics, in a stable order."""
    columns = ["run_point_id", "run_repeat", "cfg_phase", "run_status", *DETERMINISTIC]
    return rows[columns].sort_values(columns[:3]).reset_index(drop=True)


def test_forked_and_fresh_processes_measure_the_same_programs(real_results, fresh_results):
    # The session's sweeps (conftest): forked, two at once, and fresh interpreters, one at a time.
    fork, fresh = pd.read_parquet(real_results), pd.read_parquet(fresh_results)
    fork = fork[fork["cfg_layers"].isin(fresh["cfg_layers"])]
    for repeat in (0, 1):  # each forked repeat measured what the fresh interpreter measured
        pd.testing.assert_frame_equal(deterministic(fork[fork["run_repeat"] == repeat]).drop(columns="run_repeat"),
                                      deterministic(fresh).drop(columns="run_repeat"))
    assert set(fork["run_start"]) == {"fork"} and set(fork["run_jobs"]) == {2}
    assert set(fresh["run_start"]) == {"fresh"} and set(fresh["run_jobs"]) == {1}
    # A backend compile event fires on every cold compile, never on a cache hit.
    assert (fork["time_event_compile_s"] > 0).all() and (fresh["time_event_compile_s"] > 0).all()
    for rows in (fork, fresh):
        assert (rows[["time_build_s", "time_trace_cpu_s", "time_compile_cpu_s"]] > 0).all().all()
    # A report tells timings taken two at a time.
    contention = [[w.text for w in environment_warnings(stats.environment(rows)) if "run_jobs" in w.text]
                  for rows in (fork, fresh)]
    assert contention == [["Up to 2 measurements ran at once on a host (run_jobs): their wall times include "
                           "competing for cores; CPU times (time_*_cpu_s) do not."], []]


def forkservers(besides: frozenset[int] = frozenset()) -> list[psutil.Process]:
    """This process's fork servers, but for those in `besides` (a notebook session's kept
    servers, started by an earlier module of the same pytest worker, are not the pool's)."""
    return [p for p in psutil.Process().children()
            if p.pid not in besides and "profiler.processes.forkserver" in " ".join(p.cmdline())]


def test_a_fork_server_serves_one_environment(monkeypatch):
    """XLA_FLAGS (like a CPU device count) are read when the backend starts: a point
    measured with other flags is forked from a server started with them. The name of the
    running test, which pytest changes at every test, starts none."""
    point = Point(**COMPILE_ONLY["forward"])
    flags = "--xla_force_host_platform_device_count=3"
    before = frozenset(p.pid for p in forkservers())
    pool = ServerPool()
    try:
        rows = []
        for xla_flags, test in (("", "a"), (flags, "a"), (flags, "b")):
            monkeypatch.setenv("XLA_FLAGS", xla_flags)
            monkeypatch.setenv("PYTEST_CURRENT_TEST", test)
            rows += measure_in_subprocess(point, servers=pool).rows
        servers = forkservers(before)
    finally:
        pool.close()
    assert [r["run_status"] for r in rows] == ["ok"] * 3
    assert [r["env_device_count"] for r in rows] == [1, 3, 3]
    assert rows[1]["env_xla_flags"] == flags
    assert len(servers) == 2  # one per environment, and used again
    assert forkservers(before) == []
