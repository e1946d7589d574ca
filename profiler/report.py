"""The HTML report of a results folder: figures, fitted scaling laws, break-even, tables.

`write_report(folder)` writes one self-contained page (plotly.js embedded once, nothing
fetched from the network) and refreshes the index of the folder it lands in;
`figures(df)` returns the same figures for a notebook. The report is generic over the
configuration: the x axis is always `cfg_layers`, every other `cfg_` column that varies
becomes a facet (the hidden size, or another numeric key) or a line of its own.

Every string that comes from the data (spec, errors, environment) reaches the page
through Jinja's autoescape or through JSON with `<`, `>` and `&` escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from profiler import env, stats, store
from profiler.files import write_atomic
from profiler.record import COLUMNS
from profiler.stats import key_value

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "reports"
TEMPLATES = Path(__file__).resolve().parent / "templates"
META_ID = "profiler-report-meta"

# ---------------------------------------------------------------------------- metrics

_COLUMN = {c.name: c for c in COLUMNS}
_DERIVED_DOC = {
    "time_trace_lower_s": "trace + lower, per repeat.",
    "time_to_compiled_s": "trace + lower + compile, per repeat: time to a compiled program.",
}
TITLES = {
    "time_to_compiled_s": "Time to a compiled program (trace + lower + compile)",
    "time_trace_lower_s": "Trace + lower",
    "time_trace_s": "Trace (Python → jaxpr)",
    "time_lower_s": "Lower (jaxpr → StableHLO)",
    "time_compile_s": "Compile (XLA)",
    "time_step_median_s": "Steady-state step (median)",
    "time_first_call_s": "First call of the compiled program",
    "time_prefill_s": "Prefill of a generation",
    "time_per_token_s": "Time per decoded token (median)",
    "run_tokens_per_s": "Tokens per second (generation)",
    "mem_kv_cache_bytes": "KV cache (per device)",
    "size_jaxpr_eqns": "Jaxpr equations",
    "size_stablehlo_ops": "StableHLO operations",
    "size_hlo_instructions": "Optimised HLO instructions",
    "size_hlo_bytes": "Optimised HLO text",
    "cost_flops": "FLOPs",
    "cost_transcendentals": "Transcendentals",
    "cost_bytes_accessed": "Bytes accessed",
    "cost_xla_flops": "FLOPs (XLA raw)",
    "cost_xla_transcendentals": "Transcendentals (XLA raw)",
    "cost_xla_bytes_accessed": "Bytes accessed (XLA raw)",
    "cost_analytic_flops": "Analytic matmul FLOPs",
    "mem_temp_bytes": "Temp buffers",
    "mem_footprint_bytes": "Device footprint (code + args + outputs − aliased + temp)",
    "mem_argument_bytes": "Arguments",
    "mem_output_bytes": "Outputs",
    "mem_alias_bytes": "Aliased (donated) outputs",
    "mem_generated_code_bytes": "Generated code",
    "mem_optimizer_state_bytes": "Optimizer state",
    "mem_host_rss_peak_bytes": "Peak host RSS of the measuring process",
}
SHORT = {
    "time_trace_s": "trace", "time_lower_s": "lower", "time_compile_s": "compile",
    "time_to_compiled_s": "to compiled", "time_trace_lower_s": "trace + lower",
    "time_step_median_s": "step", "time_per_token_s": "per token", "size_jaxpr_eqns": "jaxpr eqns", "size_hlo_instructions": "HLO instr.",
    "cost_flops": "FLOPs", "cost_xla_flops": "FLOPs (XLA raw)", "mem_temp_bytes": "temp",
    "mem_footprint_bytes": "footprint",
}
# Units shown in table cells; counts are plain numbers under their column's name.
_CELL_UNITS = {"s", "bytes", "FLOP"}
# Corrected cost column → XLA's raw one (loop bodies counted once).
RAW_OF = {
    "cost_flops": "cost_xla_flops",
    "cost_transcendentals": "cost_xla_transcendentals",
    "cost_bytes_accessed": "cost_xla_bytes_accessed",
}
RAW_DIFFERS = 0.10
# Figures per section, in order; a metric without data is left out. Metrics not listed
# here and not in NOT_PLOTTED (columns other engineers add) land in their prefix's section.
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
NOT_PLOTTED = {
    "time_trace_lower_s", "time_event_trace_s", "time_event_lower_s", "time_event_compile_s",
    "size_stablehlo_bytes", "size_hlo_while_loops", "cost_xla_optimal_seconds",
    "cost_analytic_flops", "mem_xla_peak_bytes", *RAW_OF.values(),
}
FIT_METRICS = ["time_to_compiled_s", "time_compile_s", "time_trace_lower_s",
               "size_jaxpr_eqns", "size_hlo_instructions", "mem_temp_bytes"]
TABLE_METRICS = ["time_trace_s", "time_lower_s", "time_compile_s", "time_to_compiled_s",
                 "time_step_median_s", "time_per_token_s", "size_jaxpr_eqns", "size_hlo_instructions",
                 "cost_flops", "mem_temp_bytes", "mem_footprint_bytes"]
DECODE_PHASES = ("prefill", "decode")


def unit_of(column: str) -> str:
    if column in _COLUMN:
        return _COLUMN[column].unit
    if column.endswith("_per_s"):
        return "/s"
    if column.endswith("_s"):
        return "s"
    return "bytes" if column.endswith("_bytes") else ""


def doc_of(column: str) -> str:
    return _COLUMN[column].doc if column in _COLUMN else _DERIVED_DOC.get(column, "")


def title_of(column: str) -> str:
    return TITLES.get(column) or column.split("_", 1)[1].removesuffix("_s").replace("_", " ").capitalize()


_SI = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def fmt(value: Any, unit: str = "") -> str:
    """A value with its unit, three significant digits, SI prefixes (1 MB = 10^6 bytes)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(value) >= scale or scale == 1e-6:
                return f"{value / scale:.3g} {name}" if value else "0 s"
    symbol = {"bytes": "B"}.get(unit, unit)
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{symbol}".rstrip()
    text = f"{value:.0f}" if value == int(value) else f"{value:.3g}"
    return f"{text} {symbol}".rstrip()


def _k(k: float) -> str:
    """An exponent to two decimals, without a '-0.00' for a flat fit."""
    return f"{k:.2f}".replace("-0.00", "0.00")


