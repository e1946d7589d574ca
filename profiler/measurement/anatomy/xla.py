"""The compile stage: XLA's TraceMe events, captured in memory by jax.profiler, nested per
thread, classified by COMPILE_RULES, and each instant of wall time shared between the
threads busy then (compile_anatomy)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from profiler.measurement.anatomy.taxonomy import (
    COMPILE_COMPONENTS,
    COMPILE_RULES,
    HLO_PASSES_OTHER,
    OTHER,
    UNATTRIBUTED,
    column,
)

# An HLO pass or pipeline is named in words ('copy-insertion', 'dot-library-passes');
# C++ scopes ('Foo::Bar') and MLIR passes ('CSEPass') are not.
_HLO_PASS = re.compile(r"^[a-z][A-Za-z0-9_\- ]*$")

# A thread in one of these is waiting for work it handed to other threads: it gets a
# share of an instant only when no other thread is busy then.
WAITING = re.compile(r"^(backend_compile_and_load|JitCompiler::Compile|Codegen)$")
_COMPILE_RULES = [(c, re.compile(p)) for c, p, _ in COMPILE_RULES]


@dataclass
class Event:
    name: str
    line: str
    start: int
    end: int
    parent: Event | None = None
    component: str = ""
    self_ns: int = 0
    outermost: bool = True
    """No enclosing event on its thread has the same name (its duration counts once in total_s)."""


_MODULE_SUFFIX = re.compile(r" \([^()]*\)$")


def event_name(raw: str) -> str:
    """An event's name without the module it ran on ('simplification (jit_apply)' →
    'simplification'), so that the same pass compares across programs."""
    return _MODULE_SUFFIX.sub("", raw)


def classify(events: list[Event]) -> None:
    """Nest the events of each thread and give each its component and self time."""
    by_line: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_line[e.line].append(e)
    for line_events in by_line.values():
        line_events.sort(key=lambda e: (e.start, -e.end))
        stack: list[Event] = []
        for e in line_events:
            while stack and stack[-1].end <= e.start:
                stack.pop()
            e.parent = stack[-1] if stack else None
            e.self_ns = e.end - e.start
            if e.parent is not None:
                e.parent.self_ns -= min(e.end, e.parent.end) - e.start
            e.outermost = all(a.name != e.name for a in stack)
            e.component = next((c for c, p in _COMPILE_RULES if p.search(e.name)), "")
            if not e.component:
                inherited = e.parent.component if e.parent is not None else OTHER[0]
                if inherited in ("client", OTHER[0]) and _HLO_PASS.match(e.name):
                    inherited = HLO_PASSES_OTHER[0]
                e.component = inherited
            stack.append(e)


def wall_shares(events: list[Event]) -> dict[int, float]:
    """Seconds of wall time each event (by id) owns: every instant is split equally
    between the threads busy then, a thread's part going to its innermost event, and
    threads that only wait (WAITING) count only when no other thread is busy."""
    by_line: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_line[e.line].append(e)
    segments = [seg for line_events in by_line.values() for seg in _innermost(line_events)]
    boundaries: list[tuple[int, int, int]] = []  # (time, +1 start / -1 end, segment index)
    for i, (a, b, _) in enumerate(segments):
        boundaries += [(a, 1, i), (b, -1, i)]
    boundaries.sort(key=lambda x: (x[0], x[1]))
    shares: dict[int, float] = defaultdict(float)
    active: set[int] = set()
    last = None
    for t, kind, i in boundaries:
        if active and last is not None and t > last:
            busy = [j for j in active if not WAITING.match(segments[j][2].name)] or list(active)
            dt = (t - last) / 1e9 / len(busy)
            for j in busy:
                shares[id(segments[j][2])] += dt
        last = t
        if kind == 1:
            active.add(i)
        else:
            active.discard(i)
    return shares


def _innermost(line_events: list[Event]) -> list[tuple[int, int, Event]]:
    """The intervals of one thread where each of its events is the innermost one."""
    segments: list[tuple[int, int, Event]] = []
    stack: list[tuple[Event, int]] = []  # (event, where its current innermost stretch began)

    def close_until(t: int) -> None:
        while stack and stack[-1][0].end <= t:
            ev, since = stack.pop()
            if ev.end > since:
                segments.append((since, ev.end, ev))
            if stack:
                stack[-1] = (stack[-1][0], ev.end)

    for e in sorted(line_events, key=lambda e: (e.start, -e.end)):
        close_until(e.start)
        if stack:
            parent, since = stack[-1]
            if e.start > since:
                segments.append((since, e.start, parent))
        stack.append((e, e.start))
    close_until(max((e.end for e in line_events), default=0) + 1)
    return segments


def compile_anatomy(events: list[Event], wall_s: float) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Component columns of the compile stage and its per-event detail, from the events
    captured during it and its wall time."""
    classify(events)
    shares = wall_shares(events)
    columns = dict.fromkeys((column("compile", c) for c in COMPILE_COMPONENTS), 0.0)
    detail: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        columns[column("compile", e.component)] += shares.get(id(e), 0.0)
        d = detail.setdefault((e.component, e.name), {
            "stage": "compile", "component": e.component, "event": e.name,
            "calls": 0, "self_s": 0.0, "total_s": 0.0, "wall_s": 0.0, "threads": set()})
        d["calls"] += 1
        d["self_s"] += e.self_ns / 1e9
        d["total_s"] += (e.end - e.start) / 1e9 if e.outermost else 0.0
        d["wall_s"] += shares.get(id(e), 0.0)
        d["threads"].add(_thread_kind(e.line))
    columns[column("compile", UNATTRIBUTED)] = max(0.0, wall_s - sum(columns.values()))
    rows = [{**d, "threads": len(d["threads"])} for d in detail.values()]
    return columns, rows


def _thread_kind(line: str) -> str:
    return line.split("/")[0]


def _capture_compile() -> Any:
    """Start XLA's host tracer (no Python tracer: the compile is C++), in memory."""
    from profiler.measurement.compat import profiler_module

    _profiler = profiler_module()
    options = _profiler.ProfileOptions()
    options.python_tracer_level = 0
    options.host_tracer_level = 2
    options.enable_hlo_proto = False  # the HLO is the row's business, not the profile's
    options.raise_error_on_start_failure = True  # no events must not read as "all unattributed"
    return _profiler.ProfilerSession(options)


def _events(profile_data: Any, window: tuple[int, int]) -> list[Event]:
    """The host's events inside `window` (ns since the epoch), clipped to it. Events are
    stamped relative to the session's start, which the 'Task Environment' plane records."""
    started = next((int(value) for plane in profile_data.planes if plane.name == "Task Environment"
                    for key, value in plane.stats if key == "profile_start_time"), None)
    if started is None:
        raise RuntimeError("anatomy: the profile does not say when it started (no profile_start_time)")
    lo, hi = window[0] - started, window[1] - started
    events = []
    for plane in profile_data.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for ev in line.events:
                start, end = int(ev.start_ns), int(ev.end_ns)
                if end <= lo or start >= hi:
                    continue
                events.append(Event(event_name(ev.name), line.name, max(start, lo), min(end, hi)))
    return events
