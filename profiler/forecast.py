"""Forecast: each measured metric at a point outside the measured grid, with an interval.

Works on the rows of a results folder only (no JAX). A target is a set of spec keys
(`layers=256 mode=loop hidden=1024`): keys the results vary but the target leaves out
split the answer into series (one forecast per mode, say); a numeric key the target sets
to a value the results did not measure is extrapolated.

How, per series and metric (docs/forecast.md):

1. In layers: the medians over repeats at each depth are fitted by every candidate model
   (MODELS: a + b·L and a·L^k on all depths or on the deeper half, a + b·L^k,
   a + b·L + c·L^k, a power law with a knee). Each is validated leave-largest-out:
   fitted on the depths below the largest and scored on the largest, then likewise one
   depth down; a model that cannot be fitted on every fold's depths is left out. The
   model with the smallest validation error wins (the simpler one when within
   VALIDATION_TIE).
2. In another numeric key (hidden, devices, ...), when the target lies outside its
   measured values: step 1 at each measured value, then a + b·x or a·x^k through those
   forecasts (validated the same way with 3 values or more; with 2 it is not validated
   and says so), its interval step 1's widest relative one (plus step 2's validation
   error when there is one).

The interval is relative to the prediction, ±w with w = m + sqrt(r² + q² + b²):
m = the worst validation error per unit of log-extrapolation times the target's log
distance beyond the largest measured depth (a model off by 5% at 2x is allowed 8% at 3x);
r = the largest in-sample relative residual; q = the relative half-range of the repeats
at the largest depths (what one more measurement would scatter by); b = the half-width
of the 95% bootstrap band of the prediction, repeats resampled per depth.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiler import stats
from profiler.record import COLUMNS
from profiler.spec import Point, SpecError, parse_override
from profiler.store import StoreError, load, read_manifest

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
# Deterministic for a configuration: compiling the target abstractly measures them
# exactly, in the time of one compile, without allocating anything.
EXACT_PREFIXES = ("size_", "cost_", "mem_")

MIN_DEPTHS = 3
"""Distinct layer counts a series needs: two to fit a line, one more to validate it."""
VALIDATION_FOLDS = 2
"""Leave-largest-out folds: hold out the largest depth, then the one below it."""
VALIDATION_TIE = 0.01
"""A model with more parameters must beat a simpler one's validation error by this much
(absolute, 1 percentage point) to be chosen: below it the difference is noise."""
BOOTSTRAP = 100
RIVAL_SCORE = (1.5, 0.005)
"""A candidate whose validation error is within 1.5x the chosen one's + half a point is a
rival: as plausible on the evidence of two folds."""
PRECISION = 1e-6
"""Narrowest relative interval: an exact fit of values up to 1e12 (FLOPs) still carries
the rounding of its least squares."""


class ForecastError(StoreError):
    """The results cannot answer the forecast asked for. The message is one line."""


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Fit:
    """A fitted curve y(x)."""

    model: str
    """Candidate name (a key of MODELS)."""
    params: tuple[float, ...]
    formula: str
    """The curve with its fitted numbers, e.g. 'y = 0.11 + 0.021·L^1.35'."""
    f: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)
    fitted_from: float = 0.0
    """Smallest depth the fit used (the tail models leave the smaller ones out)."""

    def __call__(self, x: float | np.ndarray) -> np.ndarray:
        return self.f(np.asarray(x, dtype=float))

    def local_exponent(self, x: float) -> float:
        """d log y / d log x at x: how fast y grows there (1 = linearly)."""
        h = 0.01
        lo, hi = float(self(x / (1 + h))), float(self(x * (1 + h)))
        if lo <= 0 or hi <= 0:
            return math.nan
        return (math.log(hi) - math.log(lo)) / (2 * math.log(1 + h))


def _g(v: float) -> str:
    return f"{v:.4g}"


def _lstsq(columns: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Least squares of y on the columns, in relative error (each row divided by y) when
    y is positive: values span decades and every depth should count alike."""
    a = np.column_stack(columns)
    w = 1 / y if np.all(y > 0) else np.ones_like(y)
    coef, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    return coef


