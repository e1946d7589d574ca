"""Statistics from raw repeats, on constructed numbers whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest

from profiler.analysis import stats
from profiler.report import registry
from profiler.report.analysis import Analysis
from profiler.storage import store


def test_spread_quartiles_and_cv():
    s = stats.spread([4.0, 1.0, 3.0, 2.0])
    assert (s.n, s.median, s.q1, s.q3, s.min, s.max) == (4, 2.5, 1.75, 3.25, 1.0, 4.0)
    assert s.cv == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2.5)


@pytest.mark.parametrize(("values", "unstable"), [
    ([1.0, 1.01, 0.99], False),          # 1% spread: stable
    ([1.0, 1.3, 1.0], True),             # CV 16%
    ([1.0] * 9 + [1.3], True),           # CV 9% but one repeat 30% off the median
    ([1.0] * 9 + [1.2], False),          # CV 6%, 20% off: within both limits
    ([5.0], False),                      # a single repeat has no spread to judge
])
def test_unstable_flag(values, unstable):
    s = stats.spread(values)
    assert s.unstable is unstable
    if len(values) == 10:
        assert s.cv < stats.CV_UNSTABLE


def test_power_law_fit_recovers_known_exponent():
    layers = [2, 8, 32, 64, 128]
    exact = stats.fit_power_law(layers, [3.0 * n**0.9 for n in layers])
    assert exact.k == pytest.approx(0.9) and exact.a == pytest.approx(3.0)
    assert exact.k_low == pytest.approx(0.9) and exact.k_high == pytest.approx(0.9)

    rng = np.random.default_rng(1)
    xs = np.repeat(layers, 3)
    noisy = stats.fit_power_law(xs, 0.5 * xs**1.2 * np.exp(rng.normal(0, 0.05, len(xs))))
    assert noisy.k_low < 1.2 < noisy.k_high
    assert noisy.k_high - noisy.k_low < 0.1


def test_power_law_interval_is_the_t_interval_of_the_least_squares_slope():
    # Four points: 2 degrees of freedom, whose two-sided 95% t quantile is 4.302653 (tables).
    layers, values = np.array([1.0, 2, 4, 8]), np.array([1.0, 2.3, 3.7, 8.9])
    (slope, intercept), cov = np.polyfit(np.log(layers), np.log(values), 1, cov=True)
    fit = stats.fit_power_law(layers, values)
    assert (fit.k, fit.a, fit.n) == (pytest.approx(slope), pytest.approx(np.exp(intercept)), 4)
    half = 4.302653 * math.sqrt(cov[0, 0])
    assert (fit.k_low, fit.k_high) == (pytest.approx(slope - half, rel=1e-6), pytest.approx(slope + half, rel=1e-6))
    assert fit.r2 == pytest.approx(np.corrcoef(np.log(layers), np.log(values))[0, 1] ** 2)


def test_power_law_fit_of_flat_and_degenerate_data():
    flat = stats.fit_power_law([1, 1, 2, 2, 4, 4], [35] * 6)
    assert (flat.k, flat.k_low, flat.k_high, flat.r2) == (0.0, 0.0, 0.0, 1.0)
    assert stats.fit_power_law([4, 4, 4], [1.0, 2.0, 3.0]) is None  # one layer count: no slope
    two = stats.fit_power_law([2, 4], [1.0, 2.0])  # two points: a slope but no interval
    assert two.k == pytest.approx(1.0) and math.isnan(two.k_low)


def test_break_even_steps():
    # a: ready at 10 s, 1 s per step; b: ready at 20 s, 0.5 s per step -> equal after 20 steps
    assert stats.break_even_steps(10, 1.0, 20, 0.5) == pytest.approx(20)
    assert stats.break_even_steps(20, 0.5, 10, 1.0) == pytest.approx(20)
    assert stats.break_even_steps(10, 0.5, 20, 1.0) is None  # a is ahead forever
    assert stats.break_even_steps(10, 1.0, 20, 1.0) is None  # parallel


def test_wins_from():
    assert stats.wins_from([2, 8, 32, 64], ["loop", "scan", "scan", "scan"]) == ("scan", 8)
    assert stats.wins_from([2, 8, 32], ["scan", "loop", "scan"]) == ("scan", 32)
    assert stats.wins_from([2, 8], ["loop", "loop"]) == ("loop", 2)


def test_bootstrap_ratio():
    assert stats.bootstrap_ratio([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    rng = np.random.default_rng(2)
    a = 1.0 + rng.normal(0, 0.02, 5)
    ratio, low, high = stats.bootstrap_ratio(a, 1.5 * (1.0 + rng.normal(0, 0.02, 5)))
    assert low <= ratio <= high and low > 1.3 and high < 1.7


def test_summary_and_fits_of_a_synthetic_folder(synthetic):
    df = store.load(synthetic(modes=("loop", "scan"), layers=(2, 8, 32, 64), repeats=3))
    summary = stats.summarize(df)
    assert set(summary["n"]) == {3}
    eqns = summary[summary["metric"] == "size_jaxpr_eqns"].set_index(["cfg_mode", "cfg_layers"])["median"]
    assert eqns["loop", 64] == 32 * 64 and eqns["scan", 64] == 35

    fits = stats.fit_table(df, ["time_compile_s", "size_jaxpr_eqns"], ["cfg_mode"]).set_index(["cfg_mode", "metric"])
    assert fits.loc[("loop", "size_jaxpr_eqns"), "k"] == pytest.approx(1.0)
    assert fits.loc[("scan", "size_jaxpr_eqns"), "k"] == pytest.approx(0.0)
    loop = fits.loc[("loop", "time_compile_s")]
    assert loop["k_low"] < 0.9 < loop["k_high"]  # the law the data was built from
    scan = fits.loc[("scan", "time_compile_s")]
    assert scan["k_low"] < 0.05 < scan["k_high"]


def test_break_even_table_from_medians(synthetic):
    df = stats.with_derived(store.load(synthetic(modes=("loop", "scan"), layers=(2, 32), repeats=3)))
    be = stats.break_even_table(stats.summarize(df)).set_index("cfg_layers")
    ok = df[df["run_status"] == "ok"]
    med = ok.groupby(["cfg_mode", "cfg_layers"])[["time_to_compiled_s", "time_step_median_s"]].median()
    row = be.loc[32]
    assert (row["a"], row["b"]) == ("loop", "scan")
    assert row["setup_a_s"] == pytest.approx(med.loc[("loop", 32), "time_to_compiled_s"])
    # loop compiles later and steps faster at 32 layers (LAWS): it catches up after n steps
    assert row["ready_first"] == "scan" and row["faster_step"] == "loop"
    expected = ((med.loc[("loop", 32)] - med.loc[("scan", 32)])["time_to_compiled_s"]
                / (med.loc[("scan", 32)] - med.loc[("loop", 32)])["time_step_median_s"])
    assert row["break_even_steps"] == pytest.approx(expected)


def test_unstable_points_are_flagged(synthetic):
    df = store.load(synthetic(layers=(2, 8), repeats=3))
    # make one repeat of one point 40% slower: that point, and only it, is unstable
    target = df.index[(df["cfg_mode"] == "scan") & (df["cfg_layers"] == 8) & (df["run_repeat"] == 0)]
    df.loc[target, "time_compile_s"] *= 1.4
    summary = stats.summarize(df, ["time_compile_s"])
    flagged = summary[summary["unstable"]]
    assert flagged[["cfg_mode", "cfg_layers"]].values.tolist() == [["scan", 8]]
    (line,) = [line for line in registry.findings(Analysis(df)) if "unstable" in line]
    assert line.startswith("1 of 4 points")


def test_environment_lists_every_value(synthetic):
    a = store.load(synthetic(env_values={"env_cpu_model": "CPU A"}))
    b = store.load(synthetic(env_values={"env_cpu_model": "CPU B"}))
    env = stats.environment(pd.concat([a, b]))
    assert set(env["env_cpu_model"]) == {"CPU A", "CPU B"}
    assert "env_time_utc" not in env


def test_break_even_of_a_decode_program_uses_the_time_per_token(synthetic):
    """A decode row has no generic step time: one generated token is its step."""
    df = stats.with_derived(store.load(synthetic(modes=("loop", "scan"), layers=(2, 32), repeats=3)))
    df["time_per_token_s"], df["time_step_median_s"] = df["time_step_median_s"], float("nan")
    be = stats.break_even_table(stats.summarize(df)).set_index("cfg_layers")
    assert be.loc[32, "faster_step"] == "loop" and be.loc[32, "break_even_steps"] > 0


def _ratio_rows(**metrics):
    """Two repeats of two points (one with a key null), every metric's value given per repeat."""
    rows = []
    for kv_heads in (None, 2):
        for repeat, scale in enumerate((1.0, 1.02)):
            rows.append({"run_status": "ok", "cfg_layers": 4, "cfg_kv_heads": kv_heads, "run_repeat": repeat,
                         **{m: v * scale for m, v in metrics.items()}})
    return pd.DataFrame(rows)


