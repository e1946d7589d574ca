"""Shared fixtures: one tiny real sweep per session, and synthetic results folders.

The real sweep spawns real measuring processes (~3 s each), so it runs once per session
and every test that needs real data reads the same folder. Synthetic folders hold rows
built from known power laws, for tests whose expected answer must be known exactly.
"""

from __future__ import annotations

import fcntl
import gc
import importlib.metadata
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from profiler import targets

# libtpu and the CUDA plugin are installed (extras tpu, gpu): JAX in the test process
# starts only its CPU backend, without the plugin, as the command line does.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # see worker_environment
targets.hide_cuda_plugin()

# JAX is imported after the lines above.
from profiler.measurement import env  # noqa: E402
from profiler.processes.runner import run_sweep  # noqa: E402
from profiler.spec import Point, build_spec  # noqa: E402
from profiler.storage import store  # noqa: E402
from profiler.storage.record import make_row  # noqa: E402

REAL_SPEC = {
    "name": "tiny-real", "mode": ["loop", "scan"], "layers": [1, 2, 4], "hidden": 32,
    "heads": 2, "batch": 2, "seq": 8, "repeats": 2, "run": True, "steps": 3,
}


TINY_FRESH_SPEC = {**REAL_SPEC, "name": "tiny-fresh", "layers": [2, 4], "repeats": 1}
"""Points of REAL_SPEC (same ids), each measured once more in a brand-new interpreter."""


def shared_sweep(tmp_path_factory: pytest.TempPathFactory, name: str, spec: dict[str, Any],
                 **run: Any) -> Path:
    """A real sweep run once per test run, whichever test asks first: every module that
    needs a sweep of this grid reads the same folder instead of running its own.

    Under pytest-xdist (`make test`) each worker has a session of its own: the first worker
    to ask runs the sweep into the run's shared temporary folder, the others wait for it."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's
    folder = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / f"{name}.done").exists():
            result = run_sweep(build_spec(spec), folder, **run)
            assert result.ok, result.statuses
            (shared / f"{name}.done").touch()
    return folder


@pytest.fixture(scope="session")
def real_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep: loop and scan at 1, 2 and 4 layers, two repeats, run on, two
    measuring processes at once, forked from a fork server. Read only."""
    return shared_sweep(tmp_path_factory, "tiny-real", REAL_SPEC, jobs=2)


