"""Forecasts as text: the command line's report."""

from __future__ import annotations

import math
from collections.abc import Sequence

from profiler.analysis.forecast.target import Forecast
from profiler.units import fmt


def format_text(forecasts: Sequence[Forecast]) -> str:
    """Forecasts grouped by series: one line per metric, then how each was made."""
    lines: list[str] = []
    by_series: dict[tuple, list[Forecast]] = {}
    for f in forecasts:
        by_series.setdefault(tuple(sorted(f.series.items(), key=str)), []).append(f)
    for key, group in by_series.items():
        what = " ".join(f"{k}={v}" for k, v in key) or "all rows"
        goal = " ".join(f"{k}={v}" for k, v in group[0].target.items())
        depths = sorted({p["layers"] for p in group[0].based_on})
        lines.append(f"{what} -> {goal}  (from layers {', '.join(f'{d:g}' for d in depths)})")
        width = max(len(f.metric) for f in group)
        for f in group:
            err = f"validation error {f.validation_error:.1%}" if math.isfinite(f.validation_error) else "not validated"
            held = ""
            if f.held_out is not None:  # --fit held this point out: the forecast checked against it
                inside = "inside" if f.low <= f.held_out <= f.high else "OUTSIDE"
                off = f" ({(f.predicted - f.held_out) / f.held_out:+.1%})" if f.held_out else ""
                held = f"  measured (held out) {fmt(f.held_out, f.unit)}{off}, {inside} the interval;"
            lines.append(f"  {f.metric:<{width}}  {fmt(f.predicted, f.unit):>11}  [{fmt(f.low, f.unit)}, "
                         f"{fmt(f.high, f.unit)}]{held}  {err}; {f.model}")
        exact = [f for f in group if f.exact]
        if exact:
            lines.append(f"  exact metrics ({', '.join(f.metric for f in exact)}): compile the target "
                         f"abstractly to measure them instead of forecasting (one compile, nothing allocated):")
            lines.append(f"    {exact[0].measure}")
        lines.append("")
    lines.append("interval: ±(validation error per log-extrapolation × distance + residual, repeat spread "
                 "and bootstrap in quadrature); for timings the upper end also allows the depth-dependent part to grow as "
                 "L^2 past the deepest point; docs/forecast.md")
    return "\n".join(lines)
