"""Sweeps across JAX releases, for real: environments built with uv from the package index
(cached under profiler.processes.environments.cache_root(), so only a first run builds),
the measuring side run in each, a three-release matrix, a bisect over the same three
releases (resuming the matrix's folder as its first step), and the bad input of both
commands (docs/releases.md).

The releases are the newest ones, whose tiny point differs between them in XLA's FLOPs
and HLO (0.10.0 -> 0.10.1 on this project's machine): the assertions do not name the
release that changed, they check the answer against the rows measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.gates.bisect import bisect
from profiler.measurement.compat import SUPPORTED
from profiler.processes import environments
from profiler.spec import build_spec
from profiler.storage import store
from tests.messages import says

ROOT = Path(__file__).resolve().parent.parent
RELEASES = ("0.10.0", "0.10.1", "0.10.2")  # what the index serves from 0.10.0 to 0.10.2
BISECT = (RELEASES[0], RELEASES[-1])  # a bisect over the three
PROBED = (RELEASES[0], RELEASES[-1])  # the measuring side's compat probe
TINY = ('name = "tiny"\nmode = "loop"\nlayers = 1\nhidden = 16\nheads = 2\nbatch = 1\nseq = 4\n'
        'repeats = 2\n')


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("releases") / "tiny.toml"
    path.write_text(TINY)
    return path


# --- the measuring side on each release ------------------------------------------------

# Each piece of profiler/measurement/compat.py on a real compile; the fallback of
# jaxprs_in_params (the walk by hand, what releases before 0.10 get) against the public one.
# Then, in the same interpreter of the release, the measuring process's own entry point
# (`python -m profiler.processes.worker RESULT`, run as -m runs it) on a point the release
# cannot build: one process per release instead of two, each importing that release's JAX.
COMPAT_PROBE = r"""
import json, sys, jax, jax.numpy as jnp
from profiler.measurement import compat
before = compat.backends_are_initialized()
f = lambda x: jax.lax.scan(lambda c, _: (jnp.sin(c) @ c, None), x, None, length=3)[0]
x = jax.ShapeDtypeStruct((8, 8), jnp.float32)
traced = jax.jit(f).trace(x)
compiled = traced.lower().compile()
text = compiled.as_text()
from profiler.measurement.hlo import HloText
parsed = HloText.parse(text)
costs = compat.hlo_cost_analysis(compiled.runtime_executable().client, parsed.module_text(parsed.entry))
from jax.extend import core
eqns = [e for e in traced.jaxpr.jaxpr.eqns if list(compat.jaxprs_in_params(e.params))]
walked = [len(list(compat._walk_params(e.params, core.Jaxpr, core.ClosedJaxpr))) for e in eqns]
public = [len(list(compat.jaxprs_in_params(e.params))) for e in eqns]
session = compat.profiler_module().ProfilerSession
print(json.dumps({"jax": jax.__version__, "before": before, "after": compat.backends_are_initialized(),
                  "flops": costs.get("flops"), "walked": walked, "public": public, "session": session.__name__}))
