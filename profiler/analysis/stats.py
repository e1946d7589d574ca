"""Statistics derived from raw repeats: spread, stability, scaling laws, break-even.

Everything here works on the DataFrame of a results folder (one row per point, phase
and repeat) and knows nothing about how the numbers were measured. Only rows with
`run_status == "ok"` carry measurements; callers filter with `ok_rows`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # the t quantile; scipy.stats takes 2x as long to import

from profiler.analysis import machines
from profiler.analysis.derived import DERIVED

# A point is flagged unstable when its repeats vary this much: readers should not trust
# differences smaller than the spread. 10% is about the run-to-run variation of compile
# times on a shared 2-core machine; a single far-off repeat is caught by OUTLIER even
# when many repeats keep the CV low.
CV_UNSTABLE = 0.10
OUTLIER = 0.25
# Confidence level of every interval: fitted exponents, bootstrapped ratios.
CONFIDENCE = 0.95

METRIC_PREFIXES = ("time_", "size_", "cost_", "mem_")
# Measurements outside those prefixes (the decode workload's throughput).
EXTRA_METRICS = ("run_tokens_per_s",)

# Columns computed here from the measured ones, per repeat (so they get a spread too):
# DERIVED lives in profiler/analysis/derived.py, which imports neither pandas nor scipy.

# How the measurements were taken (docs/scale.md): timings depend on them as on the
# environment, so they are shown and compared with it.
CONDITIONS = ("run_jobs", "run_start")


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["run_status"] == "ok"]


def with_derived(df: pd.DataFrame) -> pd.DataFrame:
    """`df` plus the DERIVED columns whose parts are all present."""
    df = df.copy()
    for name, parts in DERIVED.items():
        if all(p in df.columns for p in parts):
            df[name] = sum(df[p].astype(float) for p in parts)
    return df


def has_data(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(df[column].notna().any())


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric measurement columns that hold at least one value (list columns excluded)."""
    return [
        c for c in df.columns
        if (c.startswith(METRIC_PREFIXES) or c in EXTRA_METRICS) and has_data(df, c)
        and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]


def config_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("cfg_")]


