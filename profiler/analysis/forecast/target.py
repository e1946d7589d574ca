"""The frame-level forecast: a target parsed against a results folder's rows, its series,
and every metric forecast at it (forecast_target), or checked against deeper measured
points (backtest)."""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiler.analysis import stats
from profiler.analysis.forecast.candidates import MODEL_TEXT, ForecastError
from profiler.analysis.forecast.curve import BOOTSTRAP, MIN_DEPTHS, Curve, _across, fit_curve
from profiler.spec import Point, SpecError, parse_override
from profiler.storage.record import COLUMNS
from profiler.storage.store import load, read_manifest

# What a forecast predicts, in this order. The derived sums come from stats.DERIVED and
# CPU_DERIVED (CPU time is steadier than wall time on a shared machine).
METRICS = (
    "time_trace_s", "time_lower_s", "time_compile_s", "time_to_compiled_s",
    "time_trace_cpu_s", "time_lower_cpu_s", "time_compile_cpu_s", "time_to_compiled_cpu_s",
    "time_step_median_s",
    "size_hlo_instructions", "size_hlo_bytes", "cost_flops",
    "mem_temp_bytes", "mem_argument_bytes", "mem_footprint_bytes",
)
CPU_DERIVED = {"time_to_compiled_cpu_s": ("time_trace_cpu_s", "time_lower_cpu_s", "time_compile_cpu_s")}
# Timings of the stages: they may grow faster past the measured depths (forecast/curve.py
# ACCELERATION). A step's time follows its FLOPs.
ACCELERATING = tuple(m for m in METRICS if m.startswith("time_") and m != "time_step_median_s")
# Deterministic for a configuration: compiling the target abstractly measures them
# exactly, in the time of one compile, without allocating anything.
EXACT_PREFIXES = ("size_", "cost_", "mem_")


@dataclass(frozen=True)
class Forecast:
    """One metric of one series at the target."""

    metric: str
    series: dict[str, Any]
    """The keys that select the series (mode, measured hidden, ...)."""
    target: dict[str, Any]
    predicted: float
    low: float
    high: float
    model: str
    """The chosen model with its fitted numbers (and how further keys were extrapolated)."""
    validation: list[dict[str, float]]
    """The chosen model's leave-largest-out folds: train_max, test, predicted, measured, error."""
    validation_error: float
    """Root mean square of those folds' relative errors."""
    candidates: dict[str, float]
    """Every candidate's validation error (NaN: it could not be fitted)."""
    interval: dict[str, float]
    """The relative half-widths the interval adds up: model, residual, repeats, bootstrap."""
    growth: float
    """Local exponent d log y / d log L of the chosen model at the largest measured depth."""
    based_on: list[dict[str, Any]]
    """The measured points: their keys, median and repeats."""
    exact: bool
    """A deterministic metric: compiling the target measures it instead (see `measure`)."""
    measure: str | None
    unit: str
    held_out: float | None = None
    """With `fit`: the median measured at the target among the rows it held out (None: none)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in asdict(self).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    value = stats.key_value(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _units() -> dict[str, str]:
    units = {c.name: c.unit for c in COLUMNS}
    units.update({m: "s" for m in (*stats.DERIVED, *CPU_DERIVED)})
    return units


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows with the derived sums (stats.DERIVED and CPU_DERIVED)."""
    df = stats.with_derived(stats.ok_rows(df))
    for name, parts in CPU_DERIVED.items():
        if all(p in df.columns for p in parts):
            df[name] = sum(df[p].astype(float) for p in parts)
    return df


def _numeric(df: pd.DataFrame, column: str) -> bool:
    return pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column])


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) or float(a) == float(b)
    except (TypeError, ValueError):
        return False