@pytest.fixture(scope="session")
def fresh_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The points of real_results at 2 and 4 layers measured again, one repeat each, one
    at a time, each in a fresh interpreter (start='fresh'). Read only."""
    return shared_sweep(tmp_path_factory, "tiny-fresh", TINY_FRESH_SPEC, start="fresh")


TINY_FORWARD = dict(hidden=32, heads=2, batch=2, seq=8)


@pytest.fixture(scope="session")
def measure_forward() -> Callable[..., dict[str, Any]]:
    """measure_forward(mode, layers, **keys): the in-process measurement of a tiny forward
    point (TINY_FORWARD, with `keys` over it), compiled once per session process and shared
    by the modules that read it (test_cost, test_measure). Read only."""
    from profiler.measurement.measure import measure
    from profiler.workloads import build

    cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def get(mode: str, layers: int, **keys: Any) -> dict[str, Any]:
        key = (mode, layers, *sorted(keys.items()))
        if key not in cache:
            program = build(Point(mode=mode, layers=layers, **(TINY_FORWARD | keys)))[0]
            # The HLO text carries the Python stack of every traced operation, the caller's
            # frames included: traced under a test, its size would depend on which module
            # asked first. A thread of its own traces from the same stack for every caller.
            with ThreadPoolExecutor(1) as thread:
                cache[key] = thread.submit(measure, program).result()
        return cache[key]

    return get


# Constructed laws y = a · L^k per mode: (a, k).
LAWS: dict[str, dict[str, tuple[float, float]]] = {
    "time_trace_s": {"loop": (0.02, 1.0), "scan": (0.05, 0.0), "scan_shared": (0.04, 0.0)},
    "time_lower_s": {"loop": (0.01, 1.0), "scan": (0.03, 0.0), "scan_shared": (0.03, 0.0)},
    "time_compile_s": {"loop": (0.08, 0.9), "scan": (0.4, 0.05), "scan_shared": (0.35, 0.05)},
    "time_step_median_s": {"loop": (2e-4, 1.0), "scan": (2.4e-4, 1.0), "scan_shared": (2.2e-4, 1.0)},
    "size_jaxpr_eqns": {"loop": (32, 1.0), "scan": (35, 0.0), "scan_shared": (35, 0.0)},
    "size_hlo_instructions": {"loop": (120, 1.0), "scan": (236, 0.0), "scan_shared": (230, 0.0)},
    "size_hlo_bytes": {"loop": (3e4, 1.0), "scan": (6e4, 0.0), "scan_shared": (5.8e4, 0.0)},
    "cost_xla_flops": {"loop": (1.4e9, 1.0), "scan": (1.4e9, 0.0), "scan_shared": (1.4e9, 0.0)},
    "mem_temp_bytes": {"loop": (2e6, 0.0), "scan": (1e6, 1.0), "scan_shared": (1e6, 1.0)},
    "mem_argument_bytes": {"loop": (4e6, 1.0), "scan": (4e6, 1.0), "scan_shared": (4e6, 0.0)},
}
NOISY = {"time_trace_s", "time_lower_s", "time_compile_s", "time_step_median_s"}


def synthetic_rows(
    *, modes: Sequence[str] = ("loop", "scan"), layers: Sequence[int] = (2, 8, 32),
    hidden: Sequence[int] = (256,), remat: Sequence[str] = ("none",), repeats: int = 3,
    name: str = "synthetic", noise: float = 0.02, scale: Mapping[str, float] | None = None,
    env_values: Mapping[str, Any] | None = None, seed: int = 0,
) -> list[tuple[str, list[dict[str, Any]]]]:
    """(part name, rows) of a sweep whose metrics follow LAWS, times (hidden / 256), times
    `scale[metric]`, with multiplicative noise of relative size `noise` on timings."""
    rng = np.random.default_rng(seed)
    environment = {
        **env.host(), "env_jax_version": importlib.metadata.version("jax"),
        "env_jaxlib_version": importlib.metadata.version("jaxlib"),
        "env_flax_version": importlib.metadata.version("flax"), "env_backend": "cpu",
        "env_device_kind": "cpu", "env_device_count": 1, "env_persistent_cache": False,
        **(env_values or {}),
    }
    parts = []
    for repeat, mode, n_layers, h, policy in itertools.product(range(repeats), modes, layers, hidden, remat):
        point = Point(mode=mode, layers=n_layers, hidden=h, heads=4, remat=policy, run=True)
        values: dict[str, Any] = {}
        for metric, law in LAWS.items():
            a, k = law[mode]
            y = a * n_layers**k * (h / 256) * (scale or {}).get(metric, 1.0)
            if metric == "mem_temp_bytes" and policy != "none":
                y /= 4  # remat trades temp memory ...
            if metric == "cost_xla_flops" and policy != "none":
                y *= 1.3  # ... for recomputation
            if metric in NOISY:
                y *= float(np.exp(rng.normal(0, noise)))
            values[metric] = int(y) if metric.startswith(("size_", "mem_")) else y
        rows = [make_row(point, run_sweep=name, run_repeat=repeat, run_status="ok", cfg_phase="main",
                         run_started_utc=env.utc_now(), **environment, **values)]
        parts.append((f"{point.id}-r{repeat}", rows))
    return parts


def write_synthetic(folder: Path, *, failures: Sequence[tuple[str, str]] = (), **kwargs: Any) -> Path:
    """A results folder of synthetic_rows plus one failed row per (status, error)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in synthetic_rows(**kwargs):
        store.write_rows(folder, name, rows)
    for i, (status, error) in enumerate(failures):
        point = Point(mode="loop", layers=1000 + i)
        store.write_rows(folder, f"{point.id}-r0", [make_row(
            point, run_sweep=kwargs.get("name", "synthetic"), run_repeat=0, run_status=status,
            run_error=error, **env.host())])
    return folder


