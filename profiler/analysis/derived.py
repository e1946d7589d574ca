"""Columns computed from the measured ones, per repeat (so they get a spread too):
profiler/analysis/stats.py adds them to rows. Apart from stats, which imports pandas and
scipy (about 2 s), so that `profiler bisect` checks its --metric without them."""

from __future__ import annotations

DERIVED: dict[str, tuple[str, ...]] = {
    "time_trace_lower_s": ("time_trace_s", "time_lower_s"),
    "time_to_compiled_s": ("time_trace_s", "time_lower_s", "time_compile_s"),
}
