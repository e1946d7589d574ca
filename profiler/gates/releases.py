"""JAX releases side by side (`python -m profiler releases SPEC --jax 0.8.3,0.9.2,0.10.2`):
one sweep whose innermost grid axis is the release (spec key `jax`), so that every repeat
measures each point on every release in turn, each in a fresh process of that release's
environment (profiler/processes/environments.py): a change of load hits all releases alike.

Per point and metric, each release against the base release (the first listed): timings
as the ratio of medians with a bootstrap interval; the exact metrics (program sizes,
FLOPs, XLA's memory) exactly: for one release they are equal to the last bit, so any
difference between releases is a change the release made. `fail_above` makes it a gate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.processes import environments
from profiler.processes.environments import ReleaseError, check_version

if TYPE_CHECKING:
    import pandas as pd

    from profiler.processes.supervise import Start
    from profiler.spec import Spec

TIMINGS = ("time_trace_s", "time_lower_s", "time_compile_s", "time_to_compiled_s")
EXACT = ("size_jaxpr_eqns", "size_stablehlo_ops", "size_hlo_bytes", "size_hlo_instructions", "cost_flops",
         "mem_temp_bytes", "mem_footprint_bytes")
METRICS = (*TIMINGS, *EXACT)
RELEASE_KEYS = ("cfg_jax", "cfg_flax")


def is_exact(metric: str) -> bool:
    """Whether a metric is what XLA produced (equal to the last bit for one release) rather
    than a timing or a sampled memory figure."""
    return metric.startswith(("size_", "cost_")) or (metric.startswith("mem_") and "rss" not in metric)


def parse_releases(text: str, flag: str = "--jax") -> list[str]:
    """'0.8.3,0.10.2' -> ['0.8.3', '0.10.2']: release numbers, each once, in the given order."""
    releases = [check_version(part, flag) for part in text.split(",") if part.strip()]
    if not releases:
        raise ReleaseError(f"{flag}: no release given (e.g. {flag} 0.8.3,0.10.2)")
    if len(set(releases)) != len(releases):
        raise ReleaseError(f"{flag}: a release is listed twice ({text})")
    return releases


def release_spec(spec_path: str | Path, overrides: Sequence[str], releases: Sequence[str],
                 flax: str | None = None, *, yes: bool = False) -> Spec:
    """The spec with `jax` as its innermost grid axis (one release: a fixed key), and `flax`
    fixed where given. The spec's own `jax` and `flax`, if any, give way."""
    from profiler.spec import build_spec, parse_override, read_toml

    table = read_toml(spec_path)
    table.update(parse_override(o) for o in overrides)
    table.pop("jax", None)
    table.pop("flax", None)
    table["jax"] = list(releases) if len(releases) > 1 else releases[0]
    if flax:
        table["flax"] = check_version(flax, "--flax")
    return build_spec(table, yes=yes)


def check_releases(releases: Sequence[str], flax: str | None = None) -> None:
    """Bad input before anything is built or measured: a release the index does not serve
    names the nearest it does."""
    environments.check_served("jax", list(releases))
    if flax:
        environments.check_served("flax", [flax])


@dataclass
class Matrix:
    folder: Path
    base: str
    releases: list[str]
    table: pd.DataFrame
    """One row per (point, metric, release other than the base): ratio_table's columns
    plus `release`, `exact` and `changed`."""
    versions: dict[str, dict[str, str]]
    """{release: {jax, jaxlib, flax}} as the rows say they were measured."""
    sweep: Any = None
    """The runner's SweepResult of this invocation (rows, spans, the driver's parts)."""

    @property
    def failed(self) -> bool:
        return bool(self.table["exceeds"].any()) if len(self.table) else False


def side_by_side(rows: pd.DataFrame, base: str, metrics: Sequence[str] = METRICS,
                 fail_above: float | None = None) -> pd.DataFrame:
    """Every release in `rows` (cfg_jax) against `base`, point by point (the other cfg_
    columns): stats.ratio_table per release, with `exact` and `changed` for the exact metrics."""
    import pandas as pd

    from profiler.analysis.stats import ratio_table
    from profiler.gates.check import changed

    rows = rows[rows["cfg_jax"].notna()]
    releases = sorted(set(rows["cfg_jax"]) - {base}, key=environments.version_key)
    keep = [c for c in rows.columns if c not in RELEASE_KEYS]
    a = rows[rows["cfg_jax"] == base][keep]
    tables = []
    for release in releases:
        t = ratio_table(a, rows[rows["cfg_jax"] == release][keep], list(metrics), fail_above)
        t.insert(0, "release", release)
        tables.append(t)
    if not tables:
        return pd.DataFrame(columns=["release", "metric", "ratio", "low", "high", "exceeds", "exact", "changed"])
    table = pd.concat(tables, ignore_index=True)
    table["exact"] = table["metric"].map(is_exact)
    table["changed"] = [bool(e and changed(x, y)) for e, x, y in
                        zip(table["exact"], table["median_a"], table["median_b"], strict=True)]
    return table


