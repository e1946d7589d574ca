"""Break-even: which mode has a compiled program first, which steps faster, and after how
many steps the faster-stepping one catches up (stats.break_even_table)."""

from __future__ import annotations

import numpy as np

from profiler.analysis import stats
from profiler.analysis.stats import key_value
from profiler.report import registry
from profiler.report.analysis import Analysis, where_text
from profiler.report.page import Cell, Section, Table
from profiler.units import fmt


@registry.section(order=20)
def break_even_section(an: Analysis) -> Section | None:
    be = an.break_even()
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
    table = Table(columns, rows, "Time to first result = trace + lower + compile + n · step (medians). "
                  "The mode that compiles sooner leads until the faster-stepping one catches up after the "
                  "break-even step count." + ("" if stepped else " Steps were not run (spec key run = false), "
                                               "so only the time to a compiled program is compared."))
    return Section("break-even", "Break-even", tables=[table])


@registry.finding(order=30)
def break_even_lines(an: Analysis) -> list[str]:
    be = an.break_even()
    if be.empty:
        return []
    where = {k: v for k, v in an.representative(["cfg_mode"]).items() if k in be.columns}
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
        line = f"{w} reaches a compiled program before {b if w == a else a} {since}{where_text(where)}"
        top = g.iloc[-1]
        if top["faster_step"] is not None and np.isfinite(top["break_even_steps"]):
            line += (f"; at {top['cfg_layers']} layers {top['faster_step']}'s faster step catches up after "
                     f"{top['break_even_steps']:,.0f} steps")
        elif top["faster_step"] is not None:
            line += f"; at {top['cfg_layers']} layers it also steps faster, so it stays ahead"
        lines.append(line + ".")
    return lines
