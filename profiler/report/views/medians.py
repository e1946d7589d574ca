"""Medians and spread: every point with the median ± half the IQR of the main metrics,
unstable values marked."""

from __future__ import annotations

import numpy as np

from profiler.analysis import stats
from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.columns import cell_unit, short_of
from profiler.report.format import sort_key
from profiler.report.page import Cell, Section, Table
from profiler.units import fmt, fmt_pct

TABLED = ["time_trace_s", "time_lower_s", "time_compile_s", "time_to_compiled_s",
          "time_step_median_s", "time_per_token_s", "size_jaxpr_eqns", "size_hlo_instructions",
          "cost_flops", "mem_temp_bytes", "mem_footprint_bytes"]


@registry.section(order=80)
def medians_section(an: Analysis) -> Section | None:
    metrics = [m for m in TABLED if an.has(m)]
    if "cost_flops" not in metrics and an.has("cost_xla_flops"):
        metrics.insert(metrics.index("mem_temp_bytes") if "mem_temp_bytes" in metrics else len(metrics), "cost_xla_flops")
    keys = an.point_columns()
    sub = an.summary[an.summary["metric"].isin(metrics)]
    index = {(tuple(key_value(r[k]) for k in keys), r["metric"]): r for r in sub.to_dict("records")}
    points = sorted({k for k, _ in index}, key=lambda t: [sort_key(v) for v in t])
    rows = []
    for point in points:
        cells = [Cell("–" if v is None else str(v)) for v in point]
        n = max((index[(point, m)]["n"] for m in metrics if (point, m) in index), default=0)
        cells.append(Cell(str(n), css="num"))
        for m in metrics:
            r = index.get((point, m))
            if r is None:
                cells.append(Cell("–"))
                continue
            u = cell_unit(m)
            note = f"IQR {fmt(r['q1'], u)} – {fmt(r['q3'], u)}; min {fmt(r['min'], u)}, max {fmt(r['max'], u)}"
            if np.isfinite(r["cv"]):
                note += f"; CV {r['cv']:.1%}"
            spread = "" if r["q1"] == r["q3"] else f" ±{fmt((r['q3'] - r['q1']) / 2, u)}"
            cells.append(Cell(f"{fmt(r['median'], u)}{spread}{' ⚠' if r['unstable'] else ''}", note,
                              "num unstable" if r["unstable"] else "num"))
        rows.append(cells)
    if not rows:
        return None
    table = Table([*[k[4:] for k in keys], "n", *[short_of(m) for m in metrics]], rows,
                  "Median over the ok repeats ± half the interquartile range (hover for IQR, min, max "
                  f"and CV). ⚠ = unstable: CV ≥ {fmt_pct(stats.CV_UNSTABLE)} or a repeat more than "
                  f"{fmt_pct(stats.OUTLIER)} from the median.")
    return Section("medians", "Medians and spread", tables=[table])
