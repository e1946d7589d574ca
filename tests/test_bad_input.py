"""Malformed input through the real command line: one line naming the problem, exit 2,
no traceback, nothing written. All cases run as concurrent processes, then are checked
one by one.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from profiler.spec import Point, SpecError, build_spec
from profiler.storage import store, versions
from profiler.storage.record import ARROW_SCHEMA, SCHEMA_VERSION, make_row
from tests.messages import says

SPEC = 'name = "bad"\nlayers = [1, 2]\nhidden = 32\nheads = 2\nbatch = 2\nseq = 8\nrepeats = 1\n'

# (case id, arguments after `sweep SPEC`, text the one line must contain). `SPEC` is
# replaced by the path of a valid spec, `BROKEN` by a spec with a TOML syntax error.
SWEEP_CASES = [
    ("unknown-key", ["lyers=2"], ("'lyers'", "'layers'")),
    ("wrong-type", ['layers="2"'], "key 'layers'"),
    ("layers-below-1", ["layers=0"], "key 'layers'"),
    ("hidden-not-divisible", ["hidden=66", "heads=4"], ("key 'hidden'", "66", "heads=4")),
    ("unknown-mode", ["mode=unrolled"], "key 'mode'"),
    ("unknown-workload", ["workload=inference"], "key 'workload'"),
    ("empty-grid", ["layers=[]"], ("key 'layers'", "empty")),
    ("repeats-below-1", ["repeats=0"], "key 'repeats'"),
    ("sweep-key-as-axis", ["repeats=[1,2]"], ("key 'repeats'", "sweep setting")),
    ("unknown-dtype", ["dtype=float8"], "key 'dtype'"),
    ("toml-syntax-error", ["@BROKEN"], "line 3"),
    ("missing-file", ["@MISSING"], "not found"),
    ("unroll-with-loop", ["mode=loop", "unroll=2"], "key 'unroll'"),
    ("unknown-remat-policy", ["remat=sometimes"], ("key 'remat'", "'sometimes'")),
    ("program-not-importable", ['program="tests.nowhere:make"'], ("key 'program'", "'tests.nowhere'")),
    ("program-no-attribute", ['program="tests.faults:nope"'], ("key 'program'", "'nope'")),
    ("program-bad-format", ['program="tests/faults.py"'], "key 'program'"),
    ("program-with-forward", ["workload=forward", 'program="tests.faults:ok"'], "key 'workload'"),
    ("grid-over-max-points", ["layers=[1,2,3]", "max_points=2"], ("key 'max_points'", "3 points")),
    ("timeout-not-positive", ["timeout_s=0"], "key 'timeout_s'"),
    ("max-rss-wrong-type", ['max_rss_gb="lots"'], "key 'max_rss_gb'"),
    ("bad-override-syntax", ["layers"], ("override 'layers'", "KEY=VALUE")),
    ("bad-override-value", ["layers=[1,"], "override 'layers=[1,'"),
    ("jobs-below-1", ["--jobs", "0"], "--jobs"),
    ("unknown-start", ["--start", "spawn"], "--start"),
    ("unknown-executor", ["--executor", "ray"], "--executor"),
    ("scheduler-without-dask", ["--scheduler", "tcp://127.0.0.1:9"], ("--scheduler", "--executor dask")),
    ("jobs-with-scheduler", ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--jobs", "2"],
     ("--jobs", "--scheduler")),
    ("unreachable-scheduler", ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
     ("--scheduler", "tcp://127.0.0.1:9", "connect", "refused")),  # at once, not after the Client's 10 s
    ("scheduler-bad-port", ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:99999"],
     ("--scheduler", "tcp://127.0.0.1:99999", "out of range")),
    ("resume-without-manifest", ["--resume"], "nothing to resume"),
    # Targets (profiler/targets/chips.py): each names the closest valid value where one fits.
    ("target-unknown-platform", ['target="tpuv5e"'], ("key 'target'", "'tpu:<generation>:<topology>'")),
    ("target-unknown-tpu-generation", ['target="tpu:v6:2x2"'], ("key 'target'", "generation 'v6'", "'v6e'")),
    ("target-malformed-topology", ['target="tpu:v5e:2x2x1"'], ("key 'target'", "'tpu:v5e:2x2'")),
    ("target-topology-not-hosts", ['target="tpu:v5e:3x3"'], ("key 'target'", "'tpu:v5e:4x4'")),
    ("target-unknown-gpu", ['target="gpu:h10"'], ("key 'target'", "'h100'")),
    ("target-bad-gpu-count", ['target="gpu:h100:x"'], ("key 'target'", "'gpu:h100:8'")),
    ("target-mesh-not-all-chips", ['target="tpu:v5e:2x2"'], ("key 'mesh'", "4 devices", "mesh = '4x1'")),
    ("target-gpu-mesh", ['target="gpu:a100:8"', 'mesh="4x1"'], ("key 'mesh'", "mesh = '8x1'")),
    ("target-with-run", ['target="tpu:v5e:2x2"', 'mesh="4x1"', "run=true"], ("key 'run'", "run = false")),
    ("target-devices-differ", ['target="tpu:v5e:2x2"', 'mesh="4x1"', "devices=2"], ("key 'devices'", "4 devices")),
    ("cpu-mesh-not-devices", ['mesh="2x1"', "devices=4"], ("key 'mesh'", "devices=4")),
]


# Every case is a process of its own that runs `python -m profiler ARGS` (runpy runs
# profiler/__main__.py as __main__, and the process ends through the interpreter's own
# exit), forked from one interpreter that has imported what the command line imports: a
# case costs its own work, 0.08 s, not 0.5 s of interpreter start and imports (2 s with
# distributed). What those imports print would land on that interpreter's stderr, which
# must stay empty too. JAX is not among them: a case that imports it (a user's program, a
# remat policy's name) imports it in its own process, after main() hid the CUDA plugin,
# and must stay quiet. gc.freeze: a child's collections leave the shared heap's pages
# alone. A fresh interpreter's bad input: test_cli.py.
PRELOAD = ("profiler.cli", "profiler.processes.supervise", "profiler.storage.store", "profiler.report", "distributed")
LAUNCHER = r"""
import gc, importlib, json, os, runpy, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
assert "jax" not in sys.modules
cases = json.load(sys.stdin)
pids = []
gc.freeze()
for argv, out, err in cases:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        sys.argv = ["profiler", *argv]
        runpy.run_module("profiler", run_name="__main__", alter_sys=True)
        sys.exit(0)  # (not reached: profiler/__main__.py exits with main()'s status)
    pids.append(pid)
