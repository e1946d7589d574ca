"""Run a sweep: every (point, repeat) in a process of its own, rows stored as they land.

The runner decides where and how a measurement runs; what is measured is the worker's
business and how rows are kept is the store's. A measurement that fails in any way
becomes rows with a non-ok `run_status`; the sweep goes on.

A measuring process is forked from a fork server that has imported JAX and Flax
(profiler/forkserver.py, start 'fork', the default) or is a fresh interpreter (start
'fresh'). Measurements run on threads of this process or on a Dask cluster
(profiler/executors.py); either way only this process writes the results folder.
"""

from __future__ import annotations

import contextlib
import functools
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
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import psutil

from profiler import env, executors, store
from profiler.anatomy import DETAIL_KEY
from profiler.executors import Outcome
from profiler.forkserver import Forked, ForkServer, ForkServerError, ServerPool
from profiler.record import SCHEMA_VERSION, make_row
from profiler.spec import BLOCK_FAMILIES, LIMIT_KEYS, Point, Spec, SpecError
from profiler.store import StoreError
from profiler.worker import CPUS_ENV, PARENT_ENV

Start = Literal["fork", "fresh"]
START_METHODS: tuple[Start, ...] = ("fork", "fresh")
DEFAULT_START: Start = "fork" if hasattr(os, "pidfd_open") else "fresh"
"""Fork servers need Linux (pidfds, PR_SET_PDEATHSIG); elsewhere every measurement
starts a fresh interpreter."""

_IMPORT_ROOT = Path(__file__).resolve().parent.parent
"""Where this `profiler` package is imported from: the measuring processes import the same."""


@dataclass
class Failure:
    """One (point, repeat) of this invocation whose rows are not all ok."""

    label: str
    repeat: int
    status: str
    error: str | None