def parse_target(df: pd.DataFrame, target: Mapping[str, Any] | Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Validate a target against the results: {cfg column: value} and the numeric
    columns to extrapolate in (layers first). ForecastError names the first problem."""
    if not isinstance(target, Mapping):
        try:
            target = dict(parse_override(t) for t in target)
        except SpecError as e:
            raise ForecastError(str(e)) from None
    fields = set(Point.model_fields) | {"phase"}
    out: dict[str, Any] = {}
    extrapolate: list[str] = []
    for key, value in target.items():
        if key not in fields:
            raise ForecastError(f"unknown key '{key}' (keys: see `python -m profiler keys`)")
        column = f"cfg_{key}"
        if column not in df.columns or not stats.has_data(df, column):
            raise ForecastError(f"key '{key}': the results hold no values of it")
        measured = [stats.key_value(v) for v in df[column].dropna().unique()]
        if key == "layers" and len(measured) > 1 and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[column] = value  # always fitted, measured depth or not: the other keys' fits need every depth
            extrapolate.append(column)
            continue
        if any(_same(value, m) for m in measured):
            out[column] = next(m for m in measured if _same(value, m))
            continue
        if not _numeric(df, column) or isinstance(value, bool) or not isinstance(value, int | float):
            shown = ", ".join(map(str, sorted(measured, key=str)))
            raise ForecastError(f"key '{key}': {value!r} is not in the results ({shown}) and is not a number to extrapolate")
        if len(measured) < 2:
            raise ForecastError(f"key '{key}': the results do not vary it (all {measured[0]}); cannot extrapolate to {value}")
        if value <= 0:
            raise ForecastError(f"key '{key}': {value} must be positive")
        out[column] = value
        extrapolate.append(column)
    if "cfg_layers" not in out and df["cfg_layers"].nunique() > 1:
        raise ForecastError("give the target's depth: layers=N")
    extrapolate.sort(key=lambda c: c != "cfg_layers")
    return out, extrapolate


_COMPARISONS = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater}
_CONDITION = re.compile(r"\s*([A-Za-z_]\w*)\s*(<=|>=|!=|==|<|>|=)\s*(\S.*?)\s*$")


def fitted_rows(df: pd.DataFrame, fit: Sequence[str]) -> pd.DataFrame:
    """The rows that every condition of `fit` keeps ('layers<=4', 'hidden!=512', 'mode=scan'):
    the points a forecast is fitted on; the others are held out, to check it against.
    A condition that cannot apply to the rows is a ForecastError naming it."""
    keep = pd.Series(True, index=df.index)
    for text in fit:
        match = _CONDITION.fullmatch(text)
        if not match:
            raise ForecastError(f"--fit {text!r}: expected KEY<=VALUE (or <, >=, >, =, !=)")
        key, op, raw = match.groups()
        column = f"cfg_{key}"
        if column not in df.columns or not stats.has_data(df, column):
            raise ForecastError(f"--fit {text!r}: the results hold no values of key '{key}'")
        value = parse_override(f"{key}={raw}")[1]
        if op not in ("=", "==", "!=") and not (_numeric(df, column) and isinstance(value, int | float)):
            raise ForecastError(f"--fit {text!r}: {op} compares numbers; key '{key}' or {raw!r} is not one")
        def holds(v: Any, op: str = op, value: Any = value) -> bool:
            if v is None or pd.isna(v):
                return False
            if op in ("=", "==", "!="):
                return _same(v, value) is (op != "!=")
            return bool(_COMPARISONS[op](v, value))

        keep &= df[column].map(holds)
    kept = df[keep]
    if fit and kept.empty:
        raise ForecastError(f"--fit {' '.join(fit)}: holds out every row")
    return kept


def metric_curve(rows: pd.DataFrame, metric: str, target: float | None = None, *,
                 bootstrap: int = BOOTSTRAP) -> Curve:
    """The curve of `metric` against cfg_layers over one series' rows (the rows with a
    value): fit_curve, with the stages' timings allowed to accelerate (ACCELERATING)."""
    vals = rows[["cfg_layers", metric]].dropna()
    return fit_curve(vals["cfg_layers"], vals[metric], target, bootstrap=bootstrap,
                     accelerating=metric in ACCELERATING)


