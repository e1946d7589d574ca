"""The report's anatomy section, as pure functions of a results folder's tables.

`rows` is `store.load(DIR)` (or `pandas.read_parquet(DIR)`), `detail` is
`store.load_detail(DIR)`. Nothing here imports JAX or knows how the numbers were
measured (profiler/measurement/anatomy/ does); the report renders what these return.

Shares are of the profiled twin's compile (`time_anatomy_compile_s`), the time the
components split; the row's own `time_compile_s` is the unprofiled one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from profiler.analysis import stats
from profiler.measurement.anatomy import taxonomy

DETAIL_ATTR = "anatomy_detail"
"""Key of a results DataFrame's `attrs` under which the report hands a folder's anatomy
detail (store.load_detail) to its anatomy view."""

SHARE_FLOOR = 0.05
"""A component below this share of the compile at the largest point is not named as the
fastest-growing one: a few milliseconds fit any slope."""


def component_columns(rows: pd.DataFrame, stage: str = "compile") -> list[str]:
    """The stage's component columns that hold data, in taxonomy order, unattributed last."""
    names = taxonomy.COMPILE_COMPONENTS if stage == "compile" else tuple(c for c, _ in taxonomy.PYTHON_COMPONENTS)
    columns = [taxonomy.column(stage, c) for c in (*names, taxonomy.UNATTRIBUTED)]
    return [c for c in columns if stats.has_data(rows, c)]


def label(column: str) -> str:
    """'time_xla_copy_insertion_s' → 'copy insertion'."""
    for prefix in ("time_xla_", "time_trace_", "time_lower_"):
        if column.startswith(prefix):
            return column[len(prefix):-2].replace("_", " ")
    return column


