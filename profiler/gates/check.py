"""Regression check of one results folder against a baseline, point by point.

Two kinds of metrics are gated differently. Timings vary from run to run, so a timing
regresses only when its median over the repeats grows past `max_slowdown_pct`. By
default the timings gated are the CPU times of the stages: on a shared machine the
wall clock of every repeat of a sweep stretches with the load of the moment, and a
baseline recorded at another moment then fails for nothing (docs/gates.md). The
deterministic metrics (program size, corrected FLOPs, temp and argument bytes) are what
XLA produced: for one JAX version they are equal to the last bit, so any change is
reported, growth or shrinkage, however small. A point measured in the baseline that has
no successful repeat in the new folder is a regression too.

Medians, ratios and the matching of points are `stats.ratio_table`'s, so that `check`
and `compare` see the same numbers: points are matched on the cfg_ columns both folders
have (not on the point id, which changes whenever a spec key is added), and a timing
regresses like a ratio that fails `compare --fail-above`: median past the limit, and the
bootstrap interval of the ratio above 1.

Timings belong to a machine (profiler/analysis/machines.py): when the two folders ran on different
machines (CPU model, CPU flags, backend or device kind), the check refuses
(machines.OtherMachine) unless `cross_machine`, which checks the deterministic metrics
only. Nothing here draws: a check loads neither plotly nor jinja2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.analysis import machines
from profiler.errors import StoreError
from profiler.units import fmt_exact

if TYPE_CHECKING:  # pandas is imported when a check runs, not when the command line starts
    import pandas as pd

DETERMINISTIC = ("size_hlo_instructions", "cost_flops", "mem_temp_bytes", "mem_argument_bytes")
# Timings gated per clock. Steps are timed on the wall clock only.
TIMINGS = {
    "cpu": ("time_trace_cpu_s", "time_lower_cpu_s", "time_compile_cpu_s"),
    "wall": ("time_to_compiled_s", "time_trace_s", "time_lower_s", "time_compile_s", "time_step_median_s"),
}

# Deterministic values are equal to the last bit for one JAX version; the tolerance
# only absorbs the round trip of a float through text.
RTOL = 1e-9

# Default --max-slowdown (percent); docs/gates.md has the noise it is chosen from.
MAX_SLOWDOWN_PCT = 30.0


def changed(expected: float | None, got: float | None) -> bool:
    """Whether a deterministic metric differs from its expected value."""
    if expected is None or got is None or _missing(expected) or _missing(got):
        return _missing(expected) != _missing(got)
    return not math.isclose(expected, got, rel_tol=RTOL, abs_tol=0.0)


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True)
class Regression:
    point: str
    """The point's configuration where it differs from other compared points."""
    phase: str
    metric: str
    baseline: float | None
    new: float | None
    change: str
    limit: str


@dataclass
class CheckResult:
    regressions: list[Regression]
    points: int
    """Points of the baseline with a successful repeat, each checked."""
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.regressions)


def check(new: str | Path, baseline: str | Path, max_slowdown_pct: float = MAX_SLOWDOWN_PCT,
          clock: str = "cpu", cross_machine: bool = False) -> CheckResult:
    """Check results folder `new` against `baseline`, timings on `clock` ('cpu' or
    'wall', a key of TIMINGS). Bad folders raise StoreError; folders from different
    machines raise machines.OtherMachine unless `cross_machine` (then timings are not
    checked)."""
    import pandas as pd

    from profiler.analysis import stats
    from profiler.storage import store

    base_rows, new_rows = store.load(baseline), store.load(new)
    env_base, env_new = stats.environment(stats.ok_rows(base_rows)), stats.environment(stats.ok_rows(new_rows))
    other = machines.other_machine(env_base, env_new)
    if other and not cross_machine:
        raise machines.OtherMachine(other, "the baseline and the new folder")
    keys = stats.common_config_columns(base_rows, new_rows)
    base_points, new_points = _points(stats.ok_rows(base_rows), keys), _points(new_rows, keys)
    if not base_points:
        raise StoreError(f"'{baseline}' holds no successful measurement to check against")
    if not base_points & new_points:
        raise StoreError(f"'{new}' measured none of the points of '{baseline}'")
    timings = () if other else TIMINGS[clock]
    ratios = stats.ratio_table(base_rows, new_rows, [*timings, *DETERMINISTIC], fail_above=max_slowdown_pct)
    labels = _labels(pd.concat([base_rows[keys], new_rows[keys]]), keys)

    regressions = []
    statuses = _statuses(new_rows, keys)
    for point in sorted(base_points - _points(stats.ok_rows(new_rows), keys), key=labels.__getitem__):
        values = dict(zip(keys, point, strict=True))
        change = f"failed ({statuses[point]})" if point in statuses else "not measured"
        regressions.append(Regression(labels[point], str(values.get("cfg_phase")), "run_status",
                                      None, None, change, "ok"))
    for row in ratios.sort_values(keys, kind="stable").to_dict("records"):
        point = tuple(row[k] for k in keys)
        label, phase = labels[point], str(row.get("cfg_phase"))
        x, y, metric = row["median_a"], row["median_b"], row["metric"]
        if metric in timings and row["exceeds"]:
            regressions.append(Regression(label, phase, metric, x, y, f"{y / x - 1:+.1%}", f"+{max_slowdown_pct:g}%"))
        elif metric in DETERMINISTIC and changed(x, y):
            regressions.append(Regression(label, phase, metric, x, y, difference(x, y), "any change"))
    notes = _notes(env_base, env_new, len(_points(stats.ok_rows(new_rows), keys) - base_points))
    if other:
        notes.insert(0, f"timings not checked: the baseline and the new folder ran on different machines "
                        f"({machines.describe(other)}); deterministic metrics only (--cross-machine)")
    elif not set(timings) & set(ratios["metric"]):
        notes.append(f"no {clock} timings in both folders: timings were not checked"
                     + ("; try --clock wall" if clock == "cpu" else ""))
    return CheckResult(regressions, len(base_points), notes)


