"""One measuring process: start it (forked from a fork server, or a fresh interpreter),
watch its wall time and memory, stop it at the limits, and turn how it ended into rows
and a status (ok, error, timeout, oom, crash, with the crash's context).

The runner (profiler/processes/runner.py) decides which points run and where; this module knows
one process at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal

import psutil

from profiler import targets
from profiler.measurement import env
from profiler.processes import environments
from profiler.processes.environments import ReleaseError
from profiler.processes.executors import Outcome
from profiler.processes.forkserver import Forked, ForkServer, ForkServerError, ServerPool
from profiler.processes.worker import CPUS_ENV, PARENT_ENV
from profiler.spec import Point

Start = Literal["fork", "fresh"]
DEFAULT_START: Start = "fork" if hasattr(os, "pidfd_open") else "fresh"
"""Fork servers need Linux (pidfds, PR_SET_PDEATHSIG); elsewhere every measurement
starts a fresh interpreter."""

_IMPORT_ROOT = Path(__file__).resolve().parents[2]
"""Where this `profiler` package is imported from: the measuring processes import the same."""


_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def worker_environment(point: Point | None = None, import_paths: Sequence[str] = ()) -> dict[str, str]:
    """The measuring process's environment: the persistent compilation cache off, this
    `profiler`, `import_paths` (e.g. the notebook code profiler.api generated) and the
    current directory (where user code lives) importable, and as many host-platform (CPU)
    devices as the point asks for (XLA reads the flag when the backend starts)."""
    environ = dict(os.environ)
    environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_IMPORT_ROOT), *import_paths, os.getcwd(), environ.get("PYTHONPATH")]))
    environ[PARENT_ENV] = str(os.getpid())
    # Installed TPU and GPU libraries must not be started as backends: every target
    # compiles from the CPU backend's process (a TPU's chips come from libtpu, a GPU's from
    # its plugin, profiler/models/devices.py), and a CPU measurement stays what it was
    # without them (docs/tpu.md measures the start-up).
    environ.setdefault("JAX_PLATFORMS", "cpu")
    # libtpu takes a lock (/tmp/libtpu_lockfile) that lets one process per host use the
    # TPU; a deviceless compile uses none, and measuring processes (--jobs N, a test's
    # own process) load it side by side.
    environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    # Only a GPU target's process loads the CUDA plugin (targets.hide_cuda_plugin says why).
    environ.pop(targets.CUDA_ENV, None)
    if point is not None and point.target.startswith("gpu:"):
        environ[targets.CUDA_ENV] = "1"
    if point is not None and point.devices > 1 and point.target == "cpu":
        flags = [f for f in environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_COUNT_FLAG)]
        environ["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_COUNT_FLAG}={point.devices}"])
    return environ


_POLL_S = 0.05
"""How often the runner samples the measuring process (its RSS and whether it ended)."""
_CHILDREN_EVERY = 20
"""Children are looked up every this many polls: scanning /proc costs ~5 ms, reading
one process's RSS ~0.01 ms, and the runner must not steal CPU from what it measures."""


def measure_in_subprocess(
    point: Point,
    timeout_s: float | None = None,
    max_rss_gb: float | None = None,
    stop: threading.Event | None = None,
    servers: ServerPool | None = None,
    import_paths: Sequence[str] = (),
    cpus: list[int] | None = None,
) -> Outcome:
    """Measure `point` in a process of its own and turn any way it ends into rows.

    The process is forked from the fork server of its environment in `servers` (started
    first if need be), or is a fresh interpreter when `servers` is None. Over `timeout_s` of wall time it is killed
    ('timeout'); over `max_rss_gb` of resident memory, summed over the process and its
    children, it is killed ('oom'); dead by a signal it is a 'crash'. The row of a
    stopped process carries the highest RSS the runner sampled. Setting `stop` kills the
    process at once (an interrupted sweep). `import_paths` go first on the process's
    PYTHONPATH; `cpus` (None: all) are the cores the process may run on.
    """
    environ = worker_environment(point, import_paths)
    waited = time.time()
    try:
        python = interpreter(point)
        # A fork server starts (it imports JAX: seconds) outside the measurement's clock and limits.
        server = None if servers is None else servers.server(environ, python)
    except (ForkServerError, ReleaseError) as e:  # no measuring process was started
        return Outcome([{**env.host(), "run_status": "error" if isinstance(e, ReleaseError) else e.status,
                         "run_error": str(e)}], None, None, (waited, time.time()))
    started = env.utc_now()
    phases = {} if server is None else {"time_server_start_s": time.time() - waited}
    if cpus and server is None:
        environ[CPUS_ENV] = ",".join(map(str, cpus))
    t0, epoch0 = time.perf_counter(), time.time()
    peak_rss = 0
    with tempfile.TemporaryDirectory(prefix="profiler-") as tmp:
        result = Path(tmp) / "result.json"
        with open(Path(tmp) / "stderr", "w+") as stderr:
            try:
                proc = _start(point, result, stderr, environ, server, cpus, python)
                stopped, peak_rss = _watch(proc, timeout_s, max_rss_gb, stop or threading.Event())
                status, error = stopped or _exit_status(proc.returncode, stderr)
            except ForkServerError as e:
                status, error = e.status, str(e)
            if status == "ok" and result.is_file():
                written = json.loads(result.read_text())
                wall, ended = time.perf_counter() - t0, time.time()
                clock = written["clock"]
                phases.update(time_process_start_s=clock["ready"] - epoch0, time_process_exit_s=ended - clock["done"])
                rows = [{**row, **phases} for row in written["rows"]]
                if point.target != "cpu":
                    rows = [_with_stderr(row, stderr) for row in rows]
                return Outcome(rows, wall, started, (waited, ended))
        wall, ended = time.perf_counter() - t0, time.time()
    if status == "ok":
        status, error = "error", "the measuring process exited without a result"
    row = {**env.host(), "run_status": status, "run_error": error, "mem_host_rss_peak_bytes": peak_rss or None}
    return Outcome([{**row, **phases}], wall, started, (waited, ended))


