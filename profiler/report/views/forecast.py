"""Forecast: each line drawn past its deepest point with its prediction interval, the
validation of the chosen models, and the planner's answer for a default budget
(profiler/analysis/forecast/, profiler/analysis/plan.py; docs/forecast.md)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from profiler.analysis import forecast
from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.columns import short_of, title_of, unit_of
from profiler.report.forecast_figures import REACH, forecast_figure, series_curves
from profiler.report.page import Cell, Figure, Section, Table
from profiler.report.views.mesh import BUDGET_BYTES
from profiler.units import MISSING, fmt

if TYPE_CHECKING:  # the planner is imported when a page has a forecast
    import pandas as pd

    from profiler.analysis.plan import Estimate

DRAWN = ("time_to_compiled_s", "mem_footprint_bytes")
VALIDATED = ("time_to_compiled_s", "time_compile_s", "size_hlo_instructions", "mem_footprint_bytes")
BUDGET = f"{BUDGET_BYTES // 2**30}GiB"
"""The sharded-training budget, as `--memory-per-device` takes it."""
STEPS = 1000


FIT_ATTR = "profiler.forecast_fit"
"""DataFrame.attrs key of `report --fit`: the conditions that keep the points fitted."""


@registry.section(order=25)
def forecast_section(an: Analysis) -> Section | None:
    fit = an.df.attrs.get(FIT_ATTR) or ()
    fitted = forecast.fitted_rows(forecast.prepare(an.ok), fit) if fit and len(an.ok) else an.ok
    curves = series_curves(fitted, tuple(dict.fromkeys((*DRAWN, *VALIDATED)))) if len(fitted) else []
    if not curves:
        return None
    figures = []
    for metric in DRAWN:
        fig = forecast_figure(curves, metric, unit_of(metric))
        if fig is not None:
            figures.append(Figure(f"forecast-{metric}", f"{title_of(metric)}: forecast",
                                  f"Measured medians, the model chosen for each line and its forecast to "
                                  f"{REACH:g}x the deepest point with the prediction interval "
                                  "(python -m profiler forecast DIR layers=N prints the numbers).", fig))
    rows = []
    for series, metric, curve in curves:
        if metric not in VALIDATED:
            continue
        label = " ".join(f"{k.removeprefix('cfg_')}={v}" for k, v in series.items()) or "all"
        folds = "; ".join(f"{f.train_max:g} → {f.test:g}: {f.error:+.1%}" for f in curve.chosen.folds)
        others = ", ".join(f"{c.model} {c.score:.1%}" for c in curve.candidates
                           if c.model != curve.fit.model and math.isfinite(c.score))
        rows.append([Cell(label), Cell(short_of(metric)), Cell(forecast.MODEL_TEXT[curve.fit.model], curve.fit.formula),
                     Cell(f"{curve.chosen.score:.1%}", f"others: {others}" if others else "", "num"), Cell(folds),
                     Cell(f"{curve.growth:.2f}", css="num")])
    table = Table(["series", "metric", "model", "validation error", "held out (fitted up to → predicted)", "growth at depth"],
                  rows, "Each model is chosen by leave-largest-out validation: fitted below the deepest point "
                  "and scored on it, then one depth down; hover for the fit and every other candidate's error. "
                  "Growth at depth: d log y / d log L of the model at the deepest point.")
    tables = [table]
    if fit:
        tables.append(_backtest(curves, forecast.prepare(an.ok).drop(fitted.index), fit))
    notes = []
    try:
        from profiler.analysis.plan import plan_target

        plan = plan_target(an.df, memory=BUDGET, steps=STEPS)
    except forecast.ForecastError as e:  # e.g. no compile times: say why there is no plan
        notes.append(f"No plan: {e}")
    else:
        tables.append(Table(
            ["option", "memory per device", "fits", "compiled after", "step", f"total ({STEPS:,} steps)"],
            [[Cell(o.name), Cell(_est(o.memory, "bytes")), Cell(o.fits), Cell(_est(o.setup, "s")),
              Cell(_est(o.step, "s")), Cell(fmt(o.total(STEPS), "s"), css="num")] for o in plan.options],
            f"The planner at {', '.join(f'{k}={v}' for k, v in plan.target.items())} for {BUDGET} per device and "
            f"{STEPS:,} steps (python -m profiler plan DIR --memory-per-device {BUDGET} --steps {STEPS})."))
        best = plan.fewest_total
        notes.append(f"Fewest total seconds: {best.name if best else 'none fits'}; soonest compiled: "
                     f"{plan.soonest.name if plan.soonest else 'none fits'}.")
        notes += [f"{name}: {why}" for name, why in plan.reasons.items()] + plan.notes
    return Section("forecast", "Forecast beyond the measured depths", figures=figures, tables=tables, notes=notes)


def _est(e: Estimate | None, unit: str) -> str:
    if e is None:
        return MISSING
    return f"{'' if e.measured else '~'}{fmt(e.value, unit)}"


def _backtest(curves: list, held: pd.DataFrame, fit: tuple[str, ...]) -> Table:
    """Each chosen model (fitted on the points `fit` keeps) against the medians measured at
    the points it held out, as `python -m profiler forecast DIR --fit ...` does."""
    rows = []
    for series, metric, curve in curves:
        if metric not in VALIDATED:
            continue
        points = held
        for column, value in series.items():
            points = points[points[column].map(lambda v, value=value: v == value)]
        for depth, group in points.groupby("cfg_layers", sort=True):
            measured = float(group[metric].median())
            predicted, low, high = curve.at(float(depth))
            label = " ".join(f"{k.removeprefix('cfg_')}={v}" for k, v in series.items()) or "all"
            unit = unit_of(metric)
            rows.append([Cell(label), Cell(short_of(metric)), Cell(f"{depth:g}", css="num"),
                         Cell(fmt(predicted, unit), f"[{fmt(low, unit)}, {fmt(high, unit)}]", "num"),
                         Cell(fmt(measured, unit), css="num"),
                         Cell(f"{(predicted - measured) / measured:+.1%}" if measured else MISSING, css="num"),
                         Cell("yes" if low <= measured <= high else "no")])
    return Table(["series", "metric", "layers", "predicted", "measured (held out)", "error", "in the interval"], rows,
                 f"Backtest: the models fitted only on the points that {' and '.join(fit)} keeps, against the medians "
                 "measured at the points held out (python -m profiler forecast DIR --fit ... layers=N).")