sys.stdout.flush()
import runpy
sys.argv = ["profiler.processes.worker", sys.argv[1]]
runpy.run_module("profiler.processes.worker", run_name="__main__", alter_sys=True)  # ends the process
"""
UNBUILDABLE = {"layers": 1, "hidden": 16, "heads": 2, "remat": "policy_of_the_future"}


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """{release: (the probe's process, the worker's result file)}, one process per release."""
    out = {}
    for release in PROBED:
        env = environments.ensure(release)
        result = tmp_path_factory.mktemp(f"probe-{release}") / "result.json"
        out[release] = result, subprocess.run(
            [str(env.python), "-c", COMPAT_PROBE, str(result)], input=json.dumps(UNBUILDABLE),
            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out


@pytest.mark.parametrize("release", PROBED)
def test_compat_runs_on_each_release(release: str, probed) -> None:
    _, done = probed[release]
    assert release.rsplit(".", 1)[0] in SUPPORTED
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["jax"] == release  # the release's environment, not the driver's jax
    assert (out["before"], out["after"]) == (False, True)
    assert out["flops"] and out["flops"] > 0
    assert out["walked"] == out["public"] and out["walked"], out  # the scan's body, found both ways
    assert out["session"] == "ProfilerSession"


# --- a three-release matrix, and a bisect over the same three releases ----------------------


@pytest.fixture(scope="module")
def matrix(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """`profiler releases` on the three releases (the releases run that a bisect from the
    first to the last makes its first step of: test_bisect_names_the_release_that_changed
    resumes a copy of it instead of measuring the same point on the same releases again)."""
    out = tmp_path_factory.mktemp("matrix") / "matrix"
    done = cli("releases", str(spec_file), "--jax", ",".join(RELEASES), "--out", str(out), "--no-report",
               "--fail-above", "0")
    assert done.returncode in (0, 1) and (out / "releases.json").is_file(), done.stderr[-2000:]
    return done, out


def test_three_release_matrix(spec_file: Path, matrix: tuple[subprocess.CompletedProcess, Path], tmp_path: Path) -> None:
    done, measured = matrix
    # Exact metrics grew between the releases (FLOPs, HLO): any growth past 0% fails the gate.
    assert done.returncode == 1, done.stderr[-2000:]
    out = tmp_path / "matrix"  # resumed below: a copy, the bisect's step stays as measured
    shutil.copytree(measured, out)
    rows = store.load(out)
    assert len(rows) == 2 * len(RELEASES) and set(rows["run_status"]) == {"ok"}
    assert list(rows["cfg_jax"]) == list(rows["env_jax_version"])  # each row measured by its release
    assert rows["env_flax_version"].notna().all()
    # Interleaved: each repeat visits every release before the next repeat starts.
    order = rows.sort_values("run_started_utc")[["run_repeat", "cfg_jax"]].itertuples(index=False)
    assert [tuple(r) for r in order] == [(r, v) for r in range(2) for v in RELEASES]
    table = json.loads((out / "releases.json").read_text())["table"]
    assert {r["release"] for r in table} == set(RELEASES[1:])
    medians = rows.groupby(["cfg_jax"])["cost_flops"].median()
    for release in RELEASES[1:]:  # each release against the base, the first listed
        mine = [r for r in table if r["release"] == release]
        flops = next(r for r in mine if r["metric"] == "cost_flops")
        assert flops["changed"] == (medians[RELEASES[0]] != medians[release])
        assert flops["median_a"] == medians[RELEASES[0]] and flops["median_b"] == medians[release]
        compile_row = next(r for r in mine if r["metric"] == "time_compile_s")
        assert compile_row["low"] <= compile_row["ratio"] <= compile_row["high"]
    assert "time_compile_s" in done.stdout and "**above**" in done.stdout
    grown = [r["metric"] for r in table if r["exact"] and r["ratio"] > 1]
    assert grown, "the releases compile the tiny point to the same program: pick releases that differ"

    # Per release: a release's parts removed, --resume measures only those again.
    gone = [p for p in build_spec({**_toml(spec_file), "jax": RELEASES[-1]}).points]
    removed = [f for f in out.iterdir() if any(f.name.startswith(f"part-{p.id}") for p in gone)]
    assert len(removed) == 2
    for f in removed:
        f.unlink()
    again = cli("releases", str(spec_file), "--jax", ",".join(RELEASES), "--out", str(out), "--no-report",
                "--resume", "--fail-above", "1000")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 ok; 4 already done" in again.stdout
    assert len(store.load(out)) == 2 * len(RELEASES)


def _toml(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def test_bisect_names_the_release_that_changed(spec_file: Path, matrix: tuple[subprocess.CompletedProcess, Path],
                                               tmp_path: Path) -> None:
    good, bad = BISECT
    # The bisect's first step is a releases run of the spec on good, the middle and bad
    # (profiler/gates/bisect.py _measure): the matrix measured exactly that, so its folder,
    # copied to where the bisect keeps that step, is resumed with nothing left to measure.
    _, measured = matrix
    first_step = tmp_path / "bisect" / f"step1-jax{'-'.join(RELEASES)}"
    shutil.copytree(measured, first_step)
    runs = set(store.load(first_step)["run_id"])
    found = bisect(spec_file, [], good, bad, "cost_flops", tmp_path / "bisect")
    assert [s.folder for s in found.steps] == [first_step] and set(store.load(first_step)["run_id"]) == runs
    assert found.candidates == environments.between(good, bad) and len(found.candidates) == 3
    assert found.first is not None, "the tiny point's FLOPs are equal on the ends: pick releases that differ"
    assert found.clear  # an exact metric that changed is a change
    # Check the answer against the rows: every release before the first equals the good
    # end, the first differs from the release before it.
    values = {}
    for step in found.steps:
        rows = store.load(step.folder)
        for release, v in rows.groupby("cfg_jax")["cost_flops"].median().items():
            values[release] = v
    order = found.candidates
    assert order.index(found.before) + 1 == order.index(found.first)
    assert values[found.before] == values[good] != values[found.first] == values[bad]
    assert found.values == (values[found.before], values[found.first])
    assert any(f"--jax {found.before},{found.first}" in c for c in found.commands)


# --- bad input -----------------------------------------------------------------------------


def _untouched(tmp_path: Path) -> tuple[Path, str]:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("measured before")
    return out, "measured before"


@pytest.mark.parametrize("args, facts", [
    (["releases", "SPEC", "--jax", "0.8.4"], ("0.8.4", "does not serve", "0.8.3 and 0.9.0")),
    (["releases", "SPEC", "--jax", "0.9.2", "--flax", "0.12.8"], ("cannot be installed together", "jax>=0.10")),
    (["releases", "SPEC", "--jax", "latest"], ("--jax", "'latest'")),
    (["bisect", "SPEC", "--good", "0.10.2", "--bad", "0.9.2", "--metric", "time_compile_s"],
     ("--good 0.10.2", "not older", "--bad 0.9.2")),
    (["bisect", "SPEC", "--good", "0.9.2", "--bad", "0.10.2", "--metric", "time_compiled"],
     ("--metric time_compiled", "not a numeric result column")),
    (["bisect", "SPEC", "layers=[1,2]", "--good", "0.9.2", "--bad", "0.10.2", "--metric", "cost_flops"],
     ("one point", "2")),
])
def test_bad_input(args: list[str], facts: tuple[str, ...], spec_file: Path, tmp_path: Path) -> None:
    out, text = _untouched(tmp_path)
    done = cli(*[str(spec_file) if a == "SPEC" else a for a in args], "--out", str(out))
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    assert says(done.stderr, facts), done.stderr
    assert "Traceback" not in done.stderr
    assert [f.name for f in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == text


def test_no_index_reachable(spec_file: Path, tmp_path: Path) -> None:
    """An empty cache and an index that refuses connections: one line, exit 2."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    environ.update(PROFILER_RELEASES_CACHE=str(tmp_path / "cache"), PIP_CONFIG_FILE=os.devnull,
                   PIP_INDEX_URL="http://127.0.0.1:9/simple/", PIP_RETRIES="0", PIP_TIMEOUT="2")
    out, text = _untouched(tmp_path)
    done = cli("releases", str(spec_file), "--jax", "0.10.2", "--out", str(out), env=environ)
    assert done.returncode == 2, done.stderr[-2000:]
    assert says(done.stderr, ("no package index answered", "jax")), done.stderr
    assert [f.name for f in out.iterdir()] == ["keep.txt"]


