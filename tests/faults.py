"""Test-only program factories (spec key `program = "tests.faults:NAME"`) that fail for real.

Each runs inside the measuring process, where the runner must turn the way it ends into
a row: a real segfault or abort, a real sleep, a real allocation.
"""

import ctypes
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def ok(hidden: int, **_):
    """A tiny program that compiles and runs: the healthy neighbour of the faults."""
    return (lambda x: jnp.tanh(x @ x.T)), (jax.ShapeDtypeStruct((4, hidden), jnp.float32),)


def slow(hidden: int, **_):
    """The healthy program after a pause: still measuring when a test stops its sweep.
    With $FAULTS_GATE set, the pause lasts until that file exists: a test that creates it
    only after stopping the sweep knows these points were still measuring then, however
    loaded the machine. Without it, 2 s."""
    gate = os.environ.get("FAULTS_GATE")
    if gate is None:
        time.sleep(2)
    else:
        deadline = time.monotonic() + 300
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
    return ok(hidden)


def segfault():
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def abort():
    os.abort()  # SIGABRT


def sleep():
    time.sleep(3600)


def hog():
    """Touch memory 64 MiB at a time, until the runner stops the process."""
    chunks = []
    for _ in range(64):  # 4 GiB at most: a runner that does not stop us fails the test
        chunks.append(np.ones(8 << 20))
        time.sleep(0.01)
    raise RuntimeError(f"allocated {len(chunks) * 64} MiB and nobody stopped me")


def raises():
    raise ValueError("a broken factory")
