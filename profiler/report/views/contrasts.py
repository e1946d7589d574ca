"""The summary's opening sentences: what another mode, mesh, API or unroll factor changes
in the time to a compiled program and in memory, at the largest layer count measured."""

from __future__ import annotations

from profiler.report import registry
from profiler.report.analysis import Analysis, where_text
from profiler.report.columns import title_of
from profiler.units import fmt_ratio


@registry.finding(order=10)
def mode_lines(an: Analysis) -> list[str]:
    where = an.representative(["cfg_mode"])
    lines = []
    for _, base, other, top, r in an.contrast("cfg_mode", ["time_to_compiled_s", "mem_temp_bytes"], where):
        if "time_to_compiled_s" not in r:
            continue
        t = r["time_to_compiled_s"]
        speed = f"{fmt_ratio(1 / t)} sooner" if t <= 1 else f"{fmt_ratio(t)} later"
        mem = f" and needs {fmt_ratio(r['mem_temp_bytes'])} its temp memory" if "mem_temp_bytes" in r else ""
        lines.append(f"At {top} {an.layout.x_title}{where_text(where)}, {other} reaches a compiled program {speed} than {base}{mem}.")
    return lines


def key_lines(an: Analysis, key: str) -> list[str]:
    """What another value of `key` changes: time to a compiled program and memory."""
    if key not in an.layout.series:
        return []
    memory = next((m for m in ("mem_footprint_bytes", "mem_temp_bytes") if an.has(m)), None)
    where = an.representative(["cfg_mode", key])
    lines = []
    for values, base, other, top, r in an.contrast(key, ["time_to_compiled_s", *([memory] if memory else [])], where):
        parts = []
        if "time_to_compiled_s" in r:
            t = r["time_to_compiled_s"]
            parts.append(f"reaches a compiled program {fmt_ratio(1 / t)} sooner" if t <= 1 else
                         f"reaches a compiled program {fmt_ratio(t)} later")
        if memory in r:
            parts.append(f"needs {fmt_ratio(r[memory])} the {title_of(memory).split(' (')[0].lower()}")
        if parts:
            lines.append(f"At {top} {an.layout.x_title}{where_text({**values, **where})}, compared with {key[4:]}={base}, "
                         f"{key[4:]}={other} {' and '.join(parts)}.")
    return lines[:4]


@registry.finding(order=60)
def mesh_api_unroll_lines(an: Analysis) -> list[str]:
    return [line for key in ("cfg_mesh", "cfg_api", "cfg_unroll") for line in key_lines(an, key)]
