"""Scaling laws: the exponent k of y = a · L^k per line and panel, as a table and as the
summary's "Scaling with layers" sentence."""

from __future__ import annotations

import math

from profiler import stats
from profiler.report import registry
from profiler.report.analysis import Analysis, where_text
from profiler.report.columns import FITTED, short_of, unit_of
from profiler.report.format import fmt, fmt_exponent, sort_key
from profiler.report.page import Cell, Section, Table
from profiler.stats import key_value


@registry.section(order=10)
def scaling_section(an: Analysis) -> Section | None:
    metrics = [m for m in FITTED if m in set(an.fits["metric"])]
    if not metrics:
        return None
    keys = an.layout.keys
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
            cells.append(Cell(f"{fmt_exponent(fit.k)}{interval}", f"y = {fmt(fit.a, unit_of(metric))} · L^{fit.k:.3f}, "
                              f"R² {fit.r2:.3f}, {fit.n} samples", "num"))
        rows.append(cells)
    columns = ["series", an.layout.facet[4:] if an.layout.facet else "", *[short_of(m) for m in metrics]]
    table = Table(columns, rows, "Exponent k of y = a · L^k (least squares in log-log over every ok repeat; "
                  f"{stats.CONFIDENCE:.0%} interval in brackets). k ≈ 1: grows linearly with layers; k ≈ 0: flat.")
    return Section("scaling", "Scaling laws", tables=[table])


@registry.finding(order=20)
def scaling_lines(an: Analysis) -> list[str]:
    where = an.representative(["cfg_mode"])
    fits = an.fits
    for k, v in where.items():
        fits = fits[fits[k].map(key_value) == v]
    parts = []
    for metric, what in (("time_compile_s", "compile time"), ("size_hlo_instructions", "HLO instructions"),
                         ("mem_temp_bytes", "temp memory")):
        sub = sorted(fits[fits["metric"] == metric].to_dict("records"),
                     key=lambda r: [sort_key(key_value(r[k])) for k in an.layout.series])
        if sub:
            laws = ", ".join(f"{an.layout.label(r, ['cfg_mode'] if 'cfg_mode' in r else [])} ∝ L^{fmt_exponent(r['k'])}"
                             for r in sub)
            parts.append(f"{what}: {laws}")
    return [f"Scaling with layers{where_text(where)}: " + "; ".join(parts) + "."] if parts else []