def _rel_sse(pred: np.ndarray, y: np.ndarray) -> float:
    scale = np.where(y != 0, np.abs(y), 1.0)
    return float(np.sum(((pred - y) / scale) ** 2))


def fit_linear(x: np.ndarray, y: np.ndarray, var: str = "L") -> Fit | None:
    if len(x) < 2:
        return None
    a, b = _lstsq([np.ones_like(x), x], y)
    return Fit("linear", (a, b), f"{_g(a)} + {_g(b)}·{var}", lambda t: a + b * t)


def fit_power(x: np.ndarray, y: np.ndarray, var: str = "L") -> Fit | None:
    if len(x) < 2 or np.any(y <= 0) or np.any(x <= 0):
        return None
    k, loga = np.polyfit(np.log(x), np.log(y), 1)
    a = math.exp(loga)
    return Fit("power", (a, k), f"{_g(a)}·{var}^{k:.3f}", lambda t: a * np.power(t, k))


_K_GRID = np.round(np.arange(0.2, 3.001, 0.05), 2)


def _grid_lstsq(x: np.ndarray, y: np.ndarray, extra: Sequence[np.ndarray], ks: np.ndarray) -> tuple[int, np.ndarray]:
    """Least squares (relative, as _lstsq) of y on [extra columns..., x^k] for every k of
    `ks` at once: the index of the best k and its coefficients."""
    w = 1 / y if np.all(y > 0) else np.ones_like(y)
    a = np.stack([np.broadcast_to(c, (len(ks), len(x))) for c in extra] + [np.power(x[None, :], ks[:, None])], axis=2)
    a = a * w[None, :, None]
    b = y * w
    normal = np.einsum("kni,knj->kij", a, a)
    rhs = np.einsum("kni,n->ki", a, b)
    try:
        coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:  # a singular k (x^k equal to a column): fall back per k
        coef = np.stack([np.linalg.lstsq(a[i], b, rcond=None)[0] for i in range(len(ks))])
    err = np.sum((np.einsum("kni,ki->kn", a, coef) - b) ** 2, axis=1)
    err = np.where(np.isfinite(err), err, np.inf)
    best = int(np.argmin(err))
    return best, coef[best]


def fit_offset_power(x: np.ndarray, y: np.ndarray, var: str = "L") -> Fit | None:
    """a + b·x^k: a fixed cost plus a power law, k from a grid (0.2 to 3)."""
    if len(np.unique(x)) < 3 or np.any(x <= 0):
        return None
    i, (a, b) = _grid_lstsq(x, y, [np.ones_like(x)], _K_GRID)
    k = float(_K_GRID[i])
    return Fit("offset_power", (a, b, k), f"{_g(a)} + {_g(b)}·{var}^{k:.2f}", lambda t: a + b * np.power(t, k))


_K_SUPER = _K_GRID[_K_GRID > 1.05]


def fit_linear_power(x: np.ndarray, y: np.ndarray, var: str = "L") -> Fit | None:
    """a + b·x + c·x^k, k > 1 from a grid: linear growth plus a superlinear term."""
    if len(np.unique(x)) < 4 or np.any(x <= 0):
        return None
    i, (a, b, c) = _grid_lstsq(x, y, [np.ones_like(x), x], _K_SUPER)
    k = float(_K_SUPER[i])
    return Fit("linear_power", (a, b, c, k), f"{_g(a)} + {_g(b)}·{var} + {_g(c)}·{var}^{k:.2f}",
               lambda t: a + b * t + c * np.power(t, k))


