"""Run a sweep: every (point, repeat) in a process of its own, rows stored as they land.

The runner decides where and how a measurement runs; what is measured is the worker's
business and how rows are kept is the store's. A measurement that fails in any way
becomes rows with a non-ok `run_status`; the sweep goes on.

A measuring process is forked from a fork server that has imported JAX and Flax
(profiler/processes/forkserver.py, start 'fork', the default) or is a fresh interpreter (start
'fresh'). Measurements run on threads of this process or on a Dask cluster
(profiler/processes/executors.py); either way only this process writes the results folder.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from profiler.measurement import env
from profiler.measurement.anatomy import DETAIL_KEY
from profiler.processes import environments, executors
from profiler.processes.forkserver import ServerPool
from profiler.processes.supervise import (
    DEFAULT_START,
    Start,
    interpreter,
    measure_in_subprocess,
    worker_environment,
)
from profiler.spec import BLOCK_FAMILIES, LIMIT_KEYS, Point, Spec, SpecError
from profiler.storage import store
from profiler.storage.record import SCHEMA_VERSION, make_row
from profiler.storage.store import StoreError


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


def check_user_blocks(points: tuple[Point, ...]) -> None:
    """Run each user block of `points` once on abstract input (profiler/models/stacked.py), so that a
    block which cannot be stacked fails before the sweep starts, as one SpecError naming the
    key, and not in every measuring process. Starts no JAX backend."""
    user = [p for p in points if p.block and p.block not in BLOCK_FAMILIES]  # built-ins fit
    if not user:
        return
    from profiler.models.stacked import check_stackable  # imports JAX: only for user blocks

    try:
        check_stackable(user)
    except ValueError as e:
        raise SpecError(f"key 'block': {e}") from None


def build_environments(points: tuple[Point, ...], say: Callable[[str], None] | None = None) -> None:
    """Build (or find cached) the environment of every JAX release the points name (spec
    key `jax`), before the results folder is touched: a release that cannot be had is a
    ReleaseError, and nothing is measured. `say` gets a line per build (default: stderr)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    for jax, flax in dict.fromkeys((p.jax, p.flax) for p in points if p.jax):
        environments.ensure(jax, flax, say=say)


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
        diffs = "; ".join(f"{k} = {_spec_value(theirs.get(k))} there, {_spec_value(ours.get(k))} here" for k in changed[:3])
        raise StoreError(f"'{folder}' holds a sweep of a different spec ({diffs}); resume with the same spec or choose another --out")
    if {p["id"] for p in existing.get("points", [])} != {p["id"] for p in manifest["points"]}:
        # Same spec, other ids: a newer profiler added a point key. Resuming would measure
        # every point again under its new id, next to its old rows.
        raise StoreError(f"'{folder}' was started by a version of the profiler that identifies points "
                         "differently; start the sweep in another --out")


def _jsonable(value: Any) -> Any:
    """`value` as the manifest stores it, so that a comparison sees what a reader sees."""
    return json.loads(json.dumps(value, default=str))


def _spec_value(value: Any) -> str:
    """A spec key's value as the spec writes it ('"scan"', '[2, 4]'; a number with a unit
    is profiler.units' job, not this)."""
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
    servers: ServerPool | None = None,
) -> SweepResult:
    """Measure every (point, repeat) of `spec` not yet in `folder`, storing rows as they land.

    Measurements run `jobs` at a time on this machine (`executor` 'local'), or on a Dask
    cluster: the one at `scheduler` (tcp://HOST:PORT), or else a LocalCluster of `jobs`
    workers on this machine. Each runs in a process of its own, started by `start`, with
    `import_paths` first on its PYTHONPATH (folders of user code). `servers`: fork servers
    to fork from and leave running (local executor; profiler.api keeps one pool per
    session, so that a second `profile()` call starts no server).
    """
    began = time.perf_counter()
    check_user_blocks(spec.points)
    build_environments(spec.points)
    measure = functools.partial(measure_in_subprocess, timeout_s=spec.sweep.timeout_s,
                                max_rss_gb=spec.sweep.max_rss_gb, import_paths=tuple(map(str, import_paths)))
    pool = _pool(measure, executor, start, jobs, scheduler, servers)
    manifest = _manifest(spec)
    if resume:
        check_resumable(Path(folder), store.read_manifest(folder), manifest)
    # The executor first: a cluster that cannot be reached is refused before anything is written.
    with pool, store.open_for_sweep(folder, manifest, resume=resume) as folder:
        have = store.done(folder)
        tasks = _tasks(spec, have)
        _prestart(pool, tasks[:jobs], measure.keywords["import_paths"])
        wanted = {(p.id, r) for p in spec.points for r in range(spec.sweep.repeats)}
        earlier = Counter(s for pair, statuses in have.items() if pair in wanted for s in statuses)
        result = SweepResult(folder, skipped=len(wanted) - len(tasks), earlier=earlier)
        run_id = uuid.uuid4().hex[:12]
        say = progress or (lambda done, total, line: None)
        result.driver_s["setup"] = time.perf_counter() - began
        # Leaving the `with` by an exception (Ctrl-C, a failed write) kills the running
        # measurements and drops the rest, rather than run on with nobody to store their rows.
        for done_count, (point, repeat, outcome, run_jobs) in enumerate(pool.results(tasks), 1):
            detail, rows = _rows(spec, point, repeat, outcome, run_id=run_id, run_jobs=run_jobs, start=start)
            statuses = _store(result, point, repeat, outcome, detail, rows)
            took = "" if outcome.wall_s is None else f" ({outcome.wall_s:.1f} s)"
            say(done_count, len(tasks), f"{point.label()} repeat {repeat}: {', '.join(statuses)}{took}")
        last = max((end for _, end in result.spans), default=time.time())
    result.driver_s["closing"] = time.time() - last  # the last rows written, the servers ended
    return result


