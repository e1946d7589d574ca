"""One profiled trace -> lower -> compile of a program (profile): cProfile around the
Python stages, XLA's host tracer around the compile, and their anatomies as one row's
columns and detail."""

from __future__ import annotations

import contextlib
import cProfile
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from profiler.measurement.anatomy.python_stages import python_anatomy
from profiler.measurement.anatomy.taxonomy import STAGES
from profiler.measurement.anatomy.xla import Event, _capture_compile, _events, compile_anatomy


@dataclass
class Recorder:
    """Profiles each stage of one `measure.compile_stages` call (its `around` hook)."""

    python: dict[str, dict[Any, Any]] = field(default_factory=dict)
    compile_events: list[Event] = field(default_factory=list)

    @contextlib.contextmanager
    def around(self, stage: str) -> Iterator[None]:
        if stage == "compile":
            session = _capture_compile()
            lo = time.time_ns()  # the profiler stamps events with the wall clock
            try:
                yield
            finally:
                hi = time.time_ns()
                self.compile_events = _events(session.stop_and_get_profile_data(), (lo, hi))
            return
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            profile.create_stats()
            self.python[stage] = profile.stats

    def anatomy(self, times: dict[str, float]) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Row columns (components and the profiled stage times) and the detail rows."""
        columns: dict[str, float] = {}
        detail: list[dict[str, Any]] = []
        for stage in ("trace", "lower"):
            cols, rows = python_anatomy(stage, self.python.get(stage, {}), times[f"time_{stage}_s"])
            columns.update(cols)
            detail += rows
        cols, rows = compile_anatomy(self.compile_events, times["time_compile_s"])
        columns.update(cols)
        detail += rows
        columns.update({f"time_anatomy_{stage}_s": times[f"time_{stage}_s"] for stage in STAGES})
        return columns, detail


def profile(program: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Trace, lower and compile `program` once, cold, under the profilers. Returns the
    component columns of its row and the per-event detail (one dict per (stage,
    component, event): calls, self_s, total_s, wall_s, threads)."""
    import jax

    from profiler.measurement.measure import compile_stages

    if sys.getprofile() is not None:  # cProfile cannot nest under another profiler
        raise RuntimeError("anatomy: a Python profiler is already active in this process")
    recorder = Recorder()
    with program.context():
        jax.clear_caches()
        stages = compile_stages(program, around=recorder.around)
    return recorder.anatomy(stages.times)
