"""The repository's regression gates: its representative points, and golden values of
the metrics of those points that do not vary from run to run.

Two gates guard the harness (docs/gates.md). Compile *time* is noisy and differs
between machines, so it is gated against a base revision measured in the same run
(profiler/gates/bench.py, `make bench`). What XLA produces is deterministic for a given
JAX/jaxlib version and backend: the optimised program's size, its corrected FLOPs and
its temp and argument bytes. Those are gated exactly, against golden values committed
in tests/golden/golden.json under a key naming the versions (`make golden` records
them). A scan silently unrolled, or remat lost, changes them at once.

The golden file is an argument: the package does not know where a checkout keeps it
(tests/test_golden.py and `make golden` pass tests/golden/golden.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from profiler.gates.check import DETERMINISTIC, changed, difference
from profiler.spec import Point
from profiler.storage.files import write_atomic
from profiler.units import fmt_exact

UPDATE_COMMAND = "make golden"

# The seed notebook's sizes: its point stacked both ways, and a training step of the
# same block with every layer rematerialised. Then the KV-cached decoder of
# sweeps/decode.toml at 24 scanned layers on one device.
_SEED: dict[str, Any] = dict(hidden=512, heads=4, batch=16, seq=32)
_DECODE: dict[str, Any] = dict(hidden=256, heads=8, kv_heads=4, batch=8, vocab=1024, max_len=128, prompt_len=32)

POINTS: dict[str, Point] = {
    "seed-loop": Point(**_SEED, workload="forward", layers=42, mode="loop"),
    "seed-scan": Point(**_SEED, workload="forward", layers=42, mode="scan"),
    "train-scan-remat": Point(**_SEED, workload="train", layers=32, mode="scan", remat="full"),
    "decode-scan": Point(**_DECODE, workload="decode", layers=24, mode="scan"),
}


def version_key() -> str:
    """What golden values depend on: the JAX and jaxlib versions and the backend."""
    import jax
    import jaxlib

    return f"jax {jax.__version__} / jaxlib {jaxlib.__version__} / {jax.default_backend()}"


def deterministic_metrics(point: Point) -> dict[str, dict[str, float]]:
    """{phase: {metric: value}} of every program of `point`, compiled in this process."""
    from profiler.measurement.measure import measure
    from profiler.workloads import build

    values = {}
    for program in build(point):
        metrics = measure(program)
        values[program.phase] = {name: metrics[name] for name in DETERMINISTIC}
    return values


def read_golden(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def expected(name: str, golden: dict[str, Any], key: str, path: str | Path) -> dict[str, dict[str, float]]:
    """The golden values of point `name` for version `key` (read from `path`); a
    LookupError whose message says how to record them when there are none."""
    values = golden.get(key, {}).get(name)
    if values is None:
        recorded = ", ".join(sorted(golden)) or "none"
        raise LookupError(
            f"no golden values of point {name!r} for {key} (recorded: {recorded}); "
            f"record them with `{UPDATE_COMMAND}` and commit {path}")
    return values


def differences(name: str, want: dict[str, dict[str, float]], got: dict[str, dict[str, float]]) -> list[str]:
    """One line per phase or metric of `got` that differs from `want`: metric, expected, got."""
    lines = []
    for phase in sorted(set(want) | set(got)):
        if phase not in got or phase not in want:
            lines.append(f"{name} [{phase}]: phase {'missing' if phase not in got else 'not in the golden values'}")
            continue
        for metric in DETERMINISTIC:
            a, b = want[phase].get(metric), got[phase].get(metric)
            if changed(a, b):
                lines.append(f"{name} [{phase}]: {metric} expected {fmt_exact(a)}, got {fmt_exact(b)}: {difference(a, b)}")
    return lines


def record_golden(path: str | Path) -> dict[str, Any]:
    """Measure every point and store its values under this installation's version key,
    keeping the values recorded for other versions."""
    path = Path(path)
    golden = read_golden(path)
    golden[version_key()] = {name: deterministic_metrics(point) for name, point in POINTS.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(golden, indent=2, sort_keys=True) + "\n")
    return golden


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profiler.gates.golden",
                                     description="Record the golden values of this JAX version.")
    parser.add_argument("golden", type=Path, help="golden file to update, e.g. tests/golden/golden.json")
    path = parser.parse_args(argv).golden
    golden = record_golden(path)
    print(f"recorded golden values for {version_key()} in {path}", file=sys.stderr)
    print(json.dumps(golden[version_key()], indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
