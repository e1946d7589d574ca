"""Overhead: where the measuring processes' wall time went (the phase columns, as
profiler/analysis/breakdown.py adds them up), and on how many cores the timings were taken."""

from __future__ import annotations

from profiler.analysis.breakdown import MEASURED, process_seconds
from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.page import Cell, Section, Table
from profiler.units import fmt

_NEEDED = "time_process_start_s"
"""A column only rows of schema 5 and later have: older rows cannot be broken down."""


def _share(df) -> str:
    """'--jobs 2, each measuring process on 1 of 2 cores (0, 1)' for one group of rows."""
    jobs = df["run_jobs"].dropna().unique()
    cpus = df["run_cpus"].dropna().unique() if "run_cpus" in df else []
    host = df["env_cpu_count"].dropna().unique()
    affinity = sorted(df["run_cpu_affinity"].dropna().unique()) if "run_cpu_affinity" in df else []
    parts = [f"{int(jobs[0])} measurement(s) at once" if len(jobs) == 1 else "a varying number of measurements at once"]
    if len(cpus) == 1 and len(host) == 1:
        parts.append(f"each measuring process on {int(cpus[0])} of the host's {int(host[0])} cores"
                     + (f" ({', '.join(affinity)})" if 1 < len(affinity) <= 8 else ""))
    return ", ".join(parts)


@registry.section(order=85)
def overhead_section(an: Analysis) -> Section | None:
    if not an.has(_NEEDED) or "run_jobs" not in an.df:
        return None
    rows = []
    for _, group in an.df.groupby(["run_jobs", "run_cpus"], dropna=False, sort=True):
        parts = process_seconds(group.to_dict("records"))
        total = sum(parts.values())
        if total <= 0:
            continue
        for part, seconds in sorted(parts.items(), key=lambda ps: -ps[1]):
            css = "num" if part != MEASURED else "num better"
            rows.append([Cell(_share(group)), Cell(part),
                         Cell(fmt(seconds, "s"), css=css), Cell(f"{seconds / total:.1%}", css=css)])
    if not rows:
        return None
    table = Table(["timings taken with", "part", "seconds (all measurements)", "share"], rows,
                  caption="Each measuring process's wall time (run_wall_s) and its wait for a fork server, "
                  "cut into phases: the time_* columns, each process's once. The rest covers clearing "
                  "JAX's caches, failed measurements and collecting the rows.")
    return Section("overhead", "Where the measurements' time went",
                   intro=f"The share in {MEASURED} is the measurement's own work; the other parts are the "
                   "harness's. The sweep command also prints its whole wall time cut this way "
                   "(its start, the report), at its end.",
                   tables=[table])


@registry.finding(order=85)
def share_lines(an: Analysis) -> list[str]:
    """Which share of the machine the timings had: comparable only within one share."""
    if "run_cpus" not in an.df or an.df["run_cpus"].isna().all():
        return []
    groups = an.df.groupby(["run_jobs", "run_cpus"], dropna=False)
    shares = [_share(g) for _, g in groups]
    if len(shares) == 1:
        return [f"Timings were taken with {shares[0]}."]
    return [f"Timings were taken with different shares of the machine ({'; '.join(shares)}): "
            "compare timings only within one share."]