def versions(rows: pd.DataFrame) -> dict[str, dict[str, str]]:
    """{release: the jax, jaxlib and flax its rows were measured with}."""
    out = {}
    for release, group in rows[rows["cfg_jax"].notna()].groupby("cfg_jax"):
        out[release] = {k: ", ".join(sorted(set(group[f"env_{k}_version"].dropna()))) for k in ("jax", "jaxlib", "flax")}
    return out


def point_columns(table: pd.DataFrame) -> list[str]:
    """The cfg_ columns that tell the table's points apart."""
    from profiler.analysis.stats import varying

    return varying(table, [c for c in table.columns if c.startswith("cfg_")])


def format_matrix(m: Matrix, fail_above: float | None = None) -> str:
    """The table as Markdown: a row per point and metric, the base's median, and each
    release's ratio with its interval (timings) or its exact change."""
    t = m.table
    others = [r for r in m.releases if r != m.base]
    lines = [f"releases: {', '.join(f'{r} (' + ', '.join(f'{k} {v}' for k, v in m.versions.get(r, {}).items()) + ')' for r in m.releases)}",
             f"base: {m.base}; timings: ratio of medians release / base [95% bootstrap interval]; "
             "exact metrics: = when equal to the last bit, else the change", ""]
    if not len(t):
        return "\n".join([*lines, "no point was measured ok on the base and another release"])
    keys = point_columns(t)
    header = ["point", "metric", f"{m.base}", *others]
    out = [header, ["---"] * len(header)]
    labels = [" ".join(f"{k[4:]}={v}" for k, v in zip(keys, values, strict=True)) or "(the point)"
              for values in t[keys].itertuples(index=False)]
    for (label, metric), group in t.assign(_label=labels).groupby(["_label", "metric"], sort=False):
        first = group.iloc[0]
        cells = [label, metric, _value(metric, first["median_a"])]
        by_release = {r["release"]: r for _, r in group.iterrows()}
        for release in others:
            r = by_release.get(release)
            cells.append("n/a" if r is None else _cell(r, fail_above))
        out.append(cells)
    lines += ["| " + " | ".join(row) + " |" for row in out]
    flagged = t[t["exceeds"]]
    if fail_above is not None:
        lines += ["", f"{len(flagged)} metric(s) above +{fail_above:g}% against {m.base}" if len(flagged)
                  else f"no metric above +{fail_above:g}% against {m.base}"]
    return "\n".join(lines)


def _value(metric: str, value: float) -> str:
    return f"{value:.4f} s" if metric.startswith("time_") else f"{value:,.0f}"


def _cell(r: Any, fail_above: float | None) -> str:
    flag = " **above**" if r["exceeds"] else ""
    if r["exact"]:
        if not r["changed"]:
            return "="
        return f"{r['median_b']:,.0f} ({(r['ratio'] - 1) * 100:+.2f}%){flag}"
    return f"x{r['ratio']:.3f} [{r['low']:.3f}-{r['high']:.3f}]{flag}"


def run_matrix(spec: Spec, folder: str | Path, releases: Sequence[str], *, resume: bool = False,
               fail_above: float | None = None, progress: Any = None, start: Start | None = None) -> Matrix:
    """Measure `spec` (from release_spec) on every release in one interleaved sweep into
    `folder`, then compare each release with the first."""
    from profiler.processes.runner import DEFAULT_START, run_sweep
    from profiler.storage import store
    from profiler.storage.files import write_atomic

    result = run_sweep(spec, folder, resume=resume, start=start or DEFAULT_START, progress=progress)
    rows = store.load(folder)
    base = releases[0]
    table = side_by_side(rows, base, METRICS, fail_above)
    matrix = Matrix(Path(folder), base, list(releases), table, versions(rows), result)
    write_atomic(Path(folder) / "releases.md", format_matrix(matrix, fail_above) + "\n")
    write_atomic(Path(folder) / "releases.json", json.dumps(
        {"base": base, "releases": list(releases), "versions": matrix.versions, "fail_above": fail_above,
         "table": json.loads(table.to_json(orient="records"))}, indent=1))
    return matrix
