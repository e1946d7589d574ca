"""The command line end to end: real processes, real compiles, real Parquet."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def profiler(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_sweep_writes_one_row_per_point_and_repeat(tmp_path):
    out = tmp_path / "res"
    done = profiler("sweep", "sweeps/smoke.toml", "layers=[1,3]", "mode=[\"loop\",\"scan\"]", "repeats=2",
                    "run=false", "--out", str(out), "--no-report")
    assert done.returncode == 0, done.stderr
    assert "[8/8]" in done.stdout  # plain progress lines when not on a terminal
    df = pd.read_parquet(out)
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


def test_results_go_under_the_current_directory_wherever_the_package_is(tmp_path):
    """Not next to the package's files (site-packages, when installed)."""
    work = tmp_path / "work"
    work.mkdir()
    done = profiler("sweep", str(REPO / "sweeps/smoke.toml"), "layers=1", "mode=scan", "run=false",
                    "--no-report", cwd=work)
    assert done.returncode == 0, done.stderr
    (folder,) = (work / "results").iterdir()
    assert folder.name.startswith("smoke-") and f"results: {folder}" in done.stdout
    assert len(pd.read_parquet(folder)) == 1


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
