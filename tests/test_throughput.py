"""Throughput: a sweep says where its wall time went, and the parts add up to it; under
--jobs N each measuring process runs on its own share of the cores, recorded in its rows."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profiler.analysis.breakdown import MEASURED, process_seconds, sweep_breakdown, union_seconds
from profiler.processes.executors import core_shares
from profiler.processes.runner import run_sweep
from profiler.processes.worker import _ranges
from profiler.report.analysis import Analysis
from profiler.report.views.overhead import overhead_section, share_lines
from profiler.spec import load_spec
from profiler.storage import store

REPO = Path(__file__).resolve().parent.parent
TINY = ['mode=["loop", "scan"]', "layers=2", "hidden=32", "heads=2", "batch=2", "seq=8", "run=false"]
TOLERANCE = 0.05
"""The share of a sweep's wall time its breakdown may leave unexplained ('other')."""
LINE = re.compile(r"^time: wall ([\d.]+) s[^:]*: (.*)$", re.M)


@pytest.fixture(scope="module")
def jobs2(tmp_path_factory):
    """A real sweep command of 4 tiny measurements, 2 at once: its output, wall time, rows."""
    out = tmp_path_factory.mktemp("jobs2") / "res"
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "profiler", "sweep", "sweeps/seed.toml", *TINY, "repeats=2",
                           "--jobs", "2", "--out", str(out), "--no-report"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    wall = time.time() - t0
    assert done.returncode == 0, done.stderr
    return done.stdout, wall, store.load(out)


# The command's wall clock against its own breakdown, under load from nothing but itself:
# a test running beside it stretches the parts it cannot see. Run alone (the serial phase).
@pytest.mark.serial
def test_a_sweeps_breakdown_adds_up_to_its_wall_time(jobs2):
    stdout, outside, rows = jobs2
    said, parts = LINE.search(stdout).groups()
    # The command's own wall, from its process's start to the line: the interpreter's exit
    # after it (a fraction of a second; more on a loaded machine) is what it leaves out.
    assert outside - max(2.0, 0.2 * outside) < float(said) <= outside + 0.05
    shares = {name: int(pct) / 100 for pct, name in re.findall(r"(\d+)% ([^,]+)", parts)}
    assert {MEASURED, "command start", "server start"} <= set(shares)
    assert shares.get("other", 0.0) <= TOLERANCE, parts
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.01 * len(shares))  # each share rounded
    # Every measuring process's phases cover its wall time, to the same tolerance.
    for row in rows.to_dict("records"):
        assert _phases(row) / 2 < row["run_wall_s"]
    assert process_seconds(rows.to_dict("records"))["rest of the measuring processes"] <= TOLERANCE * rows["run_wall_s"].sum() * 2


PHASES = ("time_process_start_s", "time_backend_start_s", "time_build_s", "time_trace_s", "time_lower_s",
          "time_compile_s", "time_analysis_s", "time_process_exit_s")
"""The parts of a measuring process's wall time, one after the other."""


def _phases(row) -> float:
    return sum(row[c] for c in PHASES)


def test_a_measuring_process_s_phases_lie_within_its_wall_time(real_results):
    # Consecutive parts of one process's wall time: their sum cannot exceed it, however
    # loaded the machine (the session's sweep, 2 jobs, run on; its run time is not a phase).
    for row in store.load(real_results).to_dict("records"):
        assert all(row[c] >= 0 for c in PHASES), row
        assert _phases(row) + row["time_run_s"] <= row["run_wall_s"], row


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores to share out")
def test_jobs_2_gives_each_measuring_process_its_share_of_the_cores(real_results, tmp_path):
    rows = store.load(real_results)
    cores = sorted(os.sched_getaffinity(0))
    assert set(rows["run_jobs"]) == {2}
    assert set(rows["run_cpus"]) == {len(cores) // 2}
    assert set(rows["run_cpu_affinity"]) == {_ranges(share) for share in core_shares(2, cores)}
    # With one job, a process keeps every core; a fresh interpreter is pinned as a forked child is.
    spec = load_spec(REPO / "sweeps/seed.toml", [*TINY, "repeats=1", 'mode="scan"'])
    one = run_sweep(spec, tmp_path / "one", start="fresh")
    assert [r["run_cpus"] for r in one.rows] == [len(cores)]
    assert one.rows[0]["time_server_start_s"] is None and one.rows[0]["time_process_start_s"] > 0


def test_core_shares():
    assert core_shares(1, [0, 1]) is None
    assert core_shares(2, [0, 1]) == [[0], [1]]
    assert core_shares(2, [0, 1, 2, 3, 4]) == [[0, 1], [2, 3, 4]]
    assert core_shares(3, [4, 5]) == [[4], [5], [4]]  # more jobs than cores: shared round-robin


def test_the_breakdown_divides_measurements_that_overlapped():
    rows = [{"run_id": "r", "run_point_id": p, "run_repeat": 0, "run_wall_s": 4.0, "time_build_s": 1.0,
             "time_trace_s": 1.0, "time_lower_s": 0.5, "time_compile_s": 1.0, "time_process_start_s": 0.5}
            for p in ("a", "b")]
    spans = [(100.0, 104.0), (101.0, 105.0)]  # two measurements of 4 s, 3 s of them at once
    assert union_seconds(spans) == 5.0
    b = sweep_breakdown(7.0, {"command start": 2.0}, rows, spans)
    assert b.concurrency == pytest.approx(8 / 5)
    assert b.parts[MEASURED] == pytest.approx(7.0 / 1.6)
    assert b.other_s == pytest.approx(0.0)
    assert b.line().startswith("wall 7.0 s (1.6 measurements at once): 62% build+trace+lower+compile")


def test_the_report_shows_the_breakdown_and_the_share_of_the_machine(real_results):
    rows = store.load(real_results)
    an = Analysis(rows)
    section = overhead_section(an)
    table = section.tables[0]
    parts = {row[1].text: float(row[3].text.rstrip("%")) for row in table.rows}
    assert MEASURED in parts and sum(parts.values()) == pytest.approx(100, abs=0.5)
    assert f"each measuring process on {len(os.sched_getaffinity(0)) // 2} of the host's" in share_lines(an)[0]