print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]))
"""


def _run_all(folder, argvs):
    """`python -m profiler ARGV` for each ARGV, all at once: one CompletedProcess each."""
    folder.mkdir()
    files = [(str(folder / f"{i}.out"), str(folder / f"{i}.err")) for i in range(len(argvs))]
    launcher = subprocess.run([sys.executable, "-c", LAUNCHER, *PRELOAD], capture_output=True, text=True,
                              input=json.dumps([[argv, out, err] for argv, (out, err) in zip(argvs, files, strict=True)]))
    assert launcher.returncode == 0 and launcher.stderr == "", launcher.stderr  # the imports print nothing
    codes = json.loads(launcher.stdout)
    return [subprocess.CompletedProcess(["python", "-m", "profiler", *argv], code, Path(out).read_text(),
                                        Path(err).read_text())
            for argv, code, (out, err) in zip(argvs, codes, files, strict=True)]


def _snapshot(folder):
    if not folder.exists():
        return None
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def _results_folder(path):
    """A real, used results folder: a manifest and one part."""
    with store.open_for_sweep(path, {"schema_version": SCHEMA_VERSION, "spec": {"name": "x"}}, resume=False):
        store.write_rows(path, "p-r0", [make_row(Point(), run_repeat=0, run_status="ok")])
    return path


@pytest.fixture(scope="module")
def sweep_outcomes(tmp_path_factory):
    """Every case, run concurrently. Even cases write into a used folder, odd ones into
    none; `resume-without-manifest` needs a folder without a manifest. Then `report` on
    each of BAD_FOLDERS (as `report-CASE`)."""
    root = tmp_path_factory.mktemp("bad")
    (root / "spec.toml").write_text(SPEC)
    (root / "broken.toml").write_text('name = "bad"\nlayers = [1, 2\nhidden = 32\n')
    used = _results_folder(root / "used")
    paths = {"@BROKEN": root / "broken.toml", "@MISSING": root / "missing.toml"}
    jobs = {}
    for i, (case, args, _) in enumerate(SWEEP_CASES):
        out = root / case
        if case == "resume-without-manifest":
            out.mkdir()
            (out / "notes.txt").write_text("mine")
        elif i % 2 == 0:
            shutil.copytree(used, out)
        spec = next((str(paths[a]) for a in args if a in paths), str(root / "spec.toml"))
        args = [a for a in args if a not in paths]
        jobs[case] = (["sweep", spec, *args, "--out", str(out), "--no-report"], out, _snapshot(out))
    for case, make, _ in BAD_FOLDERS:  # `report` on each bad results folder
        make(root / f"report-{case}")
        jobs[f"report-{case}"] = (["report", str(root / f"report-{case}"), "--out", str(root / f"{case}.html")],
                                  root / f"{case}.html", None)
    done = dict(zip(jobs, _run_all(root / "std", [argv for argv, _, _ in jobs.values()]), strict=True))
    return {case: (done[case], out, before) for case, (_, out, before) in jobs.items()}


@pytest.mark.parametrize(("case", "message"), [(c, m) for c, _, m in SWEEP_CASES], ids=[c for c, _, _ in SWEEP_CASES])
def test_bad_sweep_input_is_one_line_exit_2_and_writes_nothing(sweep_outcomes, case, message):
    done, out, before = sweep_outcomes[case]
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert says(done.stderr, message)
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert _snapshot(out) == before  # absent stays absent; a used folder is byte-for-byte intact


def test_max_points_guard_yields_to_yes():
    table = {"name": "big", "layers": [1, 2, 3], "max_points": 2}
    with pytest.raises(SpecError, match="--yes"):
        build_spec(table)
    assert len(build_spec(table, yes=True).points) == 3


# Results folders that `report` (and anything that loads) must refuse in one line.
def _empty(folder):
    folder.mkdir()


def _foreign(folder):
    folder.mkdir()
    pq.write_table(pa.table({"city": ["Oslo"], "population": [709_000]}), folder / "cities.parquet")


def _corrupt(folder):
    _results_folder(folder)
    (folder / "part-broken-r0.parquet").write_bytes(b"PAR1 this is not a Parquet file")


def _version(version):
    def make(folder):
        _results_folder(folder)
        row = {**make_row(Point(layers=2), run_repeat=0, run_status="ok"), "run_schema_version": version}
        pq.write_table(pa.Table.from_pylist([row], schema=ARROW_SCHEMA), folder / "part-old-r0.parquet")
    return make


BAD_FOLDERS = [
    ("missing", lambda folder: None, "no such directory"),
    ("empty", _empty, "holds no Parquet results"),
    ("foreign-parquet", _foreign, "not a profiler results file"),
    ("corrupt-file", _corrupt, "not a readable Parquet file"),
    ("newer-schema", _version(SCHEMA_VERSION + 1), f"schema version {SCHEMA_VERSION + 1} is newer"),
    ("older-schema-without-upgrade", _version(0), f"schema version 0 cannot be upgraded to {SCHEMA_VERSION}"),
]


@pytest.mark.parametrize(("make", "message"), [(m, t) for _, m, t in BAD_FOLDERS], ids=[c for c, _, _ in BAD_FOLDERS])
def test_loading_a_bad_folder_is_one_store_error(tmp_path, make, message):
    make(tmp_path / "res")
    with pytest.raises(store.StoreError) as info:
        store.load(tmp_path / "res")
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("case", "message"), [(c, t) for c, _, t in BAD_FOLDERS], ids=[c for c, _, _ in BAD_FOLDERS])
def test_report_on_a_bad_folder_is_one_line_exit_2(sweep_outcomes, case, message):
    done, out, _ = sweep_outcomes[f"report-{case}"]
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_an_older_schema_loads_through_its_registered_upgrade(tmp_path, monkeypatch):
    """The upgrade path, exercised by pretending the current version is one older: a file
    of it, whose compile time column had another name, loads renamed into the next one."""
    folder = _results_folder(tmp_path / "res")
    old = pa.Table.from_pylist([make_row(Point(layers=2), run_repeat=1, run_status="ok", time_compile_s=2.5)],
                               schema=ARROW_SCHEMA).rename_columns(
        ["time_compile_seconds" if n == "time_compile_s" else n for n in ARROW_SCHEMA.names])
    pq.write_table(old, folder / "part-old-r1.parquet")

    def rename(table):
        return table.rename_columns(["time_compile_s" if n == "time_compile_seconds" else n for n in table.column_names])

    monkeypatch.setattr(versions, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(versions.HISTORY, SCHEMA_VERSION + 1, "time_compile_seconds renamed time_compile_s")
    monkeypatch.setitem(versions.UPGRADES, SCHEMA_VERSION, lambda table, schema: rename(table))
    rows = store.load(folder).set_index("run_repeat")
    assert rows.loc[1, "time_compile_s"] == 2.5
    assert set(rows["run_schema_version"]) == {SCHEMA_VERSION + 1}


def test_every_schema_version_has_its_history_and_upgrades_only_from_older_ones():
    """Bumping SCHEMA_VERSION must say what changed; an upgrade leads from an older version."""
    assert set(versions.HISTORY) == set(range(1, SCHEMA_VERSION + 1))
    assert set(versions.UPGRADES) <= set(range(1, SCHEMA_VERSION))
