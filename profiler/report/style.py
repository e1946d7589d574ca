"""How the configuration maps onto lines, colours and panels, and how a figure looks:
the one place that knows plotly's styling. Every view draws with these."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from profiler.analysis import stats
from profiler.analysis.stats import key_value
from profiler.report.format import sort_key
from profiler.units import fmt, fmt_exponent, fmt_pct

_DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
_SYMBOLS = ["circle", "square", "triangle-up", "diamond", "cross", "x", "star", "pentagon"]
# Panels: a numeric key (hidden first); without one, the phase of a multi-program
# workload (prefill and decode are different programs, best seen side by side).
_FACET_PREFERENCE = ["cfg_hidden", "cfg_seq", "cfg_batch", "cfg_devices", "cfg_heads"]
_TICK_SUFFIX = {"s": "s", "bytes": "B"}
FONT = dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12)


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
    x: str | None = "cfg_layers"
    """The x axis (stats.x_column): layers when they vary, else the numeric key with the
    most values; None when no numeric key varies (no curves, only numbers)."""

    @property
    def keys(self) -> list[str]:
        return [*self.series, *([self.facet] if self.facet else [])]

    @property
    def x_title(self) -> str:
        """What the x axis counts: 'layers', or the key's name."""
        return self.x[4:] if self.x else ""

    @property
    def x_symbol(self) -> str:
        """The x axis in a formula: L for layers, else the key's name (y ∝ hidden^k)."""
        return "L" if self.x == "cfg_layers" else self.x_title

    @classmethod
    def of(cls, df: pd.DataFrame) -> Layout:
        x = stats.x_column(df)
        cfg = [c for c in stats.varying(df, stats.config_columns(df)) if c not in (x, "cfg_layers")]
        numeric = [c for c in cfg if pd.api.types.is_numeric_dtype(df[c])
                   and not pd.api.types.is_bool_dtype(df[c])]
        facet = next((c for c in _FACET_PREFERENCE if c in numeric), numeric[0] if numeric else None)
        if facet is None and "cfg_phase" in cfg:
            facet = "cfg_phase"
        series = [c for c in cfg if c != facet]
        if "cfg_mode" in series:
            series = ["cfg_mode", *[c for c in series if c != "cfg_mode"]]
        if not series:  # one line: named by what every row has (the program, else the workload)
            named = [c for c in ("cfg_program", "cfg_workload") if stats.has_data(df, c)]
            series = named[:1]
        first = sorted({key_value(v) for v in df[series[0]]}, key=sort_key) if series else []
        palette = qualitative.Plotly if len(first) <= 10 else qualitative.Dark24
        colours = {v: palette[i % len(palette)] for i, v in enumerate(first)}
        rest = sorted({tuple(key_value(v) for v in r) for r in df[series[1:]].itertuples(index=False)},
                      key=lambda t: [sort_key(v) for v in t]) if len(series) > 1 else [()]
        facets = tuple(sorted({key_value(v) for v in df[facet]}, key=sort_key)) if facet else (None,)
        return cls(tuple(series), facet, colours, {r: i for i, r in enumerate(rest)}, facets, x)

    def label(self, values: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
        """The series' name; a key that does not apply to it (null) is left out."""
        keys = self.series if keys is None else keys
        parts = [str(values[k]) if k in ("cfg_mode", "cfg_program") else f"{k[4:]}={values[k]}"
                 for k in keys if key_value(values.get(k)) is not None]
        return " · ".join(parts) or "all"

    def facet_label(self, value: Any) -> str:
        return f"{self.facet[4:]}={value}" if self.facet else ""

    def style(self, values: Mapping[str, Any]) -> tuple[str, str, str]:
        """(colour, dash, marker symbol) of a series."""
        colour = self.colours.get(key_value(values[self.series[0]]), "#444")
        i = self.styles.get(tuple(key_value(values[k]) for k in self.series[1:]), 0)
        return colour, _DASHES[i % len(_DASHES)], _SYMBOLS[i % len(_SYMBOLS)]


def spans_decades(values: Iterable[float]) -> bool:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return bool(len(v)) and bool((v > 0).all()) and v.max() / v.min() >= 10


def series_trace(g: pd.DataFrame, label: str, colour: str, dash: str, symbol: str, unit: str,
                 fit: stats.PowerLaw | None, marks: list[str] | None, legend: bool,
                 bars: str = "IQR", x: str = "cfg_layers") -> go.Scatter:
    """Medians (columns median, q1, q3 of `g`) with error bars from q1 to q3, named `bars`
    in the hover, against the column `x`; open markers where unstable, diamonds where
    `marks` has a note; `fit`'s exponent printed at the end of the line."""
    short = "L" if x == "cfg_layers" else x[4:]
    records = g.to_dict("records")
    hover, symbols, sizes = [], [], []
    for i, r in enumerate(records):
        lines = [f"<b>{label}</b> · {short}={r[x]}", f"median {fmt(r['median'], unit)}"
                 f" ({bars} {fmt(r['q1'], unit)} – {fmt(r['q3'], unit)}, n={r['n']})"]
        if r["n"] > 1 and np.isfinite(r["cv"]):
            lines.append(f"CV {r['cv']:.0%}, min {fmt(r['min'], unit)}, max {fmt(r['max'], unit)}")
        shape = symbol
        if marks and marks[i]:
            lines.append(marks[i])
            shape = "diamond"
        if r["unstable"]:
            lines.append(f"⚠ unstable: spread ≥ {fmt_pct(stats.CV_UNSTABLE)} or a repeat far from the median")
            shape += "-open"
        hover.append("<br>".join(lines))
        symbols.append(shape)
        sizes.append(11 if marks and marks[i] else 7)
    text = [""] * len(records)
    if fit is not None and records:
        text[-1] = f"  {short}^{fmt_exponent(fit.k)}"
    return go.Scatter(
        x=g[x], y=g["median"], name=label, legendgroup=label, showlegend=legend,
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
    if unit == "bytes":  # binary, as every size reads: 1, 2, 4, ... MiB
        powers = [e for e in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1)
                  if lo / 1.5 <= 2.0**e <= hi * 1.5]
        step = next(s for s in (1, 2, 5, 10, 20) if len(powers) <= 10 * s)
        ticks = [2.0**e for e in powers if e % step == 0]
        return ticks, [fmt(t, unit) for t in ticks]
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [m * 10.0**e for e in decades for m in (1, 2, 5) if lo / 1.5 <= m * 10.0**e <= hi * 1.5]
    if len(ticks) > 10:
        ticks = [t for t in ticks if f"{t:.0e}".startswith("1")]
    return ticks, [fmt(t, unit) for t in ticks]


def _linear_byte_ticks(values: Iterable[float]) -> tuple[list[float], list[str]]:
    """Ticks from 0 at a round number of the largest binary unit below the top (0, 256 MiB,
    512 MiB, ...): plotly's own tick labels are decimal."""
    v = [x for x in values if x is not None and np.isfinite(x)]
    hi = max(v, default=0.0)
    if hi <= 0:
        return [0.0], ["0 B"]
    scale = next((2.0**p for p in (40, 30, 20, 10) if hi >= 2.0**p), 1.0)
    step = next((s * scale for s in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if hi / (s * scale) <= 8), 1024 * scale)
    ticks = [i * step for i in range(int(hi / step) + 2)]
    return ticks, [fmt(t, "bytes") for t in ticks]


def style_axes(fig: go.Figure, unit: str, ys: Iterable[float], xs: Iterable[float], height: int = 360,
               x_title: str = "layers") -> None:
    """Log axes where a range spans a decade or more; ticks at the measured x values
    (layer counts, or the knob on the x axis); y ticks with the unit."""
    ys = list(ys)
    xs = sorted({x for x in xs if x is not None and np.isfinite(x)})
    log_x, log_y = spans_decades(xs), spans_decades(ys)
    fig.update_xaxes(type="log" if log_x else "linear", title_text=x_title, title_standoff=2, showgrid=True,
                     gridcolor="#eee", zeroline=False, tickvals=xs, ticktext=[str(int(x)) if float(x).is_integer() else f"{x:g}" for x in xs])
    fig.update_yaxes(type="log" if log_y else "linear", showgrid=True, gridcolor="#eee", zeroline=False,
                     rangemode=None if log_y else "tozero")
    if log_y:
        tickvals, ticktext = _log_ticks(ys, unit)
        fig.update_yaxes(tickvals=tickvals, ticktext=ticktext)
    elif unit == "bytes":
        tickvals, ticktext = _linear_byte_ticks(ys)
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


def panels(layout: Layout) -> go.Figure:
    """One panel per facet value side by side, sharing the y axis."""
    return make_subplots(rows=1, cols=len(layout.facets), shared_yaxes=True, horizontal_spacing=0.08,
                         subplot_titles=[layout.facet_label(f) for f in layout.facets] if layout.facet else None)
