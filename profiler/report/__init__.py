"""The HTML report of a results folder: figures, fitted scaling laws, break-even, tables,
and a summary generated from the data.

`write_report(folder)` writes one self-contained page (plotly.js embedded once, nothing
fetched from the network) and refreshes the index of the folder it lands in;
`figures(df)` returns the same figures for a notebook. The report is generic over the
configuration: the x axis is `cfg_layers` when it varies, else the numeric `cfg_` column
with the most values (a program factory's knob included; none: a table of numbers, no
curves), every other `cfg_` column that varies becomes a facet (the hidden size, or another numeric key) or a line of its own. It knows
nothing about JAX: it reads rows.

Modules, one job each:
  columns      how each column reads: title, short name, unit, drawn or not (pandas-free)
  format       numbers with units, ratios, exponents; the order of values (pandas-free)
  page         Cell, Table, Figure, Section: what a page is made of (pandas-free)
  style        Layout (configuration -> lines, colours, panels) and plotly styling
  analysis     Analysis: spreads, medians, fits and contrasts, computed once per page
  environment  environment table and warnings (which facts differ: profiler/analysis/machines.py)
  registry     where sections and findings are registered, in page order
  views/       one module per subject: its figures, tables and summary sentences
  forecast_figures  the forecast's curves per series, bands, validation table, figure
  anatomy_figures   the anatomy's fits, findings, top events and stacked areas
  render       templates, report_html, write_report, write_index, read_meta

Adding a figure, a table or a summary sentence (docs/report.md has the orders in use):
one new module in views/, e.g. views/anatomy.py:

    from profiler.report import registry
    from profiler.report.analysis import Analysis
    from profiler.report.page import Figure, Section

    @registry.section(order=45)          # between Decode (40) and Medians (80)
    def anatomy(an: Analysis) -> Section | None:
        if not an.has("time_anatomy_s"):
            return None                  # nothing to show for this data: no section
        return Section("anatomy", "Compile-time anatomy", figures=[Figure(...)])

    @registry.finding(order=65)
    def anatomy_lines(an: Analysis) -> list[str]:
        return [f"... {fmt(...)} ..."]   # sentences computed from an's numbers

Every module in views/ is imported when a page is built; `profiler.figures(df)` returns
the new figure by its id. Nothing else changes.

Public API: write_report, report_html, write_index, read_meta, figures (and write_page,
render, the pieces `compare` builds its page from). They are imported on first use, so
that `import profiler.report.columns` (used by text-only commands) loads no plotting.
"""

from typing import Any

_LAZY = {
    "write_report": "render", "report_html": "render", "write_index": "render", "read_meta": "render",
    "write_page": "render", "render": "render", "figures": "render", "reports_folder": "render",
    "Analysis": "analysis", "environment_warnings": "environment",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"profiler.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'profiler.report' has no attribute {name!r}")
