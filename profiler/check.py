"""Regression check of one results folder against a baseline, point by point.

Two kinds of metrics are gated differently. Timings vary run to run (about 10% on a
shared 2-core machine), so a timing regresses only when its median over the repeats
grows past `--max-slowdown`. The deterministic metrics (program size, corrected FLOPs,
temp and argument bytes) are what XLA produced: for one JAX version they are equal to
the last bit, so any change is reported, growth or shrinkage, however small.
"""

from __future__ import annotations

import math

DETERMINISTIC = ("size_hlo_instructions", "cost_flops", "mem_temp_bytes", "mem_argument_bytes")

# Deterministic values are equal to the last bit for one JAX version; the tolerance
# only absorbs the round trip of a float through text.
RTOL = 1e-9


def changed(expected: float | None, got: float | None) -> bool:
    """Whether a deterministic metric differs from its expected value."""
    if expected is None or got is None or _nan(expected) or _nan(got):
        return (expected is None or _nan(expected)) != (got is None or _nan(got))
    return not math.isclose(expected, got, rel_tol=RTOL, abs_tol=0.0)


def _nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)
