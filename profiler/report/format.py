"""How numbers and configuration values read on a page: units with SI prefixes, ratios,
exponents, and the order in which values are listed. Pandas-free."""

from __future__ import annotations

import math
import numbers
from typing import Any

_SI = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def fmt(value: Any, unit: str = "") -> str:
    """A value with its unit, three significant digits, SI prefixes (1 MB = 10^6 bytes)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(value) >= scale or scale == 1e-6:
                return f"{value / scale:.3g} {name}" if value else "0 s"
    symbol = {"bytes": "B"}.get(unit, unit)
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{symbol}".rstrip()
    text = f"{value:.0f}" if value == int(value) else f"{value:.3g}"
    return f"{text} {symbol}".rstrip()


def fmt_exponent(k: float) -> str:
    """An exponent to two decimals, without a '-0.00' for a flat fit."""
    return f"{k:.2f}".replace("-0.00", "0.00")


def fmt_ratio(r: float) -> str:
    """0.25×, 1.3×, 17×: two significant digits, at least one decimal below 10."""
    if not math.isfinite(r):
        return "–"
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×" if r >= 1 else f"{r:.2g}×"


def fmt_pct(fraction: float) -> str:
    """A threshold kept as a fraction, as the page writes it: 0.1 -> '10%'."""
    return f"{fraction:.0%}"


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