def test_ratio_table_lets_the_corrected_flops_stand_for_xla_s():
    # Where both are asked and present, the corrected FLOPs stand for XLA's raw ones; rows
    # of an old version without the corrected column keep XLA's. A point whose key is null
    # is a point too.
    both = stats.ratio_table(_ratio_rows(cost_flops=10.0, cost_xla_flops=5.0),
                             _ratio_rows(cost_flops=12.0, cost_xla_flops=5.0), ["cost_flops", "cost_xla_flops"])
    assert list(both["metric"]) == ["cost_flops", "cost_flops"]
    assert both["ratio"].tolist() == pytest.approx([1.2, 1.2])
    assert sorted(both["cfg_kv_heads"].isna()) == [False, True]
    raw = stats.ratio_table(_ratio_rows(cost_xla_flops=5.0), _ratio_rows(cost_xla_flops=6.0),
                            ["cost_flops", "cost_xla_flops"])
    assert list(raw["metric"]) == ["cost_xla_flops", "cost_xla_flops"]
    only_xla = stats.ratio_table(_ratio_rows(cost_flops=10.0, cost_xla_flops=5.0),
                                 _ratio_rows(cost_flops=12.0, cost_xla_flops=6.0), ["cost_xla_flops"])
    assert list(only_xla["metric"]) == ["cost_xla_flops"] * 2 and only_xla["ratio"].tolist() == pytest.approx([1.2] * 2)


