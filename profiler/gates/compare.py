"""Compare two results folders (two JAX versions, machines or branches), point by point.

For every configuration measured in both, the ratio of medians B / A of each compared
metric with a bootstrap interval from the repeats; the environments' differences come
first, with a loud warning when backend, device kind or CPU model differ (timings are
then not comparable). `fail_above` turns the comparison into a CI gate, which refuses
folders from different machines unless `cross_machine` (then it gates sizes, costs and
memory only). The page is built from profiler/report's public pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiler.analysis import machines, stats
from profiler.analysis.stats import key_value
from profiler.measurement import env
from profiler.report import anatomy_figures
from profiler.report.columns import cell_unit, short_of, title_of
from profiler.report.environment import EnvWarning, describe_environment, differences_table
from profiler.report.format import sort_key
from profiler.report.page import Cell, Figure, Section, Table
from profiler.report.render import render, reports_folder, write_page
from profiler.report.style import Layout, panels, series_trace, style_axes
from profiler.report.views.failures import failures_table
from profiler.storage import store
from profiler.units import fmt

# What is compared, in order; a metric missing from either side is left out. The first
# corrected cost available stands for cost (see cost_metric).
COMPARED = ["time_to_compiled_s", "time_trace_s", "time_lower_s", "time_compile_s",
            "time_step_median_s", "size_jaxpr_eqns", "size_hlo_instructions", "cost_flops",
            "cost_xla_flops", "mem_temp_bytes", "mem_footprint_bytes"]
FIGURED = ["time_to_compiled_s", "time_compile_s", "time_step_median_s"]
# Metrics that belong to a machine: not gated across machines.
TIMING_PREFIX = "time_"
_INTERVAL = f"{stats.CONFIDENCE:.0%} interval"


@dataclass
class Comparison:
    path: Path
    ratios: pd.DataFrame
    """One row per (point, metric): the point's cfg_ columns, metric, median_a, median_b,
    ratio (b / a), low, high (bootstrap interval), exceeds (past fail_above)."""
    fail_above: float | None
    other_machine: list[machines.Difference] = field(default_factory=list)
    """Machine facts that differ between A and B: timings were not gated."""

    @property
    def failed(self) -> bool:
        """Whether some ratio exceeds 1 + fail_above/100 with its whole interval above 1."""
        return bool(self.ratios["exceeds"].any()) if len(self.ratios) else False


def compare(folder_a: str | Path, folder_b: str | Path, out: str | Path | None = None,
            fail_above: float | None = None, cross_machine: bool = False, *,
            rows: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Comparison:
    """Compare two results folders and write the HTML page (default:
    reports/compare-<A>-vs-<B>.html under the current working directory). Bad folders
    raise StoreError; gating (`fail_above`) folders from different machines raises
    machines.OtherMachine unless `cross_machine`, which gates the deterministic metrics only.
    `rows`: the folders' rows, when the caller has loaded them already (`store.load`)."""
    folder_a, folder_b = Path(folder_a), Path(folder_b)
    a, b = (store.load(folder_a), store.load(folder_b)) if rows is None else rows
    env_a, env_b = stats.environment(stats.ok_rows(a)), stats.environment(stats.ok_rows(b))
    other = machines.other_machine(env_a, env_b)
    if other and fail_above is not None and not cross_machine:
        raise machines.OtherMachine(other, "A and B")
    ratios = stats.ratio_table(a, b, COMPARED, fail_above=fail_above)
    env_table, warnings = differences_table(env_a, env_b)
    if other and fail_above is not None:
        ratios.loc[ratios["metric"].str.startswith(TIMING_PREFIX), "exceeds"] = False
        warnings.append(EnvWarning(f"Timings were not gated (--cross-machine): A and B ran on different machines "
                                   f"({machines.describe(other)}). --fail-above applied to sizes, costs and memory only.",
                                   critical=True))
    out = Path(out) if out else reports_folder() / f"compare-{folder_a.resolve().name}-vs-{folder_b.resolve().name}.html"
    keys = stats.common_config_columns(a, b)
    layout = Layout.of(pd.concat([stats.ok_rows(a)[keys], stats.ok_rows(b)[keys]]))
    sections = [Section("ratios", "Ratios B / A", figures=_figures(ratios, layout),
                        tables=[_ratio_html_table(ratios, layout, fail_above)])]
    only = _unmatched(a, b, keys)
    if only is not None:
        sections.append(Section("unmatched", "Points measured on one side only", tables=[only]))
    moved = _anatomy_moved(a, b, keys)
    if moved is not None:
        sections.append(Section("anatomy", "Compile anatomy: which components moved", tables=[moved]))
    bad = failures_table({"A": a, "B": b}, _shown(a, b, keys))
    if bad is not None:
        sections.append(Section("failures", "Failures", tables=[bad]))
    title = f"{folder_a.name} vs {folder_b.name}"
    meta = {"kind": "compare", "title": title, "folder": f"{folder_a} vs {folder_b}",
            "created_utc": env.utc_now(), "started_utc": None,
            "environment": f"A: {describe_environment(stats.environment(a))}; B: {describe_environment(stats.environment(b))}",
            "points": int(ratios[keys].drop_duplicates().shape[0]) if len(ratios) else 0,
            "failed": int((a["run_status"] != "ok").sum() + (b["run_status"] != "ok").sum())}
    page = render("compare.html.j2", title=title, meta=meta, a=str(folder_a), b=str(folder_b),
                  warnings=warnings, environment=env_table, headline=_headline(ratios, fail_above),
                  sections=sections, figures_list=[f for s in sections for f in s.figures])
    return Comparison(write_page(out, page), ratios, fail_above, other)


