"""Interleaved A/B of repeated `profiler.profile()` calls in one Python session (docs/scale.md):
A forks from the server the session's first call started (now); B closes it before each
call, so each call starts its own (as every call did before). Prints each side's median
wall time and the part of it beyond the traced, lowered and compiled stages.

    python examples/profile_latency.py [ROUNDS]
"""

from __future__ import annotations

import random
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import profiler
from profiler import api


def layer(x, w):
    return jnp.tanh(x @ w)


def main(rounds: int) -> None:
    x, w = jax.ShapeDtypeStruct((8, 64), jnp.float32), jax.ShapeDtypeStruct((64, 64), jnp.float32)
    profiler.profile(layer, x, w)  # the session's first call: starts the server
    out: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    rng = random.Random(0)
    for _ in range(rounds):
        for side in rng.sample(["A", "B"], 2):
            if side == "B":
                api._session.pop("servers").close()
            t0 = time.perf_counter()
            r = profiler.profile(layer, x, w)
            wall = time.perf_counter() - t0
            out[side].append((wall, wall - (r["time_trace_s"] + r["time_lower_s"] + r["time_compile_s"])))
    for side, label in (("A", "shared server (now)"), ("B", "a server per call (before)")):
        beyond = [b for _, b in out[side]]
        print(f"{label:<27} n={len(beyond)}  wall median {statistics.median(w for w, _ in out[side]):.3f} s, "
              f"beyond the stages median {statistics.median(beyond):.3f} s (min {min(beyond):.3f}, max {max(beyond):.3f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