def test_a_point_the_release_cannot_build_is_an_error_row(probed) -> None:
    """A remat policy the release's jax.checkpoint_policies lacks: the measuring process
    writes an error row naming the release, not a traceback (fixture `probed`: the worker's
    entry point after the compat probe, in the release's interpreter)."""
    for release in PROBED:
        result, done = probed[release]
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        [row] = json.loads(result.read_text())["rows"]
        assert row["run_status"] == "error" and row["env_jax_version"] == release
        assert says(row["run_error"], (f"jax {release}", "lacks", "'policy_of_the_future'")), row["run_error"]


def test_unset_release_keys_leave_point_ids_as_they_were() -> None:
    """Old results folders resume: a point without `jax` and `flax` keeps the id it had
    before the keys existed; naming a release makes another point."""
    import hashlib

    from profiler.spec import Point

    plain = Point(layers=1, hidden=32, heads=2)
    before = json.dumps({k: v for k, v in plain.model_dump().items() if k not in ("anatomy", "knobs", "jax", "flax", "target")},
                        sort_keys=True)
    assert plain.id == hashlib.sha256(before.encode()).hexdigest()[:16]
    assert len({plain.id, Point(**{**plain.model_dump(), "jax": "0.9.2"}).id,
                Point(**{**plain.model_dump(), "jax": "0.9.2", "flax": "0.12.6"}).id}) == 3


def test_a_timing_middle_release_goes_to_the_nearer_end() -> None:
    """Timings decide a step by the end the middle release is nearer to (ratios of one
    step), so that a middle release inside the noise still halves the search; the ends'
    own difference must clear the noise."""
    from profiler.gates.bisect import _beyond_noise, _moved

    good, bad = [1.0, 1.02, 0.98], [2.0, 2.05, 1.95]
    assert _moved(False, good, [1.8, 1.9, 2.1], bad)
    assert not _moved(False, good, [1.1, 1.2, 0.9], bad)
    assert _moved(True, [5, 5], [6, 6], [6, 6]) and not _moved(True, [5, 5], [5, 5], [6, 6])
    assert _beyond_noise(good, bad, +1) and not _beyond_noise(good, bad, -1)
    assert not _beyond_noise(good, [0.7, 1.5, 1.0], +1)