def _measure_command(manifest: Mapping[str, Any] | None, series: Mapping[str, Any], target: Mapping[str, Any],
                     folder: Path) -> str:
    """A sweep command that measures the target point exactly: compile-only, once."""
    spec = dict((manifest or {}).get("spec") or {})
    keys = {k: v for k, v in spec.items() if k in Point.model_fields}
    keys.update({c.removeprefix("cfg_"): v for c, v in {**series, **target}.items() if c != "cfg_phase"})
    keys.update(run=False)
    name = spec.get("name", "forecast")
    shipped = Path(__file__).resolve().parents[3] / "sweeps" / f"{name}.toml"
    spec_path = f"sweeps/{name}.toml" if shipped.is_file() else "SPEC.toml"

    def toml(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, str):
            return v if v and all(c.isalnum() or c in "_-." for c in v) else f'"{v}"'
        return str(v)

    overrides = " ".join(shlex.quote(f"{k}={toml(v)}") for k, v in keys.items() if not isinstance(v, list))
    return (f"python -m profiler sweep {spec_path} {overrides} repeats=1 "
            f"--out {shlex.quote(str(folder.parent / (folder.name + '-target')))}")


def _series_keys(df: pd.DataFrame, target: Mapping[str, Any], extrapolate: Sequence[str]) -> list[str]:
    """Columns that split the results into series: the varying cfg_ columns the target
    does not fix (run and steps go with the others: a run row is also a compile row)."""
    return [c for c in stats.varying(df, stats.config_columns(df))
            if c not in target and c not in extrapolate and c != "cfg_layers"]


def forecast_target(results: str | Path | pd.DataFrame, target: Mapping[str, Any] | Sequence[str],
             metrics: Sequence[str] | None = None, *, bootstrap: int = BOOTSTRAP,
             fit: Sequence[str] = ()) -> list[Forecast]:
    """Forecast every metric of every series of `results` (a folder or its rows) at
    `target` ({'layers': 256, 'mode': 'loop'} or ['layers=256', 'mode=loop']), fitted on
    the rows the conditions `fit` keep (fitted_rows); a forecast at a point they held
    out carries its measured median (`held_out`).

    Raises ForecastError (one line) for a target the results cannot answer.
    """
    folder = None if isinstance(results, pd.DataFrame) else Path(results)
    every = prepare(results if folder is None else load(folder))
    df = fitted_rows(every, fit)
    manifest = read_manifest(folder) if folder is not None else None
    if df.empty:
        raise ForecastError("the results hold no ok rows")

    goal, extrapolate = parse_target(df, target)
    rows = df
    for column, value in goal.items():
        if column not in extrapolate:
            rows = rows[rows[column].map(lambda v, value=value: _same(v, value))]
    if rows.empty:
        raise ForecastError("no ok rows match " + " ".join(f"{c.removeprefix('cfg_')}={v}" for c, v in goal.items()))
    series_keys = _series_keys(rows, goal, extrapolate)
    units = _units()
    wanted = [m for m in (metrics or METRICS) if stats.has_data(rows, m)]
    if not wanted:
        raise ForecastError("the results hold none of the metrics asked for")
    out = []
    for values, group in stats.groups(rows, series_keys):
        series = {c: stats.key_value(v) for c, v in values.items()}
        for metric in wanted:
            if not stats.has_data(group, metric):
                continue
            out.append(_one(group, metric, series, goal, extrapolate, units.get(metric, ""), manifest,
                            folder or Path("results"), bootstrap))
    return [_with_held_out(f, every.drop(df.index)) for f in out] if fit else out


