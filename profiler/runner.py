"""Run a sweep: every (point, repeat) in its own fresh process, rows stored as they land.

The runner decides where and how a measurement runs; what is measured is the worker's
business and how rows are kept is the store's. A measurement that fails in any way
becomes rows with a non-ok `run_status`; the sweep goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiler import env, store
from profiler.record import SCHEMA_VERSION, make_row
from profiler.spec import Point, Spec

_REPO = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    """What one measuring process left: its rows (without identity) and how it ended."""

    rows: list[dict[str, Any]]
    wall_s: float
    started_utc: str


@dataclass
class SweepResult:
    folder: Path
    statuses: Counter = field(default_factory=Counter)
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return set(self.statuses) <= {"ok"}


_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def worker_environment(point: Point | None = None) -> dict[str, str]:
    """The measuring process's environment: the persistent compilation cache off, this
    checkout importable whatever the current directory is, and as many host-platform
    (CPU) devices as the point asks for (XLA reads the flag when the backend starts)."""
    environ = dict(os.environ)
    environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), environ.get("PYTHONPATH")]))
    if point is not None and point.devices > 1:
        flags = [f for f in environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_COUNT_FLAG)]
        environ["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_COUNT_FLAG}={point.devices}"])
    return environ


def measure_in_subprocess(point: Point, timeout_s: float | None = None) -> Outcome:
    """Measure `point` in a fresh Python process and turn any way it ends into rows."""
    started = env.utc_now()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="profiler-") as tmp:
        result = Path(tmp) / "result.json"
        with open(Path(tmp) / "stderr", "w+") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "profiler.worker", str(result)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
                env=worker_environment(point), start_new_session=True, text=True,
            )
            try:
                proc.communicate(point.model_dump_json(), timeout=timeout_s)
                status, error = _exit_status(proc.returncode, stderr)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                status, error = "timeout", f"stopped after the {timeout_s:g} s limit"
        wall = time.perf_counter() - t0
        if status == "ok" and result.is_file():
            return Outcome(json.loads(result.read_text()), wall, started)
    if status == "ok":
        status, error = "error", "the measuring process exited without a result"
    return Outcome([{**env.host(), "run_status": status, "run_error": error}], wall, started)


def _exit_status(returncode: int, stderr: Any) -> tuple[str, str | None]:
    if returncode == 0:
        return "ok", None
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return "crash", f"the measuring process died by signal {name}"
    stderr.seek(0)
    tail = [line for line in stderr.read().splitlines() if line.strip()][-1:]
    return "error", f"the measuring process exited with status {returncode}: {' '.join(tail)}"


def run_sweep(
    spec: Spec,
    folder: str | Path,
    *,
    resume: bool = False,
    jobs: int = 1,
    measure: Callable[[Point], Outcome] = measure_in_subprocess,
    progress: Callable[[int, int, str], None] | None = None,
) -> SweepResult:
    """Measure every (point, repeat) of `spec` not yet in `folder`, storing rows as they land."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "spec": spec.as_dict(),
        "points": [{"id": p.id, **p.model_dump()} for p in spec.points],
        "environment": env.host(),
        "started_utc": env.utc_now(),
    }
    folder = store.open_for_sweep(folder, manifest, resume=resume)
    have = store.done(folder)
    # Repeat-major order: a sweep stopped early still covers every point, and slow drift
    # of the machine spreads over all points rather than biasing the last ones.
    tasks = [
        (point, repeat)
        for repeat in range(spec.sweep.repeats)
        for point in spec.points
        if (point.id, repeat) not in have
    ]
    result = SweepResult(folder, skipped=len(spec.points) * spec.sweep.repeats - len(tasks))
    run_id = uuid.uuid4().hex[:12]
    say = progress or (lambda done, total, line: None)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(measure, point): (point, repeat) for point, repeat in tasks}
        for done_count, future in enumerate(as_completed(futures), 1):
            point, repeat = futures[future]
            outcome = future.result()
            rows = [
                make_row(
                    point,
                    run_id=run_id,
                    run_sweep=spec.sweep.name,
                    run_repeat=repeat,
                    run_wall_s=outcome.wall_s,
                    run_started_utc=outcome.started_utc,
                    **values,
                )
                for values in outcome.rows
            ]
            store.write_rows(folder, f"{point.id}-r{repeat}", rows)
            statuses = Counter(row["run_status"] for row in rows)
            result.statuses.update(statuses)
            say(done_count, len(tasks), f"{point.label()} repeat {repeat}: "
                f"{', '.join(statuses)} ({outcome.wall_s:.1f} s)")
    return result