def anatomy_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The ok rows that carry an anatomy."""
    rows = stats.ok_rows(rows)
    return rows[rows["time_anatomy_compile_s"].notna()] if "time_anatomy_compile_s" in rows else rows.iloc[:0]


def medians(rows: pd.DataFrame, stage: str = "compile") -> pd.DataFrame:
    """Median over repeats of each component and of the stage's profiled total, per
    (mode, phase, layers)."""
    rows = anatomy_rows(rows)
    total = f"time_anatomy_{stage}_s"
    columns = [*component_columns(rows, stage), total]
    return rows.groupby(["cfg_mode", "cfg_phase", "cfg_layers"])[columns].median().reset_index()


def stacked_areas(rows: pd.DataFrame, stage: str = "compile") -> dict[str, go.Figure]:
    """Per (mode, phase): the components stacked against the layer count."""
    components = component_columns(anatomy_rows(rows), stage)
    if not components:
        return {}
    table = medians(rows, stage)
    colours = {c: qualitative.Dark24[i % len(qualitative.Dark24)] for i, c in enumerate(components)}
    figures = {}
    for (mode, phase), g in table.groupby(["cfg_mode", "cfg_phase"], sort=True):
        g = g.sort_values("cfg_layers")
        fig = go.Figure()
        for c in components:
            fig.add_trace(go.Scatter(
                x=g["cfg_layers"], y=g[c], name=label(c), stackgroup="one", mode="lines",
                line={"width": 0.5, "color": colours[c]},
                hovertemplate=f"{label(c)}: %{{y:.3f}} s at %{{x}} layers<extra></extra>"))
        key = mode if phase == "main" else f"{mode} {phase}"
        fig.update_layout(
            title=f"Where the {stage} goes: {key} (profiled twin, median of repeats)",
            xaxis_title="layers", yaxis_title="seconds", height=380, legend={"traceorder": "reversed"})
        figures[key] = fig
    return figures


def rescaled(rows: pd.DataFrame, basis: str, stage: str = "compile") -> pd.DataFrame:
    """Rows whose components are their share of the profiled stage times the row's own
    `basis` column (e.g. the unprofiled time_compile_cpu_s). On a machine that other jobs
    load, wall times swing with the load while a component's share does not, so shares of a
    CPU time give steadier slopes than the profiled wall seconds."""
    rows = anatomy_rows(rows).copy()
    total = rows[f"time_anatomy_{stage}_s"]
    for c in component_columns(rows, stage):
        rows[c] = rows[c] / total * rows[basis]
    rows[f"time_anatomy_{stage}_s"] = rows[basis]
    return rows


def fits(rows: pd.DataFrame, stage: str = "compile", min_layers: int = 1) -> pd.DataFrame:
    """Each component's a·L^k per (mode, phase) from the raw repeats at `min_layers` and
    above, with its share of the stage at the largest layer count: columns cfg_mode,
    cfg_phase, metric, a, k, k_low, k_high, n, r2, layers_max, seconds_max, share_max."""
    rows = anatomy_rows(rows)
    rows = rows[rows["cfg_layers"] >= min_layers]
    table = stats.fit_table(rows, component_columns(rows, stage), ["cfg_mode", "cfg_phase"])
    if table.empty:
        return table.assign(layers_max=[], seconds_max=[], share_max=[])
    top = medians(rows, stage)
    top = top.loc[top.groupby(["cfg_mode", "cfg_phase"])["cfg_layers"].idxmax()]
    total = f"time_anatomy_{stage}_s"
    extra = []
    for _, fit in table.iterrows():
        at = top[(top["cfg_mode"] == fit["cfg_mode"]) & (top["cfg_phase"] == fit["cfg_phase"])].iloc[0]
        extra.append({"layers_max": int(at["cfg_layers"]), "seconds_max": float(at[fit["metric"]]),
                      "share_max": float(at[fit["metric"]] / at[total]) if at[total] else math.nan})
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(extra)], axis=1)


TAIL = 3
"""Layer counts at the deep end that `tail_fits` fits: where a superlinear part shows."""


def tail_fits(rows: pd.DataFrame, stage: str = "compile") -> tuple[pd.DataFrame, int] | None:
    """`fits` over the TAIL largest layer counts only, and the smallest of them; None when
    the rows have fewer than TAIL + 1 layer counts (the tail would be the whole range)."""
    counts = sorted(anatomy_rows(rows)["cfg_layers"].unique())
    if len(counts) <= TAIL:
        return None
    start = int(counts[-TAIL])
    return fits(rows, stage, min_layers=start), start


@dataclass(frozen=True)
class Finding:
    mode: str
    phase: str
    component: str
    k: float
    k_low: float
    k_high: float
    share: float
    layers: int

    @property
    def grows(self) -> bool:
        """Whether the slope is known to be above zero (its interval excludes 0)."""
        return self.k_low > 0 if not math.isnan(self.k_low) else self.k > 0.2

    def sentence(self, since: int | None = None) -> str:
        """The finding in words; `since`: the fit covered only layer counts from there on."""
        where = self.mode if self.phase == "main" else f"{self.mode} ({self.phase})"
        if since is not None:
            where = f"{where} mode from {since} layers on"
            return self._sentence(where).replace(f"In {where} mode,", f"In {where},")
        return self._sentence(where)

    def _sentence(self, where: str) -> str:
        interval = "" if math.isnan(self.k_low) else f" (95% interval {self.k_low:.2f} to {self.k_high:.2f})"
        if not self.grows:
            return (f"In {where} mode, no component of the compile grows measurably with depth: the steepest, "
                    f"{label(self.component)}, has L^{self.k:.2f}{interval}, {self.share:.0%} of the profiled "
                    f"compile at {self.layers} layers.")
        return (f"In {where} mode, {label(self.component)} grows fastest, as L^{self.k:.2f}{interval}, "
                f"and is {self.share:.0%} of the profiled compile at {self.layers} layers.")


def fastest(table: pd.DataFrame) -> list[Finding]:
    """Per (mode, phase) of a `fits` table: the component with the steepest slope among
    those holding at least SHARE_FLOOR of the compile at the largest point."""
    findings = []
    named = table[~table["metric"].str.endswith(f"_{taxonomy.UNATTRIBUTED}_s")]
    for (mode, phase), g in named.groupby(["cfg_mode", "cfg_phase"], sort=True):
        g = g[g["share_max"] >= SHARE_FLOOR]
        if g.empty:
            continue
        best = g.loc[g["k"].idxmax()]
        findings.append(Finding(mode, phase, best["metric"], float(best["k"]), float(best["k_low"]),
                                float(best["k_high"]), float(best["share_max"]), int(best["layers_max"])))
    return findings


def top_events(rows: pd.DataFrame, detail: pd.DataFrame, stage: str = "compile", n: int = 10) -> pd.DataFrame:
    """The `n` events with the most wall time at the largest layer count of each (mode,
    phase), median over repeats: columns cfg_mode, cfg_phase, cfg_layers, component,
    event, calls, wall_s, self_s, share."""
    rows = anatomy_rows(rows)
    keys = ["run_point_id", "run_repeat", "cfg_phase"]
    columns = ["cfg_mode", "cfg_phase", "cfg_layers", "component", "event", "calls", "wall_s", "self_s", "share"]
    if rows.empty or detail.empty:
        return pd.DataFrame(columns=columns)
    largest = rows[rows["cfg_layers"] == rows.groupby("cfg_mode")["cfg_layers"].transform("max")]
    joined = detail[detail["stage"] == stage].merge(
        largest[[*keys, "cfg_mode", "cfg_layers", f"time_anatomy_{stage}_s"]], on=keys)
    joined["share"] = joined["wall_s"] / joined[f"time_anatomy_{stage}_s"]
    per = joined.groupby(["cfg_mode", "cfg_phase", "cfg_layers", "component", "event"])[
        ["calls", "wall_s", "self_s", "share"]].median().reset_index()
    per = per.sort_values("wall_s", ascending=False)
    return per.groupby(["cfg_mode", "cfg_phase"], sort=True).head(n)[columns].reset_index(drop=True)


def coverage(rows: pd.DataFrame) -> pd.DataFrame:
    """Share of each row's profiled compile the named components account for, and the
    profiler's slowdown of the compile (profiled twin over the row's own compile)."""
    rows = anatomy_rows(rows)
    unattributed = taxonomy.column("compile", taxonomy.UNATTRIBUTED)
    out = rows[["cfg_mode", "cfg_phase", "cfg_layers", "run_repeat"]].copy()
    out["named_share"] = 1 - rows[unattributed] / rows["time_anatomy_compile_s"]
    out["profiled_over_plain"] = rows["time_anatomy_compile_s"] / rows["time_compile_s"]
    return out.sort_values(["cfg_mode", "cfg_phase", "cfg_layers", "run_repeat"]).reset_index(drop=True)


def moved(a: pd.DataFrame, b: pd.DataFrame, stage: str = "compile") -> pd.DataFrame:
    """Which components moved between two results folders' rows (a JAX upgrade that made
    compiles slower: which part): compare's ratio table (stats.ratio_table) B / A of each component, per
    point present in both, with `delta_s` = median B - median A, largest moves first."""
    a, b = anatomy_rows(a), anatomy_rows(b)
    components = [c for c in component_columns(a, stage) if c in component_columns(b, stage)]
    table = stats.ratio_table(a, b, metrics=components)
    table["delta_s"] = table["median_b"] - table["median_a"]
    return table.sort_values("delta_s", key=abs, ascending=False).reset_index(drop=True)