def _one(group: pd.DataFrame, metric: str, series: dict[str, Any], goal: dict[str, Any], extrapolate: list[str],
         unit: str, manifest: Mapping[str, Any] | None, folder: Path, bootstrap: int) -> Forecast:
    layers = float(goal.get("cfg_layers", group["cfg_layers"].iloc[0]))
    others = [c for c in extrapolate if c != "cfg_layers"]
    based_on = []
    for keys, g in group.groupby(["cfg_layers", *others], sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        vals = g[metric].dropna()
        if len(vals):
            based_on.append({**{c.removeprefix("cfg_"): stats.key_value(v) for c, v in zip(["cfg_layers", *others], keys, strict=True)},
                             "median": float(vals.median()), "repeats": len(vals)})

    def stage1(g: pd.DataFrame) -> Curve:
        return metric_curve(g, metric, layers, bootstrap=bootstrap)

    if not others:
        curve = stage1(group)
        predicted, low, high = curve.at(layers)
        model = f"{MODEL_TEXT[curve.fit.model]}: y = {curve.fit.formula}"
        folds, parts, growth = curve.chosen.folds, curve.parts(layers), curve.growth
        candidates = {c.model: c.score for c in curve.candidates}
    else:
        # One further key (the first the target extrapolates; more are refused below).
        column = others[0]
        if len(others) > 1:
            raise ForecastError("extrapolating in more than one key besides layers at once is not supported: "
                                + ", ".join(c.removeprefix("cfg_") for c in others))
        xs, curves = [], []
        for x, g in group.groupby(column, sort=True):
            try:
                curves.append(stage1(g))
                xs.append(float(x))
            except ForecastError:
                continue
        if len(xs) < 2:
            raise ForecastError(f"too few points to fit in {column.removeprefix('cfg_')}: {len(xs)} value(s) with "
                                f"{MIN_DEPTHS} layer counts each, 2 needed")
        var = column.removeprefix("cfg_")
        at = np.array([c.at(layers) for c in curves])
        predicted, low, high, note, across = _across(np.array(xs), at[:, 0], at[:, 1], at[:, 2], float(goal[column]), var)
        model = "; ".join(f"{var}={x:g}: {MODEL_TEXT[c.fit.model]}: y = {c.fit.formula}" for x, c in zip(xs, curves, strict=True))
        model += f"; {note}"
        parts = {"total": (high - low) / 2 / abs(predicted) if predicted else math.nan}
        growth = curves[-1].growth
        candidates = {}
        folds = tuple(across) or curves[-1].chosen.folds
    exact = metric.startswith(EXACT_PREFIXES)
    if exact and math.isfinite(low) and math.isfinite(high):  # whole numbers: 2048.0000001 covers 2048
        low, high = math.floor(low), math.ceil(high)
    validation = [{"train_max": f.train_max, "test": f.test, "predicted": f.predicted, "measured": f.measured,
                   "error": f.error} for f in folds]
    error = float(np.sqrt(np.mean([f.error**2 for f in folds]))) if folds else math.nan
    target = {c.removeprefix("cfg_"): v for c, v in goal.items()}
    return Forecast(metric, {c.removeprefix("cfg_"): v for c, v in series.items()}, target, predicted, low, high,
                    model, validation, error, candidates, parts, growth, based_on, exact,
                    _measure_command(manifest, series, goal, folder) if exact else None, unit)


def _with_held_out(f: Forecast, held: pd.DataFrame) -> Forecast:
    """`f` with the median of its metric among the held-out rows at its series and target."""
    rows = held
    for column, value in {f"cfg_{k}": v for k, v in {**f.series, **f.target}.items()}.items():
        if column in rows.columns:
            rows = rows[rows[column].map(lambda v, value=value: _same(v, value))]
    if f.metric not in rows.columns or not rows[f.metric].notna().any():
        return f
    return dataclasses.replace(f, held_out=float(rows[f.metric].dropna().median()))


def backtest(results: str | Path | pd.DataFrame, upto: int, targets: Sequence[int],
             metrics: Sequence[str] | None = None, *, repeat: int | None = None) -> pd.DataFrame:
    """Forecasts from the points of at most `upto` layers against the measured medians at
    each of `targets` (depths the results hold beyond `upto`); `repeat` restricts both to
    one repeat (measured in one pass of the sweep, so under similar load).

    Columns: the series keys, layers, metric, predicted, low, high, measured, error
    (relative, + = over-predicted), covered, model, validation_error.
    """
    df = prepare(results if isinstance(results, pd.DataFrame) else load(results))
    if repeat is not None:
        df = df[df["run_repeat"] == repeat]
    train = df[df["cfg_layers"] <= upto]
    records = []
    for target in targets:
        for f in forecast_target(train, {"layers": target}, metrics):
            rows = df[df["cfg_layers"] == target]
            for key, value in f.series.items():
                rows = rows[rows[f"cfg_{key}"] == value]
            measured = float(rows[f.metric].median()) if len(rows) else math.nan
            records.append({**f.series, "layers": target, "metric": f.metric, "predicted": f.predicted,
                            "low": f.low, "high": f.high, "measured": measured,
                            "error": (f.predicted - measured) / measured if measured else math.nan,
                            "covered": bool(f.low <= measured <= f.high), "model": f.model,
                            "validation_error": f.validation_error})
    return pd.DataFrame.from_records(records)