def fmt_ratio(r: float) -> str:
    """0.25×, 1.3×, 17×: two significant digits, at least one decimal below 10."""
    if not np.isfinite(r):
        return "–"
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×" if r >= 1 else f"{r:.2g}×"


# ----------------------------------------------------------------------------- layout

_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
_SYMBOLS = ["circle", "square", "triangle-up", "diamond", "cross", "x", "star", "pentagon"]
# Panels: a numeric key (hidden first); without one, the phase of a multi-program
# workload (prefill and decode are different programs, best seen side by side).
_FACET_PREFERENCE = ["cfg_hidden", "cfg_seq", "cfg_batch", "cfg_devices", "cfg_heads"]


# Values in the order a reader expects them: the seed's modes, then defaults before
# their alternatives (remat none before full, linen before nnx, prefill before decode).
_ORDER = ["loop", "scan", "scan_shared", "none", "full", "linen", "nnx", "main", *DECODE_PHASES,
          "scanned", "carried"]


def _sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers by value, known values in _ORDER, everything else by text."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (0, float(value), "")
    if value in _ORDER:
        return (1, float(_ORDER.index(value)), "")
    return (2, 0.0, str(value))


@dataclass(frozen=True)
class Layout:
    """How the configuration maps onto the figures."""

    series: tuple[str, ...]
    """cfg_ columns whose combination is one line (mode first); colour = first one."""
    facet: str | None
    """A numeric cfg_ column with one panel per value."""
    colours: Mapping[Any, str]
    styles: Mapping[tuple[Any, ...], int]
    facets: tuple[Any, ...]

    @property
    def keys(self) -> list[str]:
        return [*self.series, *([self.facet] if self.facet else [])]

    @classmethod
    def of(cls, df: pd.DataFrame) -> Layout:
        cfg = [c for c in stats.varying(df, stats.config_columns(df)) if c != "cfg_layers"]
        numeric = [c for c in cfg if pd.api.types.is_numeric_dtype(df[c])
                   and not pd.api.types.is_bool_dtype(df[c])]
        facet = next((c for c in _FACET_PREFERENCE if c in numeric), numeric[0] if numeric else None)
        if facet is None and "cfg_phase" in cfg:
            facet = "cfg_phase"
        series = [c for c in cfg if c != facet]
        if "cfg_mode" in df.columns:
            series = ["cfg_mode", *[c for c in series if c != "cfg_mode"]]
        if not series:
            series = [stats.config_columns(df)[0]] if stats.config_columns(df) else []
        first = sorted({key_value(v) for v in df[series[0]]}, key=_sort_key) if series else []
        palette = qualitative.Plotly if len(first) <= 10 else qualitative.Dark24
        colours = {v: palette[i % len(palette)] for i, v in enumerate(first)}
        rest = sorted({tuple(key_value(v) for v in r) for r in df[series[1:]].itertuples(index=False)},
                      key=lambda t: [_sort_key(v) for v in t]) if len(series) > 1 else [()]
        facets = tuple(sorted({key_value(v) for v in df[facet]}, key=_sort_key)) if facet else (None,)
        return cls(tuple(series), facet, colours, {r: i for i, r in enumerate(rest)}, facets)

    def label(self, values: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
        keys = self.series if keys is None else keys
        parts = [str(values[k]) if k == "cfg_mode" else f"{k[4:]}={values[k]}" for k in keys]
        return " · ".join(parts)

    def facet_label(self, value: Any) -> str:
        return f"{self.facet[4:]}={value}" if self.facet else ""

    def style(self, values: Mapping[str, Any]) -> tuple[str, str, str]:
        """(colour, dash, marker symbol) of a series."""
        colour = self.colours.get(key_value(values[self.series[0]]), "#444")
        i = self.styles.get(tuple(key_value(values[k]) for k in self.series[1:]), 0)
        return colour, _DASHES[i % len(_DASHES)], _SYMBOLS[i % len(_SYMBOLS)]


_TICK_SUFFIX = {"s": "s", "bytes": "B"}
FONT = dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12)


def _spans_decades(values: Iterable[float]) -> bool:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return bool(len(v)) and bool((v > 0).all()) and v.max() / v.min() >= 10


def series_trace(g: pd.DataFrame, label: str, colour: str, dash: str, symbol: str, unit: str,
                 fit: stats.PowerLaw | None, marks: list[str] | None, legend: bool,
                 bars: str = "IQR") -> go.Scatter:
    """Medians (columns median, q1, q3 of `g`) with error bars from q1 to q3, named `bars`
    in the hover; open markers where unstable, diamonds where `marks` has a note; `fit`'s
    exponent printed at the end of the line."""
    records = g.to_dict("records")
    hover, symbols, sizes = [], [], []
    for i, r in enumerate(records):
        lines = [f"<b>{label}</b> · L={r['cfg_layers']}", f"median {fmt(r['median'], unit)}"
                 f" ({bars} {fmt(r['q1'], unit)} – {fmt(r['q3'], unit)}, n={r['n']})"]
        if r["n"] > 1 and np.isfinite(r["cv"]):
            lines.append(f"CV {r['cv']:.0%}, min {fmt(r['min'], unit)}, max {fmt(r['max'], unit)}")
        shape = symbol
        if marks and marks[i]:
            lines.append(marks[i])
            shape = "diamond"
        if r["unstable"]:
            lines.append("⚠ unstable: spread ≥ 10% or a repeat far from the median")
            shape += "-open"
        hover.append("<br>".join(lines))
        symbols.append(shape)
        sizes.append(11 if marks and marks[i] else 7)
    text = [""] * len(records)
    if fit is not None and records:
        text[-1] = f"  L^{_k(fit.k)}"
    return go.Scatter(
        x=g["cfg_layers"], y=g["median"], name=label, legendgroup=label, showlegend=legend,
        mode="lines+markers+text", text=text, textposition="middle right", cliponaxis=False,
        textfont=dict(color=colour, size=11), hovertext=hover, hoverinfo="text",
        line=dict(color=colour, dash=dash), marker=dict(symbol=symbols, size=sizes, color=colour),
        error_y=dict(type="data", symmetric=False, array=(g["q3"] - g["median"]).clip(lower=0),
                     arrayminus=(g["median"] - g["q1"]).clip(lower=0), thickness=1, width=3),
    )


