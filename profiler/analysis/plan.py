"""Planner: which configuration to pick for a memory budget and a number of steps.

The options are the series of a results folder (mode, remat, unroll, ... : whatever the
results vary and the target does not fix), each at the target size: measured when the
results hold that point, forecast (profiler/analysis/forecast/) when not. Each option's total
time is time to a compiled program + steps × step time; that is the break-even table
(stats.break_even_table) generalised to any number of options and steps.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from profiler.analysis import stats
from profiler.analysis.forecast import (
    ForecastError,
    fitted_rows,
    forecast_target,
    parse_target,
    prepare,
)
from profiler.storage.store import load
from profiler.units import MISSING, fmt

MEMORY = "mem_footprint_bytes"
SETUP = "time_to_compiled_s"
STEP = "time_step_median_s"

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def parse_size(text: str) -> int:
    """'80GiB' (binary), '16GB' (decimal), '512M' (binary), '1000' (bytes) -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text), re.IGNORECASE)
    if not match or match.group(2).lower() not in _UNITS:
        raise ForecastError(f"--memory-per-device: cannot read {text!r} as a size (e.g. 80GiB, 16GB, 512MiB)")
    size = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if size <= 0:
        raise ForecastError(f"--memory-per-device: {text!r} must be more than 0 bytes")
    return int(size)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    measured: bool
    """True: the median of the measured repeats (low, high = their range); False: a forecast."""


@dataclass(frozen=True)
class Option:
    series: dict[str, Any]
    memory: Estimate | None
    setup: Estimate | None
    step: Estimate | None
    fits: str
    """'yes' (even the interval's top fits), 'maybe' (the prediction fits, its top does not),
    'no', or 'unknown' (no memory column, or a forecast without an interval: measure it)."""

    @property
    def name(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.series.items()) or "the results"

    def total(self, steps: int) -> float:
        """Seconds to a compiled program and `steps` steps (steps counted only when known)."""
        if self.setup is None:
            return math.nan
        if steps and self.step is not None:
            return self.setup.value + steps * self.step.value
        return self.setup.value


@dataclass(frozen=True)
class Plan:
    target: dict[str, Any]
    memory: int
    steps: int
    options: list[Option]
    """Best first: fitting options by total time, then the others."""
    soonest: Option | None
    fastest_step: Option | None
    fewest_total: Option | None
    reasons: dict[str, str]
    """Why each option other than `fewest_total` lost, by option name."""
    notes: list[str]

    def to_json(self) -> str:
        def plain(o: Option | None) -> dict[str, Any] | None:
            return None if o is None else {**asdict(o), "name": o.name, "total_s": _finite(o.total(self.steps))}

        return json.dumps({
            "target": self.target, "memory_per_device_bytes": self.memory, "steps": self.steps,
            "options": [plain(o) for o in self.options], "soonest": self.soonest and self.soonest.name,
            "fastest_step": self.fastest_step and self.fastest_step.name,
            "fewest_total": self.fewest_total and self.fewest_total.name, "reasons": self.reasons,
            "notes": self.notes}, indent=1, default=str)


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _measured(rows: pd.DataFrame, metric: str) -> Estimate | None:
    values = rows[metric].dropna() if metric in rows.columns else pd.Series(dtype=float)
    if values.empty:
        return None
    s = stats.spread(values.to_numpy(dtype=float))
    return Estimate(s.median, s.min, s.max, True)


