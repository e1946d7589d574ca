"""A bare JAX script, the baseline of tests/benchmarks/overhead.py: in this fresh process,
trace, lower and compile the seed's model once, cold, and print the durations as JSON.

No harness around it: no worker, no runner, no monitoring listeners, no analysis. It
does what any ahead-of-time compile script does before the timed part (start the
backend, get the parameters' shapes with `jax.eval_shape`), as the harness does.

    python tests/benchmarks/bare_compile.py MODE LAYERS HIDDEN HEADS BATCH SEQ
"""

import json
import sys
import time

import jax
import jax.numpy as jnp

from profiler.blocks import SimpleBlock
from profiler.stacking import Stack


def main() -> None:
    mode, layers, hidden, heads, batch, seq = sys.argv[1], *map(int, sys.argv[2:])
    jax.config.update("jax_enable_compilation_cache", False)
    jax.devices()
    net = Stack(block=SimpleBlock, block_kwargs=dict(hidden_dim=hidden, num_heads=heads, dtype=jnp.float32),
                mode=mode, layers=layers)
    params = jax.eval_shape(net.init, jax.random.key(0), jax.ShapeDtypeStruct((1, seq, hidden), jnp.float32))
    x = jax.ShapeDtypeStruct((batch, seq, hidden), jnp.float32)

    t0 = time.perf_counter()
    traced = jax.jit(net.apply).trace(params, x)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    flops = compiled.cost_analysis().get("flops")  # after the timing: shows it is the same program
    print(json.dumps({"trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2, "xla_flops": flops}))


if __name__ == "__main__":
    main()
