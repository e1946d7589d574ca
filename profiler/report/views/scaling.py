"""Scaling laws: how each line grows with layers (or the key on the x axis) at depth (the local exponent of the model
the forecast chooses, profiler/analysis/forecast/), as a table and as the summary's sentence."""

from __future__ import annotations

import math

from profiler.analysis import forecast, stats
from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis, where_text
from profiler.report.columns import FITTED, short_of, unit_of
from profiler.report.format import sort_key
from profiler.report.page import Cell, Section, Table
from profiler.units import fmt, fmt_exponent


@registry.section(order=10)
def scaling_section(an: Analysis) -> Section | None:
    metrics = [m for m in FITTED if m in set(an.fits["metric"])]
    if not metrics:
        return None
    keys = an.layout.keys
    sym, what = an.layout.x_symbol, an.layout.x_title
    rows = []
    for values in sorted(an.fits.drop_duplicates(keys)[keys].to_dict("records"),
                         key=lambda v: [sort_key(key_value(v[k])) for k in keys]):
        cells = [Cell(an.layout.label(values)), Cell(str(values[an.layout.facet]) if an.layout.facet else "")]
        for metric in metrics:
            fit = an.fit(metric, values)
            if fit is None:
                cells.append(Cell("–"))
                continue
            interval = "" if math.isnan(fit.k_low) else f" [{fmt_exponent(fit.k_low)}, {fmt_exponent(fit.k_high)}]"
            law = f"y = {fmt(fit.a, unit_of(metric))} · {sym}^{fit.k:.3f} over all depths, R² {fit.r2:.3f}, {fit.n} samples"
            curve = an.curve(metric, values)
            if curve is None or not math.isfinite(curve.growth):  # under 3 depths: no model to choose
                cells.append(Cell(f"{fmt_exponent(fit.k)}{interval}", law, "num"))
                continue
            cells.append(Cell(f"{fmt_exponent(curve.growth)} at {curve.depths[-1]:g}",
                              f"{forecast.MODEL_TEXT[curve.fit.model]}: y = {curve.fit.formula} (validation error "
                              f"{curve.chosen.score:.1%}); {law} [{fmt_exponent(fit.k_low)}, {fmt_exponent(fit.k_high)}]",
                              "num"))
        rows.append(cells)
    columns = ["series", an.layout.facet[4:] if an.layout.facet else "", *[short_of(m) for m in metrics]]
    table = Table(columns, rows, f"Growth at depth: the local exponent d log y / d log {sym} at the deepest measured "
                  "point of the model chosen for that line by leave-largest-out validation (docs/forecast.md); "
                  f"1: grows linearly with {what} there, 0: flat. Hover for the model and for the single power law "
                  f"y = a · {sym}^k over all depths ({stats.CONFIDENCE:.0%} interval), which at a few {what} measures "
                  f"fixed costs. Lines with fewer than 3 {what} values show that k.")
    return Section("scaling", "Scaling laws", tables=[table])


@registry.finding(order=20)
def scaling_lines(an: Analysis) -> list[str]:
    where = an.representative(["cfg_mode"])
    sym, x_name = an.layout.x_symbol, an.layout.x_title
    fits = an.fits
    for k, v in where.items():
        fits = fits[fits[k].map(key_value) == v]
    parts = []
    for metric, what in (("time_compile_s", "compile time"), ("size_hlo_instructions", "HLO instructions"),
                         ("mem_temp_bytes", "temp memory")):
        sub = sorted(fits[fits["metric"] == metric].to_dict("records"),
                     key=lambda r: [sort_key(key_value(r[k])) for k in an.layout.series])
        laws = []
        for r in sub:
            label = an.layout.label(r, ['cfg_mode'] if 'cfg_mode' in r else [])
            curve = an.curve(metric, r)
            if curve is not None and math.isfinite(curve.growth):
                laws.append(f"{label} ∝ {sym}^{fmt_exponent(curve.growth)} at {curve.depths[-1]:g} {x_name}")
            else:
                laws.append(f"{label} ∝ {sym}^{fmt_exponent(r['k'])} over all {x_name}")
        if laws:
            parts.append(f"{what}: {', '.join(laws)}")
    return [f"Growth with {x_name} at depth{where_text(where)} (local exponent of the model chosen by validation): "
            + "; ".join(parts) + "."] if parts else []

