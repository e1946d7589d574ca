"""One convention for numbers with units, on the report page and the command line alike."""

from __future__ import annotations

import pytest

from profiler.units import MISSING, fmt, fmt_exact, fmt_ratio


@pytest.mark.parametrize(("value", "unit", "text"), [
    # Memory is binary everywhere: 1 GiB = 2^30 bytes.
    (80 * 2**30, "bytes", "80 GiB"),
    (1.5 * 2**30, "bytes", "1.5 GiB"),
    (10**9, "bytes", "954 MiB"),
    (512 * 2**20, "bytes", "512 MiB"),
    (1023, "bytes", "1023 B"),
    (3 * 2**40, "bytes", "3 TiB"),
    # Seconds step down, never into exponent notation.
    (0.23, "s", "230 ms"),
    (5e-7, "s", "0.5 µs"),
    (1234.5, "s", "1234 s"),
    (0, "s", "0 s"),
    # Other units take SI prefixes; a word keeps its own.
    (4.2e9, "FLOP", "4.2 GFLOP"),
    (12345, "", "12.3 k"),
    (1234, "instructions", "1.23k instructions"),
    (7, "loops", "7 loops"),
    (2.5, "", "2.5"),
    # Nothing to show.
    (None, "bytes", MISSING),
    (float("nan"), "s", MISSING),
    (float("inf"), "", MISSING),
])
def test_a_number_reads_with_its_unit(value, unit, text):
    assert fmt(value, unit) == text


def test_exact_values_keep_every_digit():
    assert fmt_exact(123456789) == "123456789"
    assert fmt_exact(10, signed=True) == "+10"
    assert fmt_exact(0.123456) == "0.1235"
    assert fmt_exact(None) == MISSING


def test_ratios():
    assert [fmt_ratio(r) for r in (0.25, 1.34, 17.2, float("nan"))] == ["0.25×", "1.3×", "17×", MISSING]