def _pool(measure: Callable[..., Any], executor: str, start: Start, jobs: int,
          scheduler: str | None, servers: ServerPool | None = None) -> executors.Local | executors.Dask:
    """Where the measurements run: threads of this process (forking from `servers` if
    given), or a Dask cluster."""
    if executor == "dask":
        return executors.Dask(measure, fork=start == "fork", jobs=jobs, scheduler=scheduler)
    return executors.Local(measure, fork=start == "fork", jobs=jobs, servers=servers)


def _manifest(spec: Spec) -> dict[str, Any]:
    """What the results folder records about the sweep before its first row."""
    return {
        "schema_version": SCHEMA_VERSION,
        "spec": spec.as_dict(),
        "points": [{"id": p.id, **p.model_dump()} for p in spec.points],
        "environment": env.host(),
        "started_utc": env.utc_now(),
    }


def _tasks(spec: Spec, have: Mapping[tuple[str, int], Any]) -> list[tuple[Point, int]]:
    """The (point, repeat)s not yet in the folder (`have`), repeat-major: a sweep stopped
    early still covers every point, and slow drift of the machine spreads over all points
    rather than biasing the last ones."""
    return [
        (point, repeat)
        for repeat in range(spec.sweep.repeats)
        for point in spec.points
        if (point.id, repeat) not in have
    ]


def _prestart(pool: executors.Local | executors.Dask, first: Sequence[tuple[Point, int]],
              import_paths: tuple[str, ...]) -> None:
    """Start the servers of the `first` measurements now, importing JAX (seconds) while the
    driver finishes setting up. Not every server: one importing while another's child
    measures would take cores from that measurement."""
    environs = {}
    for point, _ in first:
        environ, python = worker_environment(point, import_paths), interpreter(point)
        environs[(python, *sorted(environ.items()))] = (environ, python)
    pool.prestart(list(environs.values()))


def _rows(spec: Spec, point: Point, repeat: int, outcome: executors.Outcome, *, run_id: str, run_jobs: int | None,
          start: Start) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(anatomy detail, rows) of one measurement: its values made into full rows."""
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
    return detail, rows


def _store(result: SweepResult, point: Point, repeat: int, outcome: executors.Outcome,
           detail: list[dict[str, Any]], rows: list[dict[str, Any]]) -> Counter:
    """Write one measurement's detail and rows to the folder and count them in `result`;
    its rows' statuses."""
    if detail:  # before the rows: a (point, repeat) with rows is done, detail included
        store.write_detail(result.folder, f"{point.id}-r{repeat}", detail)
    writing = time.perf_counter()
    store.write_rows(result.folder, f"{point.id}-r{repeat}", rows)
    result.written_s += time.perf_counter() - writing
    result.rows += rows
    result.spans += [outcome.span] if outcome.span else []
    statuses = Counter(row["run_status"] for row in rows)
    result.statuses.update(statuses)
    result.failures += [
        Failure(point.label(), repeat, row["run_status"], row["run_error"])
        for row in rows if row["run_status"] != "ok"
    ]
    return statuses
