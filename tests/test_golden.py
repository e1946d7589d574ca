"""Golden values: the deterministic metrics of the representative points (real compiles,
in-process) against those committed for the installed JAX version, and proof that the
gate fails when a point compiles to a different program.

Locally, a JAX version without golden values skips the comparison with the command that
records them; in CI (CI=true, as GitHub Actions and most services set it) it fails: after
a JAX upgrade the gate must not pass silently."""

import json
from pathlib import Path

import pytest

from profiler.gates import golden
from profiler.spec import Point
from tests.ci import in_ci, missing

GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "golden.json"
KEY = golden.version_key()
GOLDEN = golden.read_golden(GOLDEN_FILE)


def missing_golden_values(message: str) -> None:
    """Fail in CI, skip elsewhere: after a JAX upgrade the gate must not pass silently."""
    missing(message)


@pytest.fixture(scope="module")
def measured():
    return {name: golden.deterministic_metrics(point) for name, point in golden.POINTS.items()}


@pytest.mark.parametrize("name", list(golden.POINTS))
def test_deterministic_metrics_match_the_golden_values(name, measured):
    try:
        want = golden.expected(name, GOLDEN, KEY, GOLDEN_FILE)
    except LookupError as e:
        missing_golden_values(str(e))
    problems = golden.differences(name, want, measured[name])
    assert not problems, "deterministic metrics changed:\n" + "\n".join(problems)


def test_a_scan_compiled_unrolled_fails_the_gate(measured):
    # The loop program stands in for a scan that silently got unrolled: the gate,
    # given the scan's values as expected, must name what changed.
    problems = golden.differences("seed-scan", measured["seed-scan"], measured["seed-loop"])
    text = "\n".join(problems)
    assert "size_hlo_instructions expected" in text
    assert "mem_temp_bytes expected" in text
    assert "cost_flops expected" in text  # the corrected FLOPs differ by 6e-7 relative
    assert golden.differences("seed-scan", measured["seed-scan"], measured["seed-scan"]) == []


def test_a_training_step_that_lost_remat_fails_the_gate(measured):
    lost = Point(**{**golden.POINTS["train-scan-remat"].model_dump(), "remat": "none"})
    problems = golden.differences("train-scan-remat", measured["train-scan-remat"], golden.deterministic_metrics(lost))
    text = "\n".join(problems)
    # Without remat the backward pass keeps every activation instead of recomputing it.
    assert "mem_temp_bytes expected" in text and "cost_flops expected" in text


def test_a_missing_phase_fails_the_gate(measured):
    want = {**measured["seed-scan"], "decode": measured["seed-scan"]["main"]}
    assert golden.differences("seed-scan", want, measured["seed-scan"]) == ["seed-scan [decode]: phase missing"]


def test_an_unknown_version_skips_with_the_command_that_records_it(tmp_path):
    path = tmp_path / "golden.json"
    path.write_text(json.dumps({"jax 0.0.1 / jaxlib 0.0.1 / cpu": {"seed-scan": {}}}))
    with pytest.raises(LookupError, match=r"for jax 9 .* \(recorded: jax 0\.0\.1 .*`make golden`"):
        golden.expected("seed-scan", golden.read_golden(path), "jax 9 / jaxlib 9 / cpu", path)


@pytest.mark.parametrize(("ci", "outcome"), [
    *((value, pytest.fail.Exception) for value in ("true", "1", "yes", "True", "YES", " true ")),
    *((value, pytest.skip.Exception) for value in ("", "0", "false", "no"))])
def test_missing_golden_values_fail_in_ci_and_skip_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    assert in_ci() == (outcome is pytest.fail.Exception)
    with pytest.raises(outcome, match="make golden"):
        missing_golden_values("no golden values for jax 9; record them with `make golden`")


def test_the_committed_golden_values_hold_every_point_and_metric():
    assert GOLDEN, f"{GOLDEN_FILE} is missing or empty"
    for key, points in GOLDEN.items():
        assert key.startswith("jax ") and " / jaxlib " in key
        for name, phases in points.items():
            for phase, values in phases.items():
                assert set(values) == set(golden.DETERMINISTIC), (key, name, phase)


def _seed_block_params(hidden: int) -> int:
    """Parameters of one seed block, counted from its definition (profiler/models/blocks.py):
    self-attention's query, key, value and output projections, each a hidden x hidden kernel
    and a bias of hidden, then a dense layer of the same shape."""
    return 4 * (hidden * hidden + hidden) + (hidden * hidden + hidden)


def _seed_forward_matmul_flops(point: Point) -> int:
    """Multiply-adds (2 FLOPs each) of the seed block's matrix products: four attention
    projections and the dense layer (5 x B·S·H²), the attention scores and their weighted
    sum (2 x B·S²·H, summed over heads)."""
    b, s, h = point.batch, point.seq, point.hidden
    return point.layers * 2 * (5 * b * s * h * h + 2 * b * s * s * h)


# The golden values are recorded by the code they gate (`make golden`), so a value that was
# wrong when recorded would be kept. These check the committed ones for every recorded JAX
# version against arithmetic written out here from the points' shapes.
@pytest.mark.parametrize("name", ["seed-loop", "seed-scan"])
def test_the_golden_forward_values_agree_with_arithmetic_from_the_shapes(name):
    point = golden.POINTS[name]
    params = point.layers * _seed_block_params(point.hidden)
    floats_in = point.batch * point.seq * point.hidden
    matmuls = _seed_forward_matmul_flops(point)
    assert GOLDEN
    for key, points in GOLDEN.items():
        values = points[name]["main"]
        # float32 parameters and input: 4 bytes each, nothing else
        assert values["mem_argument_bytes"] == 4 * (params + floats_in), key
        # the matrix products, plus the softmax, bias and residual adds: under 1% more
        assert matmuls < values["cost_flops"] < 1.01 * matmuls, (key, values["cost_flops"] / matmuls)


def test_the_golden_training_arguments_are_parameters_and_adam_s_two_moments():
    point = golden.POINTS["train-scan-remat"]
    params = point.layers * _seed_block_params(point.hidden)
    floats_in = point.batch * point.seq * point.hidden
    for key, points in GOLDEN.items():
        # parameters, AdamW's first and second moments (float32), the input, and the
        # optimizer's step count (one int32)
        assert points["train-scan-remat"]["main"]["mem_argument_bytes"] == 4 * (3 * params + floats_in) + 4, key
