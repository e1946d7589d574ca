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
of the 95% bootstrap band of the prediction, repeats resampled per depth. For the
stages' timings (ACCELERATING) the upper end also reaches what the depth-dependent part
would be if it grew as L^2 past the deepest point (ACCELERATION): a loop's compile
accelerates past the depths a cheap sweep measures.

Modules, one job each (rows only: no JAX, no plotly):
  models  the candidate models, their leave-largest-out validation, the choice
  curve   one series in layers: the chosen model and its interval; stage 2 (_across)
  target  a target against a results folder: forecast_target, backtest, prepare
  text    format_text, what the command line prints

The report's figure and tables of a forecast are in profiler/report/forecast_figures.py.
"""

from profiler.analysis.forecast.candidates import (
    MODEL_TEXT,
    MODELS,
    PARAMETERS,
    VALIDATION_FOLDS,
    VALIDATION_TIE,
    Candidate,
    Fit,
    Fold,
    ForecastError,
    choose,
    fit_knee_power,
    fit_linear,
    fit_linear_power,
    fit_offset_power,
    fit_power,
    validate,
)
from profiler.analysis.forecast.curve import (
    ACCELERATION,
    BOOTSTRAP,
    MIN_DEPTHS,
    PRECISION,
    RIVAL_SCORE,
    Curve,
    fit_curve,
)
from profiler.analysis.forecast.target import (
    ACCELERATING,
    CPU_DERIVED,
    EXACT_PREFIXES,
    METRICS,
    Forecast,
    backtest,
    fitted_rows,
    forecast_target,
    metric_curve,
    parse_target,
    prepare,
)
from profiler.analysis.forecast.text import format_text

__all__ = [
    "ACCELERATING",
    "ACCELERATION",
    "BOOTSTRAP",
    "CPU_DERIVED",
    "EXACT_PREFIXES",
    "METRICS",
    "MIN_DEPTHS",
    "MODELS",
    "MODEL_TEXT",
    "PARAMETERS",
    "PRECISION",
    "RIVAL_SCORE",
    "VALIDATION_FOLDS",
    "VALIDATION_TIE",
    "Candidate",
    "Curve",
    "Fit",
    "Fold",
    "Forecast",
    "ForecastError",
    "backtest",
    "choose",
    "fit_curve",
    "fitted_rows",
    "fit_knee_power",
    "fit_linear",
    "fit_linear_power",
    "fit_offset_power",
    "fit_power",
    "forecast_target",
    "format_text",
    "metric_curve",
    "parse_target",
    "prepare",
    "validate",
]
