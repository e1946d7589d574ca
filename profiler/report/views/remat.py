"""Remat's trade: temp memory against FLOPs per remat policy (shown first in Memory when
the spec key `remat` varies), and what the summary says about it."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis, where_text
from profiler.report.columns import title_of, unit_of
from profiler.report.format import sort_key
from profiler.report.page import Figure
from profiler.report.style import FONT
from profiler.units import fmt, fmt_ratio


def remat_figure(an: Analysis) -> Figure | None:
    """Temp memory and FLOPs per remat policy at the largest layer count."""
    if "cfg_remat" not in an.layout.series or not an.has("mem_temp_bytes"):
        return None
    flops = an.cost_metric("cost_flops")
    metrics = ["mem_temp_bytes", *([flops] if flops else [])]
    lay = an.layout
    others = [k for k in lay.series if k != "cfg_remat"]
    largest = int(an.ok["cfg_layers"].max())
    fig = make_subplots(rows=len(lay.facets), cols=len(metrics), shared_xaxes=True,
                        vertical_spacing=0.12, horizontal_spacing=0.1,
                        subplot_titles=[f"{title_of(m)}{' · ' + lay.facet_label(f) if lay.facet else ''}"
                                        for f in lay.facets for m in metrics])
    policies = sorted({key_value(v) for v in an.ok["cfg_remat"]}, key=sort_key)
    seen: set[str] = set()
    for row, facet in enumerate(lay.facets, 1):
        for col, metric in enumerate(metrics, 1):
            where = {lay.facet: facet} if lay.facet else {}
            pts = an.points(metric, where)
            pts = pts[pts["cfg_layers"] == largest]
            for values, g in an.series_groups(pts, others):
                label = html.escape(lay.label(values, others)) if others else "all"
                colour = lay.colours.get(key_value(values.get(lay.series[0])), "#444") if others else "#636efa"
                by_policy = {key_value(r["cfg_remat"]): r for r in g.to_dict("records")}
                fig.add_trace(go.Bar(
                    x=[str(p) for p in policies], y=[by_policy[p]["median"] if p in by_policy else None for p in policies],
                    name=label, legendgroup=label, showlegend=label not in seen, marker_color=colour,
                    hovertext=[f"{label} · remat={html.escape(str(p))} · L={largest}<br>{fmt(by_policy[p]['median'], unit_of(metric))}"
                               if p in by_policy else "" for p in policies], hoverinfo="text",
                ), row=row, col=col)
                seen.add(label)
            fig.update_yaxes(tickformat="~s", ticksuffix={"bytes": "B"}.get(unit_of(metric), ""),
                             row=row, col=col, gridcolor="#eee")
    fig.update_layout(template="none", barmode="group", height=320 * len(lay.facets) + 40,
                      margin=dict(l=60, r=30, t=60, b=60), legend=dict(orientation="h", y=-0.15),
                      font=FONT)
    which = "corrected FLOPs" if flops == "cost_flops" else "XLA's raw FLOPs (loop bodies counted once)"
    return Figure("remat", f"Remat's trade at {largest} layers",
                  f"Temp memory and {which} per remat policy, side by side.", fig)


@registry.finding(order=40)
def remat_lines(an: Analysis) -> list[str]:
    if "cfg_remat" not in an.layout.series:
        return []
    flops = an.cost_metric("cost_flops")
    where = {an.layout.facet: an.layout.facets[-1]} if an.layout.facet else {}
    lines = []
    for values, base, other, top, r in an.contrast("cfg_remat", ["mem_temp_bytes", *([flops] if flops else [])], where):
        if "mem_temp_bytes" in r:
            cost = f" for {fmt_ratio(r[flops])} the FLOPs" if flops in r else ""
            lines.append(f"At {top} layers{where_text({**values, **where})}, remat={other} needs "
                         f"{fmt_ratio(r['mem_temp_bytes'])} the temp memory of remat={base}{cost}.")
    return lines[:6]
