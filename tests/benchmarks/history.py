"""pytest-benchmark's history of the compile-time benchmarks, filed per machine.

    python tests/benchmarks/history.py save      # `make bench-baseline`: record a baseline here
    python tests/benchmarks/history.py compare   # `make bench-history`: compare with this machine's newest

Runs are saved under STORAGE/<machine fingerprint>/ (profiler.measurement.env.machine_fingerprint),
so a baseline is only ever compared on the machine that recorded it. On a machine with
none of its own, `compare` says so in one line, runs the benchmarks and does not fail
for it. Further arguments after `--` go to pytest (e.g. another benchmark file).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from profiler.measurement.env import machine_fingerprint  # noqa: E402

MAX_SLOWDOWN_PCT = 30


def others(storage: Path, fingerprint: str) -> list[str]:
    """The folders of saved runs from other machines, or saved before runs were filed
    per machine (pytest-benchmark's own `<OS>-<Python>-<bits>` folder at the top)."""
    return sorted(p.name + ("" if any(p.glob("*/*.json")) else " (no fingerprint)")
                  for p in storage.glob("*") if p.is_dir() and p.name != fingerprint and any(p.rglob("*.json")))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "compare"])
    parser.add_argument("--storage", type=Path, default=REPO / ".benchmarks")
    parser.add_argument("--max-slowdown", type=float, default=MAX_SLOWDOWN_PCT, metavar="PCT",
                        help="compare: fail when a median is this many percent above the baseline's")
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    pytest_args = argv[cut + 1:] or [str(REPO / "tests" / "benchmarks")]
    fingerprint = machine_fingerprint()
    mine = args.storage / fingerprint
    command = [sys.executable, "-m", "pytest", *pytest_args,
               "--benchmark-enable", "--benchmark-only", "--benchmark-save-data",
               f"--benchmark-storage=file://{mine}"]
    if args.action == "save":
        command.append("--benchmark-save=baseline")
    elif any(mine.glob("*/*.json")):
        command += ["--benchmark-compare", f"--benchmark-compare-fail=median:{args.max_slowdown:g}%"]
    else:
        elsewhere = others(args.storage, fingerprint)
        print(f"no baseline recorded on this machine ({fingerprint}), nothing compared"
              + (f"; baselines of other machines are never compared: {', '.join(elsewhere)}" if elsewhere else "")
              + "; `make bench-baseline` records one", flush=True)
    return subprocess.run(command, cwd=REPO, env=outside_xdist()).returncode


def outside_xdist() -> dict[str, str]:
    """This environment without pytest-xdist's variables: a pytest started from an xdist
    worker (the suite) would otherwise take itself for a worker, and pytest-benchmark
    then disables itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
