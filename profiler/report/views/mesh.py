"""Sharded training: what one device holds against a memory budget, and how long each
layout takes to compile, by mode, remat and mesh. Shown only for results with per-device
parameter bytes (a training step of a block family, docs/models.md)."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.page import Cell, Figure, Section, Table
from profiler.report.style import FONT
from profiler.units import fmt

BUDGET_BYTES = 80 * 2**30
"""The device memory a layout must fit: 80 GiB, an A100/H100-80GB class accelerator."""

KEYS = ["cfg_mode", "cfg_remat", "cfg_mesh"]
METRICS = ["mem_footprint_bytes", "mem_param_device_bytes", "mem_grad_device_bytes",
           "mem_optimizer_state_device_bytes", "mem_temp_bytes", "time_compile_s", "time_compile_cpu_s"]


def _medians(an: Analysis):
    rows = an.ok[an.ok["mem_param_device_bytes"].notna()]
    if "run_started_utc" in rows:  # values in the order the sweep measured them
        rows = rows.sort_values("run_started_utc")
    if rows.empty or not all(k in rows for k in KEYS):
        return None
    # devices follows the mesh: not a key of its own here.
    others = [k for k in an.layout.keys if k not in (*KEYS, "cfg_devices") and rows[k].nunique(dropna=False) > 1]
    table = rows.groupby(others + KEYS, dropna=False)[METRICS].median().reset_index()
    order = {k: {v: i for i, v in enumerate(dict.fromkeys(rows[k]))} for k in KEYS}
    table = table.sort_values(others + KEYS, key=lambda c: c.map(order[c.name]) if c.name in order else c)
    return table, others


def _label(row, keys) -> str:
    return " ".join(f"{row[k]}" for k in keys)


def mesh_figure(table, others) -> Figure:
    """Per-device footprint (bars, the budget as a line) and compile time, one bar per
    (mode, remat) group and one colour per mesh."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=["memory per device (XLA footprint)", "compile time"])
    groups = [_label(r, others + ["cfg_mode", "cfg_remat"]) for _, r in table.iterrows()]
    for mesh in dict.fromkeys(table["cfg_mesh"]):
        at = table["cfg_mesh"] == mesh
        x = [g for g, keep in zip(groups, at, strict=True) if keep]
        fig.add_trace(go.Bar(x=x, y=table.loc[at, "mem_footprint_bytes"] / 2**30, name=f"mesh {mesh}",
                             legendgroup=mesh, hovertemplate="%{y:.1f} GiB"), row=1, col=1)
        fig.add_trace(go.Bar(x=x, y=table.loc[at, "time_compile_s"], name=f"mesh {mesh}", legendgroup=mesh,
                             showlegend=False, hovertemplate="%{y:.0f} s"), row=2, col=1)
    fig.add_hline(y=BUDGET_BYTES / 2**30, line_dash="dash", line_color="#c00", row=1, col=1,
                  annotation_text=f"budget {BUDGET_BYTES / 2**30:.0f} GiB", annotation_position="top left")
    fig.update_yaxes(title_text="GiB", type="log", row=1, col=1, gridcolor="#eee")
    fig.update_yaxes(title_text="s", row=2, col=1, gridcolor="#eee", rangemode="tozero")
    fig.update_layout(template="none", barmode="group", height=620, margin=dict(l=60, r=30, t=50, b=120),
                      legend=dict(orientation="h", y=-0.2, yanchor="top"), font=FONT)
    return Figure("mesh", "Sharded training: memory per device and compile time",
                  "One device's footprint (arguments + outputs − aliased + temp, from XLA's memory "
                  "analysis of the partitioned program) against the budget, and the wall time of "
                  "lowered.compile(), by stacking mode, remat and mesh; medians over repeats.", fig)


def mesh_table(table, others) -> Table:
    rows = []
    for _, r in table.iterrows():
        fits = r["mem_footprint_bytes"] <= BUDGET_BYTES
        rows.append([
            *[Cell(str(r[k])) for k in others + KEYS],
            Cell(fmt(r["mem_footprint_bytes"], "bytes"), css="num " + ("better" if fits else "worse")),
            Cell("yes" if fits else "no", css="better" if fits else "worse"),
            *[Cell(fmt(r[m], "bytes"), css="num") for m in ("mem_param_device_bytes", "mem_grad_device_bytes",
                                                              "mem_optimizer_state_device_bytes", "mem_temp_bytes")],
            Cell(fmt(r["time_compile_s"], "s"), note=f"CPU {fmt(r['time_compile_cpu_s'], 's')}", css="num"),
        ])
    columns = [k.removeprefix("cfg_") for k in others + KEYS] + [
        "footprint / device", f"fits {BUDGET_BYTES / 2**30:.0f} GiB", "params / device", "grads / device",
        "optimizer / device", "temp / device", "compile"]
    return Table(columns, rows, "Per-device parameters, gradients and optimizer state follow from the "
                 "shardings; footprint and temp from XLA's memory analysis. 1 GiB = 2^30 bytes.")


@registry.section(order=47)
def mesh_section(an: Analysis) -> Section | None:
    if not an.has("mem_param_device_bytes") or "cfg_mesh" not in an.ok:
        return None
    medians = _medians(an)
    if medians is None:
        return None
    table, others = medians
    return Section("mesh", "Sharded training", figures=[mesh_figure(table, others)], tables=[mesh_table(table, others)])


@registry.finding(order=47)
def mesh_lines(an: Analysis) -> list[str]:
    if not an.has("mem_param_device_bytes") or "cfg_mesh" not in an.ok:
        return []
    medians = _medians(an)
    if medians is None:
        return []
    table, _ = medians
    fit = table[table["mem_footprint_bytes"] <= BUDGET_BYTES]
    line = f"{len(fit)} of {len(table)} sharded training layouts fit {BUDGET_BYTES / 2**30:.0f} GiB per device"
    if len(fit):
        best = fit.sort_values("mem_footprint_bytes").iloc[0]
        line += (f"; the smallest is {best['cfg_mode']} with remat {best['cfg_remat']} on mesh {best['cfg_mesh']} "
                 f"({fmt(best['mem_footprint_bytes'], 'bytes')} per device)")
    return [line + "."]