def test_bootstrap_interval_of_a_known_distribution():
    # b / a with a constant: the interval is that of the median of 5 draws from b's values,
    # whose distribution is known. P(median <= 2) = P(3+ of 5 draws <= 2) = 0.317, and
    # P(median <= 1) = 0.058: the 10th and 90th percentiles are 2 and 4 (80%), the 2.5th and
    # 97.5th 1 and 5 (95%). Over a = 2 everywhere, halved.
    assert stats.bootstrap_ratio([2.0] * 5, [2.0, 4.0, 6.0, 8.0, 10.0], confidence=0.95) == (3.0, 1.0, 5.0)
    assert stats.bootstrap_ratio([2.0] * 5, [2.0, 4.0, 6.0, 8.0, 10.0], confidence=0.80) == (3.0, 2.0, 4.0)
    # The order of the sides: b over a; the median of a in 4..8 gives 6 / 8 to 6 / 4.
    assert stats.bootstrap_ratio([2.0, 4.0, 6.0, 8.0, 10.0], [6.0] * 5, confidence=0.80) == (1.0, 0.75, 1.5)


def test_ratio_table_rules_at_their_edges():
    def rows(points):
        return pd.DataFrame([{"run_status": "ok", "cfg_layers": layers, "run_repeat": r, **{m: v[r] for m, v in metrics.items()}}
                             for layers, metrics in points.items() for r in range(2)])

    a = rows({1: {"mem_alias_bytes": [0, 0], "time_compile_s": [1.0, 1.0]},  # only in A
              2: {"mem_alias_bytes": [0, 0], "time_compile_s": [1.0, 1.0], "cost_flops": [5.0, 5.0]},
              3: {"mem_alias_bytes": [0, 0], "time_compile_s": [1.0, 1.0], "cost_flops": [5.0, 5.0]}})
    b = rows({2: {"mem_alias_bytes": [0, 0], "time_compile_s": [1.3, 1.3], "cost_flops": [np.nan, np.nan]},
              3: {"mem_alias_bytes": [0, 0], "time_compile_s": [1.0, 2.0], "cost_flops": [6.0, 6.0]}})
    table = stats.ratio_table(a, b, ["mem_alias_bytes", "time_compile_s", "cost_flops"], fail_above=30)
    assert list(table.columns) == ["cfg_layers", "metric", "median_a", "median_b", "n_a", "n_b", "ratio", "low",
                                   "high", "exceeds"]
    # Not compared: a point of one side only, a metric whose A median is 0, a metric with no
    # value on one side; every other pair is, past the ones left out.
    got = {(row["cfg_layers"], row["metric"]): row for row in table.to_dict("records")}
    assert sorted(got) == [(2, "time_compile_s"), (3, "cost_flops"), (3, "time_compile_s")]
    # Exactly at the limit (1.3 = 1 + 30%) is not past it; a median past it whose interval
    # reaches 1 (repeats 1.0 and 2.0) does not exceed either.
    at, noisy = got[2, "time_compile_s"], got[3, "time_compile_s"]
    assert (at["ratio"], at["low"], at["exceeds"]) == (pytest.approx(1.3), pytest.approx(1.3), False)
    assert noisy["ratio"] == 1.5 and noisy["low"] == 1.0 and not noisy["exceeds"]
    flops = got[3, "cost_flops"]
    assert (flops["n_a"], flops["n_b"], flops["median_a"], flops["median_b"]) == (2, 2, 5.0, 6.0)
    assert flops["low"] == flops["high"] == flops["ratio"] == pytest.approx(1.2) and flops["exceeds"] is False
    empty = stats.ratio_table(a[a["cfg_layers"] == 1], b, ["time_compile_s"], fail_above=30)
    assert empty.empty and list(empty.columns) == list(table.columns)
