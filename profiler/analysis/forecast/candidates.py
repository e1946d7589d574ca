"""The candidate models of one curve y(L), and choosing among them by leave-largest-out
validation (docs/forecast.md: MODELS, validate, choose)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from profiler.errors import UserError

VALIDATION_FOLDS = 2
"""Leave-largest-out folds: hold out the largest depth, then the one below it."""
VALIDATION_TIE = 0.01
"""A model with more parameters must beat a simpler one's validation error by this much
(absolute, 1 percentage point) to be chosen: below it the difference is noise."""


class ForecastError(UserError):
    """The results cannot answer the forecast asked for. The message is one line."""


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
    assert best is not None  # four depths or more: at least two inner knees were tried
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

