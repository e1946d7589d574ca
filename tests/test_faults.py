"""Real faults through the real runner: segfaults, aborts, sleeps, memory hogs, kill -9.

The faulty programs live in tests/faults.py and reach the measuring process through the
spec key `program`, as a user's own code would.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import psutil
import pytest

from profiler.measurement.measure import measure
from profiler.processes.runner import run_sweep
from profiler.spec import Point, build_spec
from profiler.workloads import build
from tests.processes import group_ended

# The healthy points, 3 at a time, take ~5 s at a load of 6 on 2 cores, ~16 s at 15.
TIMEOUT_S = 30.0
# The sleeper never ends by itself: it runs in a sweep of its own whose timeout stops it
# early, beside the sweep of the others (whose limit must leave the healthy points room).
SLEEP_TIMEOUT_S = 2.0
MAX_RSS_GB = 1.0  # a measuring process of a tiny program peaks near 0.3 GiB
FAULTS = ["sleep", "ok", "segfault", "abort", "hog", "raises"]
USER_MODULE = """
import jax
import jax.numpy as jnp

def make(batch):
    return (lambda v: jnp.cumsum(v * 2)), (jax.ShapeDtypeStruct((batch,), jnp.float32),)
"""


@pytest.fixture(scope="module")
def faulty_sweep(tmp_path_factory):
    """The faults next to healthy points, one of them a user's module in the current
    directory, measured 3 at a time; the sleeper meanwhile in a sweep of its own, with a
    short timeout. The two results, and the rows of both folders."""
    cwd = tmp_path_factory.mktemp("user")
    (cwd / "userprog.py").write_text(USER_MODULE)
    # Processes an earlier test of this worker left running on purpose (a notebook session's
    # fork server, kept for the next profile() call) are not this sweep's.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(Path(__file__).parent.parent))  # tests.faults, from another directory
        mp.chdir(cwd)
        common = {"name": "faults", "hidden": 32, "heads": 2, "batch": 3, "repeats": 1, "max_rss_gb": MAX_RSS_GB}
        spec = build_spec({**common, "timeout_s": TIMEOUT_S, "program": [
            *(f"tests.faults:{name}" for name in FAULTS if name != "sleep"), "userprog:make"]})
        sleeper = build_spec({**common, "timeout_s": SLEEP_TIMEOUT_S, "program": "tests.faults:sleep"})
        with ThreadPoolExecutor(1) as pool:
            slept = pool.submit(run_sweep, sleeper, cwd / "sleep", jobs=1)
            results = [run_sweep(spec, cwd / "res", jobs=3), slept.result()]
    leftovers = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    rows = pd.concat([pd.read_parquet(cwd / "res"), pd.read_parquet(cwd / "sleep")], ignore_index=True)
    return results, rows.set_index(rows["cfg_program"].str.split(":").str[-1]), leftovers


def test_each_fault_is_recorded_as_its_kind(faulty_sweep):
    (result, slept), rows, _ = faulty_sweep
    assert rows["run_status"].to_dict() == {
        "ok": "ok", "make": "ok", "segfault": "crash", "abort": "crash", "sleep": "timeout", "hog": "oom", "raises": "error",
    }
    assert "SIGSEGV" in rows.loc["segfault", "run_error"]
    assert "segfault (faults.py:" in rows.loc["segfault", "run_error"]  # where it crashed
    assert "SIGABRT" in rows.loc["abort", "run_error"]
    assert f"timeout_s = {SLEEP_TIMEOUT_S:g}" in rows.loc["sleep", "run_error"]
    assert rows.loc["sleep", "run_wall_s"] >= SLEEP_TIMEOUT_S
    assert "max_rss_gb = 1" in rows.loc["hog", "run_error"]
    assert rows.loc["hog", "mem_host_rss_peak_bytes"] > MAX_RSS_GB * 2**30
    assert rows.loc["raises", "run_error"].startswith("ValueError: a broken factory")
    assert result.failed == Counter(crash=2, oom=1, error=1) and not result.ok
    assert slept.failed == Counter(timeout=1) and not slept.ok
    assert {(f.label.split()[0], f.status) for f in result.failures + slept.failures} == {
        ("segfault", "crash"), ("abort", "crash"), ("sleep", "timeout"), ("hog", "oom"), ("raises", "error"),
    }


def test_the_healthy_neighbours_are_measured_in_full(faulty_sweep):
    _, rows, _ = faulty_sweep
    for name in ("ok", "make"):
        ok = rows.loc[name]
        assert ok["time_compile_s"] > 0 and ok["cost_xla_flops"] > 0 and ok["size_hlo_instructions"] > 0
        assert ok["mem_host_rss_peak_bytes"] < MAX_RSS_GB * 2**30
        assert ok["env_jax_version"] and ok["cfg_workload"] == "program"
    assert rows.loc["ok", "mem_argument_bytes"] == 4 * 32 * 4  # (4, hidden) float32
    assert rows.loc["make", "mem_argument_bytes"] == 3 * 4  # the user's factory got batch = 3


def test_a_factory_gets_the_point_keys_it_accepts():
    program, = build(Point(program="tests.faults:ok", hidden=48, heads=2))
    assert program.args[0].shape == (4, 48)
    assert measure(program)["cost_xla_flops"] > 0


def test_stopped_processes_leave_nothing_running(faulty_sweep):
    _, rows, leftovers = faulty_sweep
    assert len(rows) == len(FAULTS) + 1
    assert leftovers == []


def _profiler(*args, env=None):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, env=env)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_sweep_killed_with_its_process_group_resumes_to_every_row_exactly_once(tmp_path):
    spec = tmp_path / "killed.toml"
    spec.write_text('name = "killed"\nprogram = ["tests.faults:slow", "tests.faults:abort"]\n'
                    'hidden = 32\nheads = 2\nrepeats = 2\n')
    out = tmp_path / "res"
    sweep = ["sweep", str(spec), "--out", str(out), "--jobs", "2", "--no-report"]
    # The slow points wait for this file, made only once the sweep is killed: the abort
    # points' rows are in by then and the slow points' are not, under any load.
    gate = tmp_path / "gate"
    env = {**os.environ, "FAULTS_GATE": str(gate)}
    proc = subprocess.Popen([sys.executable, "-m", "profiler", *sweep], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seen = []  # rows a reader got during the sweep: pandas.read_parquet must work at any moment
    deadline = time.monotonic() + 120
    while not seen or seen[-1] < 1:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline
        if (out / "_manifest.json").exists():
            seen.append(len(pd.read_parquet(out)))
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if not group_ended(proc.pid, within_s=5):  # the measuring processes died with the group
        pytest.fail("measuring processes outlived their killed sweep")
    before = {name: data for name, data in _snapshot(out).items() if name.startswith("part-")}
    assert 1 <= len(before) < 4 and seen == sorted(seen)
    gate.touch()

    different = _profiler(*sweep[:2], "hidden=64", *sweep[2:], "--resume")
    assert different.returncode == 2 and "different spec" in different.stderr and "hidden" in different.stderr
    assert different.stderr.count("\n") == 1

    resumed = _profiler(*sweep, "--resume", env=env)
    assert resumed.returncode == 1  # the abort point failed, in both runs
    assert f"{len(before)} already done" in resumed.stdout
    assert "failed: 2 crash" in resumed.stderr

    rows = pd.read_parquet(out)
    pairs = Counter(zip(rows["run_point_id"], rows["run_repeat"], strict=True))
    assert len(pairs) == 4 and set(pairs.values()) == {1}
    assert rows["run_id"].nunique() == 2
    assert Counter(rows["run_status"]) == Counter(ok=2, crash=2)
    after = _snapshot(out)
    assert all(after[name] == data for name, data in before.items())  # kept, not measured again
    assert not [name for name in after if name.startswith(".")]  # no half-written leftovers
