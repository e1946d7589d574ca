"""Where a sweep's wall time goes: the phases of its measuring processes (the `time_*`
columns of its rows) and of the driver, as parts of the command's wall time.

Pure bookkeeping over rows and a few driver timings: the runner and the command line use
it for the line printed at the end of a sweep, the report's Overhead view for its table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MEASURED = "build+trace+lower+compile"
"""The measurement's own work: what an ahead-of-time compile script does too."""

PHASES: dict[str, str] = {
    "time_server_start_s": "server start",
    "time_process_start_s": "process start",
    "time_backend_start_s": "backend start",
    "time_build_s": MEASURED,
    "time_trace_s": MEASURED,
    "time_lower_s": MEASURED,
    "time_compile_s": MEASURED,
    "time_analysis_s": "analyses",
    "time_run_s": "running",
    "time_process_exit_s": "process exit",
}
"""Each phase column of a row and the part of the breakdown it counts in."""

OVERHEAD_COLUMNS = frozenset(c for c, part in PHASES.items() if part != MEASURED)
"""The phase columns that are not the measurement itself: drawn by the report's Overhead
view, not as curves of their own."""

PER_PROCESS = frozenset({"time_server_start_s", "time_process_start_s", "time_backend_start_s",
                         "time_build_s", "time_process_exit_s"})
"""Phases of the whole measuring process, repeated on each of its programs' rows."""

IN_PROCESS_OTHER = "rest of the measuring processes"
"""run_wall_s not covered by its phases: clearing JAX's caches, the program's context,
collecting the rows, and processes that failed."""


def process_seconds(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds per part over the measuring processes of `rows` (one sweep invocation's
    rows, or a results folder's): each process's phases once, each program's stages, and
    the rest of each process's run_wall_s, plus the time waiting for fork servers."""
    processes: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        processes.setdefault((row.get("run_id"), row.get("run_point_id"), row.get("run_repeat")), []).append(row)
    parts: dict[str, float] = {}
    for programs in processes.values():
        covered = 0.0
        for column, part in PHASES.items():
            values = [_number(r.get(column)) for r in (programs[:1] if column in PER_PROCESS else programs)]
            seconds = sum(v for v in values if v is not None)
            if seconds:
                parts[part] = parts.get(part, 0.0) + seconds
                covered += seconds if column != "time_server_start_s" else 0.0
        wall = _number(programs[0].get("run_wall_s"))
        if wall is not None:
            parts[IN_PROCESS_OTHER] = parts.get(IN_PROCESS_OTHER, 0.0) + max(wall - covered, 0.0)
    return parts


def _number(value: Any) -> float | None:
    """A float, or None for a null (None or NaN, as pandas reads it)."""
    if value is None:
        return None
    value = float(value)
    return None if value != value else value


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: the time at least one ran."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


@dataclass
class Breakdown:
    """A sweep command's wall time cut into disjoint parts, in seconds."""

    wall_s: float
    parts: dict[str, float] = field(default_factory=dict)
    concurrency: float = 1.0
    """Measurement seconds per second of wall time while measurements ran (about --jobs):
    the measuring processes' parts are divided by it, so that all parts add up to the wall."""

    @property
    def other_s(self) -> float:
        """Wall time no part accounts for (gaps between measurements, thread hand-offs)."""
        return self.wall_s - sum(self.parts.values())

    def line(self) -> str:
        """'wall 64 s: 71% build+trace+lower+compile, 9% process start, ...', largest first."""
        shares = sorted(((s, p) for p, s in self.parts.items() if s > 0), reverse=True)
        shares.append((self.other_s, "other"))
        text = ", ".join(f"{s / self.wall_s:.0%} {p}" for s, p in shares if round(s / self.wall_s, 2) != 0)
        jobs = f" ({self.concurrency:.1f} measurements at once)" if self.concurrency > 1.05 else ""
        return f"wall {self.wall_s:.1f} s{jobs}: {text}"


def sweep_breakdown(wall_s: float, driver: Mapping[str, float], rows: Iterable[Mapping[str, Any]],
                    intervals: Iterable[tuple[float, float]]) -> Breakdown:
    """`wall_s` of a sweep command cut into the driver's parts (`driver`: seconds of
    command start, setup, closing, report...) and the parts of its measuring processes
    (`rows`), the latter divided by how many ran at once (their `intervals`, epoch
    (start, end) of each measurement, server waits included)."""
    intervals = list(intervals)
    busy = sum(b - a for a, b in intervals)
    union = union_seconds(intervals)
    concurrency = busy / union if union > 0 else 1.0
    parts = {p: s / concurrency for p, s in process_seconds(rows).items()}
    for part, seconds in driver.items():
        parts[part] = parts.get(part, 0.0) + seconds
    return Breakdown(wall_s, parts, concurrency)