def plan_target(results: str | Path | pd.DataFrame, target: Mapping[str, Any] | Sequence[str] = (), *,
         memory: str | int | None = None, devices: int | None = None, steps: int = 0,
         fit: Sequence[str] = ()) -> Plan:
    """Rank the configurations of `results` at `target` (default: the largest measured
    depth) for a device memory of `memory` bytes (or '80GiB'; None: the HBM of one device of
    the TPU or GPU target the rows were compiled for) and `steps` steps, from the rows the
    conditions `fit` keep (forecast.fitted_rows: the others are held out)."""
    budget = None if memory is None else memory if isinstance(memory, int) else parse_size(memory)
    if steps < 0:
        raise ForecastError(f"--steps: must be at least 0 (got {steps})")
    if devices is not None and devices < 1:
        raise ForecastError(f"--devices: must be at least 1 (got {devices})")
    df = load(results) if not isinstance(results, pd.DataFrame) else results
    df = df.loc[fitted_rows(prepare(df), fit).index] if fit else df
    ok = prepare(df)
    if ok.empty:
        raise ForecastError("the results hold no ok rows")
    goal: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    if not isinstance(target, Mapping):
        from profiler.spec import SpecError, parse_override

        try:
            goal = dict(parse_override(t) for t in target)
        except SpecError as e:
            raise ForecastError(str(e)) from None
    if devices is not None:
        goal["devices"] = devices
    if budget is None:
        budget = hbm_budget(ok, goal.get("target"))
    goal.setdefault("layers", int(ok["cfg_layers"].max()))
    parsed, extrapolate = parse_target(ok, goal)
    metrics = [m for m in (MEMORY, SETUP, STEP) if stats.has_data(ok, m)]
    if SETUP not in metrics:
        raise ForecastError("the results hold no compile times (time_to_compiled_s)")
    measured_depth = parsed.get("cfg_layers") in set(ok["cfg_layers"])
    options = []
    if any(c != "cfg_layers" for c in extrapolate) or not measured_depth:
        found: dict[tuple, dict[str, Estimate]] = {}
        for f in forecast_target(df, goal, metrics, bootstrap=50):
            key = tuple((k, v) for k, v in f.series.items() if k not in ("run", "steps"))
            found.setdefault(key, {})[f.metric] = Estimate(f.predicted, f.low, f.high, False)
        for key, estimates in found.items():
            options.append(_option(dict(key), estimates, budget))
    else:
        rows = ok
        for column, value in parsed.items():
            rows = rows[rows[column] == value]
        series_keys = [c for c in stats.varying(rows, stats.config_columns(rows))
                       if c not in parsed and c not in ("cfg_run", "cfg_steps")]
        for values, group in stats.groups(rows, series_keys):
            series = {c.removeprefix("cfg_"): stats.key_value(v) for c, v in values.items()}
            options.append(_option(series, {m: _measured(group, m) for m in metrics}, budget))
    return _rank(options, {c.removeprefix("cfg_"): v for c, v in parsed.items()}, budget, steps, metrics)


def hbm_budget(ok: pd.DataFrame, target: Any = None) -> int:
    """The HBM of one device of the TPU or GPU target the rows (of `target`, when given)
    were compiled for (`mem_hbm_bytes`): the budget when none is given."""
    rows = ok if target is None or "cfg_target" not in ok.columns else ok[ok["cfg_target"] == target]
    hbm = rows["mem_hbm_bytes"].dropna().unique() if "mem_hbm_bytes" in rows.columns else []
    if len(hbm) == 1:
        return int(hbm[0])
    if len(hbm) == 0:
        raise ForecastError("--memory-per-device: needed, the rows were compiled for no TPU or GPU target "
                            "whose HBM would be the budget")
    targets = sorted(set(rows.loc[rows["mem_hbm_bytes"].notna(), "cfg_target"]))
    raise ForecastError(f"--memory-per-device: needed, or one target (target=...): the rows were compiled "
                        f"for {', '.join(targets)}")


def _option(series: dict[str, Any], estimates: Mapping[str, Estimate | None], budget: int) -> Option:
    mem = estimates.get(MEMORY)
    if mem is None or not math.isfinite(mem.high):  # no memory column, or a forecast without interval
        fits = "unknown"
    else:
        fits = "yes" if mem.high <= budget else "maybe" if mem.value <= budget else "no"
    return Option(series, mem, estimates.get(SETUP), estimates.get(STEP), fits)


_FIT_ORDER = {"yes": 0, "maybe": 1, "unknown": 2, "no": 3}


