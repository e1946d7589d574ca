"""The measuring process: measures one point in a fresh process and writes its rows.

Run as `python -m profiler.processes.worker RESULT.json` with the point's configuration as JSON on
stdin, or forked by a fork server (profiler/processes/forkserver.py), which calls `run`. Python
exceptions become rows with run_status 'error'; a process that dies leaves no result
file, and the runner records why.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from profiler.spec import Point
from profiler.storage.files import write_atomic


def _error(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(e).__name__}: {e}{where}"


def measure_point(point: Point, clock: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per program of the point: measurements, environment, and outcome.

    `clock` receives the epoch times (time.time(), comparable with the runner's) at which
    the process was ready to measure (its imports done) and done measuring."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)

    from profiler import workloads
    from profiler.measurement.env import jax_env
    from profiler.measurement.measure import measure
    from profiler.models import devices

    clock = {} if clock is None else clock
    # The imports' objects (a fresh interpreter's; a fork server froze its own) stay out of
    # the collections run before each timed stage (measure.collector_paused): they would
    # cost a visit of every object JAX made, and hold no garbage of the measurement's.
    gc.freeze()
    clock["ready"] = time.time()
    # The twin forks before anything here starts the backend: a fork must not inherit
    # XLA's threads, and both compiles must be equally cold.
    twin = profiled_twin(point) if point.anatomy else {}
    t0 = time.perf_counter()
    env = {**jax_env(), **cpus()}  # jax_env starts the backend: timed apart from the build
    try:  # a TPU topology's chips or compile-only GPUs: part of the backend's start
        env |= devices.use(point.target)
    except Exception as e:
        clock["done"] = time.time()
        return [{**env, "run_status": "error", "run_error": _error(e)}]
    t1 = time.perf_counter()
    try:
        programs = workloads.build(point)
    except Exception as e:  # a broken point must not stop the sweep
        clock["done"] = time.time()
        return [{**env, "run_status": "error", "run_error": _error(e)}]
    built = {"time_backend_start_s": t1 - t0, "time_build_s": time.perf_counter() - t1}
    rows = []
    for index, program in enumerate(programs):
        row: dict[str, Any] = {**env, **built, "cfg_phase": program.phase}
        try:
            row.update(measure(program, run=point.run, steps=point.steps, clear=index > 0), run_status="ok")
        except Exception as e:
            row.update(run_status="error", run_error=_error(e))
        if point.anatomy:
            row.update(_anatomy_values(twin, program.phase))
        rows.append(row | hbm_fit(row))
    clock["done"] = time.time()
    return rows


def hbm_fit(row: dict[str, Any]) -> dict[str, Any]:
    """Whether the program's per-device footprint fits the target's HBM per device, and the
    bytes left (negative: short by), for a TPU or GPU target."""
    hbm, footprint = row.get("mem_hbm_bytes"), row.get("mem_footprint_bytes")
    if hbm is None or footprint is None:
        return {}
    return {"mem_hbm_fits": footprint <= hbm, "mem_hbm_headroom_bytes": hbm - footprint}


def cpus() -> dict[str, Any]:
    """The cores this process may run on (`run_cpus`, `run_cpu_affinity`): under --jobs N
    the runner gives each measuring process its share of the host's cores."""
    if not hasattr(os, "sched_getaffinity"):
        return {"run_cpus": os.cpu_count()}
    allowed = sorted(os.sched_getaffinity(0))
    return {"run_cpus": len(allowed), "run_cpu_affinity": _ranges(allowed)}


