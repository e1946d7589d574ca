"""Failures: every measurement that did not end ok, with its error."""

from __future__ import annotations

from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.page import Cell, Section, Table


@registry.section(order=90)
def failures_section(an: Analysis) -> Section | None:
    bad = an.df[an.df["run_status"] != "ok"]
    if bad.empty:
        return None
    keys = [k for k in an.point_columns() if k in bad.columns]
    rows = [
        [*(Cell(str(key_value(r[k]) if key_value(r[k]) is not None else "–")) for k in keys),
         Cell(str(key_value(r.get("cfg_phase")) or "–")), Cell(str(r["run_repeat"])),
         Cell(str(r["run_status"]), css="bad"), Cell(str(r["run_error"] or ""), css="error")]
        for r in bad.sort_values(["run_status", *keys]).to_dict("records")
    ]
    return Section("failures", "Failures", tables=[Table([*[k[4:] for k in keys], "phase", "repeat", "status", "error"], rows)])