def _points(df: pd.DataFrame, keys: list[str]) -> set[tuple[Any, ...]]:
    from profiler.analysis import stats

    return {tuple(map(stats.key_value, row)) for row in df[keys].itertuples(index=False)}


def _statuses(df: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], str]:
    """Each point's statuses over its rows, e.g. 'error x2'."""
    from profiler.analysis import stats

    statuses: dict[tuple[Any, ...], list[str]] = {}
    for row, status in zip(df[keys].itertuples(index=False), df["run_status"], strict=True):
        statuses.setdefault(tuple(map(stats.key_value, row)), []).append(str(status))
    return {p: ", ".join(f"{s} x{v.count(s)}" for s in sorted(set(v))) for p, v in statuses.items()}


def _labels(points: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], str]:
    """A short name per point: the cfg_ values that differ between the points."""
    from profiler.analysis import stats

    shown = stats.varying(points, [k for k in keys if k != "cfg_phase"])
    shown = shown or [k for k in ("cfg_workload", "cfg_mode", "cfg_layers") if k in keys]
    labels = {}
    for point in _points(points, keys):
        values = dict(zip(keys, point, strict=True))
        labels[point] = " ".join(f"{k[4:]}={values[k]}" for k in shown)
    return labels


def _notes(env_a: machines.Environment, env_b: machines.Environment, only_new: int) -> list[str]:
    notes = []
    for d in machines.between(env_a, env_b):
        if d.known and d.column in machines.VERSIONS:
            notes.append(f"{d.name} differs ({', '.join(sorted(d.a))} vs {', '.join(sorted(d.b))}): "
                         "deterministic metrics are expected to change")
    if only_new:
        notes.append(f"{only_new} point(s) of the new folder are not in the baseline and were not checked")
    return notes


def difference(expected: float | None, got: float | None) -> str:
    """How a deterministic metric changed: '+10 (+4.24%)'."""
    if expected is None or got is None or _missing(expected) or _missing(got):
        return f"{fmt_exact(expected)} -> {fmt_exact(got)}"
    if not expected:
        return fmt_exact(got - expected, signed=True)
    pct = (got / expected - 1) * 100
    shown = f"{pct:+.0f}" if abs(pct) >= 100 else f"{pct:+.3g}"
    return f"{fmt_exact(got - expected, signed=True)} ({shown}%)"


def format_result(result: CheckResult, new: str | Path, baseline: str | Path) -> str:
    """The notes, the regressions as an aligned table, and a one-line verdict."""
    lines = [f"note: {n}" for n in result.notes]
    if result.regressions:
        header = ("point", "phase", "metric", "baseline", "new", "change", "limit")
        rows = [header, *((r.point, r.phase, r.metric, fmt_exact(r.baseline), fmt_exact(r.new), r.change, r.limit)
                          for r in result.regressions)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    verdict = f"{len(result.regressions)} regression(s)" if result.failed else "no regression"
    lines.append(f"{verdict}: {result.points} point(s) of {baseline} checked in {new}")
    return "\n".join(lines)
