"""Regression check of one results folder against a baseline, point by point.

Two kinds of metrics are gated differently. Timings vary from run to run, so a timing
regresses only when its median over the repeats grows past `max_slowdown_pct`. The
deterministic metrics (program size, corrected FLOPs, temp and argument bytes) are what
XLA produced: for one JAX version they are equal to the last bit, so any change is
reported, growth or shrinkage, however small. A point measured in the baseline that has
no successful repeat in the new folder is a regression too.

Points are matched on the cfg_ columns both folders have, not on the point id, which
changes whenever a spec key is added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler import store
from profiler.store import StoreError

if TYPE_CHECKING:  # pandas is imported when a check runs, not by the command line's start
    import pandas as pd

DETERMINISTIC = ("size_hlo_instructions", "cost_flops", "mem_temp_bytes", "mem_argument_bytes")
TIMINGS = ("time_to_compiled_s", "time_trace_s", "time_lower_s", "time_compile_s", "time_step_median_s")
_STAGES = ("time_trace_s", "time_lower_s", "time_compile_s")

# Deterministic values are equal to the last bit for one JAX version; the tolerance
# only absorbs the round trip of a float through text.
RTOL = 1e-9

# Default --max-slowdown (percent); docs/gates.md has the noise it is chosen from.
MAX_SLOWDOWN_PCT = 25.0

# Environment columns whose difference explains changes: timings are not comparable
# across machines or backends, deterministic metrics not across JAX versions.
_ENV_NOTES = {
    "env_backend": "timings are not comparable",
    "env_device_kind": "timings are not comparable",
    "env_cpu_model": "timings are not comparable",
    "env_jax_version": "deterministic metrics are expected to change",
    "env_jaxlib_version": "deterministic metrics are expected to change",
}


def changed(expected: float | None, got: float | None) -> bool:
    """Whether a deterministic metric differs from its expected value."""
    if _missing(expected) or _missing(got):
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


def check(new: str | Path, baseline: str | Path, max_slowdown_pct: float = MAX_SLOWDOWN_PCT) -> CheckResult:
    """Check results folder `new` against `baseline`. Bad folders raise StoreError."""
    import pandas as pd

    a, b = store.load(baseline), store.load(new)
    keys = [c for c in a.columns if c.startswith("cfg_") and c in b.columns]
    base_ok, new_ok = _medians(a, keys), _medians(b, keys)
    if base_ok.empty:
        raise StoreError(f"'{baseline}' holds no successful measurement to check against")
    labels = _labels(pd.concat([base_ok[keys], new_ok[keys]]), keys)
    new_by_point = dict(zip(_point_keys(new_ok, keys), new_ok.to_dict("records"), strict=True))
    if not set(_point_keys(b, keys)) & set(_point_keys(base_ok, keys)):
        raise StoreError(f"'{new}' measured none of the points of '{baseline}'")

    regressions = []
    for point, old in zip(_point_keys(base_ok, keys), base_ok.to_dict("records"), strict=True):
        label, phase = labels[point], str(old.get("cfg_phase"))
        got = new_by_point.get(point)
        if got is None:
            status = _statuses(b, keys).get(point)
            change = f"failed ({status})" if status else "not measured"
            regressions.append(Regression(label, phase, "run_status", None, None, change, "ok"))
            continue
        for metric in TIMINGS:
            x, y = old.get(metric), got.get(metric)
            if _missing(x) or _missing(y) or x <= 0:
                continue
            if y / x > 1 + max_slowdown_pct / 100:
                regressions.append(Regression(label, phase, metric, x, y, f"{y / x - 1:+.1%}", f"+{max_slowdown_pct:g}%"))
        for metric in DETERMINISTIC:
            x, y = old.get(metric), got.get(metric)
            if changed(x, y):
                change = f"{_fmt(y - x, signed=True)} ({(y / x - 1) * 100:+.3g}%)" if x and not _missing(y) else "changed"
                regressions.append(Regression(label, phase, metric, x, y, change, "any change"))
    return CheckResult(regressions, len(base_ok), _notes(a, b, base_ok, new_ok, keys))


def _medians(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per point: the median of each compared metric over its ok repeats."""
    ok = df[df["run_status"] == "ok"].copy()
    ok["time_to_compiled_s"] = sum(ok[s].astype(float) for s in _STAGES)
    metrics = [m for m in (*TIMINGS, *DETERMINISTIC) if m in ok.columns]
    ok[metrics] = ok[metrics].astype(float)
    return ok.groupby(keys, dropna=False, sort=True)[metrics].median().reset_index()


def _norm(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _point_keys(df: pd.DataFrame, keys: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(map(_norm, row)) for row in df[keys].itertuples(index=False)]


def _statuses(df: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], str]:
    """Each point's statuses, e.g. 'error x3'."""
    statuses: dict[tuple[Any, ...], list[str]] = {}
    for point, status in zip(_point_keys(df, keys), df["run_status"], strict=True):
        statuses.setdefault(point, []).append(str(status))
    return {p: ", ".join(f"{s} x{v.count(s)}" for s in sorted(set(v))) for p, v in statuses.items()}


def _labels(points: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], str]:
    """A short name per point: the cfg_ values that differ between the points."""
    shown = [k for k in keys if k != "cfg_phase" and points[k].nunique(dropna=False) > 1]
    shown = shown or [k for k in ("cfg_workload", "cfg_mode", "cfg_layers") if k in keys]
    labels = {}
    for point in _point_keys(points, keys):
        values = dict(zip(keys, point, strict=True))
        labels[point] = " ".join(f"{k[4:]}={values[k]}" for k in shown)
    return labels


def _notes(a: pd.DataFrame, b: pd.DataFrame, base_ok: pd.DataFrame, new_ok: pd.DataFrame,
           keys: list[str]) -> list[str]:
    notes = []
    for column, consequence in _ENV_NOTES.items():
        va, vb = (set(df.loc[df["run_status"] == "ok", column].dropna()) for df in (a, b))
        if va and vb and va != vb:
            notes.append(f"{column[4:]} differs ({', '.join(sorted(map(str, va)))} vs "
                         f"{', '.join(sorted(map(str, vb)))}): {consequence}")
    only_new = len(set(_point_keys(new_ok, keys)) - set(_point_keys(base_ok, keys)))
    if only_new:
        notes.append(f"{only_new} point(s) of the new folder are not in the baseline and were not checked")
    return notes


def _fmt(value: float | None, signed: bool = False) -> str:
    if _missing(value):
        return "-"
    sign = "+" if signed and value > 0 else ""
    if float(value).is_integer() and abs(value) >= 1:
        return f"{sign}{int(value)}"
    return f"{value:{sign}.4g}"


def format_result(result: CheckResult, new: str | Path, baseline: str | Path) -> str:
    """The notes, the regressions as an aligned table, and a one-line verdict."""
    lines = [f"note: {n}" for n in result.notes]
    if result.regressions:
        header = ("point", "phase", "metric", "baseline", "new", "change", "limit")
        rows = [header, *((r.point, r.phase, r.metric, _fmt(r.baseline), _fmt(r.new), r.change, r.limit)
                          for r in result.regressions)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    verdict = f"{len(result.regressions)} regression(s)" if result.failed else "no regression"
    lines.append(f"{verdict}: {result.points} point(s) of {baseline} checked in {new}")
    return "\n".join(lines)
