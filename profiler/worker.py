"""The measuring process: measures one point in a fresh process and writes its rows.

Run as `python -m profiler.worker RESULT.json` with the point's configuration as JSON on
stdin, or forked by a fork server (profiler/forkserver.py), which calls `run`. Python
exceptions become rows with run_status 'error'; a process that dies leaves no result
file, and the runner records why.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from profiler.files import write_atomic
from profiler.spec import Point


def _error(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" (at {Path(last[0].filename).name}:{last[0].lineno})" if last else ""
    return f"{type(e).__name__}: {e}{where}"


def measure_point(point: Point) -> list[dict[str, Any]]:
    """One row per program of the point: measurements, environment, and outcome."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)

    from profiler import workloads
    from profiler.env import jax_env
    from profiler.measure import measure

    # The twin forks before anything here starts the backend: a fork must not inherit
    # XLA's threads, and both compiles must be equally cold.
    twin = profiled_twin(point) if point.anatomy else {}
    env = jax_env()
    t0 = time.perf_counter()
    try:
        programs = workloads.build(point)
    except Exception as e:  # a broken point must not stop the sweep
        return [{**env, "run_status": "error", "run_error": _error(e)}]
    built = {"time_build_s": time.perf_counter() - t0}
    rows = []
    for program in programs:
        row: dict[str, Any] = {**env, **built, "cfg_phase": program.phase}
        try:
            row.update(measure(program, run=point.run, steps=point.steps), run_status="ok")
        except Exception as e:
            row.update(run_status="error", run_error=_error(e))
        if point.anatomy:
            row.update(_anatomy_values(twin, program.phase))
        rows.append(row)
    return rows


def profiled_twin(point: Point) -> dict[str, Any]:
    """The anatomy of every program of `point` (profiler/anatomy.py), measured in a forked
    twin of this process so that the profilers touch neither this process's timings nor
    its caches: {phase: [columns, detail]}, or {"error": message}."""
    from jax._src.xla_bridge import backends_are_initialized

    if backends_are_initialized():  # a fork would lack XLA's threads and hang in its compile
        return {"error": "anatomy needs a process whose JAX backend has not started (one point per measuring process)"}
    with tempfile.TemporaryDirectory(prefix="profiler-anatomy-") as tmp:
        out = Path(tmp) / "anatomy.json"
        pid = os.fork()
        if pid == 0:  # the twin: never returns
            code = 1
            try:
                die_with_parent(os.getppid())
                from profiler import anatomy, workloads

                result = {p.phase: anatomy.profile(p) for p in workloads.build(point)}
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
    from profiler.anatomy import DETAIL_KEY

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


def run(point_json: str, result: Path) -> None:
    """Measure the point described by `point_json` and write its rows to `result`."""
    faulthandler.enable()  # a crash leaves its Python frames on stderr for the runner
    rows = measure_point(Point(**json.loads(point_json)))
    write_atomic(result, json.dumps(rows), durable=False)


def main() -> None:
    parent = int(os.environ.get(PARENT_ENV, "0"))
    if parent:
        die_with_parent(parent)
    run(sys.stdin.read(), Path(sys.argv[1]))


if __name__ == "__main__":
    main()