def fit_knee_power(x: np.ndarray, y: np.ndarray, var: str = "L") -> Fit | None:
    """A power law whose exponent changes once, at a knee among the inner depths
    (continuous in log-log): fixed costs below the knee, growth above it."""
    xs = np.unique(x)
    if len(xs) < 4 or np.any(y <= 0) or np.any(x <= 0):
        return None
    u, v = np.log(x), np.log(y)
    best = None
    for knee in np.log(xs[1:-1]):
        coef, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(u), u, np.maximum(0, u - knee)]), v, rcond=None)
        err = float(np.sum((coef[0] + coef[1] * u + coef[2] * np.maximum(0, u - knee) - v) ** 2))
        if best is None or err < best[0]:
            best = (err, coef, knee)
    _, (c0, c1, c2), knee = best

    def f(t: np.ndarray) -> np.ndarray:
        lt = np.log(t)
        return np.exp(c0 + c1 * lt + c2 * np.maximum(0, lt - knee))

    return Fit("knee_power", (c0, c1, c2, knee),
               f"{var}^{c1:.2f} below {var}={math.exp(knee):.3g}, {var}^{c1 + c2:.2f} above", f)


def _tail(fitter: Callable[..., Fit | None], name: str) -> Callable[..., Fit | None]:
    """`fitter` on the largest half of the depths (at least 2): where fixed costs no
    longer dominate, so the fit follows the growth at depth."""

    def fit(x: np.ndarray, y: np.ndarray, var: str = "L") -> Fit | None:
        xs = np.unique(x)
        if len(xs) < 3:  # the tail would be every depth: the plain model
            return None
        keep = x >= xs[len(xs) - max(2, math.ceil(len(xs) / 2))]
        inner = fitter(x[keep], y[keep], var)
        if inner is None:
            return None
        start = float(x[keep].min())
        return Fit(name, inner.params, f"{inner.formula} (fitted on {var} >= {start:g})", inner.f, start)

    fit.__doc__ = f"{fitter.__name__} on the largest half of the depths."
    return fit


# Candidates, simplest first (ties go to the earlier one).
MODELS: dict[str, Callable[..., Fit | None]] = {
    "linear": fit_linear,
    "power": fit_power,
    "linear_tail": _tail(fit_linear, "linear_tail"),
    "power_tail": _tail(fit_power, "power_tail"),
    "offset_power": fit_offset_power,
    "linear_power": fit_linear_power,
    "knee_power": fit_knee_power,
}
PARAMETERS = {"linear": 2, "power": 2, "linear_tail": 3, "power_tail": 3, "offset_power": 3,
              "linear_power": 4, "knee_power": 4}
"""Depths a model needs: its fitted numbers (k and the knee included); a tail model needs
one more depth than its 2-depth tail, or it would be the plain model."""
MODEL_TEXT = {
    "linear": "a + b·L", "power": "a·L^k", "linear_tail": "a + b·L on the deeper half",
    "power_tail": "a·L^k on the deeper half", "offset_power": "a + b·L^k",
    "linear_power": "a + b·L + c·L^k", "knee_power": "power law with a knee",
}


@dataclass(frozen=True)
class Fold:
    train_max: float
    """Largest depth the model was fitted on."""
    test: float
    """The held-out depth it predicted."""
    predicted: float
    measured: float

    @property
    def error(self) -> float:
        """Relative error of the prediction (signed: + = over-predicted)."""
        return (self.predicted - self.measured) / self.measured if self.measured else math.nan


@dataclass(frozen=True)
class Candidate:
    model: str
    folds: tuple[Fold, ...]

    @property
    def score(self) -> float:
        """Root mean square of the fold errors (NaN when the largest fold is missing)."""
        if not self.folds:
            return math.nan
        return float(np.sqrt(np.mean([f.error**2 for f in self.folds])))


def validate(x: np.ndarray, y: np.ndarray, model: str, folds: int = VALIDATION_FOLDS) -> Candidate:
    """Leave-largest-out folds of one model on medians y at depths x (sorted, unique)."""
    out = []
    for j in range(1, folds + 1):
        if len(x) - j < PARAMETERS[model]:
            break
        fit = MODELS[model](x[: len(x) - j], y[: len(x) - j])
        if fit is None:
            break
        out.append(Fold(float(x[len(x) - j - 1]), float(x[len(x) - j]), float(fit(x[len(x) - j])), float(y[len(x) - j])))
    return Candidate(model, tuple(out))


