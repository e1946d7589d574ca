"""The command line end to end: real processes, real compiles, real Parquet."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent


def profiler(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


@pytest.fixture(scope="module")
def cwd_sweep(tmp_path_factory):
    """One sweep from a working directory of its own, without --out, its overrides after
    the options: (the process, the working directory)."""
    work = tmp_path_factory.mktemp("work")
    done = profiler("sweep", str(REPO / "sweeps/smoke.toml"), "--no-report", "--jobs", "1", "layers=[1,3]",
                    'mode=["loop","scan"]', "repeats=2", "run=false", cwd=work)
    assert done.returncode == 0, done.stderr
    return done, work


def cli(capsys, *args):
    """`main(args)` in this process: its exit status, stdout and stderr."""
    from profiler.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def test_sweep_writes_one_row_per_point_and_repeat(cwd_sweep):
    done, work = cwd_sweep
    assert "[8/8]" in done.stdout  # plain progress lines when not on a terminal
    df = pd.read_parquet(next((work / "results").iterdir()))
    assert len(df) == 8
    assert (df["run_status"] == "ok").all()
    assert df.groupby(["run_point_id", "run_repeat"]).size().eq(1).all()
    assert set(df["cfg_mode"]) == {"loop", "scan"} and set(df["cfg_layers"]) == {1, 3}
    assert (df["env_jax_version"].str.len() > 0).all() and set(df["env_backend"]) == {"cpu"}
    assert not df["env_persistent_cache"].any()
    assert (df["time_compile_s"] > 0).all() and (df["cost_xla_flops"] > 0).all()
    # Each repeat ran in its own fresh process.
    assert df["run_started_utc"].nunique() == 8


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "res"
    done = profiler("sweep", "sweeps/smoke.toml", "layers=0", "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "key 'layers'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_results_go_under_the_current_directory_wherever_the_package_is(cwd_sweep):
    """Not next to the package's files (site-packages, when installed)."""
    done, work = cwd_sweep
    (folder,) = (work / "results").iterdir()
    assert folder.name.startswith("smoke-") and f"results: {folder}" in done.stdout
    assert len(pd.read_parquet(folder)) == 8


def test_overrides_may_follow_the_options(cwd_sweep, tmp_path):
    _, work = cwd_sweep  # its overrides follow --no-report --jobs 1
    assert set(pd.read_parquet(next((work / "results").iterdir()))["cfg_layers"]) == {1, 3}
    bad = profiler("sweep", "sweeps/smoke.toml", "--out", str(tmp_path / "bad"), "layers=0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: key 'layers'") and bad.stderr.count("\n") == 1
    stray = profiler("sweep", "sweeps/smoke.toml", "--out", str(tmp_path / "bad"), "--no-such-flag", "layers=1")
    assert stray.returncode == 2 and "unrecognized arguments: --no-such-flag" in stray.stderr
    assert not (tmp_path / "bad").exists()


def test_forecast_plan_and_report_hold_out_points_with_fit(tmp_path, capsys):
    """--fit 'layers<=4': fitted on 1-4 layers, the forecast at 8 (measured, held out) shows
    the measurement beside it; plan and the report's backtest table take the same option."""
    out = tmp_path / "res"
    done = profiler("sweep", "sweeps/smoke.toml", "--out", str(out), "--no-report", "layers=[1,2,3,4,8]",
                    "mode=scan", "repeats=1", "run=false")
    assert done.returncode == 0, done.stderr
    # Forecast, plan and report in this process (main()): what --fit does is checked, the
    # command line's process is test_cli's sweeps' and test_bad_input's.
    held = cli(capsys, "forecast", str(out), "layers=8", "--fit", "layers<=4")
    assert held.returncode == 0, held.stderr
    line = next(x for x in held.stdout.splitlines() if x.strip().startswith("size_hlo_instructions"))
    measured = pd.read_parquet(out).query("cfg_layers == 8")["size_hlo_instructions"].iloc[0]
    assert f"measured (held out) {measured}" in line and "from layers 1, 2, 3, 4)" in held.stdout
    assert "held out" not in cli(capsys, "forecast", str(out), "layers=8").stdout  # nothing held out without --fit
    for fit, measured in (("layers<=4", False), ("layers<=8", True)):  # held out: forecast, not read off the rows
        plan = cli(capsys, "plan", str(out), "layers=8", "--memory-per-device", "1GiB", "--fit", fit, "--json")
        assert plan.returncode == 0, plan.stderr
        assert json.loads(plan.stdout)["options"][0]["memory"]["measured"] is measured
    report = cli(capsys, "report", str(out), "--out", str(tmp_path / "r.html"), "--fit", "layers<=4")
    assert report.returncode == 0, report.stderr
    assert "Backtest: the models fitted only on the points that layers&lt;=4 keeps" in (tmp_path / "r.html").read_text()
    bad = cli(capsys, "forecast", str(out), "layers=8", "--fit", "depth<=4")
    assert bad.returncode == 2 and bad.stderr == "error: --fit 'depth<=4': the results hold no values of key 'depth'\n"


def test_a_new_kind_of_user_error_is_one_line_and_exit_2_with_no_cli_code(tmp_path, monkeypatch, capsys):
    """Any subclass of UserError raised inside a command, even one the CLI has never heard
    of, reaches the user as one line and exit status 2 (profiler/errors.py)."""
    from profiler.cli import main
    from profiler.errors import UserError
    from profiler.storage import store

    class FolderFromTheFuture(UserError):
        pass

    def load(folder, *args, **kwargs):
        raise FolderFromTheFuture(f"'{folder}' was written by a newer profiler")

    monkeypatch.setattr(store, "load", load)  # what `report` calls first with the folder
    assert main(["report", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: '{tmp_path}' was written by a newer profiler\n" and out == ""


def test_every_user_facing_error_derives_from_user_error():
    from profiler.analysis.forecast import ForecastError
    from profiler.analysis.machines import OtherMachine
    from profiler.errors import SpecError, StoreError, UserError
    from profiler.gates.bench import BenchError

    for error in (SpecError, StoreError, ForecastError, BenchError, OtherMachine):
        assert issubclass(error, UserError), error
    assert not issubclass(ForecastError, StoreError)  # a forecast the rows cannot answer is not a bad folder