def _ranges(cores: list[int]) -> str:
    """0,1,2,5 -> '0-2,5' (taskset's notation)."""
    runs: list[list[int]] = []
    for core in cores:
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def pin(cores: list[int] | None) -> None:
    """Confine this process, and the thread pools XLA and Eigen size from its affinity when
    the backend starts, to `cores` (None: leave it as it is)."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def profiled_twin(point: Point) -> dict[str, Any]:
    """The anatomy of every program of `point` (profiler/measurement/anatomy/), measured in a forked
    twin of this process so that the profilers touch neither this process's timings nor
    its caches: {phase: [columns, detail]}, or {"error": message}."""
    from profiler.measurement.compat import backends_are_initialized

    if backends_are_initialized():  # a fork would lack XLA's threads and hang in its compile
        return {"error": "anatomy needs a process whose JAX backend has not started (one point per measuring process)"}
    with tempfile.TemporaryDirectory(prefix="profiler-anatomy-") as tmp:
        out = Path(tmp) / "anatomy.json"
        pid = os.fork()
        if pid == 0:  # the twin: never returns
            code = 1
            try:
                die_with_parent(os.getppid())
                from profiler import workloads
                from profiler.measurement import anatomy
                from profiler.models import devices

                devices.use(point.target)  # the twin compiles for the same chips
                result: dict[str, Any] = {p.phase: anatomy.profile(p) for p in workloads.build(point)}
                code = 0
            except BaseException as e:
                result = {"error": _error(e)}
            finally:
                try:
                    write_atomic(out, json.dumps(result), durable=False)
                finally:
                    os._exit(code)
        _, status = os.waitpid(pid, 0)
        if out.is_file():
            return json.loads(out.read_text())
        return {"error": f"the profiled twin died ({_wait_status(status)})"}


def _wait_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _anatomy_values(twin: dict[str, Any], phase: str) -> dict[str, Any]:
    """The anatomy's columns of a row, and its detail under DETAIL_KEY for the runner."""
    from profiler.measurement.anatomy import DETAIL_KEY

    if "error" in twin:
        return {"run_anatomy_error": twin["error"]}
    if phase not in twin:
        return {"run_anatomy_error": f"the profiled twin built no program '{phase}'"}
    columns, detail = twin[phase]
    return {**columns, DETAIL_KEY: detail}


PARENT_ENV = "PROFILER_PARENT_PID"
"""Set by the runner to its pid: a measuring process whose sweep is gone stops too."""


def die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when its parent `parent` dies (even by kill -9 of
    the parent alone), so no measurement runs on unobserved after its sweep."""
    if sys.platform != "linux":
        return
    # Linux sends the signal when the *thread* that started this process ends; the
    # runner's thread waits for this process, so that happens only with the sweep.
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent was gone before prctl took effect
        os._exit(1)


CPUS_ENV = "PROFILER_CPUS"
"""Set by the runner for a fresh measuring process: the cores it may use, e.g. '0,1'."""


def run(point_json: str, result: Path) -> None:
    """Measure the point described by `point_json` and write {"rows", "clock"} to `result`."""
    faulthandler.enable()  # a crash leaves its Python frames on stderr for the runner
    clock: dict[str, float] = {}
    try:
        point = Point(**json.loads(point_json))
    except ValueError as e:  # valid for the driver's JAX, not this one's (a remat policy it lacks)
        rows = [_release_lacks(e)]
    else:
        rows = measure_point(point, clock)
    write_atomic(result, json.dumps({"rows": rows, "clock": clock}), durable=False)


def _release_lacks(e: ValueError) -> dict[str, Any]:
    """The error row of a point this process's JAX release cannot build."""
    from profiler.measurement.env import jax_env

    errors = getattr(e, "errors", None)
    why = errors()[0]["msg"] if errors else str(e)
    env = jax_env()
    return {**env, "run_status": "error",
            "run_error": f"jax {env['env_jax_version']} (flax {env['env_flax_version']}) lacks what the point needs: {why}"}


def main() -> None:
    from profiler import targets

    targets.hide_cuda_plugin()  # before JAX is imported; not for a GPU target's process
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if parent:
        die_with_parent(parent)
    pin([int(c) for c in os.environ[CPUS_ENV].split(",")] if os.environ.get(CPUS_ENV) else None)
    run(sys.stdin.read(), Path(sys.argv[1]))
    # The result is written: skip the interpreter's finalisation, which for a process that
    # imported JAX takes about as long as a small point's compile, and is no measurement's.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
