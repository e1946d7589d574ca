"""The summary's last word: how many points have an unstable timing, how many
measurements failed."""

from __future__ import annotations

from profiler.report import registry
from profiler.report.analysis import Analysis


@registry.finding(order=90)
def health_lines(an: Analysis) -> list[str]:
    lines = []
    timing = an.summary[an.summary["metric"].str.startswith("time_")]
    if len(timing):
        per_point = timing.groupby(an.point_columns(), dropna=False, sort=False)["unstable"].any()
        if per_point.any():
            lines.append(f"{int(per_point.sum())} of {len(per_point)} points have an unstable timing "
                         "(⚠ in the medians table, open markers in the figures): differences smaller than their spread are noise.")
    bad = an.df[an.df["run_status"] != "ok"]
    if len(bad):
        counts = sorted(bad["run_status"].value_counts().items(), key=lambda kn: (-kn[1], kn[0]))
        kinds = ", ".join(f"{k} {n}" for k, n in counts)
        lines.append(f"{len(bad)} of {len(an.df)} measurements failed ({kinds}): see Failures.")
    return lines