def choose(x: np.ndarray, y: np.ndarray, models: Sequence[str] = tuple(MODELS),
           target: float | None = None) -> tuple[str, list[Candidate]]:
    """The model with the smallest validation error (the simplest within VALIDATION_TIE),
    and every candidate's validation. A model that cannot be fitted on the depths of
    every fold is not a candidate, nor one that forecasts a positive metric to be zero
    or less at `target`."""
    candidates = [validate(x, y, m) for m in models]
    # Every candidate is judged on the same folds: as many as the simplest model can have.
    folds = min(VALIDATION_FOLDS, len(x) - 2)
    scored = [c for c in candidates if folds > 0 and len(c.folds) == folds and math.isfinite(c.score)]
    if target is not None and np.all(y > 0):
        scored = [c for c in scored if (fit := MODELS[c.model](x, y)) is not None and float(fit(target)) > 0]
    if not scored:
        raise ForecastError(f"no model can be validated on {len(x)} points")
    best = min(c.score for c in scored)
    return next(c.model for c in scored if c.score <= best + VALIDATION_TIE), candidates


# --------------------------------------------------------------------------- one series


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


@dataclass(frozen=True)
class Curve:
    """The chosen model of one series in layers, its validation and what its interval
    is made of; `at(L)` evaluates prediction and interval at any depth."""

    fit: Fit
    chosen: Candidate
    candidates: list[Candidate]
    depths: np.ndarray
    """The measured depths, ascending."""
    medians: np.ndarray
    rate: float
    """Worst validation error per unit of log-extrapolation (m = rate · log(L / largest depth))."""
    residual: float
    repeats: float
    boots: list[Fit] = field(repr=False)
    """The chosen model refitted on bootstrap resamples of the repeats."""
    rivals: list[Fit] = field(repr=False, default_factory=list)
    """The other candidates that validated nearly as well (RIVAL_SCORE): the interval
    reaches their forecasts too, since the folds could not tell them apart."""

    @property
    def growth(self) -> float:
        """Local exponent of the model at the largest measured depth."""
        return self.fit.local_exponent(float(self.depths[-1]))

    def parts(self, layers: float) -> dict[str, float]:
        predicted = float(self.fit(layers))
        boot = 0.0
        if self.boots and predicted:
            values = [float(b(layers)) for b in self.boots]
            boot = float(np.percentile(values, 97.5) - np.percentile(values, 2.5)) / 2 / abs(predicted)
        parts = {"model": self.rate * max(0.0, math.log(layers / self.depths[-1])), "residual": self.residual,
                 "repeats": self.repeats, "bootstrap": boot}
        parts["total"] = max(PRECISION, parts["model"] + math.sqrt(self.residual**2 + self.repeats**2 + boot**2))
        rivals = [float(r(layers)) for r in self.rivals]
        parts["rivals"] = max((abs(r - predicted) / abs(predicted) for r in rivals), default=0.0) if predicted else 0.0
        return parts

    def at(self, layers: float) -> tuple[float, float, float]:
        """(predicted, low, high) at `layers`."""
        predicted = float(self.fit(layers))
        w = self.parts(layers)["total"]
        low, high = predicted - w * abs(predicted), predicted + w * abs(predicted)
        rivals = [float(r(layers)) for r in self.rivals]
        low, high = min([low, *rivals]), max([high, *rivals])
        if np.all(self.medians >= 0):
            low = max(low, 0.0)
        return predicted, low, high


