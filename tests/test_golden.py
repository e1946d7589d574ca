"""Golden values: the deterministic metrics of the representative points (real compiles,
in-process) against those committed for the installed JAX version, and proof that the
gate fails when a point compiles to a different program."""

import json

import pytest

from profiler import gates
from profiler.spec import Point

KEY = gates.version_key()
GOLDEN = gates.read_golden()


@pytest.fixture(scope="module")
def measured():
    return {name: gates.deterministic_metrics(point) for name, point in gates.POINTS.items()}


@pytest.mark.parametrize("name", list(gates.POINTS))
def test_deterministic_metrics_match_the_golden_values(name, measured):
    try:
        want = gates.expected(name, GOLDEN, KEY)
    except LookupError as e:
        pytest.skip(str(e))
    problems = gates.differences(name, want, measured[name])
    assert not problems, "deterministic metrics changed:\n" + "\n".join(problems)


def test_a_scan_compiled_unrolled_fails_the_gate(measured):
    # The loop program stands in for a scan that silently got unrolled: the gate,
    # given the scan's values as expected, must name what changed.
    problems = gates.differences("seed-scan", measured["seed-scan"], measured["seed-loop"])
    text = "\n".join(problems)
    assert "size_hlo_instructions expected" in text
    assert "mem_temp_bytes expected" in text
    assert "cost_flops expected" in text  # the corrected FLOPs differ by 6e-7 relative
    assert gates.differences("seed-scan", measured["seed-scan"], measured["seed-scan"]) == []


def test_a_training_step_that_lost_remat_fails_the_gate(measured):
    lost = Point(**{**gates.POINTS["train-scan-remat"].model_dump(), "remat": "none"})
    problems = gates.differences("train-scan-remat", measured["train-scan-remat"], gates.deterministic_metrics(lost))
    text = "\n".join(problems)
    # Without remat the backward pass keeps every activation instead of recomputing it.
    assert "mem_temp_bytes expected" in text and "cost_flops expected" in text


def test_a_missing_phase_fails_the_gate(measured):
    want = {**measured["seed-scan"], "decode": measured["seed-scan"]["main"]}
    assert gates.differences("seed-scan", want, measured["seed-scan"]) == ["seed-scan [decode]: phase missing"]


def test_an_unknown_version_skips_with_the_command_that_records_it(tmp_path):
    path = tmp_path / "golden.json"
    path.write_text(json.dumps({"jax 0.0.1 / jaxlib 0.0.1 / cpu": {"seed-scan": {}}}))
    with pytest.raises(LookupError, match=r"for jax 9 .* \(recorded: jax 0\.0\.1 .*`make golden`"):
        gates.expected("seed-scan", gates.read_golden(path), "jax 9 / jaxlib 9 / cpu")


def test_the_committed_golden_values_hold_every_point_and_metric():
    assert GOLDEN, f"{gates.GOLDEN_FILE} is missing or empty"
    for key, points in GOLDEN.items():
        assert key.startswith("jax ") and " / jaxlib " in key
        for name, phases in points.items():
            for phase, values in phases.items():
                assert set(values) == set(gates.DETERMINISTIC), (key, name, phase)
