"""Interleaved A/B of a sweep's fixed cost: the command's wall time for one tiny point
(sweeps/smoke.toml, layers=1, compile only, with its report), the fork server started
before the spec is read (now) or after it (before; `devices=1` in the overrides turns the
early start off and changes nothing else), against a bare `import jax, flax.linen`.

    python examples/sweep_fixed_cost.py [ROUNDS]
"""

from __future__ import annotations

import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SWEEP = ["-m", "profiler", "sweep", "sweeps/smoke.toml", "layers=1", "mode=scan", "repeats=1", "run=false"]


def one(side: str, out: Path) -> tuple[float, float]:
    """(wall seconds, the measured work's seconds: build+trace+lower+compile)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if side == "import":
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import jax, flax.linen"], check=True, env=env)
        return time.perf_counter() - t0, 0.0
    args = [*SWEEP, *(["devices=1"] if side == "late" else []), "--out", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    line = next(x for x in done.stdout.splitlines() if x.startswith("time:"))
    total = float(re.search(r"wall ([\d.]+) s", line).group(1))
    work = re.search(r"(\d+)% build\+trace\+lower\+compile", line)
    return wall, total * int(work.group(1)) / 100 if work else 0.0


def main(rounds: int) -> None:
    samples: dict[str, list[tuple[float, float]]] = {"import": [], "early": [], "late": []}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for side in rng.sample(list(samples), 3):
                samples[side].append(one(side, Path(tmp) / f"{side}-{r}"))
    label = {"import": "import jax, flax.linen", "early": "sweep, server started early (now)",
             "late": "sweep, server started after the spec (before)"}
    for side, values in samples.items():
        wall = statistics.median(w for w, _ in values)
        fixed = statistics.median(w - m for w, m in values)
        print(f"{label[side]:<46} n={len(values)}  wall median {wall:.2f} s"
              + (f", beyond the measured work {fixed:.2f} s" if side != "import" else ""))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
