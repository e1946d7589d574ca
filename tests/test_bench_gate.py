"""The compile-time gate can fail: a real baseline and a real run of a workload slowed on
purpose, compared by pytest-benchmark itself (`--benchmark-compare-fail`, the threshold
of `make bench`), in fresh pytest processes; and a round that a cache answered is not
taken for a cold one."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jax

from profiler.measure import compile_stages
from profiler.spec import Point
from profiler.workloads import build

REPO = Path(__file__).resolve().parent.parent
THRESHOLD = re.search(r"^BENCH_MAX_SLOWDOWN \?= (\d+)$", (REPO / "Makefile").read_text(), re.M).group(1)

# A tiny point benchmarked with the same cold-compile helper and clock as
# tests/benchmarks/. Its function burns PLANTED_CPU_S seconds of CPU while it is traced:
# a model that became slower to trace. The work runs only when the function is really
# traced, so it also shows that every round is cold.
BENCHMARK = '''
import dataclasses
import sys
import time

import pytest

sys.path.insert(0, {benchmarks!r})
from cold import TIMER, benchmark_cold_compile

from profiler.spec import Point
from profiler.workloads import build

PLANTED_CPU_S = {cpu_s!r}


def slowed(point):
    def slow(fn):
        def traced(*args):
            end = time.process_time() + PLANTED_CPU_S
            while time.process_time() < end:
                pass
            return fn(*args)
        return traced
    return [dataclasses.replace(p, fn=slow(p.fn)) for p in build(point)]


@pytest.mark.benchmark(timer=TIMER)
def test_tiny(benchmark):
    point = Point(mode="scan", layers=2, hidden=32, heads=2, batch=2, seq=8)
    benchmark_cold_compile(benchmark, point, rounds=3, build=slowed)
'''


def _bench(tmp_path: Path, cpu_s: float, *flags: str) -> subprocess.CompletedProcess:
    test = tmp_path / "test_tiny_bench.py"
    test.write_text(BENCHMARK.format(benchmarks=str(REPO / "tests" / "benchmarks"), cpu_s=cpu_s))
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--benchmark-enable", f"--benchmark-storage=file://{tmp_path / 'store'}", "--benchmark-save-data", *flags],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )


def test_a_slowed_workload_fails_the_benchmark_comparison(tmp_path):
    base = _bench(tmp_path, 0.0, "--benchmark-save=baseline")
    assert base.returncode == 0, base.stdout + base.stderr
    (saved,) = (tmp_path / "store").glob("*/0001_baseline.json")
    median = json.loads(saved.read_text())["benchmarks"][0]["stats"]["median"]

    # Slowed by twice the baseline's median: about 3x, far past the noise (docs/gates.md).
    slowed = _bench(tmp_path, 2 * median, "--benchmark-save=slowed", "--benchmark-compare=0001",
                    f"--benchmark-compare-fail=median:{THRESHOLD}%")
    out = slowed.stdout + slowed.stderr
    assert slowed.returncode == 1, out
    assert "Performance has regressed" in out
    assert re.search(rf"test_tiny \(0001_[^)]*\) - Field 'median' has failed PercentageRegressionCheck: "
                     rf"[\d.]+ > {THRESHOLD}\.0+", out), out
    # Both runs are on disk for a reader to inspect.
    assert len(list((tmp_path / "store").glob("*/000[12]_*.json"))) == 2


def test_a_round_answered_from_a_cache_is_not_cold():
    point = Point(mode="scan", layers=2, hidden=32, heads=2, batch=2, seq=8)
    jax.clear_caches()
    program = build(point)[0]
    assert compile_stages(program).cold
    assert not compile_stages(program).cold  # the same function again: every cache answers
    assert compile_stages(build(point)[0]).cold  # a fresh model and function
    jax.clear_caches()
    assert compile_stages(program).cold  # the same function after clearing the caches
