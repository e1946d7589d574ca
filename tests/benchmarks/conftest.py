"""pytest-benchmark files every saved run with the machine's fingerprint
(`profiler.measurement.env.machine_fingerprint`: CPU model, flags, core count) and refuses to compare
with a run saved on another machine: compile times of the same program differ 2.5-3x
between two 2-core EPYCs (docs/gates.md)."""

import pytest

from profiler.measurement.env import machine_fingerprint


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fingerprint"] = machine_fingerprint()


def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    theirs = compared_benchmark["machine_info"].get("fingerprint")
    if theirs != machine_fingerprint():
        raise pytest.UsageError(
            f"--benchmark-compare: the baseline was recorded on another machine ({theirs or 'no fingerprint'}; "
            f"this one is {machine_fingerprint()}): timings are not comparable; `make bench-baseline` records one here")