def key_value(value: object) -> object:
    """A configuration value fit for dict keys: NaN/NA become None, numpy scalars plain Python."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def common_config_columns(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """cfg_ columns both datasets have: a point is the same point when these are equal
    (not the point id, which changes whenever a spec key is added)."""
    return [c for c in config_columns(a) if c in b.columns]


NOT_AN_AXIS = ("cfg_steps", "cfg_devices")
"""Numeric keys of how a point is measured: never the x axis, whatever varies."""


def x_column(df: pd.DataFrame) -> str | None:
    """The column a metric is drawn and fitted against: `cfg_layers` when it varies, else
    the numeric key (a program factory's own knob included) that takes the most values;
    None when no numeric key varies (a single point: numbers, no curves)."""
    numeric = [c for c in varying(df, config_columns(df)) if c not in NOT_AN_AXIS
               and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               and df[c].notna().all()]
    if "cfg_layers" in numeric:
        return "cfg_layers"
    return max(numeric, key=lambda c: df[c].nunique(), default=None)


def varying(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The columns among `columns` that take more than one value in `df`."""
    return [c for c in columns if c in df.columns and df[c].nunique(dropna=False) > 1]


@dataclass(frozen=True)
class Spread:
    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float
    cv: float
    """Coefficient of variation (sample standard deviation / mean); NaN below 2 repeats."""

    @property
    def unstable(self) -> bool:
        if self.n < 2 or self.median == 0:
            return False
        far = max(self.max - self.median, self.median - self.min) / abs(self.median)
        return bool(self.cv >= CV_UNSTABLE or far > OUTLIER)


def spread(values: Sequence[float] | np.ndarray) -> Spread:
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        nan = math.nan
        return Spread(0, nan, nan, nan, nan, nan, nan)
    mean = x.mean()
    cv = float(x.std(ddof=1) / abs(mean)) if len(x) > 1 and mean != 0 else math.nan
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    return Spread(len(x), float(median), float(q1), float(q3), float(x.min()), float(x.max()), cv)


def summarize(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (point, metric) over the ok repeats: the cfg_ columns, `metric`, and
    the fields of `Spread` plus `unstable`."""
    df = ok_rows(df)
    metrics = [m for m in (metrics or metric_columns(df)) if has_data(df, m)]
    keys = config_columns(df)
    records = []
    for values, group in df.groupby(keys, dropna=False, sort=True):
        for metric in metrics:
            s = spread(group[metric].to_numpy(dtype=float, na_value=np.nan))
            if s.n:
                records.append({**dict(zip(keys, values, strict=True)), "metric": metric,
                                **s.__dict__, "unstable": s.unstable})
    columns = [*keys, "metric", "n", "median", "q1", "q3", "min", "max", "cv", "unstable"]
    return pd.DataFrame.from_records(records, columns=columns)


@dataclass(frozen=True)
class PowerLaw:
    """y = a · L^k, fitted by least squares on log y against log L."""

    a: float
    k: float
    k_low: float
    """Bounds of the confidence interval for k (NaN with only two points)."""
    k_high: float
    n: int
    r2: float

    def __call__(self, layers: np.ndarray | float) -> np.ndarray | float:
        return self.a * np.power(layers, self.k)


def fit_power_law(layers: Sequence[float], values: Sequence[float], confidence: float = CONFIDENCE) -> PowerLaw | None:
    """Fit y = a · L^k to every (layers, value) sample with a positive value; None when
    fewer than two distinct layer counts remain (no slope to fit)."""
    x = np.asarray(layers, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    x, y = np.log(x[keep]), np.log(y[keep])
    if len(np.unique(x)) < 2:
        return None
    # Least squares of log y on log L, and the slope's standard error (as scipy's linregress).
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    slope = sxy / sxx
    intercept = float(y.mean()) - slope * float(x.mean())
    dof = len(x) - 2
    if np.ptp(y) == 0:  # constant y (a scanned program's size): exactly flat, no doubt
        stderr, r2 = 0.0, 1.0
    else:
        r2 = min(sxy * sxy / (sxx * syy), 1.0)
        stderr = math.sqrt((1 - r2) * syy / sxx / dof) if dof > 0 else math.nan
    half = float(stdtrit(dof, (1 + confidence) / 2)) * stderr if dof > 0 else math.nan
    return PowerLaw(math.exp(intercept), slope, slope - half, slope + half, len(x), float(r2))


def groups(df: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[dict[str, object], pd.DataFrame]]:
    """`df` split by the values of `keys` (NaN a value like any other), in sorted order:
    ({key: value}, rows) per group; the whole frame as one group when there are no keys."""
    keys = list(keys)
    if not keys:
        yield {}, df
        return
    for values, group in df.groupby(keys, dropna=False, sort=True):
        yield dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True)), group


def fit_table(df: pd.DataFrame, metrics: Sequence[str], by: Sequence[str], x: str | None = "cfg_layers") -> pd.DataFrame:
    """Power-law fits of each metric against `x` (x_column; None: nothing to fit) for each
    group of `by`, from the raw ok repeats: columns `by`, metric, a, k, k_low, k_high, n, r2."""
    df = ok_rows(df)
    records = []
    if x is None:
        df = df.iloc[:0]
    for values, group in groups(df, by):
        for metric in metrics:
            if not has_data(group, metric):
                continue
            fit = fit_power_law(group[x], group[metric])
            if fit is not None:
                records.append({**values, "metric": metric, **fit.__dict__})
    return pd.DataFrame.from_records(
        records, columns=[*by, "metric", "a", "k", "k_low", "k_high", "n", "r2"])


def break_even_steps(setup_a: float, step_a: float, setup_b: float, step_b: float) -> float | None:
    """The step count n > 0 at which setup + n · step is equal for a and b; None when the
    lines never cross after the first step (one is ahead from start to finish)."""
    if step_a == step_b:
        return None
    n = (setup_b - setup_a) / (step_a - step_b)
    return float(n) if n > 0 else None


def break_even_table(summary: pd.DataFrame, key: str = "cfg_mode") -> pd.DataFrame:
    """Time-to-first-result = trace + lower + compile + n · step, compared between every
    two values of `key` (modes) at equal configuration otherwise, from medians.

    Columns: the other varying cfg_ columns, cfg_layers, a, b, setup_a_s, setup_b_s,
    step_a_s, step_b_s (NaN when steps were not run), ready_first, faster_step,
    break_even_steps (after how many steps `faster_step` catches up; NaN when
    ready_first also steps faster or when steps were not run).
    """
    cfg = [c for c in varying(summary, config_columns(summary)) if c not in (key, "cfg_layers")]
    medians = summary[summary["metric"].isin(["time_to_compiled_s", "time_step_median_s", "time_per_token_s"])]
    wide = medians.pivot_table(index=[*cfg, "cfg_layers", key], columns="metric",
                               values="median", dropna=False)
    wide = wide.reset_index()
    if "time_step_median_s" not in wide.columns:
        wide["time_step_median_s"] = math.nan
    if "time_per_token_s" in wide.columns:  # a decode program's step is one generated token
        wide["time_step_median_s"] = wide["time_step_median_s"].fillna(wide["time_per_token_s"])
    records = []
    for values, group in wide.groupby([*cfg, "cfg_layers"], dropna=False, sort=True):
        rows = {r[key]: r for _, r in group.iterrows() if pd.notna(r.get("time_to_compiled_s"))}
        for a, b in itertools.combinations(sorted(rows, key=_mode_order), 2):
            ra, rb = rows[a], rows[b]
            setup_a, setup_b = ra["time_to_compiled_s"], rb["time_to_compiled_s"]
            step_a, step_b = ra["time_step_median_s"], rb["time_step_median_s"]
            stepped = pd.notna(step_a) and pd.notna(step_b)
            n = break_even_steps(setup_a, step_a, setup_b, step_b) if stepped else None
            records.append({
                **dict(zip([*cfg, "cfg_layers"], values, strict=True)),
                "a": a, "b": b, "setup_a_s": setup_a, "setup_b_s": setup_b,
                "step_a_s": step_a, "step_b_s": step_b,
                "ready_first": a if setup_a <= setup_b else b,
                "faster_step": (a if step_a <= step_b else b) if stepped else None,
                "break_even_steps": math.nan if n is None else n,
            })
    return pd.DataFrame.from_records(records, columns=[
        *cfg, "cfg_layers", "a", "b", "setup_a_s", "setup_b_s", "step_a_s", "step_b_s",
        "ready_first", "faster_step", "break_even_steps"])


def _mode_order(mode: object) -> tuple[int, str]:
    """The seed's order (loop first: the baseline every other mode is compared with)."""
    known = ["loop", "scan", "scan_shared"]
    return (known.index(mode), "") if mode in known else (len(known), str(mode))


def wins_from(layers: Sequence[int], winners: Sequence[str]) -> tuple[str, int] | None:
    """(w, L): `w` wins at every layer count from L on; None when the last one ties."""
    pairs = sorted(zip(layers, winners, strict=True))
    if not pairs:
        return None
    last = pairs[-1][1]
    start = pairs[-1][0]
    for n_layers, winner in reversed(pairs):
        if winner != last:
            break
        start = n_layers
    return last, start


def bootstrap_ratio(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE,
                    resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """median(b) / median(a) with a percentile-bootstrap interval from the repeats.

    Repeats are resampled with replacement on each side independently; with one repeat
    per side the interval collapses to the ratio itself. Not scipy.stats.bootstrap: it
    refuses a side with one repeat, and with the same resamples it gave the same interval
    for 1.3-1.7x the CPU time at 2 to 11 repeats per side (docs/report.md).
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    ratio = float(np.median(y) / np.median(x))
    rng = np.random.default_rng(seed)
    mx = np.median(rng.choice(x, (resamples, len(x))), axis=1)
    my = np.median(rng.choice(y, (resamples, len(y))), axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(my / mx, [tail, 100 - tail])
    return ratio, float(low), float(high)


def ratio_table(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str],
                fail_above: float | None = None) -> pd.DataFrame:
    """B / A of the medians of each metric at every point measured ok in both (matched on
    `common_config_columns`), with bootstrap_ratio's interval.

    One row per (point, metric): the point's cfg_ columns, metric, median_a, median_b,
    n_a, n_b, ratio, low, high, and exceeds: ratio past 1 + fail_above/100 with the whole
    interval above 1. The corrected FLOPs stand for XLA's raw ones where both are asked.
    """
    a, b = ok_rows(with_derived(a)), ok_rows(with_derived(b))
    keys = common_config_columns(a, b)
    metrics = [m for m in metrics if has_data(a, m) and has_data(b, m)]
    if "cost_flops" in metrics and "cost_xla_flops" in metrics:
        metrics.remove("cost_xla_flops")
    groups_b = {tuple(map(key_value, k)): g for k, g in b.groupby(keys, dropna=False, sort=False)}
    records = []
    for k, ga in a.groupby(keys, dropna=False, sort=False):
        gb = groups_b.get(tuple(map(key_value, k)))
        if gb is None:
            continue
        for metric in metrics:
            xa, xb = ga[metric].dropna().to_numpy(float), gb[metric].dropna().to_numpy(float)
            if not len(xa) or not len(xb) or np.median(xa) <= 0:
                continue
            ratio, low, high = bootstrap_ratio(xa, xb)
            exceeds = fail_above is not None and ratio > 1 + fail_above / 100 and low > 1
            records.append({**dict(zip(keys, map(key_value, k), strict=True)), "metric": metric,
                            "median_a": float(np.median(xa)), "median_b": float(np.median(xb)),
                            "n_a": len(xa), "n_b": len(xb), "ratio": ratio, "low": low, "high": high,
                            "exceeds": exceeds})
    return pd.DataFrame.from_records(records, columns=[
        *keys, "metric", "median_a", "median_b", "n_a", "n_b", "ratio", "low", "high", "exceeds"])


def environment(df: pd.DataFrame) -> dict[str, list[object]]:
    """The environment of stored rows, as analysis.machines compares it and the report shows
    it: each env_ column's distinct values, most frequent first (volatile ones left out),
    and the conditions of measurement (CONDITIONS). (measurement/env.py records them.)"""
    env = {}
    for column in df.columns:
        if (column.startswith("env_") or column in CONDITIONS) and column not in machines.VOLATILE and has_data(df, column):
            env[column] = df[column].dropna().value_counts().index.tolist()
    return env
