"""Pages: the report of a results folder, any page's rendering (Jinja templates, plotly.js
embedded once, figures as JSON), atomic writes and the index of a reports folder.

Every string that comes from the data (spec, errors, environment) reaches the page
through Jinja's autoescape or through JSON with `<`, `>` and `&` escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from profiler.analysis import stats
from profiler.measurement import env
from profiler.report import anatomy_figures, registry
from profiler.report.analysis import Analysis
from profiler.report.environment import (
    describe_environment,
    environment_table,
    environment_warnings,
)
from profiler.report.page import Figure
from profiler.report.views.forecast import FIT_ATTR
from profiler.storage import store
from profiler.storage.files import write_atomic

TEMPLATES = Path(__file__).resolve().parent / "templates"
META_ID = "profiler-report-meta"


def reports_folder() -> Path:
    """Where pages go by default: reports/ under the current working directory (as
    pytest-benchmark's .benchmarks/), read when a page is written."""
    return Path.cwd() / "reports"


def _jinja() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` survive."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(template: str, **context: Any) -> str:
    """A page from `template` with plotly.js embedded once and the figures as JSON."""
    figs: list[Figure] = context.pop("figures_list", [])
    payload = "{" + ",".join(
        f"{json.dumps(f.id)}:{pio.to_json(f.figure, validate=False)}" for f in figs) + "}"
    return _jinja().get_template(template).render(
        plotly_js=get_plotlyjs(), figures_json=script_json(payload),
        meta_json=script_json(context.get("meta", {})), meta_id=META_ID, **context)


def write_report(folder: str | Path, out: str | Path | None = None, *, rows: pd.DataFrame | None = None,
                 fit: tuple[str, ...] | list[str] = ()) -> Path:
    """Write the HTML report of a results folder; return its path.

    Default `out`: reports/<folder name>.html under the current working directory. The
    index of the folder the report lands in is refreshed (see `write_index`). `rows`:
    the folder's rows, when the caller has loaded them already (`store.load(folder)`);
    `fit`: conditions ('layers<=4') that keep the points the forecast section fits; its
    backtest table checks them against the others.
    """
    folder = Path(folder)
    df = store.load(folder) if rows is None else rows
    df.attrs[anatomy_figures.DETAIL_ATTR] = store.load_detail(folder)  # for views/anatomy.py
    if fit:  # for views/forecast.py: fit on the points these conditions keep, backtest on the others
        df.attrs[FIT_ATTR] = tuple(fit)
    out = Path(out) if out else reports_folder() / f"{folder.resolve().name}.html"
    return write_page(out, report_html(df, store.read_manifest(folder), str(folder)))


def report_html(df: pd.DataFrame, manifest: Mapping[str, Any] | None = None, source: str = "") -> str:
    """The report page of a results DataFrame (`manifest`: the folder's, if any)."""
    manifest = manifest or {}
    an = Analysis(df)
    env_values = stats.environment(an.ok if len(an.ok) else an.df)
    sections = registry.sections(an)
    names = df["run_sweep"].dropna().unique().tolist()
    title = ", ".join(map(str, names)) or Path(source).name or "results"
    points = df.drop_duplicates(["run_point_id", "cfg_phase"])
    meta = {
        "kind": "report", "title": title, "folder": source, "created_utc": env.utc_now(),
        "started_utc": manifest.get("started_utc") or next(iter(sorted(df["run_started_utc"].dropna())), None),
        "environment": describe_environment(env_values), "points": len(points),
        "rows": len(df), "failed": int((df["run_status"] != "ok").sum()),
    }
    return render(
        "report.html.j2", title=title, meta=meta, headline=registry.findings(an),
        warnings=environment_warnings(env_values), sections=sections,
        figures_list=[f for s in sections for f in s.figures],
        environment=environment_table(env_values),
        spec=sorted((str(k), json.dumps(v)) for k, v in (manifest.get("spec") or {}).items()),
        layout=an.layout, folder=source,
    )


def figures(df: pd.DataFrame) -> dict[str, Any]:
    """The report's figures by id (plotly figures), for showing inline in a notebook."""
    return {f.id: f.figure for s in registry.sections(Analysis(df)) for f in s.figures}


def write_page(out: Path, page: str) -> Path:
    """Write a page atomically and refresh the index beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page, durable=False)
    write_index(out.parent)
    return out


_META = re.compile(rf'<script type="application/json" id="{META_ID}">(.*?)</script>', re.S)


def read_meta(page: Path) -> dict[str, Any] | None:
    """The metadata a report carries for the index; None for any other HTML file."""
    try:
        with open(page, encoding="utf-8") as f:
            head = f.read(20000)  # the metadata sits in <head>, before plotly.js
    except (OSError, UnicodeDecodeError):
        return None
    match = _META.search(head)
    if not match:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def write_index(directory: str | Path) -> Path | None:
    """(Re)write `index.html` in `directory`, listing every report there, newest first.
    An index.html that this module did not write is left alone (None is returned)."""
    directory = Path(directory)
    index = directory / "index.html"
    if index.exists() and read_meta(index) is None:
        return None
    entries = []
    for page in sorted(directory.glob("*.html")):
        meta = read_meta(page)
        if page.name != "index.html" and meta is not None:
            entries.append({**meta, "href": page.name})
    entries.sort(key=lambda e: e.get("created_utc") or "", reverse=True)
    text = _jinja().get_template("index.html.j2").render(
        entries=entries, meta_json=script_json({"kind": "index"}), meta_id=META_ID)
    write_atomic(index, text, durable=False)
    return index
