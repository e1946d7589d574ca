"""The harness's overhead, measured (`make bench-overhead`; docs/scale.md reports a run).

On the seed's point (loop, 42 layers, hidden 512, heads 4, batch 16, seq 32, compile-only,
5 repeats), in rounds whose order rotates, so that the drifting load of a shared machine
spreads over every variant:

  (a) the harness's recorded trace + lower + compile (median over its rows) divided by the
      same median of a bare JAX script (bare_compile.py), each run in a fresh process.
      Target 1.00 +- 0.05, for both start methods ('fork', 'fresh').
  (b) the share of a sweep's wall time (the whole `python -m profiler sweep` command) spent
      inside the measured phases. Target >= 70 %.
  (c) points per minute of `--jobs 2` over `--jobs 1`, on the seed's point in its three
      modes (4 repeats each). Target >= 1.6; with the shift of the compile medians.

    python tests/benchmarks/overhead.py [--rounds 3] [--out DIR]

Raw numbers go to DIR/overhead.json, a Markdown summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scipy.stats import mannwhitneyu

from profiler import store

REPO = Path(__file__).resolve().parents[2]
SEED = ["mode=loop", "layers=42", "hidden=512", "heads=4", "batch=16", "seq=32", "run=false"]
PHASES = ["time_trace_s", "time_lower_s", "time_compile_s"]


def sweep(out: Path, overrides: list[str], *flags: str) -> dict[str, Any]:
    """Run one sweep command; its wall time and its rows' timings."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "profiler", "sweep", "sweeps/seed.toml", *overrides, "--out", str(out),
                    "--no-report", *flags], cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    rows = store.load(out)
    assert (rows["run_status"] == "ok").all(), rows["run_error"].dropna().tolist()
    return {
        "wall_s": wall, "load": load,
        "rows": rows[["cfg_mode", "run_wall_s", *PHASES]].to_dict("records"),
    }


def bare(repeats: int) -> dict[str, Any]:
    """`repeats` fresh processes of the bare script."""
    load = os.getloadavg()[0]
    environ = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, str(REPO / "tests/benchmarks/bare_compile.py"), "loop", "42", "512", "4",
                               "16", "32"], env=environ, check=True, capture_output=True, text=True)
        runs.append({**json.loads(done.stdout), "wall_s": time.perf_counter() - t0})
    return {"load": load, "runs": runs}


def phases(row: dict[str, float]) -> float:
    return row["time_trace_s"] + row["time_lower_s"] + row["time_compile_s"]


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "results" / f"bench-overhead-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    args = parser.parse_args()
    args.out.mkdir(parents=True)
    seed = [*SEED, f"repeats={args.repeats}"]
    modes = ["run=false", "repeats=4"]  # the seed spec's three modes
    raw: dict[str, list[Any]] = {"fork": [], "fresh": [], "bare": [], "jobs1": [], "jobs2": []}
    variants = {
        "fork": lambda r: sweep(args.out / f"fork-{r}", seed, "--start", "fork"),
        "fresh": lambda r: sweep(args.out / f"fresh-{r}", seed, "--start", "fresh"),
        "bare": lambda r: bare(args.repeats),
        "jobs1": lambda r: sweep(args.out / f"jobs1-{r}", modes, "--jobs", "1"),
        "jobs2": lambda r: sweep(args.out / f"jobs2-{r}", modes, "--jobs", "2"),
    }
    order = list(variants)
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            raw[name].append(variants[name](r))
    (args.out / "overhead.json").write_text(json.dumps(raw, indent=1))
    print(summary(raw))


def summary(raw: dict[str, list[Any]]) -> str:
    bare_runs = [run for b in raw["bare"] for run in b["runs"]]
    bare_phases = median([run["trace_s"] + run["lower_s"] + run["compile_s"] for run in bare_runs])
    lines = ["| | fork | fresh | bare script |", "| --- | --- | --- | --- |"]
    rows = {start: [row for s in raw[start] for row in s["rows"]] for start in ("fork", "fresh")}
    for column, key in zip(PHASES, ["trace_s", "lower_s", "compile_s"], strict=True):
        fork, fresh = ([row[column] for row in rows[s]] for s in ("fork", "fresh"))
        p = mannwhitneyu(fork, fresh).pvalue
        lines.append(f"| median {column} (s) | {median(fork):.3f} | {median(fresh):.3f} (fork/fresh "
                     f"{median(fork) / median(fresh):.3f}, Mann-Whitney p = {p:.2f}) | "
                     f"{median([run[key] for run in bare_runs]):.3f} |")
    harness = {s: median([phases(row) for row in rows[s]]) for s in rows}
    lines.append(f"| (a) median trace+lower+compile (s) | {harness['fork']:.3f} | {harness['fresh']:.3f} | {bare_phases:.3f} |")
    lines.append(f"| (a) ÷ bare script | **{harness['fork'] / bare_phases:.3f}** | **{harness['fresh'] / bare_phases:.3f}** | 1 |")
    share = {s: [sum(map(phases, sw["rows"])) / sw["wall_s"] for sw in raw[s]] for s in rows}
    bare_share = [sum(run["trace_s"] + run["lower_s"] + run["compile_s"] for run in b["runs"])
                  / sum(run["wall_s"] for run in b["runs"]) for b in raw["bare"]]
    lines.append(f"| (b) share of wall time in the phases, per sweep | **{_pcts(share['fork'])}** | "
                 f"**{_pcts(share['fresh'])}** | {_pcts(bare_share)} |")
    for s in rows:
        walls = [sw["wall_s"] for sw in raw[s]]
        per = [row["run_wall_s"] - phases(row) for row in rows[s]]
        lines.append(f"| {s}: sweep wall (s); per measurement, process wall − phases (s) | "
                     + (f"{_list(walls)}; {median(per):.2f} |  | |" if s == "fork" else f" | {_list(walls)}; {median(per):.2f} | |"))
    ppm = {j: [len(sw["rows"]) / sw["wall_s"] * 60 for sw in raw[f"jobs{j}"]] for j in (1, 2)}
    lines += ["", "| | --jobs 1 | --jobs 2 | 2 ÷ 1 |", "| --- | --- | --- | --- |",
              f"| (c) points per minute, per sweep | {_list(ppm[1])} | {_list(ppm[2])} | "
              f"**{median(ppm[2]) / median(ppm[1]):.2f}** (medians) |"]
    for mode in ("loop", "scan", "scan_shared"):
        m = {j: median([phases(row) for sw in raw[f"jobs{j}"] for row in sw["rows"] if row["cfg_mode"] == mode])
             for j in (1, 2)}
        lines.append(f"| (c) {mode}: median trace+lower+compile (s) | {m[1]:.3f} | {m[2]:.3f} | {m[2] / m[1]:.2f} |")
    loads = [sw["load"] for name in raw for sw in raw[name]]
    lines += ["", f"1-minute load average before each run: {min(loads):.1f} to {max(loads):.1f} "
              f"({os.cpu_count()} cores)."]
    return "\n".join(lines)


def _pcts(values: list[float]) -> str:
    return ", ".join(f"{v:.0%}" for v in values)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
