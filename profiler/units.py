"""How a number with its unit reads, on the report page and on the command line alike:
one convention for every front end (docs/architecture.md).

Memory is binary (1 GiB = 2^30 bytes, as XLA and the operating system count it), seconds
step down to ms and µs, other units take SI prefixes (1 GFLOP = 10^9 FLOP); three
significant digits, and no exponent notation. Pure Python, importable from every stage.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"
"""What a missing value (None, NaN, ±inf) reads as."""

_BINARY = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
_SECONDS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def missing(value: Any) -> bool:
    """None, NaN or an infinity: nothing to show."""
    return value is None or (isinstance(value, float | int) and not math.isfinite(value))


def _digits(value: float) -> str:
    """Three significant digits, written out in full above 100 (no '1.23e+03')."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt(value: Any, unit: str = "") -> str:
    """A value with its unit, scaled to read: '1.5 GiB', '230 ms', '4.2 GFLOP', '12.3 k'.

    `unit` is a column's unit (profiler.COLUMNS): 'bytes' takes binary prefixes, 's' ms
    and µs below a second, any other unit an SI prefix; a count of things ('instructions',
    'ops') puts the prefix on the number: '1.2k instructions'."""
    if missing(value):
        return MISSING
    value = float(value)
    if unit == "bytes":
        for size, name in _BINARY:
            if abs(value) >= size:
                return f"{_digits(value / size)} {name}"
        return f"{value:.0f} B"
    if unit == "s":
        if value == 0:
            return "0 s"
        scale, name = next(((s, n) for s, n in _SECONDS if abs(value) >= s), _SECONDS[-1])
        return f"{_digits(value / scale)} {name}"
    for factor, prefix in _SI:
        if abs(value) >= factor:
            number = _digits(value / factor)
            if unit[:1].islower():  # a word, not a symbol: '1.2k instructions', not '1.2 kinstructions'
                return f"{number}{prefix} {unit}"
            return f"{number} {prefix}{unit}".rstrip()
    text = f"{value:.0f}" if value == int(value) else _digits(value)
    return f"{text} {unit}".rstrip()


def fmt_exact(value: Any, signed: bool = False) -> str:
    """A value to compare exactly: integers in full (a change in the last digit matters),
    others to four significant digits; `signed` writes a '+' before a positive change."""
    if missing(value):
        return MISSING
    sign = "+" if signed and value > 0 else ""
    if float(value).is_integer() and abs(value) >= 1:
        return f"{sign}{int(value)}"
    return f"{value:{sign}.4g}"


def fmt_ratio(r: float) -> str:
    """0.25×, 1.3×, 17×: two significant digits, at least one decimal below 10."""
    if missing(r):
        return MISSING
    return f"{r:.0f}×" if r >= 10 else f"{r:.1f}×" if r >= 1 else f"{r:.2g}×"


def fmt_pct(fraction: float) -> str:
    """A fraction as a percentage: 0.1 -> '10%'."""
    return f"{fraction:.0%}"


def fmt_exponent(k: float) -> str:
    """An exponent to two decimals, without a '-0.00' for a flat fit."""
    return f"{k:.2f}".replace("-0.00", "0.00")

