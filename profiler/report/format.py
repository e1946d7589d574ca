"""The order in which configuration values are listed on a page, and the names of a
multi-program workload's programs. Pandas-free. (How a number with its unit reads is
profiler/units.py, shared with the command line.)"""

from __future__ import annotations

import numbers
from typing import Any

# The programs of a multi-program workload (decode), in the order they run.
DECODE_PHASES = ("prefill", "decode")
# Values in the order a reader expects them: the seed's modes, then defaults before
# their alternatives (remat none before full, linen before nnx, prefill before decode).
ORDER = ["loop", "scan", "scan_shared", "none", "full", "linen", "nnx", "main", *DECODE_PHASES,
         "scanned", "carried"]


def sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers by value, known values in ORDER, everything else by text."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return (0, float(value), "")
    if value in ORDER:
        return (1, float(ORDER.index(value)), "")
    return (2, 0.0, str(value))
