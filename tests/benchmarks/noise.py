"""How much the benchmarks' medians move between sessions on this machine: the noise the
`make bench` threshold must stay above (docs/gates.md).

    for i in 1 2 3 4 5 6; do make bench-baseline PYTEST_ARGS="--benchmark-json=/tmp/noise-$i.json"; done
    python tests/benchmarks/noise.py /tmp/noise-*.json

Reads pytest-benchmark JSON files (saved with data), one per session, and prints per
benchmark: each session's median and spread, the largest ratio between two sessions'
medians (what a comparison against a baseline would see with no real change), and the
same for the wall clock kept in extra_info.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _spread(name: str, medians: list[float], cvs: list[float] | None = None) -> str:
    line = (f"  {name}: session medians {', '.join(f'{m:.3f}' for m in medians)} s; "
            f"largest ratio between two sessions {max(medians) / min(medians):.3f}")
    if cvs:
        line += f"; within a session CV {min(cvs):.1%} to {max(cvs):.1%}"
    return line


def main(paths: list[str]) -> int:
    sessions: dict[str, list[dict]] = {}
    for path in paths:
        for bench in json.loads(Path(path).read_text())["benchmarks"]:
            sessions.setdefault(bench["fullname"], []).append(bench)
    for fullname, runs in sessions.items():
        data = [run["stats"]["data"] for run in runs]
        if len(runs) < 2 or any(len(d) < 2 for d in data):
            print(f"{fullname}: needs two sessions saved with data (--benchmark-save-data)")
            continue
        print(f"{fullname}: {len(runs)} sessions x {len(data[0])} rounds")
        print(_spread("timer", [statistics.median(d) for d in data],
                      [statistics.stdev(d) / statistics.mean(d) for d in data]))
        walls = [run["extra_info"].get("wall_rounds_s", [])[1:] for run in runs]
        if all(walls):
            print(_spread("wall clock", [statistics.median(w) for w in walls]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
