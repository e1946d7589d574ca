"""One series' curve in layers: the chosen model, its validation and its interval
(fit_curve), and stage 2, from forecasts at measured values of another key to the
target's (_across)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from profiler.analysis.forecast.candidates import (
    MODELS,
    Candidate,
    Fit,
    Fold,
    ForecastError,
    choose,
)

MIN_DEPTHS = 3
"""Distinct layer counts a series needs: two to fit a line, one more to validate it."""
BOOTSTRAP = 100
RIVAL_SCORE = (1.5, 0.005)
"""A candidate whose validation error is within 1.5x the chosen one's + half a point is a
rival: as plausible on the evidence of two folds."""
ACCELERATION = 2.0
"""The exponent the upper end of an accelerating metric's interval assumes past the
deepest measured point, for the part of it that grows with depth. Measured on a loop's
compile (docs/forecast.md): XLA's scheduling and buffer assignment, negligible up to 64
layers, grow locally as L^2-L^3 past 128, and time to a compiled program as L^1.4-L^1.7
from 128 to 384 layers, while every fit of the points up to 128 layers sees at most
L^1.2; no model chosen on them can see it coming."""
PRECISION = 1e-6
"""Narrowest relative interval: an exact fit of values up to 1e12 (FLOPs) still carries
the rounding of its least squares."""


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
    acceleration: Fit | None = field(repr=False, default=None)
    """For a metric that may accelerate past the measured depths (timings): the upper end
    of the interval reaches a + b·L_max·(L / L_max)^ACCELERATION beyond the deepest
    measured point L_max, a + b·L fitted on the deeper half of the depths."""

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
        parts["acceleration"] = max(0.0, self._accelerated(layers) / predicted - 1) if predicted > 0 else 0.0
        return parts

    def _accelerated(self, layers: float) -> float:
        """The accelerating upper end at `layers` (-inf: none, or inside the measured range)."""
        top = float(self.depths[-1])
        if self.acceleration is None or layers <= top:
            return -math.inf
        a, b = self.acceleration.params
        return a + b * top * (layers / top) ** ACCELERATION if b > 0 else -math.inf

    def at(self, layers: float) -> tuple[float, float, float]:
        """(predicted, low, high) at `layers`."""
        predicted = float(self.fit(layers))
        w = self.parts(layers)["total"]
        low, high = predicted - w * abs(predicted), predicted + w * abs(predicted)
        rivals = [float(r(layers)) for r in self.rivals]
        low, high = min([low, *rivals]), max([high, *rivals, self._accelerated(layers)])
        if np.all(self.medians >= 0):
            low = max(low, 0.0)
        return predicted, low, high


def fit_curve(layers: Sequence[float], values: Sequence[float], target: float | None = None,
              *, bootstrap: int = BOOTSTRAP, seed: int = 0, accelerating: bool = False) -> Curve:
    """Choose and fit the model of y against layers from raw repeats (layers[i], values[i]);
    `target` rules out models that would forecast a positive metric at or below zero there.
    `accelerating`: the metric may grow faster past the measured depths than within them
    (a compile's time): the interval's upper end allows for it (ACCELERATION)."""
    frame = pd.DataFrame({"x": np.asarray(layers, float), "y": np.asarray(values, float)}).dropna()
    groups = {x: g["y"].to_numpy() for x, g in frame.groupby("x", sort=True)}
    x = np.array(sorted(groups))
    if len(x) < MIN_DEPTHS:
        raise ForecastError(f"too few points to fit: {len(x)} layer count(s) measured, {MIN_DEPTHS} needed")
    y = np.array([np.median(groups[v]) for v in x])
    name, candidates = choose(x, y, target=target)
    chosen = next(c for c in candidates if c.model == name)
    fit = MODELS[name](x, y)
    assert fit is not None, name  # choose() validated this model on these points
    rate = max(abs(f.error) / math.log(f.test / f.train_max) for f in chosen.folds)
    used = x >= fit.fitted_from
    residual = float(np.max(np.abs((fit(x[used]) - y[used]) / np.where(y[used] != 0, y[used], 1))))
    top = [groups[v] for v in x[-2:]]
    repeats = max((float(np.ptp(g)) / 2 / abs(float(np.median(g))) if np.median(g) else 0.0) for g in top)
    rng = np.random.default_rng(seed)
    n = bootstrap if any(np.ptp(g) > 0 for g in groups.values()) else 0
    resampled: np.ndarray | list[np.ndarray] = np.column_stack([np.median(rng.choice(groups[v], (n, len(groups[v]))), axis=1) for v in x]) if n else []
    boots = [b for yb in resampled if (b := MODELS[name](x, yb)) is not None]
    folds = len(chosen.folds)
    rivals = [r for c in candidates if c.model != name and len(c.folds) == folds
              and c.score <= RIVAL_SCORE[0] * chosen.score + RIVAL_SCORE[1]
              and (r := MODELS[c.model](x, y)) is not None]
    if np.all(y > 0) and target is not None:
        rivals = [r for r in rivals if float(r(target)) > 0]
    acceleration = MODELS["linear_tail"](x, y) if accelerating else None
    return Curve(fit, chosen, candidates, x, y, rate, residual, repeats, boots, rivals, acceleration)


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
    assert fit is not None, name  # two values or more: a line and a positive power law fit
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

