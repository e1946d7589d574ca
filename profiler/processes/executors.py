"""Where measurements run: threads of the sweep's own process, or the workers of a Dask cluster.

Either way each measurement runs in a process of its own under the sweep's limits
(`measure`, supervise.measure_in_subprocess), and only the driver writes the results folder:
an executor hands each (point, repeat) back with its outcome and `run_jobs`, the number
of measurements its host ran at most at once.

`measure(point, stop=, servers=)` gets the executor's `threading.Event` that stops every
measurement of the sweep, and the fork servers of the process it runs in (None: start
fresh interpreters). A Dask worker keeps both per sweep, by run id, until the driver ends
the sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from profiler.processes.forkserver import ServerPool
from profiler.spec import Point, SpecError


@dataclass
class Outcome:
    """What one measuring process left: its rows (without identity) and how it ended."""

    rows: list[dict[str, Any]]
    wall_s: float | None
    started_utc: str | None
    """Both None when nothing is known of the process (its Dask worker was lost)."""
    span: tuple[float, float] | None = None
    """Epoch seconds (time.time()) from asking for the process (a fork server's start
    included) to holding its result: when it occupied a slot of the executor."""


Task = tuple[Point, int]
Done = tuple[Point, int, Outcome, int | None]
"""A finished task: point, repeat, outcome, run_jobs."""
Measure = Callable[..., Outcome]


def core_shares(jobs: int, cores: list[int] | None = None) -> list[list[int]] | None:
    """The cores of each of `jobs` measuring slots: the process's cores (`cores`, default
    its affinity) cut into `jobs` contiguous shares, or one core each, shared round-robin,
    when there are more jobs than cores. None for one job (every core) or where affinity
    cannot be set."""
    if cores is None:
        if jobs == 1 or not hasattr(os, "sched_getaffinity"):
            return None
        cores = sorted(os.sched_getaffinity(0))
    if jobs == 1:
        return None
    if jobs >= len(cores):
        return [[cores[i % len(cores)]] for i in range(jobs)]
    return [cores[i * len(cores) // jobs:(i + 1) * len(cores) // jobs] for i in range(jobs)]


class Local:
    """`jobs` measurements at a time, each watched by a thread of this process. With more
    than one job, each thread's measuring processes run on their own share of the cores
    (core_shares): XLA and Eigen size their thread pools from the cores a process may
    use, and N processes each sized for every core fight over them."""

    def __init__(self, measure: Measure, *, fork: bool, jobs: int, servers: ServerPool | None = None) -> None:
        self._measure, self._fork, self.jobs = measure, fork, jobs
        self._shared = servers if fork else None
        """The caller's servers (profiler.api: one per Python session), left running at the end."""

    def __enter__(self) -> Local:
        self._stop = threading.Event()
        self._servers = self._shared or (ServerPool() if self._fork else None)
        shares: list[list[int] | None] = [None] * self.jobs
        self._shares = iter(core_shares(self.jobs) or shares)
        self._slot = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=self.jobs, initializer=self._take_share)
        return self

    def _take_share(self) -> None:
        self._slot.cpus = next(self._shares)  # once per worker thread, as it starts

    def prestart(self, environs: list[tuple[dict[str, str], str | None]]) -> None:
        """Start the fork servers of these (environment, interpreter) pairs now, without
        waiting for them."""
        if self._servers is not None:
            for environ, python in environs:
                self._servers.prestart(environ, python)

    def _run(self, point: Point) -> Outcome:
        return self._measure(point, stop=self._stop, servers=self._servers, cpus=self._slot.cpus)

    def results(self, tasks: list[Task]) -> Iterator[Done]:
        futures = {self._pool.submit(self._run, point): (point, repeat) for point, repeat in tasks}
        for future in as_completed(futures):
            point, repeat = futures[future]
            yield point, repeat, future.result(), self.jobs

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        interrupted = exc_type is not None
        if interrupted:  # kill what runs (a fork server still starting too), start nothing more
            self._stop.set()
            if self._servers is not None:
                self._servers.close(kill=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._servers is not None and self._servers is not self._shared:
            self._servers.close()


def _refused(address: str) -> str | None:
    """Why a tcp:// scheduler address refuses connections (or has no valid port), or None.
    Dask's Client retries a refused connection until its timeout (10 s); nothing listening
    is known at once."""
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError as e:  # not a number, or out of range: no connection to try
        return str(e)
    if parts.scheme != "tcp" or not parts.hostname or not port:
        return None
    try:
        socket.create_connection((parts.hostname, port), timeout=2).close()
    except ConnectionRefusedError as e:
        return e.strerror or "connection refused"
    except OSError:
        return None  # not known to refuse: the Client's own timeout and message decide
    return None


class Dask:
    """Measurements as tasks of a Dask cluster: the one at `scheduler`, or else a
    LocalCluster of `jobs` single-threaded worker processes on the loopback interface."""

    def __init__(self, measure: Measure, *, fork: bool, jobs: int, scheduler: str | None) -> None:
        self._measure, self._fork, self._jobs, self._scheduler = measure, fork, jobs, scheduler
        self._run = uuid.uuid4().hex
        self._futures: list[Any] = []

    def __enter__(self) -> Dask:
        from distributed import Client, LocalCluster

        self._cluster = self._client = None
        if self._scheduler is None:
            # Ctrl-C reaches the whole process group; the driver, not each worker, decides
            # how the sweep ends (it stops the measurements, then the cluster). So the
            # cluster's processes are started with SIGINT ignored, which they inherit; a
            # Ctrl-C in the seconds the cluster takes to start is ignored too.
            main = threading.current_thread() is threading.main_thread()
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                try:
                    self._cluster = LocalCluster(
                        n_workers=self._jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, silence_logs=logging.ERROR)
                    self._client = Client(self._cluster)
                finally:
                    if main:
                        signal.signal(signal.SIGINT, handler)
            except BaseException:
                self.__exit__(*sys.exc_info())
                raise
        else:
            refused = _refused(self._scheduler)
            if refused:
                raise SpecError(f"--scheduler {self._scheduler}: cannot connect ({refused})")
            try:
                self._client = Client(self._scheduler, timeout="10s")
            except (OSError, TimeoutError) as e:
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise SpecError(f"--scheduler {self._scheduler}: cannot connect ({why})") from None
        return self

    def prestart(self, environs: list[tuple[dict[str, str], str | None]]) -> None:
        """Nothing: each worker starts its fork servers with its first measurement."""

    def results(self, tasks: list[Task]) -> Iterator[Done]:
        from distributed import as_completed as completed

        assert self._client is not None  # connected by __enter__
        futures = {
            self._client.submit(_on_worker, self._run, self._measure, self._fork, point,
                                key=f"measure-{point.id}-r{repeat}-{self._run}", pure=False): (point, repeat)
            for point, repeat in tasks
        }
        self._futures = list(futures)
        for future in completed(futures):
            point, repeat = futures[future]
            try:
                outcome, address = future.result()
            except Exception as e:  # the worker died (again and again) or the task was lost
                yield point, repeat, _lost(e), None
                continue
            yield point, repeat, outcome, self._threads_on_host(address)

    def _threads_on_host(self, address: str) -> int | None:
        """Dask threads on the host of the worker at `address`: the measurements that
        host may run at once."""
        assert self._client is not None  # connected by __enter__
        workers = self._client.scheduler_info()["workers"]
        host = workers[address]["host"] if address in workers else urlsplit(address).hostname
        return sum(w["nthreads"] for w in workers.values() if w["host"] == host) or None

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self._client is not None:
            interrupted = exc_type is not None
            if interrupted:  # kill what runs, start nothing more
                self._client.cancel(self._futures)
            with contextlib.suppress(Exception):  # the workers' measurements and fork servers
                self._client.run(_end_run, self._run, interrupted)
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _lost(error: Exception) -> Outcome:
    """The row of a measurement whose Dask worker died: nothing is known of its process."""
    why = f"{type(error).__name__}: {error}".strip()
    return Outcome([{"run_status": "crash", "run_error": f"the Dask worker running the measurement was lost ({why})"}],
                   None, None)


# A Dask worker's state per sweep (run id): the event that stops its measurements and
# its fork servers. Created by the sweep's first task there, ended by the driver; a task
# of an ended sweep (dispatched before it was cancelled) starts nothing.
_RUNS: dict[str, tuple[threading.Event, ServerPool | None]] = {}
_ENDED: set[str] = set()
_RUNS_LOCK = threading.Lock()


def _on_worker(run: str, measure: Measure, fork: bool, point: Point) -> tuple[Outcome, str]:
    from distributed import get_worker

    with _RUNS_LOCK:
        if run in _ENDED:
            raise RuntimeError("the sweep is over")
        stop, servers = _RUNS.setdefault(run, (threading.Event(), ServerPool() if fork else None))
    return measure(point, stop=stop, servers=servers), get_worker().address


def _end_run(run: str, interrupted: bool) -> None:
    """Forget the sweep on this worker; if it was interrupted, kill its measurements."""
    with _RUNS_LOCK:
        _ENDED.add(run)
        stop, servers = _RUNS.pop(run, (None, None))
    if interrupted and stop is not None:
        stop.set()
    if servers is not None:
        servers.close(kill=interrupted)