def fit_curve(layers: Sequence[float], values: Sequence[float], target: float | None = None,
              *, bootstrap: int = BOOTSTRAP, seed: int = 0) -> Curve:
    """Choose and fit the model of y against layers from raw repeats (layers[i], values[i]);
    `target` rules out models that would forecast a positive metric at or below zero there."""
    frame = pd.DataFrame({"x": np.asarray(layers, float), "y": np.asarray(values, float)}).dropna()
    groups = {x: g["y"].to_numpy() for x, g in frame.groupby("x", sort=True)}
    x = np.array(sorted(groups))
    if len(x) < MIN_DEPTHS:
        raise ForecastError(f"too few points to fit: {len(x)} layer count(s) measured, {MIN_DEPTHS} needed")
    y = np.array([np.median(groups[v]) for v in x])
    name, candidates = choose(x, y, target=target)
    chosen = next(c for c in candidates if c.model == name)
    fit = MODELS[name](x, y)
    rate = max(abs(f.error) / math.log(f.test / f.train_max) for f in chosen.folds)
    used = x >= fit.fitted_from
    residual = float(np.max(np.abs((fit(x[used]) - y[used]) / np.where(y[used] != 0, y[used], 1))))
    top = [groups[v] for v in x[-2:]]
    repeats = max((float(np.ptp(g)) / 2 / abs(float(np.median(g))) if np.median(g) else 0.0) for g in top)
    rng = np.random.default_rng(seed)
    n = bootstrap if any(np.ptp(g) > 0 for g in groups.values()) else 0
    resampled = np.column_stack([np.median(rng.choice(groups[v], (n, len(groups[v]))), axis=1) for v in x]) if n else []
    boots = [b for yb in resampled if (b := MODELS[name](x, yb)) is not None]
    folds = len(chosen.folds)
    rivals = [r for c in candidates if c.model != name and len(c.folds) == folds
              and c.score <= RIVAL_SCORE[0] * chosen.score + RIVAL_SCORE[1]
              and (r := MODELS[c.model](x, y)) is not None]
    if np.all(y > 0) and target is not None:
        rivals = [r for r in rivals if float(r(target)) > 0]
    return Curve(fit, chosen, candidates, x, y, rate, residual, repeats, boots, rivals)


def _across(xs: np.ndarray, preds: np.ndarray, lows: np.ndarray, highs: np.ndarray, target: float,
            var: str) -> tuple[float, float, float, str, list[Fold]]:
    """Stage 2: from forecasts at measured values xs of another key to `target`."""
    order = np.argsort(xs)
    xs, preds, lows, highs = xs[order], preds[order], lows[order], highs[order]
    models = ["linear", "power"]
    if len(xs) >= 3:
        name, candidates = choose(xs, preds, models)
        folds = list(next(c for c in candidates if c.model == name).folds)
    else:
        name, folds = ("power" if np.all(preds > 0) else "linear"), []
    fit = MODELS[name](xs, preds, var)
    predicted = float(fit(target))
    # The widest relative interval of step 1, plus the model error of step 2 (as in
    # Curve.parts). Unvalidated (2 values), nothing bounds the error of step 2 itself:
    # measured, a power law in hidden through 256 and 512 missed 8192 by -57% (footprint,
    # docs/forecast.md). No interval then, rather than a narrow one that means nothing.
    if not folds:
        return predicted, math.nan, math.nan, f"then in {var}: {fit.formula} through {len(xs)} values " \
            "(not validated: no interval; measure instead)", []
    w = float(np.max(np.maximum(preds - lows, highs - preds) / np.abs(np.where(preds != 0, preds, 1))))
    beyond = max(0.0, math.log(target / xs[-1]))
    w += max(abs(f.error) / math.log(f.test / f.train_max) for f in folds) * beyond
    low, high = predicted - w * abs(predicted), predicted + w * abs(predicted)
    if np.all(lows >= 0):
        low = max(low, 0.0)
    note = f"then in {var}: {fit.formula}"
    return predicted, low, high, note, folds


# --------------------------------------------------------------------------- the frame


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
    out, extrapolate = {}, []
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


