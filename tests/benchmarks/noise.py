"""How much the benchmarks move with no change: the noise the gates' thresholds must stay
above (docs/gates.md).

Same-run A/B runs of a revision against itself (`make bench`'s threshold):

    for i in 1 2 3 4 5; do python -m profiler bench --base HEAD --seed $i --json /tmp/aa-$i.json; done
    python tests/benchmarks/noise.py --aa [--rounds N] /tmp/aa-*.json

prints each run's ratio and interval per benchmark, then how often the gate would fail
at several thresholds when each run's rounds are drawn at random from all the runs'
samples of both sides (different runs saw different loads, so this is noisier than
one interleaved run: an upper bound of the false-alarm rate), and how often it would
fail with the head's draws made 5% and 50% slower.

pytest-benchmark sessions (`make bench-history`'s threshold):

    for i in 1 2 3 4 5 6; do make bench-baseline PYTEST_ARGS="--benchmark-json=/tmp/noise-$i.json"; done
    python tests/benchmarks/noise.py /tmp/noise-*.json

Reads pytest-benchmark JSON files (saved with data), one per session, and prints per
benchmark: each session's median and spread, the largest ratio between two sessions'
medians (what a comparison against a baseline would see with no real change), the 99.9th
percentile of that ratio when rounds are resampled from two sessions (more pairs than
six sessions give), and the same for the wall clock kept in extra_info.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np


def _resampled(sessions: list[list[float]], draws: int = 20000, seed: int = 0) -> float:
    """99.9th percentile of median(A) / median(B), A and B drawn with replacement from
    the rounds of two different sessions, as many rounds as a session has."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(len(sessions), (draws, 2), replace=True)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    ratios = [np.median(rng.choice(sessions[i], len(sessions[i]))) / np.median(rng.choice(sessions[j], len(sessions[j])))
              for i, j in pairs]
    return float(np.percentile(ratios, 99.9))


def _spread(name: str, sessions: list[list[float]], cvs: bool) -> str:
    medians = [statistics.median(s) for s in sessions]
    line = (f"  {name}: session medians {', '.join(f'{m:.3f}' for m in medians)} s; "
            f"largest ratio between two sessions {max(medians) / min(medians):.3f}; "
            f"resampled 99.9th percentile {_resampled(sessions):.3f}")
    if cvs:
        spread = [statistics.stdev(s) / statistics.mean(s) for s in sessions]
        line += f"; within a session CV {min(spread):.1%} to {max(spread):.1%}"
    return line


def aa(paths: list[str], thresholds: tuple[float, ...] = (5, 10, 15, 20), draws: int = 1000,
       rounds: int | None = None) -> int:
    from profiler.analysis.stats import bootstrap_ratio

    runs = [json.loads(Path(path).read_text()) for path in paths]
    for path, run in zip(paths, runs, strict=True):
        cells = [f"{v['name']} {v['ratio']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for v in run["verdicts"]]
        print(f"{path}: {run['seconds']:.0f} s, load {run['load'][0]:.1f}-{run['load'][-1]:.1f}, "
              f"{run['clock']} clock: {'; '.join(cells)}")
    rng = np.random.default_rng(0)
    for clock in ("cpu_s", "wall_s"):
        for name in runs[0]["points"]:
            pool = [r[clock] for run in runs for side in run["samples"].values() for r in side[name]]
            n = rounds or len(runs[0]["samples"]["base"][name])
            draws_ = [(rng.choice(pool, n), rng.choice(pool, n)) for _ in range(draws)]
            for slower in (1.0, 1.05, 1.5):  # no change, and the head slowed by 5% and 50%
                lows = np.array([bootstrap_ratio(a, b * slower, resamples=1000, seed=i)[1]
                                 for i, (a, b) in enumerate(draws_)])
                rates = ", ".join(f"+{t:g}%: {np.mean(lows > 1 + t / 100):.1%}" for t in thresholds)
                print(f"{clock} {name} head x{slower:g}: {len(pool)} samples pooled, {n} per side; "
                      f"fails in {draws} resampled runs at {rates}")
    return 0


def main(paths: list[str]) -> int:
    if paths[:1] == ["--aa"]:
        if paths[1:2] == ["--rounds"]:  # draw this many rounds per side instead of the runs' own
            return aa(paths[3:], rounds=int(paths[2]))
        return aa(paths[1:])
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
        print(_spread("timer", data, cvs=True))
        walls = [run["extra_info"].get("wall_rounds_s", [])[1:] for run in runs]
        if all(walls):
            print(_spread("wall clock", walls, cvs=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