def _rank(options: list[Option], target: dict[str, Any], budget: int, steps: int, metrics: Sequence[str]) -> Plan:
    notes = []
    if MEMORY not in metrics:
        notes.append("the results hold no memory column: whether an option fits is unknown")
    stepped = [o for o in options if o.step is not None]
    if steps and not stepped:
        notes.append("the results hold no step times (compile-only sweep, run=false): total = time to a compiled program")
    unsure = [o.name for o in options if o.fits == "unknown" and o.memory is not None]
    if unsure:
        notes.append(f"whether {', '.join(unsure)} fit is unknown: their memory is forecast without an interval "
                     "(a width extrapolated from 2 values); measure the target with the command "
                     "`python -m profiler forecast` prints")
    if any(o.setup is not None and not o.setup.measured for o in options):
        notes.append("forecast values come from `python -m profiler forecast` (see its intervals and models)")
    usable = [o for o in options if o.fits in ("yes", "maybe", "unknown") and o.setup is not None]
    ranked = sorted(options, key=lambda o: (_FIT_ORDER[o.fits] if o.fits != "maybe" else 0.5,
                                            o.total(steps) if math.isfinite(o.total(steps)) else math.inf))
    soonest = min(usable, key=lambda o: o.setup.value if o.setup else math.inf, default=None)
    fastest = min(usable, key=lambda o: o.step.value if o.step else math.inf, default=None)
    fastest = fastest if fastest is not None and fastest.step is not None else None
    best = min(usable, key=lambda o: o.total(steps), default=None)
    reasons = {}
    for o in options:
        if o is best:
            continue
        reasons[o.name] = _why(o, best, budget, steps)
    return Plan(target, budget, steps, ranked, soonest, fastest, best, reasons, notes)


def _why(o: Option, best: Option | None, budget: int, steps: int) -> str:
    # 'yes', 'maybe' and 'no' are decided from a memory forecast; `best` is usable: compiled.
    if o.fits == "no":
        assert o.memory is not None
        return f"needs {fmt(o.memory.value, 'bytes')} per device (interval {fmt(o.memory.low, 'bytes')} to " \
               f"{fmt(o.memory.high, 'bytes')}), more than {fmt(budget, 'bytes')}"
    if o.setup is None:
        return "no compile time in the results"
    if best is None:
        return "nothing fits"
    assert best.setup is not None
    parts = []
    if o.fits == "unknown" and o.memory is not None:
        parts.append(f"may not fit: needs ~{fmt(o.memory.value, 'bytes')}, a forecast without interval")
    if o.fits == "maybe" and o.memory is not None:
        parts.append(f"may not fit: needs {fmt(o.memory.value, 'bytes')}, its interval reaches {fmt(o.memory.high, 'bytes')}")
    later = o.setup.value - best.setup.value
    parts.append(f"compiled {fmt(abs(later), 's')} {'later' if later >= 0 else 'sooner'} "
                 f"({fmt(o.setup.value, 's')} vs {fmt(best.setup.value, 's')})")
    if o.step is not None and best.step is not None:
        slower = o.step.value - best.step.value
        parts.append(f"steps {fmt(abs(slower), 's')} {'slower' if slower >= 0 else 'faster'} "
                     f"({fmt(o.step.value, 's')} vs {fmt(best.step.value, 's')})")
        n = stats.break_even_steps(best.setup.value, best.step.value, o.setup.value, o.step.value)
        if n is not None and n > steps:
            parts.append(f"would catch up after {n:,.0f} steps")
        if steps:
            parts.append(f"total {fmt(o.total(steps), 's')} vs {fmt(best.total(steps), 's')} for {steps:,} steps")
    return "; ".join(parts)


def _est(e: Estimate | None, unit: str) -> str:
    if e is None:
        return MISSING
    how = "" if e.measured else "~"
    return f"{how}{fmt(e.value, unit)} [{fmt(e.low, unit)}, {fmt(e.high, unit)}]"


def format_plan(p: Plan) -> str:
    goal = " ".join(f"{k}={v}" for k, v in p.target.items())
    lines = [f"plan for {goal}: {fmt(p.memory, 'bytes')} per device, {p.steps:,} steps "
             "(~ = forecast, [ ] = interval or range of repeats)"]
    table = [("option", "memory per device", "fits", "compiled after", "step", f"total ({p.steps:,} steps)")]
    for o in p.options:
        table.append((o.name, _est(o.memory, "bytes"), o.fits, _est(o.setup, "s"), _est(o.step, "s"),
                      fmt(o.total(p.steps), "s")))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]

    def name(o: Option | None) -> str:
        return "none fits" if o is None else o.name

    lines.append(f"soonest to a compiled program: {name(p.soonest)}")
    lines.append(f"fastest step: {name(p.fastest_step) if p.fastest_step or p.soonest is None else 'no step times'}")
    lines.append(f"fewest total seconds for {p.steps:,} steps: {name(p.fewest_total)}")
    if p.reasons:
        lines.append("why the others lost:")
        lines += [f"  {n}: {why}" for n, why in p.reasons.items()]
    lines += [f"note: {n}" for n in p.notes]
    return "\n".join(lines)