def _log_ticks(values: Iterable[float], unit: str) -> tuple[list[float], list[str]]:
    """Ticks at 1, 2, 5 × 10^e inside the range (1 × 10^e alone when that is too many),
    labelled with the unit, so every label reads on its own ("500 ms", "1 s")."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    lo, hi = v.min(), v.max()
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [m * 10.0**e for e in decades for m in (1, 2, 5) if lo / 1.5 <= m * 10.0**e <= hi * 1.5]
    if len(ticks) > 10:
        ticks = [t for t in ticks if f"{t:.0e}".startswith("1")]
    return ticks, [fmt(t, unit) for t in ticks]


def style_axes(fig: go.Figure, unit: str, ys: Iterable[float], layers: Iterable[int], height: int = 360) -> None:
    """Log axes where a range spans a decade or more; ticks at the measured layer counts;
    y ticks with the unit."""
    ys = list(ys)
    layers = sorted({int(x) for x in layers})
    log_x, log_y = _spans_decades(layers), _spans_decades(ys)
    fig.update_xaxes(type="log" if log_x else "linear", title_text="layers", title_standoff=2, showgrid=True,
                     gridcolor="#eee", zeroline=False, tickvals=layers, ticktext=[str(x) for x in layers])
    fig.update_yaxes(type="log" if log_y else "linear", showgrid=True, gridcolor="#eee", zeroline=False,
                     rangemode=None if log_y else "tozero")
    if log_y:
        tickvals, ticktext = _log_ticks(ys, unit)
        fig.update_yaxes(tickvals=tickvals, ticktext=ticktext)
    else:
        fig.update_yaxes(tickformat="~s", ticksuffix=_TICK_SUFFIX.get(unit, ""))
    if unit not in _TICK_SUFFIX:
        fig.update_yaxes(title_text=unit, col=1)
    fig.update_layout(
        template="none", height=height, margin=dict(l=70, r=70, t=50, b=60), font=FONT,
        legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"), hoverlabel=dict(align="left"),
        paper_bgcolor="white", plot_bgcolor="white",
    )


# --------------------------------------------------------------------------- analysis


@dataclass
class Cell:
    text: str
    note: str = ""
    css: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    id: str
    title: str
    caption: str
    figure: go.Figure


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cells(*values: Any) -> list[Cell]:
    return [v if isinstance(v, Cell) else Cell(str(v)) for v in values]


class Analysis:
    """Everything the report shows, computed once from a results DataFrame."""

    def __init__(self, df: pd.DataFrame):
        self.df = stats.with_derived(df)
        self.ok = stats.ok_rows(self.df)
        self.layout = Layout.of(self.ok if len(self.ok) else self.df)
        self.summary = stats.summarize(self.df)
        metrics = [m for m in self.summary["metric"].unique() if m not in NOT_PLOTTED or m in FIT_METRICS]
        self.fits = stats.fit_table(self.ok, metrics, self.layout.keys)
        # dropna=False keeps NaN keys but also invents every combination of them: drop those
        medians = self.summary.pivot_table(
            index=[*self.layout.keys, "cfg_layers"], columns="metric", values="median",
            dropna=False, sort=False) if len(self.summary) else pd.DataFrame()
        self.medians = medians.dropna(how="all").reset_index()
        self._fit = {
            (r["metric"], *(key_value(r[k]) for k in self.layout.keys)): r
            for r in self.fits.to_dict("records")
        }

    # -- helpers

    def has(self, metric: str) -> bool:
        return stats.has_data(self.ok, metric)

    def fit(self, metric: str, values: Mapping[str, Any]) -> stats.PowerLaw | None:
        r = self._fit.get((metric, *(key_value(values[k]) for k in self.layout.keys)))
        return None if r is None else stats.PowerLaw(r["a"], r["k"], r["k_low"], r["k_high"], r["n"], r["r2"])

    def points(self, metric: str, where: Mapping[str, Any] | None = None) -> pd.DataFrame:
        s = self.summary[self.summary["metric"] == metric]
        for key, value in (where or {}).items():
            s = s[s[key].map(key_value) == value]
        return s

    def series_groups(self, frame: pd.DataFrame, keys: Sequence[str] | None = None) -> list[tuple[dict[str, Any], pd.DataFrame]]:
        keys = list(self.layout.series if keys is None else keys)
        if not keys:
            return [({}, frame.sort_values("cfg_layers"))]
        groups = [
            (dict(zip(keys, (v if isinstance(v, tuple) else (v,)), strict=True)), g.sort_values("cfg_layers"))
            for v, g in frame.groupby(keys, dropna=False, sort=False)
        ]
        return sorted(groups, key=lambda item: [_sort_key(key_value(item[0][k])) for k in keys])

    def cost_metric(self, corrected: str) -> str | None:
        """The corrected cost column when present, else XLA's raw one, else None."""
        if self.has(corrected):
            return corrected
        return RAW_OF[corrected] if self.has(RAW_OF[corrected]) else None

    # -- figures

    def metric_figure(self, metric: str, raw: str | None = None, reference: str | None = None) -> go.Figure:
        """One panel per facet value, one line per series: medians with IQR bars, open
        markers where unstable, the fitted exponent at the end of each line. With `raw`,
        buttons switch between `metric` and XLA's raw column; `reference` adds a dotted line."""
        lay = self.layout
        fig = make_subplots(rows=1, cols=len(lay.facets), shared_yaxes=True, horizontal_spacing=0.08,
                            subplot_titles=[lay.facet_label(f) for f in lay.facets] if lay.facet else None)
        unit = unit_of(metric)
        raw_medians = self._median_lookup(raw)
        kinds: list[str] = []  # per trace: main | raw | ref, for the buttons' visibility
        ys: list[float] = []
        for col, facet in enumerate(lay.facets, 1):
            where = {lay.facet: facet} if lay.facet else {}
            for values, g in self.series_groups(self.points(metric, where)):
                values = {**values, **where}
                colour, dash, symbol = lay.style(values)
                label = html.escape(lay.label(values))
                marks = [self._raw_note(raw_medians, r, unit) for r in g.to_dict("records")] if raw else None
                fig.add_trace(series_trace(g, label, colour, dash, symbol, unit, self.fit(metric, values),
                                                 marks, col == 1), row=1, col=col)
                kinds.append("main")
                ys += [*g["q1"], *g["q3"]]
                if raw:
                    rg = self.points(raw, values).sort_values("cfg_layers")
                    trace = series_trace(rg, label, colour, dash, symbol, unit, self.fit(raw, values),
                                               None, False)
                    trace.visible = False
                    fig.add_trace(trace, row=1, col=col)
                    kinds.append("raw")
                    ys += [*rg["q1"], *rg["q3"]]
            ref = self.points(reference, where).drop_duplicates("cfg_layers").sort_values("cfg_layers") if reference else None
            if ref is not None and len(ref):
                fig.add_trace(go.Scatter(
                    x=ref["cfg_layers"], y=ref["median"], mode="lines", name=title_of(reference),
                    legendgroup="reference", showlegend=col == 1, line=dict(color="#888", dash="dot", width=1.5),
                    hovertext=[f"{title_of(reference)}: {fmt(v, unit)}" for v in ref["median"]], hoverinfo="text"),
                    row=1, col=col)
                kinds.append("ref")
        style_axes(fig, unit, ys, self.ok["cfg_layers"])
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

    def _median_lookup(self, metric: str | None) -> dict[tuple[Any, ...], float]:
        keys = [*self.layout.keys, "cfg_layers"]
        return {tuple(key_value(r[k]) for k in keys): r["median"] for r in self.points(metric).to_dict("records")} if metric else {}

    def _raw_note(self, raw_medians: Mapping[tuple[Any, ...], float], r: Mapping[str, Any], unit: str) -> str:
        raw = raw_medians.get(tuple(key_value(r[k]) for k in [*self.layout.keys, "cfg_layers"]))
        if raw is None or not np.isfinite(raw) or raw <= 0 or abs(r["median"] / raw - 1) <= RAW_DIFFERS:
            return ""
        return f"◆ XLA raw: {fmt(raw, unit)} (corrected is {fmt_ratio(r['median'] / raw)} raw)"

    def remat_figure(self) -> Figure | None:
        """Temp memory and FLOPs per remat policy at the largest layer count: remat's trade."""
        if "cfg_remat" not in self.layout.series or not self.has("mem_temp_bytes"):
            return None
        flops = self.cost_metric("cost_flops")
        metrics = ["mem_temp_bytes", *([flops] if flops else [])]
        lay = self.layout
        others = [k for k in lay.series if k != "cfg_remat"]
        largest = int(self.ok["cfg_layers"].max())
        fig = make_subplots(rows=len(lay.facets), cols=len(metrics), shared_xaxes=True,
                            vertical_spacing=0.12, horizontal_spacing=0.1,
                            subplot_titles=[f"{title_of(m)}{' · ' + lay.facet_label(f) if lay.facet else ''}"
                                            for f in lay.facets for m in metrics])
        policies = sorted({key_value(v) for v in self.ok["cfg_remat"]}, key=_sort_key)
        seen: set[str] = set()
        for row, facet in enumerate(lay.facets, 1):
            for col, metric in enumerate(metrics, 1):
                where = {lay.facet: facet} if lay.facet else {}
                pts = self.points(metric, where)
                pts = pts[pts["cfg_layers"] == largest]
                for values, g in self.series_groups(pts, others):
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

    def decode_figure(self) -> Figure | None:
        """Per phase of a decode workload: aliased, temp and footprint bytes vs layers."""
        phases = [p for p in DECODE_PHASES if "cfg_phase" in self.ok and (self.ok["cfg_phase"] == p).any()]
        metrics = [m for m in ("mem_alias_bytes", "mem_temp_bytes", "mem_footprint_bytes") if self.has(m)]
        if not phases or not metrics:
            return None
        lay = self.layout
        others = [k for k in lay.series if k != "cfg_phase"]
        fig = make_subplots(rows=len(metrics), cols=len(phases), shared_xaxes=True, vertical_spacing=0.08,
                            subplot_titles=[f"{title_of(m)} · {p}" for m in metrics for p in phases])
        seen: set[str] = set()
        for row, metric in enumerate(metrics, 1):
            for col, phase in enumerate(phases, 1):
                pts = self.points(metric, {"cfg_phase": phase})
                if lay.facet and lay.facet != "cfg_phase":  # one panel per phase stays readable
                    pts = pts[pts[lay.facet].map(key_value) == lay.facets[-1]]
                for values, g in self.series_groups(pts, others):
                    label = html.escape(lay.label(values, others)) if others else phase
                    colour, dash, symbol = lay.style({**values, "cfg_phase": phase, **({lay.facet: lay.facets[-1]} if lay.facet else {})}
                                                     if "cfg_phase" in lay.series else values)
                    fig.add_trace(series_trace(g, label, colour, dash, symbol, "bytes", None, None, label not in seen),
                                  row=row, col=col)
                    seen.add(label)
        layers = sorted({int(x) for x in self.ok["cfg_layers"]})
        fig.update_yaxes(tickformat="~s", ticksuffix="B", gridcolor="#eee", rangemode="tozero")
        fig.update_xaxes(type="log" if _spans_decades(layers) else "linear", tickvals=layers, gridcolor="#eee")
        fig.update_xaxes(title_text="layers", row=len(metrics))
        fig.update_layout(template="none", height=260 * len(metrics) + 110, margin=dict(l=60, r=30, t=50, b=90),
                          legend=dict(orientation="h", y=-0.06, yanchor="top"),
                          font=FONT)
        facet = f" ({lay.facet_label(lay.facets[-1])})" if lay.facet and lay.facet != "cfg_phase" else ""
        return Figure("decode", "Decode: memory per phase",
                      f"What each phase holds on the device{facet}: aliased bytes are the donated cache "
                      "updated in place; a cache copied rather than aliased shows up in temp.", fig)

    def sections(self) -> list[Section]:
        out = []
        placed: set[str] = set()
        extra: dict[str, list[str]] = {}
        for metric in self.summary["metric"].unique():
            listed = any(metric in ms for _, ms in SECTIONS.values())
            if not listed and metric not in NOT_PLOTTED and metric.startswith(tuple(_SECTION_OF_PREFIX)):
                extra.setdefault(_SECTION_OF_PREFIX[next(p for p in _SECTION_OF_PREFIX if metric.startswith(p))], []).append(metric)
        for sid, (title, metrics) in SECTIONS.items():
            section = Section(sid, title)
            for metric in [*metrics, *extra.get(sid, [])]:
                shown = self.cost_metric(metric) if metric in RAW_OF else metric
                if shown is None or shown in placed or not self.has(shown):
                    continue
                placed.add(shown)
                if (self.points(shown)["median"] == 0).all():
                    section.notes.append(f"{title_of(shown)}: 0 at every point (not drawn).")
                    continue
                raw = RAW_OF.get(shown) if self.has(RAW_OF.get(shown, "")) else None
                reference = "cost_analytic_flops" if metric == "cost_flops" else None
                caption = doc_of(shown)
                if raw:
                    caption += " Corrected: every loop trip counted; the buttons switch to XLA's raw count. ◆ marks points where the two differ by more than 10%."
                elif metric in RAW_OF:
                    caption += " (Corrected costs are not in this dataset: XLA counts a loop body once, so scanned programs look cheaper than they are.)"
                section.figures.append(Figure(shown, title_of(shown), caption, self.metric_figure(shown, raw, reference)))
            if sid == "memory" and (remat := self.remat_figure()):
                section.figures.insert(0, remat)
            if sid == "cost" and self.has("cost_exact") and not self.ok["cost_exact"].fillna(True).all():
                section.notes.append(self._inexact_line())
            if section.figures or section.notes:
                out.append(section)
        if decode := self.decode_figure():
            out.append(Section("decode", "Decode", figures=[decode], tables=[self.decode_table()]))
        return out

    def figures(self) -> dict[str, go.Figure]:
        return {f.id: f.figure for s in self.sections() for f in s.figures}

    # -- tables

    def point_columns(self) -> list[str]:
        return [*self.layout.keys, "cfg_layers"]

    def fit_table(self) -> Table | None:
        metrics = [m for m in FIT_METRICS if m in set(self.fits["metric"])]
        if not metrics:
            return None
        rows = []
        groups = self.fits.drop_duplicates(self.layout.keys)
        for values in sorted(groups[self.layout.keys].to_dict("records"),
                             key=lambda v: [_sort_key(key_value(v[k])) for k in self.layout.keys]):
            cells = [Cell(self.layout.label(values)), Cell(str(values[self.layout.facet]) if self.layout.facet else "")]
            for metric in metrics:
                fit = self.fit(metric, values)
                if fit is None:
                    cells.append(Cell("–"))
                    continue
                interval = "" if math.isnan(fit.k_low) else f" [{_k(fit.k_low)}, {_k(fit.k_high)}]"
                cells.append(Cell(f"{_k(fit.k)}{interval}", f"y = {fmt(fit.a, unit_of(metric))} · L^{fit.k:.3f}, "
                                  f"R² {fit.r2:.3f}, {fit.n} samples", "num"))
            rows.append(cells)
        columns = ["series", self.layout.facet[4:] if self.layout.facet else "", *[SHORT.get(m, title_of(m)) for m in metrics]]
        return Table(columns, rows, "Exponent k of y = a · L^k (least squares in log-log over every ok repeat; "
                     "95% interval in brackets). k ≈ 1: grows linearly with layers; k ≈ 0: flat.")

    def median_table(self) -> Table:
        metrics = [m for m in TABLE_METRICS if self.has(m)]
        if "cost_flops" not in metrics and self.has("cost_xla_flops"):
            metrics.insert(metrics.index("mem_temp_bytes") if "mem_temp_bytes" in metrics else len(metrics), "cost_xla_flops")
        keys = self.point_columns()
        sub = self.summary[self.summary["metric"].isin(metrics)]
        index = {(tuple(key_value(r[k]) for k in keys), r["metric"]): r for r in sub.to_dict("records")}
        points = sorted({k for k, _ in index}, key=lambda t: [_sort_key(v) for v in t])
        rows = []
        for point in points:
            cells = [Cell(str(v)) for v in point]
            n = max((index[(point, m)]["n"] for m in metrics if (point, m) in index), default=0)
            cells.append(Cell(str(n), css="num"))
            for m in metrics:
                r = index.get((point, m))
                if r is None:
                    cells.append(Cell("–"))
                    continue
                u = unit_of(m) if unit_of(m) in _CELL_UNITS else ""
                note = f"IQR {fmt(r['q1'], u)} – {fmt(r['q3'], u)}; min {fmt(r['min'], u)}, max {fmt(r['max'], u)}"
                if np.isfinite(r["cv"]):
                    note += f"; CV {r['cv']:.1%}"
                spread = "" if r["q1"] == r["q3"] else f" ±{fmt((r['q3'] - r['q1']) / 2, u)}"
                cells.append(Cell(f"{fmt(r['median'], u)}{spread}{' ⚠' if r['unstable'] else ''}", note,
                                  "num unstable" if r["unstable"] else "num"))
            rows.append(cells)
        return Table([*[k[4:] for k in keys], "n", *[SHORT.get(m, title_of(m)) for m in metrics]], rows,
                     "Median over the ok repeats ± half the interquartile range (hover for IQR, min, max "
                     "and CV). ⚠ = unstable: CV ≥ 10% or a repeat more than 25% from the median.")

    def break_even(self) -> pd.DataFrame:
        if "cfg_mode" not in self.layout.series or not self.has("time_to_compiled_s"):
            return pd.DataFrame()
        return stats.break_even_table(self.summary)

    def break_even_table(self) -> Table | None:
        be = self.break_even()
        if be.empty:
            return None
        cfg = [c for c in be.columns if c.startswith("cfg_") and c != "cfg_layers"]
        stepped = be["step_a_s"].notna().any()
        rows = []
        for r in be.to_dict("records"):
            ready = f"{r['ready_first']} ({fmt(r['setup_a_s'], 's')} vs {fmt(r['setup_b_s'], 's')})"
            cells = [Cell(str(r[c])) for c in cfg] + [Cell(str(r["cfg_layers"]), css="num"), Cell(f"{r['a']} vs {r['b']}"), Cell(ready)]
            if stepped:
                faster = "–" if r["faster_step"] is None else f"{r['faster_step']} ({fmt(r['step_a_s'], 's')} vs {fmt(r['step_b_s'], 's')})"
                if r["faster_step"] is None:
                    n = "–"
                elif np.isfinite(r["break_even_steps"]):
                    n = f"{r['faster_step']} after {r['break_even_steps']:,.0f} steps"
                else:
                    n = f"never: {r['ready_first']} leads at every step count"
                cells += [Cell(faster), Cell(n)]
            rows.append(cells)
        columns = [*[c[4:] for c in cfg], "layers", "modes", "compiled first (a vs b)"]
        if stepped:
            columns += ["faster step (a vs b)", "ahead in time-to-result"]
        return Table(columns, rows, "Time to first result = trace + lower + compile + n · step (medians). "
                     "The mode that compiles sooner leads until the faster-stepping one catches up after the "
                     "break-even step count." + ("" if stepped else " Steps were not run (spec key run = false), "
                                                  "so only the time to a compiled program is compared."))

    def decode_table(self) -> Table:
        metrics = [m for m in ("mem_kv_cache_bytes", "mem_alias_bytes", "mem_temp_bytes", "mem_footprint_bytes",
                               "mem_argument_bytes") if self.has(m)]
        largest = int(self.ok["cfg_layers"].max())
        keys = self.layout.keys
        rows = []
        for phase in DECODE_PHASES:
            for values, g in self.series_groups(self.summary[(self.summary["cfg_layers"] == largest) & (self.summary["cfg_phase"] == phase)], [k for k in keys if k != "cfg_phase"]):
                by = {r["metric"]: r["median"] for r in g.to_dict("records")}
                rows.append([Cell(phase), Cell(self.layout.label(values, list(values))), *[Cell(fmt(by.get(m), "bytes"), css="num") for m in metrics]])
        return Table(["phase", "configuration", *[title_of(m) for m in metrics]], rows, f"Medians at {largest} layers.")

    def failures_table(self) -> Table | None:
        bad = self.df[self.df["run_status"] != "ok"]
        if bad.empty:
            return None
        keys = [k for k in self.point_columns() if k in bad.columns]
        rows = [
            [*(Cell(str(key_value(r[k]) if key_value(r[k]) is not None else "–")) for k in keys),
             Cell(str(key_value(r.get("cfg_phase")) or "–")), Cell(str(r["run_repeat"])),
             Cell(str(r["run_status"]), css="bad"), Cell(str(r["run_error"] or ""), css="error")]
            for r in bad.sort_values(["run_status", *keys]).to_dict("records")
        ]
        return Table([*[k[4:] for k in keys], "phase", "repeat", "status", "error"], rows)

    # -- the generated summary

    def headline(self) -> list[str]:
        lines: list[str] = []
        lines += self._mode_lines()
        lines += self._scaling_lines()
        lines += self._break_even_lines()
        lines += self._remat_lines()
        lines += self._decode_lines()
        for key in ("cfg_mesh", "cfg_api", "cfg_unroll"):
            lines += self._key_lines(key)
        lines += self._cost_lines()
        lines += self._health_lines()
        return lines

    def representative(self, free: Sequence[str]) -> dict[str, Any]:
        """The group the summary speaks for: the largest facet value, and the first
        value (the default: remat none, api linen ...) of every series key not in `free`."""
        rep = {self.layout.facet: self.layout.facets[-1]} if self.layout.facet else {}
        rows = self.ok
        for key in self.layout.series:
            if key in free or not len(rows):
                continue
            # the value measured with the most combinations of the free keys (a cache
            # layout that only scan has would leave loop out of the summary)
            coverage = {key_value(v): len(g.drop_duplicates(list(free))) for v, g in rows.groupby(key, sort=False)}
            rep[key] = min(coverage, key=lambda v: (-coverage[v], _sort_key(v)))
            rows = rows[rows[key].map(key_value) == rep[key]]
        return rep

    def _contrast(self, key: str, metrics: Sequence[str], where: Mapping[str, Any]) -> list[tuple[dict[str, Any], Any, Any, int, dict[str, float]]]:
        """For each group of the layout keys not in `where` (and not `key`): (group, base,
        other, L, median ratios other / base) at the largest layer count both have;
        base = the first value of `key`."""
        if self.medians.empty or key not in self.medians.columns:
            return []
        med = self.medians
        for k, v in where.items():
            med = med[med[k].map(key_value) == v]
        others = [k for k in self.layout.keys if k != key and k not in where]
        found = []
        for values, g in self.series_groups(med, others):
            by_value = {key_value(v): gg.set_index("cfg_layers") for v, gg in g.groupby(key, sort=False)}
            order = sorted(by_value, key=_sort_key)
            for other in order[1:]:
                base = order[0]
                common = sorted(set(by_value[base].index) & set(by_value[other].index))
                if not common:
                    continue
                top = common[-1]
                ratios = {m: by_value[other].at[top, m] / by_value[base].at[top, m]
                          for m in metrics if m in med.columns and by_value[base].at[top, m] > 0
                          and np.isfinite(by_value[other].at[top, m])}
                found.append((values, base, other, top, ratios))
        return found

    @staticmethod
    def _where(values: Mapping[str, Any]) -> str:
        return f" ({', '.join(f'{k[4:]}={v}' for k, v in values.items())})" if values else ""

    def _mode_lines(self) -> list[str]:
        where = self.representative(["cfg_mode"])
        lines = []
        for _, base, other, top, r in self._contrast("cfg_mode", ["time_to_compiled_s", "mem_temp_bytes"], where):
            if "time_to_compiled_s" not in r:
                continue
            t = r["time_to_compiled_s"]
            speed = f"{fmt_ratio(1 / t)} sooner" if t <= 1 else f"{fmt_ratio(t)} later"
            mem = f" and needs {fmt_ratio(r['mem_temp_bytes'])} its temp memory" if "mem_temp_bytes" in r else ""
            lines.append(f"At {top} layers{self._where(where)}, {other} reaches a compiled program {speed} than {base}{mem}.")
        return lines

    def _scaling_lines(self) -> list[str]:
        where = self.representative(["cfg_mode"])
        fits = self.fits
        for k, v in where.items():
            fits = fits[fits[k].map(key_value) == v]
        parts = []
        for metric, what in (("time_compile_s", "compile time"), ("size_hlo_instructions", "HLO instructions"),
                             ("mem_temp_bytes", "temp memory")):
            sub = sorted(fits[fits["metric"] == metric].to_dict("records"),
                         key=lambda r: [_sort_key(key_value(r[k])) for k in self.layout.series])
            if sub:
                laws = ", ".join(f"{self.layout.label(r, ['cfg_mode'] if 'cfg_mode' in r else [])} ∝ L^{_k(r['k'])}" for r in sub)
                parts.append(f"{what}: {laws}")
        return [f"Scaling with layers{self._where(where)}: " + "; ".join(parts) + "."] if parts else []

    def _break_even_lines(self) -> list[str]:
        be = self.break_even()
        if be.empty:
            return []
        where = {k: v for k, v in self.representative(["cfg_mode"]).items() if k in be.columns}
        for k, v in where.items():
            be = be[be[k].map(key_value) == v]
        lines = []
        for (a, b), g in be.groupby(["a", "b"], sort=False):
            g = g.sort_values("cfg_layers")
            wins = stats.wins_from(g["cfg_layers"].tolist(), g["ready_first"].tolist())
            if wins is None:
                continue
            w, start = wins
            since = f"from {start} layers on" if start > g["cfg_layers"].min() else "at every layer count measured"
            line = f"{w} reaches a compiled program before {b if w == a else a} {since}{self._where(where)}"
            top = g.iloc[-1]
            if top["faster_step"] is not None and np.isfinite(top["break_even_steps"]):
                line += (f"; at {top['cfg_layers']} layers {top['faster_step']}'s faster step catches up after "
                         f"{top['break_even_steps']:,.0f} steps")
            elif top["faster_step"] is not None:
                line += f"; at {top['cfg_layers']} layers it also steps faster, so it stays ahead"
            lines.append(line + ".")
        return lines

    def _remat_lines(self) -> list[str]:
        if "cfg_remat" not in self.layout.series:
            return []
        flops = self.cost_metric("cost_flops")
        where = {self.layout.facet: self.layout.facets[-1]} if self.layout.facet else {}
        lines = []
        for values, base, other, top, r in self._contrast("cfg_remat", ["mem_temp_bytes", *([flops] if flops else [])], where):
            if "mem_temp_bytes" in r:
                cost = f" for {fmt_ratio(r[flops])} the FLOPs" if flops in r else ""
                lines.append(f"At {top} layers{self._where({**values, **where})}, remat={other} needs "
                             f"{fmt_ratio(r['mem_temp_bytes'])} the temp memory of remat={base}{cost}.")
        return lines[:6]

    def _decode_lines(self) -> list[str]:
        if "cfg_kv_cache" not in self.layout.series:
            return []
        lines = []
        lay = self.layout
        facet = {lay.facet: lay.facets[-1]} if lay.facet and lay.facet != "cfg_phase" else {}
        for phase in DECODE_PHASES:
            for values, base, other, top, r in self._contrast("cfg_kv_cache", ["mem_temp_bytes"], {**facet, "cfg_phase": phase}):
                if "mem_temp_bytes" in r:
                    lines.append(f"{phase.capitalize()} at {top} layers{self._where({**values, **facet})}: the {other} "
                                 f"cache needs {fmt_ratio(r['mem_temp_bytes'])} the temp memory of the {base} cache.")
        return lines[:6]

    def _inexact_line(self) -> str:
        inexact = self.ok[~self.ok["cost_exact"].fillna(True).astype(bool)]
        return (f"{inexact['run_point_id'].nunique()} point(s) contain a loop whose trip count is unknown "
                "(data-dependent while): their cost is a lower bound (cost_exact = false).")

    def _key_lines(self, key: str) -> list[str]:
        """What another value of `key` changes: time to a compiled program and memory."""
        if key not in self.layout.series:
            return []
        memory = next((m for m in ("mem_footprint_bytes", "mem_temp_bytes") if self.has(m)), None)
        where = self.representative(["cfg_mode", key])
        lines = []
        for values, base, other, top, r in self._contrast(key, ["time_to_compiled_s", *([memory] if memory else [])], where):
            parts = []
            if "time_to_compiled_s" in r:
                t = r["time_to_compiled_s"]
                parts.append(f"reaches a compiled program {fmt_ratio(1 / t)} sooner" if t <= 1 else
                             f"reaches a compiled program {fmt_ratio(t)} later")
            if memory in r:
                parts.append(f"needs {fmt_ratio(r[memory])} the {title_of(memory).split(' (')[0].lower()}")
            if parts:
                lines.append(f"At {top} layers{self._where({**values, **where})}, compared with {key[4:]}={base}, "
                             f"{key[4:]}={other} {' and '.join(parts)}.")
        return lines[:4]

    def _cost_lines(self) -> list[str]:
        lines = []
        if self.has("cost_exact") and not self.ok["cost_exact"].fillna(True).all():
            lines.append(self._inexact_line())
        if not (self.has("cost_flops") and self.has("cost_xla_flops")):
            return lines
        med = self.medians.dropna(subset=["cost_flops", "cost_xla_flops"])
        med = med[med["cost_xla_flops"] > 0]
        ratio = med["cost_flops"] / med["cost_xla_flops"]
        differ = (ratio - 1).abs() > RAW_DIFFERS
        if not differ.any():
            return [*lines, f"XLA's raw FLOP count matches the corrected one within 10% at all {len(med)} points."]
        worst = med.loc[(ratio - 1).abs().idxmax()]
        return [*lines, f"XLA's raw FLOP count is off by more than 10% at {int(differ.sum())} of {len(med)} points "
                f"(worst: {self.layout.label(worst)}, L={worst['cfg_layers']}: corrected = {fmt_ratio(ratio.max())} raw)."]

    def _health_lines(self) -> list[str]:
        lines = []
        timing = self.summary[self.summary["metric"].str.startswith("time_")]
        if len(timing):
            keys = self.point_columns()
            per_point = timing.groupby(keys, dropna=False, sort=False)["unstable"].any()
            if per_point.any():
                lines.append(f"{int(per_point.sum())} of {len(per_point)} points have an unstable timing "
                             "(⚠ in the medians table, open markers in the figures): differences smaller than their spread are noise.")
        bad = self.df[self.df["run_status"] != "ok"]
        if len(bad):
            counts = sorted(bad["run_status"].value_counts().items(), key=lambda kn: (-kn[1], kn[0]))
            kinds = ", ".join(f"{k} {n}" for k, n in counts)
            lines.append(f"{len(bad)} of {len(self.df)} measurements failed ({kinds}): see Failures.")
        return lines