@dataclass
class SweepResult:
    folder: Path
    statuses: Counter = field(default_factory=Counter)
    """run_status of the rows this invocation wrote."""
    skipped: int = 0
    """(point, repeat)s already in the folder (a resumed sweep)."""
    earlier: Counter = field(default_factory=Counter)
    """run_status of the rows of the skipped (point, repeat)s."""
    failures: list[Failure] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The rows this invocation wrote."""
    spans: list[tuple[float, float]] = field(default_factory=list)
    """Epoch (start, end) of each measurement, its wait for a fork server included."""
    driver_s: dict[str, float] = field(default_factory=dict)
    """Seconds of the driver's own serial parts: 'setup' (the spec's blocks checked, the
    results folder opened) and 'closing' (the last rows written, the servers ended)."""
    written_s: float = 0.0
    """Seconds spent writing rows; all but the last write overlap the next measurement."""

    @property
    def failed(self) -> Counter:
        """Rows that are not ok, by run_status, over the whole folder."""
        return Counter({s: n for s, n in (self.statuses + self.earlier).items() if s != "ok"})

    @property
    def ok(self) -> bool:
        return not self.failed


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
    if point is not None and point.devices > 1:
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
        # A fork server starts (it imports JAX: seconds) outside the measurement's clock and limits.
        server = None if servers is None else servers.server(environ)
    except ForkServerError as e:  # no measuring process was started
        return Outcome([{**env.host(), "run_status": e.status, "run_error": str(e)}], None, None, (waited, time.time()))
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
                proc = _start(point, result, stderr, environ, server, cpus)
                stopped, peak_rss = _watch(proc, timeout_s, max_rss_gb, stop or threading.Event())
                status, error = stopped or _exit_status(proc.returncode, stderr)
            except ForkServerError as e:
                status, error = e.status, str(e)
        if status == "ok" and result.is_file():
            written = json.loads(result.read_text())
            wall, ended = time.perf_counter() - t0, time.time()
            clock = written["clock"]
            phases.update(time_process_start_s=clock["ready"] - epoch0, time_process_exit_s=ended - clock["done"])
            return Outcome([{**row, **phases} for row in written["rows"]], wall, started, (waited, ended))
        wall, ended = time.perf_counter() - t0, time.time()
    if status == "ok":
        status, error = "error", "the measuring process exited without a result"
    row = {**env.host(), "run_status": status, "run_error": error, "mem_host_rss_peak_bytes": peak_rss or None}
    return Outcome([{**row, **phases}], wall, started, (waited, ended))


def _start(
    point: Point, result: Path, stderr: IO[str], environ: dict[str, str], server: ForkServer | None,
    cpus: list[int] | None,
) -> subprocess.Popen | Forked:
    if server is not None:
        return server.fork(point.model_dump_json(), result, Path(stderr.name), cpus)
    # Same process group as the sweep: killing the sweep's group ends its
    # measurements too, instead of leaving them running unobserved.
    proc = subprocess.Popen(
        [sys.executable, "-m", "profiler.worker", str(result)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=environ, text=True,
    )
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


def _exit_status(returncode: int, stderr: Any) -> tuple[str, str | None]:
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


def check_blocks(points: tuple[Point, ...]) -> None:
    """Run each user block of `points` once on abstract input (profiler/model.py), so that a
    block which cannot be stacked fails before the sweep starts, as one SpecError naming the
    key, and not in every measuring process. Starts no JAX backend."""
    user = [p for p in points if p.block and p.block not in BLOCK_FAMILIES]  # built-ins fit
    if not user:
        return
    from profiler.model import check_blocks as check  # imports JAX: only for user blocks

    try:
        check(user)
    except ValueError as e:
        raise SpecError(f"key 'block': {e}") from None


def check_resumable(folder: Path, existing: dict[str, Any] | None, manifest: dict[str, Any]) -> None:
    """StoreError unless the sweep of `manifest` continues the one whose manifest in
    `folder` is `existing` (None: the store says there is nothing to resume): the same
    spec, but for the keys that only bound how it runs (spec.LIMIT_KEYS), and the same
    point ids."""
    if existing is None or existing.get("schema_version") != manifest["schema_version"]:
        return  # the store refuses these, saying why
    theirs, ours = existing.get("spec") or {}, _jsonable(manifest["spec"])
    changed = sorted(k for k in theirs.keys() | ours.keys() if k not in LIMIT_KEYS and theirs.get(k) != ours.get(k))
    if changed:
        diffs = "; ".join(f"{k} = {_show(theirs.get(k))} there, {_show(ours.get(k))} here" for k in changed[:3])
        raise StoreError(f"'{folder}' holds a sweep of a different spec ({diffs}); resume with the same spec or choose another --out")
    if {p["id"] for p in existing.get("points", [])} != {p["id"] for p in manifest["points"]}:
        # Same spec, other ids: a newer profiler added a point key. Resuming would measure
        # every point again under its new id, next to its old rows.
        raise StoreError(f"'{folder}' was started by a version of the profiler that identifies points "
                         "differently; start the sweep in another --out")


def _jsonable(value: Any) -> Any:
    """`value` as the manifest stores it, so that a comparison sees what a reader sees."""
    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


def run_sweep(
    spec: Spec,
    folder: str | Path,
    *,
    resume: bool = False,
    jobs: int = 1,
    start: Start = DEFAULT_START,
    executor: Literal["local", "dask"] = "local",
    scheduler: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    import_paths: Sequence[str] = (),
) -> SweepResult:
    """Measure every (point, repeat) of `spec` not yet in `folder`, storing rows as they land.

    Measurements run `jobs` at a time on this machine (`executor` 'local'), or on a Dask
    cluster: the one at `scheduler` (tcp://HOST:PORT), or else a LocalCluster of `jobs`
    workers on this machine. Each runs in a process of its own, started by `start`, with
    `import_paths` first on its PYTHONPATH (folders of user code).
    """
    began = time.perf_counter()
    check_blocks(spec.points)
    measure = functools.partial(measure_in_subprocess, timeout_s=spec.sweep.timeout_s,
                                max_rss_gb=spec.sweep.max_rss_gb, import_paths=tuple(map(str, import_paths)))
    if executor == "dask":
        pool = executors.Dask(measure, fork=start == "fork", jobs=jobs, scheduler=scheduler)
    else:
        pool = executors.Local(measure, fork=start == "fork", jobs=jobs)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "spec": spec.as_dict(),
        "points": [{"id": p.id, **p.model_dump()} for p in spec.points],
        "environment": env.host(),
        "started_utc": env.utc_now(),
    }
    if resume:
        check_resumable(Path(folder), store.read_manifest(folder), manifest)
    # The executor first: a cluster that cannot be reached is refused before anything is written.
    with pool, store.open_for_sweep(folder, manifest, resume=resume) as folder:
        have = store.done(folder)
        # Repeat-major order: a sweep stopped early still covers every point, and slow drift
        # of the machine spreads over all points rather than biasing the last ones.
        tasks = [
            (point, repeat)
            for repeat in range(spec.sweep.repeats)
            for point in spec.points
            if (point.id, repeat) not in have
        ]
        # The servers of the first measurements start now, importing JAX (seconds) while the
        # driver finishes setting up. Not every server: one importing while another's child
        # measures would take cores from that measurement.
        environs = {tuple(sorted(e.items())): e for e in (worker_environment(p, measure.keywords["import_paths"])
                                                           for p, _ in tasks[:jobs])}
        pool.prestart(list(environs.values()))
        wanted = {(p.id, r) for p in spec.points for r in range(spec.sweep.repeats)}
        earlier = Counter(s for pair, statuses in have.items() if pair in wanted for s in statuses)
        result = SweepResult(folder, skipped=len(wanted) - len(tasks), earlier=earlier)
        run_id = uuid.uuid4().hex[:12]
        say = progress or (lambda done, total, line: None)
        result.driver_s["setup"] = time.perf_counter() - began
        # Leaving the `with` by an exception (Ctrl-C, a failed write) kills the running
        # measurements and drops the rest, rather than run on with nobody to store their rows.
        for done_count, (point, repeat, outcome, run_jobs) in enumerate(pool.results(tasks), 1):
            detail = [
                {"run_id": run_id, "run_point_id": point.id, "run_repeat": repeat, "cfg_phase": values.get("cfg_phase"), **event}
                for values in outcome.rows for event in values.pop(DETAIL_KEY, None) or ()
            ]
            rows = [
                make_row(
                    point,
                    run_id=run_id,
                    run_sweep=spec.sweep.name,
                    run_repeat=repeat,
                    run_wall_s=outcome.wall_s,
                    run_started_utc=outcome.started_utc,
                    run_jobs=run_jobs,
                    run_start=start,
                    **values,
                )
                for values in outcome.rows
            ]
            if detail:  # before the rows: a (point, repeat) with rows is done, detail included
                store.write_detail(folder, f"{point.id}-r{repeat}", detail)
            writing = time.perf_counter()
            store.write_rows(folder, f"{point.id}-r{repeat}", rows)
            result.written_s += time.perf_counter() - writing
            result.rows += rows
            result.spans += [outcome.span] if outcome.span else []
            statuses = Counter(row["run_status"] for row in rows)
            result.statuses.update(statuses)
            result.failures += [
                Failure(point.label(), repeat, row["run_status"], row["run_error"])
                for row in rows if row["run_status"] != "ok"
            ]
            took = "" if outcome.wall_s is None else f" ({outcome.wall_s:.1f} s)"
            say(done_count, len(tasks), f"{point.label()} repeat {repeat}: {', '.join(statuses)}{took}")
        last = max((end for _, end in result.spans), default=time.time())
    result.driver_s["closing"] = time.time() - last  # the last rows written, the servers ended
    return result