def _headline(ratios: pd.DataFrame, fail_above: float | None) -> list[str]:
    if ratios.empty:
        return ["No configuration was measured successfully on both sides."]
    lines = []
    for metric, g in ratios.groupby("metric", sort=False):
        geo = float(np.exp(np.log(g["ratio"]).mean()))
        worst = g.loc[g["ratio"].idxmax()]
        if (g["ratio"] == 1).all():
            lines.append(f"{title_of(metric)}: identical at all {len(g)} points.")
            continue
        direction = "higher" if geo > 1 else "lower"
        lines.append(f"{title_of(metric)}: B / A = {geo:.3g} (geometric mean over {len(g)} points, "
                     f"{abs(geo - 1):.1%} {direction}); largest {worst['ratio']:.3g}.")
    if fail_above is not None:
        n = int(ratios["exceeds"].sum())
        lines.append(f"{n} ratio(s) exceed +{fail_above:g}% with their {_INTERVAL} above 1." if n else
                     f"No ratio exceeds +{fail_above:g}% with its {_INTERVAL} above 1.")
    return lines


def _figures(ratios: pd.DataFrame, layout: Layout) -> list[Figure]:
    figs = []
    for metric in [m for m in FIGURED if m in set(ratios["metric"])]:
        sub = ratios[ratios["metric"] == metric].rename(columns={"ratio": "median", "low": "q1", "high": "q3"})
        sub = sub.assign(n=sub["n_b"], cv=np.nan, unstable=False, min=sub["q1"], max=sub["q3"])
        fig = panels(layout)
        ys: list[float] = [1.0]
        for col, facet in enumerate(layout.facets, 1):
            part = sub[sub[layout.facet].map(key_value) == facet] if layout.facet else sub
            keys = [k for k in layout.series if k in part.columns]
            groups = part.groupby(keys, dropna=False, sort=False) if keys else [((), part)]
            for values, g in sorted(groups, key=lambda item: [sort_key(key_value(v)) for v in
                                                               (item[0] if isinstance(item[0], tuple) else (item[0],))]):
                values = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
                colour, dash, symbol = layout.style({**values, **({layout.facet: facet} if layout.facet else {})})
                label = layout.label(values, keys)
                fig.add_trace(series_trace(g.sort_values("cfg_layers"), label, colour, dash, symbol, "",
                                           None, None, col == 1, bars=_INTERVAL), row=1, col=col)
                ys += [*g["q1"], *g["q3"]]
            fig.add_hline(y=1, line=dict(color="#999", width=1, dash="dot"), row=1, col=col)
        style_axes(fig, "", ys, sub["cfg_layers"])
        fig.update_yaxes(rangemode=None)
        fig.update_yaxes(title_text="B / A", col=1)
        figs.append(Figure(f"ratio-{metric}", f"{title_of(metric)}: B / A",
                           f"Ratio of medians with a {stats.CONFIDENCE:.0%} bootstrap interval from the repeats; above 1: B is "
                           "slower or larger.",
                           fig))
    return figs


