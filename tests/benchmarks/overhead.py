"""The harness's overhead, measured (`make bench-overhead`; docs/scale.md reports a run).

The seed's point: loop, 42 layers, hidden 512, heads 4, batch 16, seq 32, compile-only.
On a shared machine the load drifts by the minute, so every comparison interleaves its
variants and rotates their order.

  (a) Single measurements, interleaved `--samples` times: the harness's measuring process
      forked from a fork server, the harness's fresh interpreter, and a bare JAX script
      (bare_compile.py) in a fresh process. Reported: the harness's recorded trace +
      lower + compile (median) divided by the bare script's; target 1.00 +- 0.05. The
      per-phase medians of 'fork' and 'fresh' side by side show whether a forked child
      compiles as a fresh interpreter does.
  (b) The issue's sweep, `python -m profiler sweep sweeps/seed.toml mode=loop repeats=5
      run=false` (its report included), `--rounds` times per start method: the share of
      its wall time in build + trace + lower + compile (target >= 80 %), and the line the
      sweep prints at its end, its wall time cut into parts.
  (c) Sweeps of the seed's point in its three modes, 4 repeats each, with --jobs 1 and 2,
      `--rounds` times each: points per minute of --jobs 2 over --jobs 1 (target >= 1.8),
      and the shift of the compile medians (CPU time: target within 10 %).
  (d) The same for the default sweep (sweeps/default.toml, report included: `make sweep`;
      minutes per sweep).
  (e) CPU time of each analysis after the compile, at 42 and 128 layers.

Every phase is also reported in CPU time (process time, all threads): unlike wall time it
hardly moves with the load of other users, so it shows whether two variants do the same
work; wall ÷ CPU shows how long a process waited for a core.

    python tests/benchmarks/overhead.py [--samples 10] [--rounds 3] [--parts abc] [--out DIR]

Raw numbers go to DIR/overhead.json, a Markdown summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scipy.stats import mannwhitneyu

from profiler.processes.forkserver import ServerPool
from profiler.processes.supervise import measure_in_subprocess
from profiler.spec import Point
from profiler.storage import store

REPO = Path(__file__).resolve().parents[2]
SEED = dict(mode="loop", layers=42, hidden=512, heads=4, batch=16, seq=32)
PHASES = ("trace", "lower", "compile")
TIMES = (*PHASES, *(f"{p}_cpu" for p in PHASES))


def harness(servers: ServerPool | None) -> dict[str, Any]:
    """One measurement as a sweep records it: forked (servers) or a fresh interpreter."""
    outcome = measure_in_subprocess(Point(**SEED), servers=servers)
    row = outcome.rows[0]
    assert row["run_status"] == "ok", row["run_error"]
    return {**{t: row[f"time_{t}_s"] for t in TIMES}, "wall": outcome.wall_s, "xla_flops": row["cost_xla_flops"]}


def bare() -> dict[str, Any]:
    """One fresh process of the bare script."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/benchmarks/bare_compile.py"), *(str(v) for v in SEED.values())],
        env={**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}, check=True, capture_output=True, text=True)
    timings = json.loads(done.stdout)
    return {**{t: timings[f"{t}_s"] for t in TIMES}, **timings, "wall": time.perf_counter() - t0}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sweep(out: Path, overrides: list[str], *flags: str, spec: str = "sweeps/seed.toml", report: bool = False) -> dict[str, Any]:
    """One sweep command: its wall time, the CPU time of all its processes, its rows'
    timings, and its own breakdown of its wall time (the `time:` line it prints)."""
    t0, c0 = time.perf_counter(), _children_cpu()
    done = subprocess.run([sys.executable, "-m", "profiler", "sweep", spec, *overrides,
                           "--out", str(out), *([] if report else ["--no-report"]), *flags],
                          cwd=REPO, check=True, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0  # the sweep waited for all of its processes
    rows = store.load(out)
    assert (rows["run_status"] == "ok").all(), rows["run_error"].dropna().tolist()
    line = next(line for line in done.stdout.splitlines() if line.startswith("time: "))
    return {"wall": wall, "cpu": cpu, "line": line, "rows": [
        {"point": r.run_point_id, "mode": r.cfg_mode, "wall": r.run_wall_s, "build": r.time_build_s, "cpus": r.run_cpus,
         **{t: getattr(r, f"time_{t}_s") for t in TIMES}}
        for r in rows.itertuples()]}


def interleave(variants: dict[str, Callable[[int], Any]], times: int) -> dict[str, list[Any]]:
    """Run each variant `times` times, rotating their order every round."""
    names = list(variants)
    raw: dict[str, list[Any]] = {name: [] for name in names}
    for i in range(times):
        for name in names[i % len(names):] + names[:i % len(names)]:
            load = os.getloadavg()[0]
            raw[name].append({**variants[name](i), "load": load})
            print(f"{i + 1}/{times} {name} (load {load:.1f})", file=sys.stderr, flush=True)
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10, help="single measurements per variant in (a)")
    parser.add_argument("--rounds", type=int, default=3, help="sweeps per variant in (b) and (c)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / f"bench-overhead-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    parser.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run, e.g. 'c'")
    args = parser.parse_args()
    args.out.mkdir(parents=True)
    raw: dict[str, Any] = {}
    if "a" in args.parts:
        servers = ServerPool()
        try:
            raw["single"] = interleave({"fork": lambda i: harness(servers), "fresh": lambda i: harness(None),
                                        "bare": lambda i: bare()}, args.samples)
        finally:
            servers.close()
    if "b" in args.parts:  # the command: the seed's point (SEED), 5 repeats, its report included
        seed = ['mode="loop"', "repeats=5", "run=false"]
        raw["sweeps"] = interleave({start: lambda i, s=start: sweep(args.out / f"{s}-{i}", seed, "--start", s, report=True)
                                    for start in ("fork", "fresh")}, args.rounds)
    if "c" in args.parts:
        raw["jobs"] = interleave({f"jobs{j}": lambda i, j=j: sweep(args.out / f"jobs{j}-{i}", ["repeats=4", "run=false"], "--jobs", str(j))
                                  for j in (1, 2)}, args.rounds)
    if "d" in args.parts:  # `make sweep` (the default sweep, its report included), --jobs 1 and 2: minutes each
        raw["default"] = interleave({f"jobs{j}": lambda i, j=j: sweep(args.out / f"default-jobs{j}-{i}", [], "--jobs", str(j),
                                                                      spec="sweeps/default.toml", report=True)
                                     for j in (1, 2)}, args.rounds)
    if "e" in args.parts:
        print("\n".join(analyses()))
    (args.out / "overhead.json").write_text(json.dumps(raw, indent=1))
    print(summary(raw))


def analyses() -> list[str]:
    """(e) CPU seconds of each analysis measure() runs after the compile, at 42 and 128
    layers, in this process (jax imported here only)."""
    from profiler.measurement import measure as m
    from profiler.workloads import build

    lines = []
    for mode, layers in (("loop", 42), ("loop", 128), ("scan", 128)):
        program = build(Point(**{**SEED, "mode": mode, "layers": layers}))[0]
        with program.context():
            m.jax.clear_caches()
            stages = m.compile_stages(program)
            parts = _analysis_cpu(stages)
        spent = sum(stages.times[f"time_{p}_cpu_s"] for p in PHASES)
        lines.append(f"(e) {mode} {layers}: analyses {sum(parts.values()):.3f} s CPU = {sum(parts.values()) / spent:.1%} "
                     f"of the stages' {spent:.2f} s: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    return lines


def _analysis_cpu(stages: Any) -> dict[str, float]:
    from profiler.measurement import measure as m
    from profiler.measurement.cost import loop_corrected
    from profiler.measurement.hlo import HloText

    parts: dict[str, float] = {}

    def cpu(name: str, f: Callable[[], Any]) -> Any:
        c0 = time.process_time()
        out = f()
        parts[name] = time.process_time() - c0
        return out

    hlo = cpu("HLO text", stages.compiled.as_text)
    parsed = cpu("parsing it", lambda: HloText.parse(hlo))
    stablehlo = cpu("StableHLO text", stages.lowered.as_text)
    cpu("sizes", lambda: m.program_sizes(stages.traced.jaxpr, stablehlo, hlo, parsed))
    cpu("cost + trip-count correction", lambda: loop_corrected(stages.compiled, parsed))
    cpu("memory_analysis", stages.compiled.memory_analysis)
    return parts


def total(m: dict[str, float], cpu: bool = False) -> float:
    return sum(m[f"{p}_cpu" if cpu else p] for p in PHASES)


def shares(sw: dict[str, Any]) -> list[float]:
    """Where a sweep's wall time went: the phases, building the programs, the rest of the
    measuring processes, and outside them (the command's start, the fork server's start)."""
    parts = [sum(map(total, sw["rows"])), sum(r["build"] for r in sw["rows"]),
             sum(r["wall"] - r["build"] - total(r) for r in sw["rows"])]
    return [part / sw["wall"] for part in (*parts, sw["wall"] - sum(r["wall"] for r in sw["rows"]))]


def med(values: list[float]) -> float:
    return statistics.median(values)


def summary(raw: dict[str, Any]) -> str:
    parts = {"single": summary_a, "sweeps": summary_b, "jobs": summary_c, "default": summary_c}
    lines = [line for part, lines in parts.items() if part in raw for line in [*lines(raw[part]), ""]]
    loads = [m["load"] for part in raw.values() for runs in part.values() for m in runs]
    lines.append(f"1-minute load average at the start of each run: {min(loads):.1f} to {max(loads):.1f}, "
                 f"median {med(loads):.1f} ({os.cpu_count()} cores).")
    return "\n".join(lines)


def summary_a(single: dict[str, list[Any]]) -> list[str]:
    lines = ["(a) single measurements, interleaved: medians in seconds, wall (CPU)", "",
             "| | fork | fresh | bare script | fork ÷ fresh, wall (CPU); Mann-Whitney p, wall (CPU) |",
             "| --- | --- | --- | --- | --- |"]
    for phase in (*PHASES, None):
        wall = {v: [m[phase] if phase else total(m) for m in single[v]] for v in single}
        cpu = {v: [m[f"{phase}_cpu"] if phase else total(m, cpu=True) for m in single[v]] for v in single}
        cells = [f"{med(wall[v]):.3f} ({med(cpu[v]):.3f})" for v in ("fork", "fresh", "bare")]
        ratio = f"{med(wall['fork']) / med(wall['fresh']):.3f} ({med(cpu['fork']) / med(cpu['fresh']):.3f})"
        p = f"{mannwhitneyu(wall['fork'], wall['fresh']).pvalue:.2f} ({mannwhitneyu(cpu['fork'], cpu['fresh']).pvalue:.2f})"
        lines.append(f"| {phase or '**trace + lower + compile**'} | {' | '.join(cells)} | {ratio}; {p} |")
    bare = {cpu: med([total(m, cpu) for m in single["bare"]]) for cpu in (False, True)}
    lines.append("| **÷ bare script** | " + " | ".join(
        f"**{med([total(m) for m in single[v]]) / bare[False]:.3f}** ({med([total(m, True) for m in single[v]]) / bare[True]:.3f})"
        for v in ("fork", "fresh")) + " | 1 | |")
    lines.append("| measuring process, wall | " + " | ".join(f"{med([m['wall'] for m in single[v]]):.2f}"
                                                         for v in ("fork", "fresh", "bare")) + " | |")
    b = {k: med([m[k] for m in single["bare"]]) for k in ("import_s", "backend_s", "build_s")}
    lines += ["", f"Bare script before its timed part (medians): imports {b['import_s']:.2f} s, backend start "
              f"{b['backend_s']:.2f} s, parameter shapes by jax.eval_shape {b['build_s']:.2f} s. XLA FLOPs: harness "
              f"{single['fork'][0]['xla_flops']:.4g}, bare script {single['bare'][0]['xla_flops']:.4g}."]
    return lines


def summary_b(sweeps: dict[str, list[Any]]) -> list[str]:
    lines = ["(b) sweeps of 5 repeats", "", "| | fork | fresh |", "| --- | --- | --- |"]
    names = ["share of the sweep's wall time in the measured phases (trace + lower + compile)",
             "share in building the programs (time_build_s: jax.eval_shape of the initialiser)",
             "share in the rest of the measuring processes (start, imports, backend, analysis, exit)",
             "share outside the measuring processes (the command's start, the fork server's start)"]
    split = {s: [shares(sw) for sw in sweeps[s]] for s in sweeps}
    cells = [_join([sh[0] + sh[1] for sh in split[s]], "{:.0%}") for s in ("fork", "fresh")]
    lines.append(f"| **share in build + trace + lower + compile (target ≥ 80 %)** | **{cells[0]}** | **{cells[1]}** |")
    for i, name in enumerate(names):
        cells = [_join([sh[i] for sh in split[s]], "{:.0%}") for s in ("fork", "fresh")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"| sweep wall (s) | {_join([sw['wall'] for sw in sweeps['fork']])} | "
                 f"{_join([sw['wall'] for sw in sweeps['fresh']])} |")
    lines += ["", "The sweeps' own breakdowns (the line each prints at its end):", ""]
    lines += [f"- {start}: `{sw['line']}`" for start in ("fork", "fresh") for sw in sweeps[start]]
    return lines


def summary_c(jobs: dict[str, list[Any]]) -> list[str]:
    ppm = {j: [len(sw["rows"]) / sw["wall"] * 60 for sw in jobs[j]] for j in jobs}
    cores = {j: [sw["cpu"] / sw["wall"] for sw in jobs[j]] for j in jobs}
    per_point = {j: [sw["cpu"] / len(sw["rows"]) for sw in jobs[j]] for j in jobs}
    lines = [f"(c/d) sweeps of {len(jobs['jobs1'][0]['rows'])} measurements, --jobs 1 and 2", "",
              "| | --jobs 1 | --jobs 2 | 2 ÷ 1 (medians) |", "| --- | --- | --- | --- |",
              f"| **points per minute** | {_join(ppm['jobs1'])} | {_join(ppm['jobs2'])} | "
              f"**{med(ppm['jobs2']) / med(ppm['jobs1']):.2f}** |",
              f"| cores the sweep used (CPU time of all its processes ÷ wall) | {_join(cores['jobs1'], '{:.2f}')} | "
              f"{_join(cores['jobs2'], '{:.2f}')} | {med(cores['jobs2']) / med(cores['jobs1']):.2f} |",
              f"| CPU seconds per point | {_join(per_point['jobs1'], '{:.2f}')} | {_join(per_point['jobs2'], '{:.2f}')} | "
              f"{med(per_point['jobs2']) / med(per_point['jobs1']):.2f} |"]
    lines.append(f"| cores per measuring process (run_cpus) | {sorted({r['cpus'] for sw in jobs['jobs1'] for r in sw['rows']})} | "
                 f"{sorted({r['cpus'] for sw in jobs['jobs2'] for r in sw['rows']})} | |")
    for cpu in (False, True):  # point by point: the median over points of the ratio of their medians
        per = {j: {} for j in jobs}
        for j in jobs:
            for sw in jobs[j]:
                for r in sw["rows"]:
                    per[j].setdefault(r["point"], []).append(total(r, cpu))
        ratios = [med(per["jobs2"][k]) / med(v) for k, v in per["jobs1"].items() if k in per["jobs2"]]
        lines.append(f"| trace + lower + compile, {'CPU' if cpu else 'wall'}: median over {len(ratios)} points of "
                     f"jobs 2 ÷ jobs 1 (range) | | | **{med(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) |")
    for mode in sorted({r["mode"] for sw in jobs["jobs1"] for r in sw["rows"]}):
        m = {(j, cpu): med([total(r, cpu) for sw in jobs[j] for r in sw["rows"] if r["mode"] == mode])
             for j in jobs for cpu in (False, True)}
        lines.append(f"| {mode}: trace + lower + compile, wall (CPU) (s, median) | {m['jobs1', False]:.3f} "
                     f"({m['jobs1', True]:.3f}) | {m['jobs2', False]:.3f} ({m['jobs2', True]:.3f}) | "
                     f"{m['jobs2', False] / m['jobs1', False]:.2f} ({m['jobs2', True] / m['jobs1', True]:.2f}) |")
    return lines


def _join(values: list[float], fmt: str = "{:.1f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


if __name__ == "__main__":
    main()
