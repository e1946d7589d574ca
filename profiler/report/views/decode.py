"""Decode: what each program of a decode workload (prefill, decode) holds on the device,
as a figure and a table, and what the summary says about the cache layouts."""

from __future__ import annotations

import html

from plotly.subplots import make_subplots

from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis, where_text
from profiler.report.columns import title_of
from profiler.report.format import DECODE_PHASES
from profiler.report.page import Cell, Figure, Section, Table
from profiler.report.style import FONT, series_trace, spans_decades
from profiler.units import fmt, fmt_ratio


def decode_figure(an: Analysis) -> Figure | None:
    """Per phase of a decode workload: aliased, temp and footprint bytes vs layers."""
    phases = [p for p in DECODE_PHASES if "cfg_phase" in an.ok and (an.ok["cfg_phase"] == p).any()]
    metrics = [m for m in ("mem_alias_bytes", "mem_temp_bytes", "mem_footprint_bytes") if an.has(m)]
    if not phases or not metrics:
        return None
    lay = an.layout
    others = [k for k in lay.series if k != "cfg_phase"]
    fig = make_subplots(rows=len(metrics), cols=len(phases), shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"{title_of(m)} · {p}" for m in metrics for p in phases])
    seen: set[str] = set()
    for row, metric in enumerate(metrics, 1):
        for col, phase in enumerate(phases, 1):
            pts = an.points(metric, {"cfg_phase": phase})
            if lay.facet and lay.facet != "cfg_phase":  # one panel per phase stays readable
                pts = pts[pts[lay.facet].map(key_value) == lay.facets[-1]]
            for values, g in an.series_groups(pts, others):
                label = html.escape(lay.label(values, others)) if others else phase
                colour, dash, symbol = lay.style({**values, "cfg_phase": phase, **({lay.facet: lay.facets[-1]} if lay.facet else {})}
                                                 if "cfg_phase" in lay.series else values)
                fig.add_trace(series_trace(g, label, colour, dash, symbol, "bytes", None, None, label not in seen),
                              row=row, col=col)
                seen.add(label)
    layers = sorted({int(x) for x in an.ok["cfg_layers"]})
    fig.update_yaxes(tickformat="~s", ticksuffix="B", gridcolor="#eee", rangemode="tozero")
    fig.update_xaxes(type="log" if spans_decades(layers) else "linear", tickvals=layers, gridcolor="#eee")
    fig.update_xaxes(title_text="layers", row=len(metrics))
    fig.update_layout(template="none", height=260 * len(metrics) + 110, margin=dict(l=60, r=30, t=50, b=90),
                      legend=dict(orientation="h", y=-0.06, yanchor="top"),
                      font=FONT)
    facet = f" ({lay.facet_label(lay.facets[-1])})" if lay.facet and lay.facet != "cfg_phase" else ""
    return Figure("decode", "Decode: memory per phase",
                  f"What each phase holds on the device{facet}: aliased bytes are the donated cache "
                  "updated in place; a cache copied rather than aliased shows up in temp.", fig)


def decode_table(an: Analysis) -> Table:
    metrics = [m for m in ("mem_kv_cache_bytes", "mem_alias_bytes", "mem_temp_bytes", "mem_footprint_bytes",
                           "mem_argument_bytes") if an.has(m)]
    largest = int(an.ok["cfg_layers"].max())
    keys = an.layout.keys
    rows = []
    for phase in DECODE_PHASES:
        at = an.summary[(an.summary["cfg_layers"] == largest) & (an.summary["cfg_phase"] == phase)]
        for values, g in an.series_groups(at, [k for k in keys if k != "cfg_phase"]):
            by = {r["metric"]: r["median"] for r in g.to_dict("records")}
            rows.append([Cell(phase), Cell(an.layout.label(values, list(values))),
                         *[Cell(fmt(by.get(m), "bytes"), css="num") for m in metrics]])
    return Table(["phase", "configuration", *[title_of(m) for m in metrics]], rows, f"Medians at {largest} layers.")


@registry.section(order=40)
def decode_section(an: Analysis) -> Section | None:
    figure = decode_figure(an)
    return Section("decode", "Decode", figures=[figure], tables=[decode_table(an)]) if figure else None


@registry.finding(order=50)
def decode_lines(an: Analysis) -> list[str]:
    if "cfg_kv_cache" not in an.layout.series:
        return []
    lines = []
    lay = an.layout
    facet = {lay.facet: lay.facets[-1]} if lay.facet and lay.facet != "cfg_phase" else {}
    for phase in DECODE_PHASES:
        for values, base, other, top, r in an.contrast("cfg_kv_cache", ["mem_temp_bytes"], {**facet, "cfg_phase": phase}):
            if "mem_temp_bytes" in r:
                lines.append(f"{phase.capitalize()} at {top} layers{where_text({**values, **facet})}: the {other} "
                             f"cache needs {fmt_ratio(r['mem_temp_bytes'])} the temp memory of the {base} cache.")
    return lines[:6]
