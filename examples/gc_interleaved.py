"""Interleaved A/B of stage timings with Python's garbage collector kept out of the timed
stages (the profiler's way, measure.collector_paused) and left alone, on a model whose
build leaves garbage (examples/lm_train.py: eval_shape of a Flax model and its optimizer).

    python examples/gc_interleaved.py [ROUNDS]

Each round measures both sides in fresh processes, in a random order; each process builds
the training step and traces, lowers and compiles it once, as a measuring process does.
Prints each stage's median, min and max per side (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KNOBS = ["num_layers=[1]", "emb_dim=[32]", "num_heads=2", "batch=2", "seq=16"]
STAGES = ("time_trace_s", "time_lower_s", "time_compile_s", "time_trace_cpu_s", "time_lower_cpu_s", "time_compile_cpu_s")
CHILD = """
import json, sys
import jax
jax.config.update("jax_enable_compilation_cache", False)
from profiler import workloads
from profiler.measurement.measure import compile_stages
from profiler.spec import load_spec

[program] = workloads.build(load_spec("examples/lm_train.toml", json.loads(sys.argv[2])).points[0])
times = compile_stages(program, collect=sys.argv[1] == "on").times
print(json.dumps({k: times[k] for k in STAGES}))
"""


def one(side: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD.replace("STAGES", repr(STAGES)), side, json.dumps(KNOBS)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(rounds: int) -> None:
    samples: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    rng = random.Random(0)
    for _ in range(rounds):
        for side in rng.sample(["on", "off"], 2):
            samples[side].append(one(side))
    label = {"on": "collector kept out (profiler)", "off": "collector left on"}
    print(f"{rounds} rounds, each side in a fresh process per round, in a random order")
    for stage in STAGES:
        for side in ("on", "off"):
            v = [s[stage] for s in samples[side]]
            print(f"{stage:<19} {label[side]:<30} median {statistics.median(v):.4f} s  "
                  f"min {min(v):.4f}  max {max(v):.4f}  max/min {max(v) / min(v):.2f}  (n={len(v)})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
