"""Compile-time anatomy (spec key anatomy): where the compile goes, per mode, as stacked
areas of the components against layers; each component's scaling law; the passes that
take the most time at the largest point; and the summary's "grows fastest" sentence.
The numbers come from profiler/report/anatomy_figures.py, which this view only lays out."""

from __future__ import annotations

import math

import pandas as pd

from profiler.analysis import stats
from profiler.report import anatomy_figures, registry
from profiler.report.analysis import Analysis
from profiler.report.page import Cell, Figure, Section, Table
from profiler.units import fmt, fmt_exponent, fmt_pct

TOP_EVENTS = 12


def _rows(an: Analysis) -> pd.DataFrame:
    return anatomy_figures.anatomy_rows(an.df)


def _fits(an: Analysis) -> pd.DataFrame:
    return anatomy_figures.fits(_rows(an))


def _fits_table(fits: pd.DataFrame) -> Table:
    rows = []
    for _, f in fits.sort_values(["cfg_mode", "cfg_phase", "k"], ascending=[True, True, False]).iterrows():
        interval = "" if math.isnan(f["k_low"]) else f" [{fmt_exponent(f['k_low'])}, {fmt_exponent(f['k_high'])}]"
        mode = f["cfg_mode"] if f["cfg_phase"] == "main" else f"{f['cfg_mode']} · {f['cfg_phase']}"
        rows.append([Cell(str(mode)), Cell(anatomy_figures.label(f["metric"])),
                     Cell(f"{fmt_exponent(f['k'])}{interval}", f"y = {fmt(f['a'], 's')} · L^{f['k']:.3f}, "
                          f"R² {f['r2']:.3f}, {f['n']} samples", "num"),
                     Cell(fmt(f["seconds_max"], "s"), css="num"), Cell(fmt_pct(f["share_max"]), css="num")])
    return Table(["mode", "component", "k", "at the largest point", "share"], rows,
                 "Each component's y = a · L^k over every ok repeat with an anatomy "
                 f"({stats.CONFIDENCE:.0%} interval in brackets); seconds and share of the profiled compile "
                 "(time_anatomy_compile_s) at the largest layer count, median of repeats.")


def _events_table(an: Analysis) -> Table | None:
    detail = an.df.attrs.get(anatomy_figures.DETAIL_ATTR)
    if detail is None or detail.empty:
        return None
    top = anatomy_figures.top_events(_rows(an), detail, n=TOP_EVENTS)
    rows = [[Cell(str(r["cfg_mode"])), Cell(str(int(r["cfg_layers"]))), Cell(anatomy_figures.label(f"time_xla_{r['component']}_s")),
             Cell(str(r["event"])), Cell(f"{r['calls']:.0f}", css="num"), Cell(fmt(r["wall_s"], "s"), css="num"),
             Cell(fmt(r["self_s"], "s"), "summed over threads", "num"), Cell(fmt_pct(r["share"]), css="num")]
            for _, r in top.iterrows()]
    return Table(["mode", "layers", "component", "event", "calls", "wall", "self (threads)", "share"], rows,
                 f"The {TOP_EVENTS} XLA events with the most wall time at the largest point of each mode, "
                 "median of repeats. Every event of every point: the folder's _anatomy/ "
                 "(profiler.storage.store.load_detail, docs/anatomy.md).")


@registry.section(order=45)
def anatomy_section(an: Analysis) -> Section | None:
    rows = _rows(an)
    if rows.empty:
        return None
    figures = [Figure(f"anatomy-{key.replace(' ', '-')}", f"Where the compile goes: {key}",
                      "XLA's compile of the profiled twin split into disjoint components (docs/anatomy.md); "
                      "the top band, unattributed, is time no event covers.", fig)
               for key, fig in anatomy_figures.stacked_areas(rows).items()]
    figures += [Figure(f"anatomy-trace-{key.replace(' ', '-')}", f"Where the trace goes: {key}",
                       "The profiled twin's trace (Python) by the module that ran: Flax, JAX, the MLIR "
                       "bindings, the user's code, the rest of Python (cProfile self time; docs/anatomy.md).", fig)
                for key, fig in anatomy_figures.stacked_areas(rows, stage="trace").items()]
    tables = [_fits_table(_fits(an))]
    events = _events_table(an)
    if events is not None:
        tables.append(events)
    return Section("anatomy", "Compile-time anatomy",
                   "Timings elsewhere on this page are unprofiled; these components come from a profiled twin "
                   "of each measurement and add up to its compile time.", figures=figures, tables=tables)


@registry.finding(order=65)
def anatomy_lines(an: Analysis) -> list[str]:
    rows = _rows(an)
    if rows.empty:
        return []
    lines = [f.sentence() for f in anatomy_figures.fastest(_fits(an))]
    tail = anatomy_figures.tail_fits(_rows(an))
    if tail is not None:
        table, start = tail
        lines += [f.sentence(since=start) for f in anatomy_figures.fastest(table) if f.grows]
    return lines
