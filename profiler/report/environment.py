"""The environment on a page: the table of `env_` facts, the warnings when rows come from
different machines or software, and the one-line description in the index. Which facts
differ, and what that means, is profiler/analysis/machines.py's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from profiler.analysis import machines
from profiler.report.columns import doc_of
from profiler.report.page import Cell, Table


@dataclass(frozen=True)
class EnvWarning:
    text: str
    critical: bool = False


def environment_table(env_values: Mapping[str, Sequence[Any]]) -> Table:
    rows = []
    for column, values in env_values.items():
        text = ", ".join(str(v) for v in values)
        css = "bad" if len(values) > 1 else ""
        rows.append([Cell(column[4:]), Cell(text, doc_of(column), css)])
    return Table(["", "value"], rows)


def environment_warnings(env_values: Mapping[str, Sequence[Any]]) -> list[EnvWarning]:
    """Warnings for env_ columns with more than one value; a machine fact (machines.MACHINE)
    makes timings incomparable."""
    differing = machines.within(env_values)
    warnings = []
    critical = [c[4:] for c in differing if c in machines.MACHINE]
    if critical:
        warnings.append(EnvWarning(f"Rows come from different machines or backends ({', '.join(critical)} "
                                   "differ): timings across them are not comparable.", critical=True))
    rest = [c[4:] for c in differing if c not in machines.MACHINE]
    if rest:
        warnings.append(EnvWarning(f"Rows come from differing environments ({', '.join(rest)}): see Environment."))
    jobs = max(env_values.get("run_jobs") or [1])
    if jobs > 1:
        warnings.append(EnvWarning(f"Up to {jobs} measurements ran at once on a host (run_jobs): their wall "
                                   "times include competing for cores; CPU times (time_*_cpu_s) do not."))
    return warnings


def differences_table(env_a: Mapping[str, Sequence[Any]], env_b: Mapping[str, Sequence[Any]]) -> tuple[Table, list[EnvWarning]]:
    """Two environments side by side (differences highlighted), and the warnings."""
    differing = {d.column: d for d in machines.between(env_a, env_b)}
    rows = []
    for column in sorted(set(env_a) | set(env_b), key=lambda c: (c not in machines.MACHINE, c)):
        css = "bad" if column in differing else ""
        rows.append([Cell(column[4:]), Cell(", ".join(map(str, env_a.get(column, []))) or "–", css=css),
                     Cell(", ".join(map(str, env_b.get(column, []))) or "–", css=css)])
    critical = [d.name for d in differing.values() if d.machine]
    other = [d.name for d in differing.values() if not d.machine]
    warnings = []
    if critical:
        warnings.append(EnvWarning(f"A and B ran on different machines or backends ({', '.join(critical)} "
                                   "differ): their timings are not comparable; sizes, costs and memory still are.",
                                   critical=True))
    if other:
        warnings.append(EnvWarning(f"Environments differ in: {', '.join(other)}."))
    return Table(["", "A", "B"], rows, "Differences are highlighted."), warnings


def describe_environment(env_values: Mapping[str, Sequence[Any]]) -> str:
    """One line for the index: versions, backend, device."""
    def first(c: str) -> str:
        return str(env_values[c][0]) if env_values.get(c) else "?"
    return (f"jax {first('env_jax_version')} · {first('env_backend')} · {first('env_device_kind')} · "
            f"{first('env_hostname')}")