def figures(df: pd.DataFrame) -> dict[str, go.Figure]:
    """The report's figures by id, for showing inline in a notebook."""
    return Analysis(df).figures()


# ------------------------------------------------------------------------- environment


def environment_table(env_values: Mapping[str, list[Any]]) -> Table:
    rows = []
    for column, values in env_values.items():
        text = ", ".join(str(v) for v in values)
        css = "bad" if len(values) > 1 else ""
        rows.append([Cell(column[4:]), Cell(text, doc_of(column), css)])
    return Table(["", "value"], rows)


@dataclass(frozen=True)
class EnvWarning:
    text: str
    critical: bool = False


def environment_warnings(env_values: Mapping[str, list[Any]]) -> list[EnvWarning]:
    """Warnings for env_ columns with more than one value; backend, device kind and CPU
    model make timings incomparable."""
    differing = [c for c, v in env_values.items() if len(v) > 1]
    warnings = []
    critical = [c[4:] for c in differing if c in stats.ENV_CRITICAL]
    if critical:
        warnings.append(EnvWarning(f"Rows come from different machines or backends ({', '.join(critical)} "
                                "differ): timings across them are not comparable.", critical=True))
    rest = [c[4:] for c in differing if c not in stats.ENV_CRITICAL]
    if rest:
        warnings.append(EnvWarning(f"Rows come from differing environments ({', '.join(rest)}): see Environment."))
    jobs = max(env_values.get("run_jobs") or [1])
    if jobs > 1:
        warnings.append(EnvWarning(f"Up to {jobs} measurements ran at once on a host (run_jobs): their wall "
                                   "times include competing for cores; CPU times (time_*_cpu_s) do not."))
    return warnings


