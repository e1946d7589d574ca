"""Forecast and plan: model selection on known curves, forecasts checked against a real
deeper measurement, the command line's output and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from profiler.analysis import forecast as F
from profiler.analysis.plan import parse_size, plan_target
from profiler.cli import main
from profiler.processes.runner import run_sweep
from profiler.spec import build_spec
from profiler.storage.store import load, part_files
from profiler.units import fmt

# Compile-only would do for the sizes; run on gives the planner step times to weigh.
DEEP_SPEC = {
    "name": "forecast-real", "mode": ["loop", "scan"], "layers": [1, 2, 4, 8, 16, 32], "hidden": 32,
    "heads": 2, "batch": 2, "seq": 8, "repeats": 2, "run": True, "steps": 2,
}


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep to 32 layers: forecasts from 1-16 are checked against 32."""
    folder = tmp_path_factory.mktemp("forecast") / "deep"
    result = run_sweep(build_spec(DEEP_SPEC), folder, jobs=2)
    assert result.ok, result.statuses
    return folder


def _measured(df: pd.DataFrame, metric: str, **keys: object) -> float:
    rows = F.prepare(df)
    for key, value in keys.items():
        rows = rows[rows[f"cfg_{key}"] == value]
    return float(rows[metric].median())


def _one(forecasts: list[F.Forecast], metric: str, **series: object) -> F.Forecast:
    return next(f for f in forecasts if f.metric == metric and all(f.series.get(k) == v for k, v in series.items()))


def test_known_offset_power_law_is_recovered():
    x = np.array([1, 2, 4, 8, 16, 32, 64], dtype=float)
    y = 50 + 0.5 * x**1.5
    name, candidates = F.choose(x, y)
    assert name == "offset_power"
    a, b, k = F.MODELS[name](x, y).params
    assert (a, b, k) == pytest.approx((50, 0.5, 1.5), rel=1e-6)
    # a single power law over all points cannot do it: the validation says so
    assert next(c for c in candidates if c.model == "power").score > 0.3
    curve = F.fit_curve(x, y, 256)
    assert curve.at(256)[0] == pytest.approx(50 + 0.5 * 256**1.5, rel=1e-6)
    assert curve.growth == pytest.approx(1.5 * 0.5 * 64**1.5 / (50 + 0.5 * 64**1.5), rel=1e-3)


def test_flat_tail_after_a_different_first_point_is_a_tail_model():
    """A scanned program: one size at 1 layer (no loop), another from 2 layers on."""
    x = np.array([1, 2, 4, 8, 16], dtype=float)
    y = np.array([134, 236, 236, 236, 236], dtype=float)
    curve = F.fit_curve(x, y, 32)
    assert curve.fit.model == "linear_tail"
    assert curve.at(32)[0] == pytest.approx(236)


def test_noisy_repeats_widen_the_interval_and_it_covers_the_truth():
    rng = np.random.default_rng(1)
    x = np.repeat([2, 8, 32, 64, 128], 3).astype(float)
    truth = lambda L: 0.2 + 0.01 * L**1.3  # noqa: E731
    y = truth(x) * np.exp(rng.normal(0, 0.05, len(x)))
    curve = F.fit_curve(x, y, 256)
    _, low, high = curve.at(256)
    assert low < truth(256) < high
    parts = curve.parts(256)
    assert parts["repeats"] > 0 and parts["bootstrap"] > 0 and parts["model"] > 0
    assert curve.parts(128)["model"] == 0  # no extrapolation, no extrapolation error
    _, exact_low, exact_high = F.fit_curve(x, truth(x), 256).at(256)
    assert exact_high - exact_low < high - low


def test_an_accelerating_metric_s_upper_end_allows_quadratic_growth_past_the_measured_depths():
    # Linear up to 128 layers, then XLA's scheduling takes over (docs/forecast.md): the
    # chosen model cannot see it; only the upper end of a timing's interval allows it.
    x = np.array([2, 8, 32, 64, 128], float)
    y = 0.1 + 0.03 * x
    plain, accelerating = F.fit_curve(x, y, 256), F.fit_curve(x, y, 256, accelerating=True)
    assert plain.at(256)[0] == pytest.approx(accelerating.at(256)[0])
    assert plain.at(256)[2] < 0.1 + 0.03 * 256 * 1.01  # an exact line: a narrow interval
    assert accelerating.at(256)[2] == pytest.approx(0.1 + 0.03 * 128 * 2**2)
    assert accelerating.at(384)[2] == pytest.approx(0.1 + 0.03 * 128 * 3**2)
    assert accelerating.at(100) == plain.at(100)  # inside the measured depths: nothing added
    assert accelerating.parts(256)["acceleration"] > 0.9
    flat = F.fit_curve(x, np.full_like(x, 0.5), 256, accelerating=True)  # a scan: nothing grows
    assert flat.at(256)[2] < 0.51