def _measure_command(manifest: Mapping[str, Any] | None, series: Mapping[str, Any], target: Mapping[str, Any],
                     folder: Path) -> str:
    """A sweep command that measures the target point exactly: compile-only, once."""
    spec = dict((manifest or {}).get("spec") or {})
    keys = {k: v for k, v in spec.items() if k in Point.model_fields}
    keys.update({c.removeprefix("cfg_"): v for c, v in {**series, **target}.items() if c != "cfg_phase"})
    keys.update(run=False)
    name = spec.get("name", "forecast")
    shipped = Path(__file__).resolve().parent.parent / "sweeps" / f"{name}.toml"
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
             metrics: Sequence[str] | None = None, *, bootstrap: int = BOOTSTRAP) -> list[Forecast]:
    """Forecast every metric of every series of `results` (a folder or its rows) at
    `target` ({'layers': 256, 'mode': 'loop'} or ['layers=256', 'mode=loop']).

    Raises ForecastError (one line) for a target the results cannot answer.
    """
    folder = None if isinstance(results, pd.DataFrame) else Path(results)
    df = prepare(results if folder is None else load(folder))
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
    groups = rows.groupby(series_keys, dropna=False, sort=True) if series_keys else [((), rows)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        series = {c: stats.key_value(v) for c, v in zip(series_keys, values, strict=True)}
        for metric in wanted:
            if not stats.has_data(group, metric):
                continue
            out.append(_one(group, metric, series, goal, extrapolate, units.get(metric, ""), manifest,
                            folder or Path("results"), bootstrap))
    return out


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
        vals = g[["cfg_layers", metric]].dropna()
        return fit_curve(vals["cfg_layers"], vals[metric], layers, bootstrap=bootstrap)

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
        predicted, low, high, note, folds = _across(np.array(xs), at[:, 0], at[:, 1], at[:, 2], float(goal[column]), var)
        model = "; ".join(f"{var}={x:g}: {MODEL_TEXT[c.fit.model]}: y = {c.fit.formula}" for x, c in zip(xs, curves, strict=True))
        model += f"; {note}"
        parts = {"total": (high - low) / 2 / abs(predicted) if predicted else math.nan}
        growth = curves[-1].growth
        candidates = {}
        folds = tuple(folds) or curves[-1].chosen.folds
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


# --------------------------------------------------------------------------- for the report
# Pure builders for the report's forecast section (profiler/forecast_figures.py draws
# the curves): they take a results DataFrame and return tables and lines.

REPORT_METRICS = ("time_to_compiled_s", "time_compile_s", "time_step_median_s", "size_hlo_instructions",
                  "mem_footprint_bytes")
REACH = 3.0
"""How far past the largest measured depth the report draws a forecast (3x: 128 -> 384)."""


def series_curves(df: pd.DataFrame, metrics: Sequence[str] = REPORT_METRICS,
                  *, bootstrap: int = BOOTSTRAP) -> list[tuple[dict[str, Any], str, Curve]]:
    """(series keys, metric, fitted Curve) for every series of the results (all varying
    cfg_ columns but layers) and metric that has enough depths; the others are left out."""
    df = prepare(df)
    keys = [c for c in stats.varying(df, stats.config_columns(df)) if c not in ("cfg_layers", "cfg_run", "cfg_steps")]
    out = []
    groups = df.groupby(keys, dropna=False, sort=True) if keys else [((), df)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        series = {c: stats.key_value(v) for c, v in zip(keys, values, strict=True)}
        for metric in metrics:
            if not stats.has_data(group, metric):
                continue
            rows = group[["cfg_layers", metric]].dropna()
            if rows["cfg_layers"].nunique() < MIN_DEPTHS:
                continue
            top = float(rows["cfg_layers"].max()) * REACH
            out.append((series, metric, fit_curve(rows["cfg_layers"], rows[metric], top, bootstrap=bootstrap)))
    return out


def band(curve: Curve, reach: float = REACH, points: int = 24) -> pd.DataFrame:
    """The curve from its largest measured depth to `reach` times it: layers, predicted, low, high."""
    top = float(curve.depths[-1])
    layers = np.geomspace(top, top * reach, points)
    values = np.array([curve.at(x) for x in layers])
    return pd.DataFrame({"layers": layers, "predicted": values[:, 0], "low": values[:, 1], "high": values[:, 2]})


def validation_table(curves: Sequence[tuple[dict[str, Any], str, Curve]]) -> pd.DataFrame:
    """One row per series and metric: the chosen model and its fit, its leave-largest-out
    errors, every candidate's validation error, and the growth at depth (local exponent
    d log y / d log L at the largest measured depth)."""
    records = []
    for series, metric, curve in curves:
        folds = "; ".join(f"{f.train_max:g} -> {f.test:g}: {f.error:+.1%}" for f in curve.chosen.folds)
        records.append({**series, "metric": metric, "model": MODEL_TEXT[curve.fit.model], "fit": curve.fit.formula,
                        "validation_error": curve.chosen.score, "folds": folds,
                        "growth": curve.growth, "at_layers": float(curve.depths[-1]),
                        **{f"error_{c.model}": c.score for c in curve.candidates}})
    return pd.DataFrame.from_records(records)


def growth_lines(curves: Sequence[tuple[dict[str, Any], str, Curve]],
                 metrics: Sequence[str] = ("time_to_compiled_s", "size_hlo_instructions")) -> list[str]:
    """Summary sentences: how each metric grows at the largest measured depth, per series,
    by the chosen model's local exponent (not one power law over all depths, which at
    small depths measures fixed costs)."""
    lines = []
    for metric in metrics:
        chosen = [(s, c) for s, m, c in curves if m == metric]
        if not chosen:
            continue
        depth = max(float(c.depths[-1]) for _, c in chosen)
        parts = ", ".join(f"{_label(s)} L^{c.growth:.2f} ({MODEL_TEXT[c.fit.model]})" for s, c in chosen)
        lines.append(f"{metric} at {depth:g} layers grows as {parts}: local exponent d log y / d log L "
                     "of the model chosen by leave-largest-out validation")
    return lines


def _label(series: Mapping[str, Any]) -> str:
    return " ".join(f"{k.removeprefix('cfg_')}={v}" for k, v in series.items()) or "all"


# --------------------------------------------------------------------------- text


def fmt(value: float, unit: str) -> str:
    """A number with its unit, scaled to read (GiB, ms, M)."""
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "bytes":
        for scale, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}"
        return f"{value:.0f} B"
    if unit == "s":
        return f"{value * 1e3:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    for scale, name in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{name} {unit}".rstrip()
    return f"{value:.4g} {unit}".rstrip()


def format_text(forecasts: Sequence[Forecast]) -> str:
    """Forecasts grouped by series: one line per metric, then how each was made."""
    lines: list[str] = []
    by_series: dict[tuple, list[Forecast]] = {}
    for f in forecasts:
        by_series.setdefault(tuple(sorted(f.series.items(), key=str)), []).append(f)
    for key, group in by_series.items():
        what = " ".join(f"{k}={v}" for k, v in key) or "all rows"
        goal = " ".join(f"{k}={v}" for k, v in group[0].target.items())
        depths = sorted({p["layers"] for p in group[0].based_on})
        lines.append(f"{what} -> {goal}  (from layers {', '.join(f'{d:g}' for d in depths)})")
        width = max(len(f.metric) for f in group)
        for f in group:
            err = f"validation error {f.validation_error:.1%}" if math.isfinite(f.validation_error) else "not validated"
            lines.append(f"  {f.metric:<{width}}  {fmt(f.predicted, f.unit):>11}  [{fmt(f.low, f.unit)}, "
                         f"{fmt(f.high, f.unit)}]  {err}; {f.model}")
        exact = [f for f in group if f.exact]
        if exact:
            lines.append(f"  exact metrics ({', '.join(f.metric for f in exact)}): compile the target "
                         f"abstractly to measure them instead of forecasting (one compile, nothing allocated):")
            lines.append(f"    {exact[0].measure}")
        lines.append("")
    lines.append("interval: ±(validation error per log-extrapolation × distance + residual, repeat spread "
                 "and bootstrap in quadrature); docs/forecast.md")
    return "\n".join(lines)
