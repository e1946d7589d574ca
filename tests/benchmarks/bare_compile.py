"""A bare JAX script, the baseline of tests/benchmarks/overhead.py: in this fresh process,
trace, lower and compile the seed's model once, cold, and print the durations (wall and
process CPU time) as JSON.

No harness around it: no worker, no runner, no monitoring listeners, no analysis. It
does what any ahead-of-time compile script does before the timed part (start the
backend, get the parameters' shapes with `jax.eval_shape`), as the harness does, and
reports how long those took too (from the first line of this script, so the
interpreter's own start is not included).

    python tests/benchmarks/bare_compile.py MODE LAYERS HIDDEN HEADS BATCH SEQ
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402 (imports are part of what this script times)
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from profiler.models.blocks import SimpleBlock  # noqa: E402
from profiler.models.stacking import Stack  # noqa: E402


def main() -> None:
    mode, layers, hidden, heads, batch, seq = sys.argv[1], *map(int, sys.argv[2:])
    imported = time.perf_counter()
    jax.config.update("jax_enable_compilation_cache", False)
    jax.devices()
    backend = time.perf_counter()
    net = Stack(block=SimpleBlock, block_kwargs=dict(hidden_dim=hidden, num_heads=heads, dtype=jnp.float32),
                mode=mode, layers=layers)
    params = jax.eval_shape(net.init, jax.random.key(0), jax.ShapeDtypeStruct((1, seq, hidden), jnp.float32))
    x = jax.ShapeDtypeStruct((batch, seq, hidden), jnp.float32)
    built = time.perf_counter()

    t0, c0 = time.perf_counter(), time.process_time()
    traced = jax.jit(net.apply).trace(params, x)
    t1, c1 = time.perf_counter(), time.process_time()
    lowered = traced.lower()
    t2, c2 = time.perf_counter(), time.process_time()
    compiled = lowered.compile()
    t3, c3 = time.perf_counter(), time.process_time()
    flops = compiled.cost_analysis().get("flops")  # after the timing: shows it is the same program
    print(json.dumps({"import_s": imported - STARTED, "backend_s": backend - imported, "build_s": built - backend,
                      "trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2,
                      "trace_cpu_s": c1 - c0, "lower_cpu_s": c2 - c1, "compile_cpu_s": c3 - c2, "xla_flops": flops}))


if __name__ == "__main__":
    main()