def test_too_few_depths_is_an_error():
    with pytest.raises(F.ForecastError, match="too few points"):
        F.fit_curve([2, 8, 2, 8], [1.0, 2.0, 1.1, 2.1], 64)


def test_forecast_of_a_real_sweep_matches_a_real_deeper_measurement(deep: Path):
    df = load(deep)
    forecasts = F.forecast_target(df[df["cfg_layers"] <= 16], {"layers": 32})
    assert {f.series["mode"] for f in forecasts} == {"loop", "scan"}
    for mode in ("loop", "scan"):
        size = _one(forecasts, "size_hlo_instructions", mode=mode)
        measured = _measured(df, "size_hlo_instructions", mode=mode, layers=32)
        assert size.predicted == pytest.approx(measured, rel=0.02)
        assert size.low <= measured <= size.high
        assert size.exact and "run=false" in size.measure and "layers=32" in size.measure
        assert [p["layers"] for p in size.based_on] == [1, 2, 4, 8, 16]
        # Where the trace's measured CPU time falls against the forecast is a timing on a
        # 2-core machine: tests/benchmarks/forecast_timing.py (make bench-forecast) checks it.
        # What is deterministic is the interval's shape and what it was validated on.
        timing = _one(forecasts, "time_trace_cpu_s", mode=mode)
        assert timing.low < timing.predicted < timing.high
        assert not timing.exact and timing.measure is None
        assert timing.validation and all(v["test"] <= 16 for v in timing.validation)
    flops = _one(forecasts, "cost_flops", mode="loop")
    assert flops.predicted == pytest.approx(_measured(df, "cost_flops", mode="loop", layers=32), rel=1e-6)


