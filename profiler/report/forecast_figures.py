"""The report's forecast builders: each series' fitted curve (series_curves), the band
ahead of it, the validation table, the growth sentences, and the figure of measured
medians, the chosen model drawn past the last measured depth and its prediction interval
as a band (profiler/analysis/forecast/ fits them).

Kept in the report so that `python -m profiler forecast` and `plan` never import plotly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from profiler.analysis import stats
from profiler.analysis.forecast import (
    BOOTSTRAP,
    MIN_DEPTHS,
    MODEL_TEXT,
    Curve,
    metric_curve,
    prepare,
)

REPORT_METRICS = ("time_to_compiled_s", "time_compile_s", "time_step_median_s", "size_hlo_instructions",
                  "mem_footprint_bytes")
REACH = 3.0
"""How far past the largest measured depth the report draws a forecast (3x: 128 -> 384)."""


def series_curves(df: pd.DataFrame, metrics: Sequence[str] = REPORT_METRICS,
                  *, bootstrap: int = BOOTSTRAP) -> list[tuple[dict[str, Any], str, Curve]]:
    """(series keys, metric, fitted Curve) for every series of the results (all varying
    cfg_ columns but layers) and metric that has enough depths; the others are left out."""
    df = prepare(df)
    keys = [c for c in stats.varying(df, stats.config_columns(df)) if c not in ("cfg_layers", "cfg_run", "cfg_steps")]
    out = []
    for values, group in stats.groups(df, keys):
        series = {c: stats.key_value(v) for c, v in values.items()}
        for metric in metrics:
            if not stats.has_data(group, metric):
                continue
            rows = group[["cfg_layers", metric]].dropna()
            if rows["cfg_layers"].nunique() < MIN_DEPTHS:
                continue
            top = float(rows["cfg_layers"].max()) * REACH
            out.append((series, metric, metric_curve(rows, metric, top, bootstrap=bootstrap)))
    return out


def band(curve: Curve, reach: float = REACH, points: int = 24) -> pd.DataFrame:
    """The curve from its largest measured depth to `reach` times it: layers, predicted, low, high."""
    top = float(curve.depths[-1])
    layers = np.geomspace(top, top * reach, points)
    values = np.array([curve.at(x) for x in layers])
    return pd.DataFrame({"layers": layers, "predicted": values[:, 0], "low": values[:, 1], "high": values[:, 2]})


def validation_table(curves: Sequence[tuple[dict[str, Any], str, Curve]]) -> pd.DataFrame:
    """One row per series and metric: the chosen model and its fit, its leave-largest-out
    errors, every candidate's validation error, and the growth at depth (local exponent
    d log y / d log L at the largest measured depth)."""
    records = []
    for series, metric, curve in curves:
        folds = "; ".join(f"{f.train_max:g} -> {f.test:g}: {f.error:+.1%}" for f in curve.chosen.folds)
        records.append({**series, "metric": metric, "model": MODEL_TEXT[curve.fit.model], "fit": curve.fit.formula,
                        "validation_error": curve.chosen.score, "folds": folds,
                        "growth": curve.growth, "at_layers": float(curve.depths[-1]),
                        **{f"error_{c.model}": c.score for c in curve.candidates}})
    return pd.DataFrame.from_records(records)


def growth_lines(curves: Sequence[tuple[dict[str, Any], str, Curve]],
                 metrics: Sequence[str] = ("time_to_compiled_s", "size_hlo_instructions")) -> list[str]:
    """Summary sentences: how each metric grows at the largest measured depth, per series,
    by the chosen model's local exponent (not one power law over all depths, which at
    small depths measures fixed costs)."""
    lines = []
    for metric in metrics:
        chosen = [(s, c) for s, m, c in curves if m == metric]
        if not chosen:
            continue
        depth = max(float(c.depths[-1]) for _, c in chosen)
        parts = ", ".join(f"{_label(s)} L^{c.growth:.2f} ({MODEL_TEXT[c.fit.model]})" for s, c in chosen)
        lines.append(f"{metric} at {depth:g} layers grows as {parts}: local exponent d log y / d log L "
                     "of the model chosen by leave-largest-out validation")
    return lines


def _label(series: Mapping[str, Any]) -> str:
    return " ".join(f"{k.removeprefix('cfg_')}={v}" for k, v in series.items()) or "all"


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def forecast_figure(curves: Sequence[tuple[dict[str, Any], str, Curve]], metric: str, unit: str = "",
                    reach: float = REACH) -> go.Figure | None:
    """One figure of `metric` against layers: per series, the measured medians (markers),
    the model through them (solid), its forecast to `reach` times the largest depth
    (dashed) and the prediction interval there (band). None when no series has it."""
    chosen = [(s, c) for s, m, c in curves if m == metric]
    if not chosen:
        return None
    fig = go.Figure()
    for i, (series, curve) in enumerate(chosen):
        colour = _COLOURS[i % len(_COLOURS)]
        name = " ".join(f"{k.removeprefix('cfg_')}={v}" for k, v in series.items()) or metric
        ahead = band(curve, reach)
        fig.add_trace(go.Scatter(
            x=np.concatenate([ahead["layers"], ahead["layers"][::-1]]),
            y=np.concatenate([ahead["high"], ahead["low"][::-1]]), fill="toself", fillcolor=_rgba(colour, 0.15),
            line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=name))
        inside = np.geomspace(curve.depths[0], curve.depths[-1], 40)
        fig.add_trace(go.Scatter(x=inside, y=curve.fit(inside), mode="lines", line={"color": colour},
                                 hoverinfo="skip", showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(
            x=ahead["layers"], y=ahead["predicted"], mode="lines", line={"color": colour, "dash": "dash"},
            customdata=np.column_stack([ahead["low"], ahead["high"]]), legendgroup=name, showlegend=False,
            hovertemplate=f"{name}<br>L=%{{x:.0f}}: %{{y:.4g}} {unit} forecast"
                          f"<br>interval %{{customdata[0]:.4g}} to %{{customdata[1]:.4g}}<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=curve.depths, y=curve.medians, mode="markers", marker={"color": colour, "size": 8}, name=name,
            legendgroup=name, hovertemplate=f"{name}<br>L=%{{x}}: %{{y:.4g}} {unit} measured<extra></extra>"))
    fig.update_layout(
        title=f"{metric}: measured (markers), model (line), forecast to {reach:g}x the deepest point "
              "(dashed) with its interval (band)",
        xaxis={"title": "layers", "type": "log"}, yaxis={"title": unit or metric, "type": "log"},
        height=380, margin={"l": 60, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    return fig
