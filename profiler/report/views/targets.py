"""Targets side by side (spec key `target`): the same points compiled for the host's CPU,
TPU topologies and GPUs: compile time per target, its ratio to the CPU's, and each
target's per-device footprint against one device's HBM. Shown when the results were
compiled for a TPU or GPU target."""

from __future__ import annotations

import pandas as pd

from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.report.page import Cell, Section, Table
from profiler.units import fmt

METRICS = ["time_compile_s", "mem_footprint_bytes", "mem_hbm_bytes"]


def _medians(an: Analysis) -> tuple[pd.DataFrame, list[str]] | None:
    rows = an.ok
    if "cfg_target" not in rows or "mem_hbm_bytes" not in rows or rows["mem_hbm_bytes"].notna().sum() == 0:
        return None
    rows = rows.assign(cfg_target=rows["cfg_target"].fillna("cpu"))
    rows.attrs = {}  # the report's frames carry frames in attrs, which merge cannot compare
    # Devices and mesh follow the target; the phase tells a workload's programs apart.
    others = [k for k in dict.fromkeys([*an.layout.keys, "cfg_layers", "cfg_phase"])
              if k in rows and k not in ("cfg_target", "cfg_devices", "cfg_mesh") and rows[k].nunique(dropna=False) > 1]
    table = rows.groupby(others + ["cfg_target"], dropna=False)[METRICS].median().reset_index()
    cpu = table.loc[table["cfg_target"] == "cpu", [*others, "time_compile_s"]].rename(columns={"time_compile_s": "cpu_s"})
    table = table.merge(cpu, on=others, how="left") if others else table.assign(
        cpu_s=cpu["cpu_s"].iloc[0] if len(cpu) else float("nan"))
    table["ratio"] = table["time_compile_s"] / table["cpu_s"]
    return table, others


def targets_table(table: pd.DataFrame, others: list[str]) -> Table:
    rows = []
    for _, r in table.iterrows():
        hbm = r["mem_hbm_bytes"]
        fits = None if pd.isna(hbm) else r["mem_footprint_bytes"] <= hbm
        rows.append([
            *[Cell(str(r[k])) for k in others], Cell(str(r["cfg_target"])),
            Cell(fmt(r["time_compile_s"], "s"), css="num"),
            Cell("" if pd.isna(r["ratio"]) else f"{r['ratio']:.1f}×", css="num"),
            Cell(fmt(r["mem_footprint_bytes"], "bytes"), css="num"),
            Cell("" if pd.isna(hbm) else fmt(hbm, "bytes"), css="num"),
            Cell("" if fits is None else "yes" if fits else "no", css="" if fits is None else "better" if fits else "worse"),
        ])
    columns = [k.removeprefix("cfg_") for k in others] + [
        "target", "compile", "× CPU", "footprint / device", "HBM / device", "fits"]
    return Table(columns, rows, "Medians over repeats. Compile: wall time of lowered.compile() on this host; "
                 "× CPU: against the same point compiled for the host's CPU. Footprint: arguments + outputs "
                 "− aliased + temp of one device's program (XLA's memory analysis; docs/tpu.md says what it "
                 "counts on a TPU). HBM: Google's and NVIDIA's published capacities (profiler/targets/chips.py).")


@registry.section(order=46)
def targets_section(an: Analysis) -> Section | None:
    medians = _medians(an)
    if medians is None:
        return None
    table, others = medians
    return Section("targets", "Targets side by side", intro="The same points compiled for each target, "
                   "from this host, without the TPU or GPU (deviceless compiles).",
                   tables=[targets_table(table, others)])


@registry.finding(order=46)
def targets_lines(an: Analysis) -> list[str]:
    medians = _medians(an)
    if medians is None:
        return []
    table, _ = medians
    lines = []
    for target, group in table[table["cfg_target"] != "cpu"].groupby("cfg_target"):
        ratio = group["ratio"].dropna()
        over = group[group["mem_footprint_bytes"] > group["mem_hbm_bytes"]]
        text = f"Compiling for {target} took {ratio.median():.1f}× the CPU's time (median over {len(ratio)} points)" \
            if len(ratio) else f"Compiling for {target} took {fmt(group['time_compile_s'].median(), 's')} (median)"
        text += f"; {len(group) - len(over)} of {len(group)} programs fit one device's HBM."
        lines.append(text)
    return lines
