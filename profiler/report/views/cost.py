"""What the summary says about cost: points whose cost is a lower bound, and how far XLA's
raw FLOP count is from the corrected one (profiler/measurement/cost.py, docs/cost.md)."""

from __future__ import annotations

from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.units import fmt_pct, fmt_ratio

# Corrected and raw counts differing by more than this are marked (◆) and counted.
RAW_DIFFERS = 0.10


def inexact_points(an: Analysis) -> int:
    """Points with a loop of unknown trip count: their cost is a lower bound."""
    if not an.has("cost_exact"):
        return 0
    inexact = an.ok[~an.ok["cost_exact"].fillna(True).astype(bool)]
    return int(inexact["run_point_id"].nunique())


def inexact_line(an: Analysis) -> str:
    return (f"{inexact_points(an)} point(s) contain a loop whose trip count is unknown "
            "(data-dependent while): their cost is a lower bound (cost_exact = false).")


@registry.finding(order=70)
def cost_lines(an: Analysis) -> list[str]:
    lines = [inexact_line(an)] if inexact_points(an) else []
    if not (an.has("cost_flops") and an.has("cost_xla_flops")):
        return lines
    med = an.medians.dropna(subset=["cost_flops", "cost_xla_flops"])
    med = med[med["cost_xla_flops"] > 0]
    ratio = med["cost_flops"] / med["cost_xla_flops"]
    differ = (ratio - 1).abs() > RAW_DIFFERS
    limit = fmt_pct(RAW_DIFFERS)
    if not differ.any():
        return [*lines, f"XLA's raw FLOP count matches the corrected one within {limit} at all {len(med)} points."]
    worst = med.loc[(ratio - 1).abs().idxmax()]
    at = f", {an.layout.x_title}={worst[an.x]}" if an.x else ""  # no x axis: a grid of one depth
    return [*lines, f"XLA's raw FLOP count is off by more than {limit} at {int(differ.sum())} of {len(med)} points "
            f"(worst: {an.layout.label(worst)}{at}: corrected = {fmt_ratio(ratio.max())} raw)."]