def describe_environment(env_values: Mapping[str, list[Any]]) -> str:
    """One line for the index: versions, backend, device."""
    def first(c: str) -> str:
        return str(env_values[c][0]) if env_values.get(c) else "?"
    return (f"jax {first('env_jax_version')} · {first('env_backend')} · {first('env_device_kind')} · "
            f"{first('env_hostname')}")


# ------------------------------------------------------------------------------ output


def _jinja() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` survive."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(template: str, **context: Any) -> str:
    """A page from `template` with plotly.js embedded once and the figures as JSON."""
    figs: list[Figure] = context.pop("figures_list", [])
    payload = "{" + ",".join(
        f"{json.dumps(f.id)}:{pio.to_json(f.figure, validate=False)}" for f in figs) + "}"
    return _jinja().get_template(template).render(
        plotly_js=get_plotlyjs(), figures_json=script_json(payload),
        meta_json=script_json(context.get("meta", {})), meta_id=META_ID, **context)


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of a results folder; return its path.

    Default `out`: reports/<folder name>.html under the repository root. The index of
    the folder the report lands in is refreshed (see `write_index`).
    """
    folder = Path(folder)
    df = store.load(folder)
    out = Path(out) if out else REPORTS / f"{folder.resolve().name}.html"
    return write_page(out, report_html(df, store.read_manifest(folder), str(folder)))


def report_html(df: pd.DataFrame, manifest: Mapping[str, Any] | None = None, source: str = "") -> str:
    """The report page of a results DataFrame (`manifest`: the folder's, if any)."""
    manifest = manifest or {}
    an = Analysis(df)
    env_values = stats.environment(an.ok if len(an.ok) else an.df)
    sections = []
    if (table := an.fit_table()) is not None:
        sections.append(Section("scaling", "Scaling laws", tables=[table]))
    if (table := an.break_even_table()) is not None:
        sections.append(Section("break-even", "Break-even", tables=[table]))
    sections += an.sections()
    if (table := an.median_table()).rows:
        sections.append(Section("medians", "Medians and spread", tables=[table]))
    if (table := an.failures_table()) is not None:
        sections.append(Section("failures", "Failures", tables=[table]))
    names = df["run_sweep"].dropna().unique().tolist()
    title = ", ".join(map(str, names)) or Path(source).name or "results"
    points = df.drop_duplicates(["run_point_id", "cfg_phase"])
    meta = {
        "kind": "report", "title": title, "folder": source, "created_utc": env.utc_now(),
        "started_utc": manifest.get("started_utc") or next(iter(sorted(df["run_started_utc"].dropna())), None),
        "environment": describe_environment(env_values), "points": len(points),
        "rows": len(df), "failed": int((df["run_status"] != "ok").sum()),
    }
    return render(
        "report.html.j2", title=title, meta=meta, headline=an.headline(),
        warnings=environment_warnings(env_values), sections=sections,
        figures_list=[f for s in sections for f in s.figures],
        environment=environment_table(env_values),
        spec=sorted((str(k), json.dumps(v)) for k, v in (manifest.get("spec") or {}).items()),
        layout=an.layout, folder=source,
    )


def write_page(out: Path, page: str) -> Path:
    """Write a page atomically and refresh the index beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page, durable=False)
    write_index(out.parent)
    return out


_META = re.compile(rf'<script type="application/json" id="{META_ID}">(.*?)</script>', re.S)


def read_meta(page: Path) -> dict[str, Any] | None:
    """The metadata a report carries for the index; None for any other HTML file."""
    try:
        with open(page, encoding="utf-8") as f:
            head = f.read(20000)  # the metadata sits in <head>, before plotly.js
    except (OSError, UnicodeDecodeError):
        return None
    match = _META.search(head)
    if not match:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def write_index(directory: str | Path) -> Path | None:
    """(Re)write `index.html` in `directory`, listing every report there, newest first.
    An index.html that this module did not write is left alone (None is returned)."""
    directory = Path(directory)
    index = directory / "index.html"
    if index.exists() and read_meta(index) is None:
        return None
    entries = []
    for page in sorted(directory.glob("*.html")):
        meta = read_meta(page)
        if page.name != "index.html" and meta is not None:
            entries.append({**meta, "href": page.name})
    entries.sort(key=lambda e: e.get("created_utc") or "", reverse=True)
    text = _jinja().get_template("index.html.j2").render(
        entries=entries, meta_json=script_json({"kind": "index"}), meta_id=META_ID)
    write_atomic(index, text, durable=False)
    return index