def _ratio_html_table(ratios: pd.DataFrame, layout: Layout, fail_above: float | None) -> Table:
    """One row per point, one column per metric: B / A with A, B and the interval on hover."""
    keys = [k for k in [*layout.keys, "cfg_layers"] if k in ratios.columns]
    metrics = [m for m in COMPARED if m in set(ratios["metric"])]
    cells = {(tuple(r[k] for k in keys), r["metric"]): r for r in ratios.to_dict("records")}
    points = sorted({p for p, _ in cells}, key=lambda t: [sort_key(v) for v in t])
    rows = []
    for point in points:
        row = [Cell(str(v)) for v in point]
        for metric in metrics:
            r = cells.get((point, metric))
            if r is None:
                row.append(Cell("–"))
                continue
            unit = cell_unit(metric)
            note = (f"A {fmt(r['median_a'], unit)}, B {fmt(r['median_b'], unit)}; {_INTERVAL} "
                    f"[{r['low']:.3g}, {r['high']:.3g}]; repeats {r['n_a']} / {r['n_b']}")
            css = "num worse" if r["exceeds"] else "num better" if r["high"] < 1 else "num"
            text = f"{r['ratio']:.3f}×" if r["low"] == r["high"] else f"{r['ratio']:.2f}× [{r['low']:.2f}, {r['high']:.2f}]"
            row.append(Cell(text, note, css))
        rows.append(row)
    gate = (f" Red: above +{fail_above:g}% with the whole interval above 1 (what --fail-above fails on)."
            if fail_above is not None else "")
    return Table([*[k[4:] for k in keys], *[short_of(m) for m in metrics]], rows,
                 f"B / A of the medians, with a {stats.CONFIDENCE:.0%} percentile-bootstrap interval (repeats resampled on each "
                 "side; hover a cell for both medians). Green: B lower with the whole interval below 1." + gate)


def _labels(df: pd.DataFrame, keys: list[str]) -> set[tuple[Any, ...]]:
    return {tuple(map(key_value, r)) for r in stats.ok_rows(df)[keys].drop_duplicates().itertuples(index=False)}


def _shown(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys that tell the points of A and B apart (at least one)."""
    return stats.varying(pd.concat([a, b]), keys) or keys[:1]


def _unmatched(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> Table | None:
    la, lb = _labels(a, keys), _labels(b, keys)
    shown = _shown(a, b, keys)
    idx = [keys.index(k) for k in shown]
    rows = [[Cell(side), *(Cell(str(p[i])) for i in idx)]
            for side, only in (("A only", la - lb), ("B only", lb - la))
            for p in sorted(only, key=lambda t: [sort_key(v) for v in t])]
    return Table(["", *[k[4:] for k in shown]], rows) if rows else None


MOVED_PER_POINT = 5
"""Components listed per point in the anatomy section, largest moves first."""


def _anatomy_moved(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> Table | None:
    """When both folders carry a compile anatomy (spec key `anatomy`): per point, the
    components whose median seconds moved most, B - A, with the ratio and its interval."""
    if anatomy_figures.anatomy_rows(a).empty or anatomy_figures.anatomy_rows(b).empty:
        return None
    table = anatomy_figures.moved(a, b)
    if table.empty:
        return None
    shown = stats.varying(table, keys) or [k for k in keys if k in table][:1]
    rows = []
    for _, point in table.groupby(shown, sort=False, dropna=False):
        for r in point.head(MOVED_PER_POINT).to_dict("records"):
            css = "num worse" if r["low"] > 1 else "num better" if r["high"] < 1 else "num"
            rows.append([*(Cell(str(key_value(r[k]))) for k in shown), Cell(anatomy_figures.label(r["metric"])),
                         Cell(fmt(r["median_a"], "s"), css="num"), Cell(fmt(r["median_b"], "s"), css="num"),
                         Cell(f"{r['delta_s']:+.3g} s", css="num"),
                         Cell(f"{r['ratio']:.2f}× [{r['low']:.2f}, {r['high']:.2f}]", css=css)])
    rows.sort(key=lambda row: [sort_key(c.text) for c in row[:len(shown)]])
    return Table([*[k[4:] for k in shown], "component", "A", "B", "B − A", "B / A"], rows,
                 f"Profiled compile time of each component (docs/anatomy.md), medians over the anatomy repeats; "
                 f"per point the {MOVED_PER_POINT} largest moves, with a {stats.CONFIDENCE:.0%} bootstrap interval of "
                 "the ratio. Red: B slower with the whole interval above 1.")
