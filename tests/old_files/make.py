"""Write the results folders of tests/old_files/: real folders written by the project at
every schema version it has had, one tiny sweep per workload, so that the upgrades of
profiler/storage/versions.py are tested on what old releases really wrote
(tests/test_old_files.py).

Each version's writer is a revision of this repository (REVISIONS: the last commit on main
that wrote that version, found with `git log --first-parent main` over SCHEMA_VERSION in
record.py). The revision is checked out into a temporary `git worktree` and its own
command line runs the sweeps, with this checkout's interpreter and installed libraries
and the old checkout first on PYTHONPATH. Only what a reader needs is kept: the manifest
and the Parquet parts (and the anatomy detail from version 4 on); the HTML reports go.

Run from the repository root, with the project's venv (a few minutes, 2 cores):

    .venv/bin/python tests/old_files/make.py            # every version
    .venv/bin/python tests/old_files/make.py 3 4        # some versions

It replaces tests/old_files/v<N>/ of the versions it makes. Commit the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

REVISIONS = {
    1: "757725d",  # before 080757a, which merged schema version 2
    2: "bc42129",  # before 00bd956 (version 3: cfg_ columns null where a key does not apply)
    3: "b643643",  # before 4b7b7c4 (version 4: compile-time anatomy)
    4: "7e72fb2",  # before 3bfc5c2 (version 5: block families and presets)
    5: "9253a15",  # before 6496d22 (version 6: phase and core columns)
    6: "fe7badc",  # before 67e0caa (version 7: env_cpu_flags)
    7: "67e0caa",  # the first commit of version 7; later columns were added without a bump
}

TINY = 'hidden = 32\nheads = 2\nbatch = 2\nrepeats = 1\nlayers = 2\n'
SPECS = {
    "forward": 'workload = "forward"\nmode = "scan"\nseq = 8\n',
    "train": 'workload = "train"\nmode = "scan"\nseq = 8\n',
    "decode": 'workload = "decode"\nmode = "scan"\nprompt_len = 4\nmax_len = 8\nvocab = 64\ngen_tokens = 2\n',
    "program": 'workload = "program"\nprogram = "old_files_program:tiny"\n',
}
ANATOMY_SINCE = 4
"""The forward sweep has anatomy on from this version on: its folder then has the detail."""

PROGRAM = '''
import jax
import jax.numpy as jnp


def tiny(layers: int = 2, hidden: int = 32):
    """A user's program: `layers` matmuls of a hidden x hidden weight."""
    def fn(w, x):
        for _ in range(layers):
            x = jnp.tanh(x @ w)
        return x
    return fn, (jax.ShapeDtypeStruct((hidden, hidden), jnp.float32), jax.ShapeDtypeStruct((2, hidden), jnp.float32))
'''


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def make(version: int, work: Path) -> None:
    revision = REVISIONS[version]
    checkout = work / f"v{version}-checkout"
    _git("worktree", "add", "--quiet", "--detach", str(checkout), revision)
    try:
        (work / "old_files_program.py").write_text(PROGRAM)
        out = HERE / f"v{version}"
        shutil.rmtree(out, ignore_errors=True)
        for workload, keys in SPECS.items():
            spec = work / f"{workload}.toml"
            anatomy = "anatomy = true\n" if workload == "forward" and version >= ANATOMY_SINCE else ""
            spec.write_text(f'name = "v{version}-{workload}"\n{TINY}{keys}{anatomy}')
            folder = work / f"v{version}-{workload}"
            env = {**os.environ, "PYTHONPATH": f"{checkout}{os.pathsep}{work}", "JAX_PLATFORMS": "cpu"}
            done = subprocess.run([sys.executable, "-m", "profiler", "sweep", str(spec), "--out", str(folder)],
                                  cwd=work, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if done.returncode:
                raise SystemExit(f"v{version} {workload} ({revision}): exit {done.returncode}\n{done.stderr[-3000:]}")
            kept = out / workload
            kept.mkdir(parents=True)
            shutil.copy2(folder / "_manifest.json", kept)
            for part in folder.glob("part-*.parquet"):
                shutil.copy2(part, kept)
            if (folder / "_anatomy").is_dir():
                shutil.copytree(folder / "_anatomy", kept / "_anatomy")
            print(f"v{version} {workload}: {sum(p.stat().st_size for p in kept.rglob('*') if p.is_file())} bytes",
                  flush=True)
    finally:
        _git("worktree", "remove", "--force", str(checkout))


def main(argv: list[str]) -> None:
    versions = [int(v) for v in argv] or sorted(REVISIONS)
    with tempfile.TemporaryDirectory(prefix="old-files-") as work:
        for version in versions:
            make(version, Path(work))


if __name__ == "__main__":
    main(sys.argv[1:])
