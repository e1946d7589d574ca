"""Metric curves: one figure per measured metric against the layer count, grouped in the
sections Time, Running, Program size, Cost and Memory.

One panel per facet value, one line per series: medians with IQR bars, open markers where
unstable, the fitted exponent at the end of each line. A corrected cost has buttons that
switch to XLA's raw count. A metric not listed in SECTIONS (a column added later) lands in
the section of its prefix; NOT_PLOTTED (report/columns.py) keeps a column out.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.columns import NOT_PLOTTED, RAW_OF, doc_of, title_of, unit_of
from profiler.report.page import Figure, Section
from profiler.report.style import panels, series_trace, style_axes
from profiler.report.views.cost import RAW_DIFFERS, inexact_line, inexact_points
from profiler.report.views.remat import remat_figure
from profiler.units import fmt, fmt_pct, fmt_ratio

# Figures per section, in order; a metric without data is left out.
SECTIONS = {
    "time": ("Time to a compiled program",
             ["time_to_compiled_s", "time_trace_s", "time_lower_s", "time_compile_s"]),
    "run": ("Running the program", ["time_step_median_s", "time_first_call_s", "time_prefill_s",
                                    "time_per_token_s", "run_tokens_per_s"]),
    "size": ("Program size",
             ["size_jaxpr_eqns", "size_hlo_instructions", "size_hlo_bytes", "size_stablehlo_ops"]),
    "cost": ("Cost", ["cost_flops", "cost_transcendentals", "cost_bytes_accessed"]),
    "memory": ("Memory", ["mem_temp_bytes", "mem_footprint_bytes", "mem_argument_bytes",
                          "mem_output_bytes", "mem_alias_bytes", "mem_optimizer_state_bytes",
                          "mem_generated_code_bytes", "mem_host_rss_peak_bytes"]),
}
_SECTION_OF_PREFIX = {"time_": "run", "size_": "size", "cost_": "cost", "mem_": "memory"}
_LISTED = {m for _, metrics in SECTIONS.values() for m in metrics}


def metric_figure(an: Analysis, metric: str, raw: str | None = None, reference: str | None = None) -> go.Figure:
    """`metric`'s curves against the x axis (an.x; metric_section draws none without
    one). With `raw`, buttons switch between `metric` and XLA's raw column; `reference`
    adds a dotted line."""
    assert an.x is not None
    lay = an.layout
    fig = panels(lay)
    unit = unit_of(metric)
    raw_medians = _median_lookup(an, raw)
    kinds: list[str] = []  # per trace: main | raw | ref, for the buttons' visibility
    ys: list[float] = []
    for col, facet in enumerate(lay.facets, 1):
        where = {lay.facet: facet} if lay.facet else {}
        for values, g in an.series_groups(an.points(metric, where)):
            values = {**values, **where}
            colour, dash, symbol = lay.style(values)
            label = html.escape(lay.label(values))
            marks = [_raw_note(an, raw_medians, r, unit) for r in g.to_dict("records")] if raw else None
            fig.add_trace(series_trace(g, label, colour, dash, symbol, unit, an.fit(metric, values),
                                       marks, col == 1, x=an.x), row=1, col=col)
            kinds.append("main")
            ys += [*g["q1"], *g["q3"]]
            if raw:
                rg = an.by_x(an.points(raw, values))
                trace = series_trace(rg, label, colour, dash, symbol, unit, an.fit(raw, values), None, False, x=an.x)
                trace.visible = False
                fig.add_trace(trace, row=1, col=col)
                kinds.append("raw")
                ys += [*rg["q1"], *rg["q3"]]
        ref = an.by_x(an.points(reference, where).drop_duplicates(an.x)) if reference else None
        if reference and ref is not None and len(ref):
            fig.add_trace(go.Scatter(
                x=ref[an.x], y=ref["median"], mode="lines", name=title_of(reference),
                legendgroup="reference", showlegend=col == 1, line=dict(color="#888", dash="dot", width=1.5),
                hovertext=[f"{title_of(reference)}: {fmt(v, unit)}" for v in ref["median"]], hoverinfo="text"),
                row=1, col=col)
            kinds.append("ref")
    style_axes(fig, unit, ys, an.ok[an.x], x_title=an.layout.x_title)
    if raw:
        fig.update_layout(updatemenus=[dict(
            type="buttons", direction="right", x=1, xanchor="right", y=1.14, yanchor="bottom",
            pad=dict(t=0, b=0), showactive=True, font=dict(size=11), buttons=[
                dict(label="corrected: every loop trip", method="restyle",
                     args=[{"visible": [k != "raw" for k in kinds]}]),
                dict(label="XLA raw: loop bodies once", method="restyle",
                     args=[{"visible": [k != "main" for k in kinds]}]),
            ])])
        fig.update_layout(margin=dict(t=85))
    return fig


def _median_lookup(an: Analysis, metric: str | None) -> dict[tuple[Any, ...], float]:
    keys = an.point_columns()
    return {tuple(key_value(r[k]) for k in keys): r["median"] for r in an.points(metric).to_dict("records")} if metric else {}


def _raw_note(an: Analysis, raw_medians: Mapping[tuple[Any, ...], float], r: Mapping[str, Any], unit: str) -> str:
    raw = raw_medians.get(tuple(key_value(r[k]) for k in an.point_columns()))
    if raw is None or not np.isfinite(raw) or raw <= 0 or abs(r["median"] / raw - 1) <= RAW_DIFFERS:
        return ""
    return f"◆ XLA raw: {fmt(raw, unit)} (corrected is {fmt_ratio(r['median'] / raw)} raw)"


def _unlisted(an: Analysis, sid: str) -> list[str]:
    """Measured metrics that SECTIONS does not name and whose prefix belongs to `sid`."""
    return [m for m in an.summary["metric"].unique()
            if m not in _LISTED and m not in NOT_PLOTTED
            and _SECTION_OF_PREFIX.get(next((p for p in _SECTION_OF_PREFIX if m.startswith(p)), "")) == sid]


def metric_section(an: Analysis, sid: str) -> Section | None:
    if an.x is None:  # no numeric key varies: the medians table shows the numbers
        return None
    title, metrics = SECTIONS[sid]
    section = Section(sid, title)
    placed: set[str] = set()
    for metric in [*metrics, *_unlisted(an, sid)]:
        shown = an.cost_metric(metric) if metric in RAW_OF else metric
        if shown is None or shown in placed or not an.has(shown):
            continue
        placed.add(shown)
        if (an.points(shown)["median"] == 0).all():
            section.notes.append(f"{title_of(shown)}: 0 at every point (not drawn).")
            continue
        raw = RAW_OF.get(shown) if an.has(RAW_OF.get(shown, "")) else None
        reference = "cost_analytic_flops" if metric == "cost_flops" else None
        caption = doc_of(shown)
        if raw:
            caption += (" Corrected: every loop trip counted; the buttons switch to XLA's raw count. ◆ marks "
                        f"points where the two differ by more than {fmt_pct(RAW_DIFFERS)}.")
        elif metric in RAW_OF:
            caption += (" (Corrected costs are not in this dataset: XLA counts a loop body once, so scanned "
                        "programs look cheaper than they are.)")
        section.figures.append(Figure(shown, title_of(shown), caption, metric_figure(an, shown, raw, reference)))
    if sid == "memory" and (remat := remat_figure(an)):
        section.figures.insert(0, remat)
    if sid == "cost" and inexact_points(an):
        section.notes.append(inexact_line(an))
    return section if section.figures or section.notes else None


for _order, _sid in enumerate(SECTIONS, 30):
    registry.section(order=_order)(functools.partial(metric_section, sid=_sid))