def interpreter(point: Point) -> str:
    """The Python that measures `point`: that of its JAX release's environment (spec key
    `jax`, built before the sweep by the runner), else this one."""
    if point.jax is None:
        return sys.executable
    built = environments.built(point.jax, point.flax)
    if built is None:
        raise ReleaseError(f"no environment of jax {point.jax} is built (`python -m profiler releases` builds it)")
    return str(built.python)


def _start(
    point: Point, result: Path, stderr: IO[str], environ: dict[str, str], server: ForkServer | None,
    cpus: list[int] | None, python: str,
) -> subprocess.Popen | Forked:
    if server is not None:
        return server.fork(point.model_dump_json(), result, Path(stderr.name), cpus)
    # Same process group as the sweep: killing the sweep's group ends its
    # measurements too, instead of leaving them running unobserved.
    proc = subprocess.Popen(
        [python, "-m", "profiler.processes.worker", str(result)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=environ, text=True,
    )
    assert proc.stdin is not None  # Popen(stdin=PIPE)
    try:
        proc.stdin.write(point.model_dump_json())
        proc.stdin.close()
    except BrokenPipeError:  # died before reading its point; the exit status says why
        pass
    return proc


def _watch(
    proc: subprocess.Popen | Forked, timeout_s: float | None, max_rss_gb: float | None, stop: threading.Event
) -> tuple[tuple[str, str] | None, int]:
    """Wait for `proc`, enforcing the limits. Returns (status, error) if it was stopped,
    and the peak RSS sampled."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    cap = None if max_rss_gb is None else max_rss_gb * 2**30
    try:
        tree = [psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:  # a forked child can be over, and reaped by its server, already
        tree = []
    peak = 0
    for polls in itertools.count():
        try:
            proc.wait(timeout=_POLL_S)
            return None, peak
        except subprocess.TimeoutExpired:
            pass
        if polls % _CHILDREN_EVERY == 0 and tree:
            tree = [tree[0], *_children(tree[0])]
        rss = sum(_rss(p) for p in tree)
        peak = max(peak, rss)
        if cap is not None and rss > cap:
            _kill(tree, proc)
            return ("oom", f"resident memory {rss / 2**20:.0f} MiB went over the max_rss_gb = {max_rss_gb:g} "
                    f"({cap / 2**20:.0f} MiB) limit"), peak
        if deadline is not None and time.monotonic() > deadline:
            _kill(tree, proc)
            return ("timeout", f"stopped after the timeout_s = {timeout_s:g} s limit"), peak
        if stop.is_set():
            _kill(tree, proc)
            return ("crash", "stopped: the sweep was interrupted"), peak
    raise AssertionError("unreachable")


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:  # ended between two samples
        return 0


def _kill(tree: list[psutil.Process], proc: subprocess.Popen | Forked) -> None:
    for p in _children(tree[0]) if tree else []:  # before the parent: orphans would be out of reach
        with contextlib.suppress(psutil.Error):
            p.kill()
    proc.kill()
    proc.wait()


def _with_stderr(row: dict[str, Any], stderr: Any) -> dict[str, Any]:
    """A failed row of a TPU or GPU target with what the process wrote to stderr: libtpu
    and the CUDA plugin log there, and are kept out of the terminal unless the point fails."""
    if row.get("run_status") == "ok":
        return row
    stderr.seek(0)
    lines = [line.strip() for line in stderr.read().splitlines() if line.strip()]
    return {**row, "run_error": f"{row.get('run_error')} | stderr: {' / '.join(lines[-20:])}"}


def _exit_status(returncode: int | None, stderr: Any) -> tuple[str, str | None]:
    """How a process that has exited ended (`returncode` is set once it has)."""
    assert returncode is not None
    if returncode == 0:
        return "ok", None
    stderr.seek(0)
    lines = [line.strip() for line in stderr.read().splitlines() if line.strip()]
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = " (the kernel's out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
        return "crash", f"the measuring process died by signal {name}{why}{_crash_context(lines)}"
    return "error", f"the measuring process exited with status {returncode}: {' '.join(lines[-1:])}"


# XLA's fatal log lines ("F0312 12:00:00.000000 123 file.cc:45] Check failed: ...").
_FATAL_LOG = re.compile(r"^F\d{4} .*?\] (.*)")
# A frame of the worker's faulthandler dump: `File "path", line N in function`.
_FRAME = re.compile(r'^File "(.*)", line (\d+) in (.*)')


def _crash_context(lines: list[str]) -> str:
    """What a dying process said: XLA's fatal message and the innermost Python frames of
    the thread that crashed (faulthandler lists other threads too, such as a timer JAX
    starts while it looks for a TPU)."""
    fatal = [m.group(1) for m in map(_FATAL_LOG.match, lines) if m][:1]
    current = next((i for i, line in enumerate(lines) if line.startswith("Current thread")), 0)
    frames = [f"{m.group(3)} ({Path(m.group(1)).name}:{m.group(2)})" for m in map(_FRAME.match, lines[current:]) if m][:2]
    where = [f"in {' < '.join(frames)}"] if frames else []
    return "".join(f"; {part}" for part in fatal + where)
