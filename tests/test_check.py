"""`python -m profiler check NEW --baseline OLD`: real sweeps at tiny sizes (each repeat a
fresh process), and regressions planted in real rows rewritten with the store."""

import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from profiler.cli import main
from profiler.gates.check import DETERMINISTIC, check
from profiler.processes.runner import run_sweep
from profiler.spec import build_spec
from profiler.storage import store
from profiler.units import MISSING

TINY = dict(hidden=32, heads=2, batch=2, seq=8, layers=[2, 4])


def _sweep(folder, mode, repeats):
    spec = build_spec({"name": f"check-{mode}", "mode": mode, "repeats": repeats, **TINY})
    assert run_sweep(spec, folder).ok
    return folder


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    return {
        "baseline": _sweep(root / "baseline", "scan", repeats=2),
        "again": _sweep(root / "again", "scan", repeats=1),
        "loop": _sweep(root / "loop", "loop", repeats=1),
    }


def _rewrite(source, folder, change):
    """A copy of the results in `source` with `change(row)` applied to each row, written
    through the store like a sweep writes them."""
    folder.mkdir()
    for part in store.part_files(source):
        rows = pq.read_table(part).to_pylist()
        for row in rows:
            change(row)
        store.write_rows(folder, part.stem.removeprefix("part-"), rows)
    return folder