@pytest.fixture
def synthetic(tmp_path: Path) -> Callable[..., Path]:
    """make(name=..., **synthetic_rows kwargs) -> a fresh synthetic results folder."""
    counter = itertools.count()

    def make(**kwargs: Any) -> Path:
        return write_synthetic(tmp_path / f"synthetic-{next(counter)}", **kwargs)

    return make


# Fixed samples for the verdict rules of check and compare: each point's compile times
# over 5 repeats, so that what a gate decides is known without timing anything.
STEADY_S = [1.00, 1.02, 0.98, 1.01, 0.99]
NOISY_S = [0.90, 1.45, 1.40, 0.95, 1.50]
"""Median 1.40 (+40% of STEADY_S's), with two repeats under the baseline's median."""
FIXED_NEW = {1: [1.29 * t for t in STEADY_S], 2: [1.31 * t for t in STEADY_S], 3: NOISY_S, 4: list(STEADY_S)}
"""The new side against a STEADY_S baseline at a 30% limit: +29% passes, +31% fails, +40%
whose interval reaches below 1 passes, unchanged passes."""


def write_fixed(folder: Path, compile_s: Mapping[int, Sequence[float]],
                extra: Mapping[int, Mapping[str, Any]] | None = None) -> Path:
    """A results folder of scan points by layer count: repeat r of layers L has
    time_compile_s = compile_s[L][r], size_hlo_instructions 1000 and cost_flops 1e9 unless
    `extra[L]` says otherwise."""
    folder.mkdir(parents=True)
    for layers, samples in compile_s.items():
        point = Point(mode="scan", layers=layers, hidden=32, heads=2)
        values = {"size_hlo_instructions": 1000, "cost_flops": 1e9, **(extra or {}).get(layers, {})}
        for repeat, seconds in enumerate(samples):
            store.write_rows(folder, f"{point.id}-r{repeat}", [make_row(
                point, run_sweep=folder.name, run_repeat=repeat, run_status="ok", cfg_phase="main",
                run_started_utc=env.utc_now(), **env.host(), time_compile_s=seconds, **values)])
    return folder



# Modules by how long they took, longest first, when this order was set: seconds of each
# module on one of `make test`'s two xdist workers, the other busy beside it. Since the
# collections were frozen out (idle fresh clones, 2026-12-07): user_models 44, equivalence
# 44, report 31-37, forecast 23-27, targets 20-21, decode 16-17, models 20-22, check 20, cost
# 10-12, executors 18-20, releases 18-21, faults 12-13, browser 21-23; both workers still
# end within 5 s of each other in this order. `make test` hands
# modules to its workers in this order and the rest after them, by their number of tests:
# in xdist's own order (most tests first) a 22 s module was handed out last and one worker
# sat idle for 30 s. A module missing here costs only that balance, never a result.
LONGEST_FIRST = [
    "test_user_models", "test_equivalence", "test_report", "test_forecast", "test_targets", "test_decode",
    "test_models", "test_check", "test_cost", "test_executors", "test_releases", "test_faults", "test_browser",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    counts: dict[str, int] = {}
    for item in items:
        counts[item.path.stem] = counts.get(item.path.stem, 0) + 1
    # A stable sort: the tests of a module keep their order.
    items.sort(key=lambda item: (rank.get(item.path.stem, len(rank)), -counts[item.path.stem]))


_last_module: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A test process measures in-process, and measure.compile_stages collects garbage before
    # each timed stage: in a worker holding every import and earlier module's objects, each
    # such collection visited all of them (0.19 s each, 49 s of a run's CPU). As the fork
    # server does for its children, what exists when a module starts is collected once and
    # frozen out of later collections; the module's own objects are still collected.
    if _last_module[-1:] != [item.path.stem]:
        _last_module[:] = [item.path.stem]
        gc.collect()
        gc.freeze()
