"""Failures: every measurement that did not end ok, with its error (the report's section,
and the table `compare` shows for its two folders)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.page import Cell, Section, Table
from profiler.units import MISSING


def failures_table(sides: Mapping[str, pd.DataFrame], keys: Sequence[str]) -> Table | None:
    """One line per row of `sides` that did not end ok, by its `keys`, phase and repeat,
    with its status and error; led by the side's name when there are several (compare's A
    and B). None when every row is ok."""
    named = len(sides) > 1
    keys = [k for k in keys if k != "cfg_phase"]
    rows = []
    for side, df in sides.items():
        bad = df[df["run_status"] != "ok"]
        rows += [
            [*([Cell(side)] if named else []),
             *(Cell(str(key_value(r.get(k)) if key_value(r.get(k)) is not None else MISSING)) for k in keys),
             Cell(str(key_value(r.get("cfg_phase")) or MISSING)), Cell(str(r["run_repeat"])),
             Cell(str(r["run_status"]), css="bad"), Cell(str(r["run_error"] or ""), css="error")]
            for r in bad.sort_values(["run_status", *(k for k in keys if k in bad.columns)]).to_dict("records")
        ]
    if not rows:
        return None
    return Table([*([""] if named else []), *[k[4:] for k in keys], "phase", "repeat", "status", "error"], rows)


@registry.section(order=90)
def failures_section(an: Analysis) -> Section | None:
    keys = [k for k in an.point_columns() if k in an.df.columns]
    table = failures_table({"": an.df}, keys)
    return None if table is None else Section("failures", "Failures", tables=[table])