def _check(capsys, *argv):
    code = main(["check", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_folder_passes_against_itself(sweeps, capsys):
    code, out, _ = _check(capsys, sweeps["baseline"], "--baseline", sweeps["baseline"])
    assert code == 0
    assert out.strip() == f"no regression: 2 point(s) of {sweeps['baseline']} checked in {sweeps['baseline']}"


def test_deterministic_metrics_agree_between_fresh_processes(sweeps):
    # A second sweep of the same points: timings differ, the deterministic metrics do
    # not (the slowdown limit is set out of reach so that only they can fail).
    result = check(sweeps["again"], sweeps["baseline"], max_slowdown_pct=1e6)
    assert result.points == 2
    assert result.regressions == []


def test_a_scan_that_became_a_loop_fails_on_every_point(sweeps, tmp_path, capsys):
    # The loop sweep relabelled as scan: the same points, compiled unrolled.
    relabelled = _rewrite(sweeps["loop"], tmp_path / "unrolled", lambda row: row.update(cfg_mode="scan"))
    code, out, _ = _check(capsys, relabelled, "--baseline", sweeps["baseline"], "--max-slowdown", "1e6")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["point", "phase", "metric", "baseline", "new", "change", "limit"]
    for layers in (2, 4):
        hlo = [line for line in lines if line.startswith(f"layers={layers} ") and " size_hlo_instructions " in line]
        assert len(hlo) == 1 and hlo[0].endswith("any change"), out
    assert re.fullmatch(rf"\d+ regression\(s\): 2 point\(s\) of {sweeps['baseline']} checked in {relabelled}", lines[-1])


def test_one_changed_metric_is_reported_with_both_values(sweeps, tmp_path, capsys):
    baseline = store.load(sweeps["baseline"])
    temp = baseline.loc[baseline["cfg_layers"] == 4, "mem_temp_bytes"].iloc[0]

    def grow(row):
        if row["cfg_layers"] == 4:
            row["mem_temp_bytes"] += 64

    changed = _rewrite(sweeps["baseline"], tmp_path / "temp", grow)
    code, out, _ = _check(capsys, changed, "--baseline", sweeps["baseline"])
    assert code == 1
    (line,) = [line for line in out.splitlines() if "mem_temp_bytes" in line]
    assert line.split() == ["layers=4", "main", "mem_temp_bytes", str(int(temp)), str(int(temp) + 64),
                            "+64", f"({64 / temp * 100:+.3g}%)", "any", "change"]
    assert out.splitlines()[-1].startswith("1 regression(s)")


@pytest.mark.parametrize("clock, column, other", [
    ("cpu", "time_compile_cpu_s", "wall"), ("wall", "time_compile_s", "cpu")])
def test_a_slower_compile_fails_past_the_limit_on_its_clock_only(sweeps, tmp_path, capsys, clock, column, other):
    # Compile times set to 1 s in the baseline and 3 s in the new folder, every repeat:
    # real repeats on this shared machine can differ by 3x, which would widen the
    # bootstrap interval of the ratio past 1 and make the planted slowdown a coin toss.
    def compile_time(seconds):
        return lambda row: row.update({column: seconds})

    steady = _rewrite(sweeps["baseline"], tmp_path / "steady", compile_time(1.0))
    slowed = _rewrite(sweeps["baseline"], tmp_path / "slow", compile_time(3.0))
    code, out, _ = _check(capsys, slowed, "--baseline", steady, "--max-slowdown", "50", "--clock", clock)
    assert code == 1
    compile_lines = [line.split() for line in out.splitlines() if f" {column} " in line]
    assert [(cells[0], cells[-2], cells[-1]) for cells in compile_lines] == [
        ("layers=2", "+200.0%", "+50%"), ("layers=4", "+200.0%", "+50%")]
    assert not any(metric in out for metric in DETERMINISTIC)
    code, out, _ = _check(capsys, slowed, "--baseline", steady, "--max-slowdown", "201", "--clock", clock)
    assert code == 0, out
    # The other clock does not see it.
    code, out, _ = _check(capsys, slowed, "--baseline", steady, "--max-slowdown", "50", "--clock", other)
    assert code == 0, out


def test_a_point_that_failed_is_a_regression(sweeps, tmp_path, capsys):
    def fail(row):
        if row["cfg_layers"] == 2:
            row.update(run_status="error", run_error="planted")

    failed = _rewrite(sweeps["baseline"], tmp_path / "failed", fail)
    code, out, _ = _check(capsys, failed, "--baseline", sweeps["baseline"])
    assert code == 1
    (line,) = [line for line in out.splitlines() if "run_status" in line]
    assert line.split() == ["layers=2", "main", "run_status", MISSING, MISSING, "failed", "(error", "x2)", "ok"]


@pytest.mark.parametrize("argv, message", [
    (["missing", "--baseline", "{baseline}"], "'missing' is not a results folder"),
    (["{baseline}", "--baseline", "{empty}"], "holds no Parquet results"),
    (["{baseline}", "--baseline", "{baseline}", "--max-slowdown", "-5"], "--max-slowdown: must be at least 0"),
    (["{baseline}"], "the following arguments are required: --baseline"),
])
def test_bad_input_is_one_line_and_exit_2(sweeps, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(baseline=sweeps["baseline"], empty=tmp_path / "empty") for a in argv]
    code, out, err = _check(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_no_point_in_common_is_bad_input(sweeps, tmp_path, capsys):
    other = _rewrite(sweeps["loop"], tmp_path / "other", lambda row: row.update(cfg_hidden=64))
    code, _, err = _check(capsys, other, "--baseline", sweeps["baseline"])
    assert code == 2 and "measured none of the points" in err


def test_the_command_line_runs_as_a_module(sweeps, tmp_path):
    relabelled = _rewrite(sweeps["loop"], tmp_path / "unrolled", lambda row: row.update(cfg_mode="scan"))
    done = subprocess.run([sys.executable, "-m", "profiler", "check", str(relabelled), "--baseline",
                           str(sweeps["baseline"]), "--max-slowdown", "1e6"], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("point ") and "size_hlo_instructions" in done.stdout


def test_check_loads_no_plotting(sweeps):
    """A text-only gate: importing profiler.gates.check and running a check in a fresh
    interpreter leaves plotly and jinja2 unimported."""
    script = (f"import sys\nfrom profiler.gates.check import check\n"
              f"result = check({str(sweeps['again'])!r}, {str(sweeps['baseline'])!r}, max_slowdown_pct=1e6)\n"
              "print(result.points, [m for m in ('plotly', 'jinja2') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "2 []"


@pytest.mark.parametrize("column", ["env_cpu_model", "env_backend", "env_device_kind"])
def test_a_baseline_from_another_machine_is_refused(sweeps, tmp_path, capsys, column):
    baseline = store.load(sweeps["baseline"])
    ours = baseline[column].iloc[0]
    elsewhere = _rewrite(sweeps["baseline"], tmp_path / "elsewhere", lambda row: row.update({column: "Other 9000"}))
    code, out, err = _check(capsys, sweeps["again"], "--baseline", elsewhere)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"{column[4:]} Other 9000 vs {ours}" in err and "--cross-machine" in err


def test_across_machines_only_the_deterministic_metrics_are_checked(sweeps, tmp_path, capsys):
    def elsewhere(compile_s, temp_extra=0):
        def change(row):
            row.update(env_cpu_model="Other 9000", time_compile_cpu_s=compile_s)
            row["mem_temp_bytes"] += temp_extra
        return change

    steady = _rewrite(sweeps["baseline"], tmp_path / "steady", lambda row: row.update(time_compile_cpu_s=1.0))
    slow = _rewrite(sweeps["baseline"], tmp_path / "slow", elsewhere(3.0))
    code, out, _ = _check(capsys, slow, "--baseline", steady, "--cross-machine")
    assert code == 0, out  # compile CPU time tripled on another machine: not a regression
    note = out.splitlines()[0]
    assert note.startswith("note: timings not checked") and "cpu_model" in note and "Other 9000" in note
    grown = _rewrite(sweeps["baseline"], tmp_path / "grown", elsewhere(3.0, temp_extra=64))
    code, out, _ = _check(capsys, grown, "--baseline", steady, "--cross-machine")
    assert code == 1
    assert [line.split()[2] for line in out.splitlines()[2:-1]] == ["mem_temp_bytes", "mem_temp_bytes"]
