"""The report's forecast figure: measured medians, the chosen model drawn past the last
measured depth, and its prediction interval as a band (profiler/forecast.py fits them).

A pure builder, kept apart from profiler/forecast.py so that `python -m profiler
forecast` and `plan` never import plotly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from profiler.forecast import REACH, Curve, band

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