def test_forecast_json_shape(deep: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["forecast", str(deep), "layers=64", "mode=loop", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {o["metric"] for o in out} >= {"time_to_compiled_s", "time_compile_s", "size_hlo_instructions",
                                          "mem_footprint_bytes", "time_step_median_s"}
    for o in out:
        assert {"metric", "predicted", "low", "high", "model", "based_on", "validation_error"} <= o.keys()
        assert o["low"] <= o["predicted"] <= o["high"]
        assert o["series"] == {} and o["target"] == {"layers": 64, "mode": "loop"}
        assert len(o["based_on"]) == 6 and all(p["repeats"] == 2 for p in o["based_on"])


def test_forecast_text_names_models_and_the_measure_command(deep: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["forecast", str(deep), "layers=64"]) == 0
    out = capsys.readouterr().out
    assert "mode=loop -> layers=64" in out and "mode=scan -> layers=64" in out
    assert "validation error" in out and "python -m profiler sweep" in out


def test_forecast_in_hidden_goes_through_each_measured_width(synthetic):
    """Synthetic metrics grow linearly with hidden (conftest LAWS times hidden / 256)."""
    folder = synthetic(modes=("loop",), layers=(2, 8, 32, 64), hidden=(256, 512), noise=0.0)
    at_512 = _one(F.forecast_target(folder, ["layers=128", "hidden=512"]), "size_hlo_instructions")
    at_1024 = _one(F.forecast_target(folder, ["layers=128", "hidden=1024"]), "size_hlo_instructions")
    assert at_1024.predicted == pytest.approx(2 * at_512.predicted, rel=1e-3)
    assert "then in hidden" in at_1024.model and "not validated" in at_1024.model


def _copy_depths(src: Path, dst: Path, layers: set[int]) -> Path:
    dst.mkdir()
    for part in part_files(src):
        if set(pq.read_table(part, columns=["cfg_layers"])["cfg_layers"].to_pylist()) <= layers:
            (dst / part.name).write_bytes(part.read_bytes())
    return dst


@pytest.mark.parametrize("args, message", [
    (["layers=64", "depth=3"], "unknown key 'depth'"),
    (["layers=64", "hidden=64"], "do not vary it"),
    (["layers=64", "mode=scan_shared"], "not in the results"),
    (["mode=loop"], "layers=N"),
    (["layers=64", "remat"], "expected KEY=VALUE"),
])
def test_forecast_bad_target_exits_2_with_one_line(deep: Path, capsys: pytest.CaptureFixture[str], args, message):
    assert main(["forecast", str(deep), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_forecast_too_few_depths_exits_2(deep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    shallow = _copy_depths(deep, tmp_path / "shallow", {1, 2})
    assert main(["forecast", str(shallow), "layers=64"]) == 2
    err = capsys.readouterr().err
    assert "too few points" in err and err.count("\n") == 1


def test_forecast_reads_rows_without_importing_jax(deep: Path):
    code = ("import sys; from profiler import forecast_target, plan_target; "
            f"forecast_target({str(deep)!r}, ['layers=64'], ['size_hlo_bytes']); plan_target({str(deep)!r}, ['layers=64'], memory='1GiB', steps=10); "
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("text, size", [("80GiB", 80 * 2**30), ("16GB", 16 * 10**9), ("512M", 512 * 2**20),
                                        ("1000", 1000), ("1.5 TiB", int(1.5 * 2**40))])
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_plan_ranks_measured_options_and_explains(deep: Path):
    p = plan_target(deep, memory="80GiB", steps=1000)
    assert p.target == {"layers": 32}
    assert {o.name for o in p.options} == {"mode=loop", "mode=scan"}
    assert all(o.fits == "yes" and o.setup.measured for o in p.options)
    best = p.fewest_total
    assert best.total(1000) == min(o.total(1000) for o in p.options)
    other = next(o for o in p.options if o is not best)
    assert "compiled" in p.reasons[other.name] and "1,000 steps" in p.reasons[other.name]


def test_plan_with_a_budget_nothing_fits(deep: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["plan", str(deep), "layers=64", "--memory-per-device", "64KiB", "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "fewest total seconds for 10 steps: none fits" in out
    assert out.count("more than 64 KiB") == 2 and "~" in out  # both forecast, both too big


@pytest.mark.parametrize("args, message", [
    (["--memory-per-device", "80 parsecs"], "cannot read '80 parsecs' as a size"),
    (["--memory-per-device", "0GiB"], "more than 0 bytes"),
    (["--memory-per-device", "80GiB", "--devices", "4"], "do not vary it"),
    (["--memory-per-device", "80GiB", "--steps", "-1"], "--steps"),
])
def test_plan_bad_input_exits_2_with_one_line(deep: Path, capsys: pytest.CaptureFixture[str], args, message):
    assert main(["plan", str(deep), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_report_builders_on_a_real_sweep(deep: Path):
    from profiler.report.forecast_figures import (
        band,
        forecast_figure,
        growth_lines,
        series_curves,
        validation_table,
    )

    curves = series_curves(load(deep), ["size_hlo_instructions", "time_to_compiled_s"], bootstrap=20)
    table = validation_table(curves)
    assert len(table) == 4 and set(table["cfg_mode"]) == {"loop", "scan"}
    growth = dict(zip(table["cfg_mode"] + " " + table["metric"], table["growth"], strict=True))
    # program size at depth: the loop's grows linearly, the scan's not at all
    assert growth["loop size_hlo_instructions"] == pytest.approx(1.0, abs=0.01)
    assert growth["scan size_hlo_instructions"] == pytest.approx(0.0, abs=0.01)
    lines = growth_lines(curves)
    assert any("size_hlo_instructions at 32 layers" in line and "mode=loop L^1.00" in line for line in lines)
    fig = forecast_figure(curves, "time_to_compiled_s", "s")
    assert len(fig.data) == 8  # band, model, forecast, medians per mode
    ahead = band(curves[0][2])
    assert ahead["layers"].iloc[0] == 32 and ahead["layers"].iloc[-1] == pytest.approx(96)
    assert (ahead["low"] <= ahead["predicted"]).all() and (ahead["predicted"] <= ahead["high"]).all()
    assert forecast_figure(curves, "mem_temp_bytes") is None


def test_report_has_the_forecast_section_and_growth_at_depth(deep: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]):
    import html
    import re

    from profiler.report import write_report

    raw = write_report(deep, tmp_path / "r.html").read_text()
    page = html.unescape(re.sub("<[^>]+>", " ", raw))
    assert "Forecast beyond the measured depths" in page and "validation error" in page
    assert "The planner at layers=32 for 80GiB" in page
    # The same footprint reads the same on the page and on the command line, in binary units.
    assert main(["plan", str(deep), "layers=32", "--memory-per-device", "80GiB", "--steps", "1000"]) == 0
    out = capsys.readouterr().out
    (planner,) = [t for t in re.findall(r"<table>.*?</table>", raw, re.S) if "memory per device" in t]
    memory = {cells[0]: cells[1] for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row) for row in
                                               re.findall(r"<tr>(.*?)</tr>", planner, re.S)) if cells}
    for option in plan_target(deep, memory="80GiB", steps=1000).options:
        shown = fmt(option.memory.value, "bytes")
        assert shown.endswith(("KiB", "MiB", "GiB")) and memory[option.name] == shown and shown in out, shown
    # the summary's growth comes from the chosen model at the deepest point, not one power law
    assert "HLO instructions: loop ∝ L^1.00 at 32 layers, scan ∝ L^0.00 at 32 layers" in page
