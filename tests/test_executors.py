"""Executors through real clusters and real signals: a Dask sweep writes the rows a local
one writes, resumes the same, and both stop at once on Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from profiler.processes.runner import run_sweep
from profiler.spec import build_spec
from tests.ci import require
from tests.conftest import REAL_SPEC
from tests.processes import group_ended
from tests.test_scale import deterministic

distributed = require("distributed", "make venv (the dask extra)")


@pytest.fixture(scope="module")
def cluster():
    """An existing cluster on the loopback interface: one worker of two threads, in this process."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster


def profiler(*args):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=300)


# The 2-layer points of the session's local sweep (conftest.REAL_SPEC), so that the local
# rows compared with are real_results' own.
DASK_SPEC = {**REAL_SPEC, "name": "tiny", "layers": 2}


def test_a_dask_sweep_writes_the_rows_a_local_one_writes_and_resumes_the_same(tmp_path, cluster, real_results):
    assert run_sweep(build_spec(DASK_SPEC), tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address).ok
    local, dask = pd.read_parquet(real_results), pd.read_parquet(tmp_path / "dask")
    local = local[local["cfg_layers"] == 2]
    assert len(dask) == 4
    pd.testing.assert_frame_equal(deterministic(local), deterministic(dask))
    assert set(dask["run_jobs"]) == {2}  # the cluster's threads on this host

    # Resume through the command line, on a LocalCluster of its own: only the missing
    # (point, repeat) is measured, and written by the driver.
    (tmp_path / "spec.toml").write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in DASK_SPEC.items()))
    missing = sorted((tmp_path / "dask").glob("part-*-r1.parquet"))[0]
    missing.unlink()
    resumed = profiler("sweep", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "dask"), "--resume",
                       "--executor", "dask", "--jobs", "1", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert "(1 ok; 3 already done)" in resumed.stdout
    again = pd.read_parquet(tmp_path / "dask")
    pd.testing.assert_frame_equal(deterministic(again), deterministic(local))
    assert again["run_id"].nunique() == 2 and missing.exists()
    assert set(again.loc[again["run_id"] != dask["run_id"][0], "run_jobs"]) == {1}


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_ctrl_c_stops_the_sweep_and_its_measurements_at_once(tmp_path, executor):
    (tmp_path / "spec.toml").write_text('name = "slow"\nprogram = ["tests.faults:ok", "tests.faults:slow"]\n'
                                        'hidden = 32\nheads = 2\nrepeats = 2\n')
    out = tmp_path / "res"
    # The slow points wait for a file nobody makes: whatever the load, they are still
    # measuring when Ctrl-C comes, once an ok point's row is in.
    env = {**os.environ, "FAULTS_GATE": str(tmp_path / "never")}
    # As from a terminal's foreground: a shell starts background jobs with SIGINT ignored,
    # and an ignored signal stays ignored across exec (pytest run with `&`); a handled one
    # is reset to its default there.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "profiler", "sweep", str(tmp_path / "spec.toml"), "--out", str(out), "--jobs", "2",
             "--executor", executor, "--no-report"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    finally:
        signal.signal(signal.SIGINT, ignored)
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*")):  # measuring, and one row is in
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    if not group_ended(proc.pid):  # nothing of the sweep runs on
        pytest.fail("processes of the interrupted sweep outlived it")
    rows = pd.read_parquet(out)
    assert 1 <= len(rows) <= 2 and (rows["run_status"] == "ok").all() and set(rows["cfg_program"]) == {"tests.faults:ok"}
