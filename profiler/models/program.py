"""A program: one function a workload hands the measurer, with its abstract arguments,
and the concrete arguments made only when it runs.

Arguments are *abstract* (`jax.ShapeDtypeStruct` pytrees), so that compiling allocates
nothing; real arrays are made by `Program.make_args` (usually with `random_like`), and
only when the point runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Program:
    """One jitted program of a workload, ready to trace, lower and compile."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    """Abstract arguments: pytrees of `jax.ShapeDtypeStruct`."""
    make_args: Callable[[], tuple[Any, ...]]
    """Concrete arguments for running the compiled program (called only when `run` is on)."""
    phase: str = "main"
    """Which program of the workload this is; becomes the `cfg_phase` column."""
    donate_argnums: tuple[int, ...] = ()
    next_args: Callable[[tuple[Any, ...], Any], tuple[Any, ...]] | None = None
    """Arguments of the next step from this step's arguments and output; needed when
    arguments are donated (they are invalid after the call). None = reuse the arguments."""
    jit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra `jax.jit` options (shardings, static arguments)."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the call, abstract like `args` (static ones as their values)."""
    make_kwargs: Callable[[], Mapping[str, Any]] | None = None
    """Concrete keyword arguments for running (None: `kwargs` as they are)."""
    jitted: bool = False
    """`fn` is already a `jax.jit` function with its own options: traced as it is, with no
    jit of ours around it (donate_argnums and jit_kwargs must then be empty)."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """Columns known from the configuration alone (e.g. analytic FLOPs)."""
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    """Entered around tracing, lowering, compiling and running (e.g. the device mesh the
    program's shardings refer to)."""
    run: Callable[[Any], Mapping[str, Any]] | None = None
    """How to execute the compiled program when `run` is on, for workloads whose use is
    more than repeating one call (e.g. generating tokens); returns `time_*` columns.
    None = the generic timing: a first call and `steps` steady-state calls."""


_POOL = 1_000_003
"""Normal values drawn once per call of random_like; a leaf of more than _DRAWN values
takes its values from them, from a random offset, repeating them if it is larger. A
prime, so that no two layers of a stacked leaf (sizes of powers of two times small
numbers) start at the same place in it."""
_DRAWN = 4096
"""Leaves up to this many values are drawn one value at a time (small test models keep
fully independent values)."""


def random_like(abstract: Any, seed: int = 0, scale: float = 0.02) -> Any:
    """Real arrays shaped like an abstract pytree: normal(0, scale) floats, zero integers,
    typed PRNG keys of the leaf's implementation.

    Used to run compiled programs; step times do not depend on the values. Drawn with
    NumPy and transferred once, because the alternatives are slow for deep unrolled
    stacks: a jitted `model.init` took 82 s to compile for 64 looped layers at hidden
    256 (the model itself: 4 s), and op-by-op `jax.random` 14 s. Larger leaves copy
    from one pool of normal draws, each from its own random offset: drawing every value
    was most of a run point's set-up (3 s of 168 M values for 128 looped layers at
    hidden 512; 57 s of the default sweep).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    pool: list[np.ndarray] = []

    def draw(leaf: Any) -> Any:
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):  # a typed key (jax.random.key)
            key = jax.random.key(seed, impl=leaf.dtype._impl)  # the key type's own implementation
            return jax.random.split(key, leaf.shape) if leaf.shape else key
        if not jnp.issubdtype(leaf.dtype, jnp.floating):  # bfloat16 is floating too, unlike np.issubdtype
            return np.zeros(leaf.shape, leaf.dtype)
        size = math.prod(leaf.shape)
        if size <= _DRAWN:
            return (scale * rng.standard_normal(leaf.shape, dtype=np.float32)).astype(leaf.dtype, copy=False)
        if not pool:  # twice over, so that every window of _POOL values is one slice
            pool.append(np.tile(scale * rng.standard_normal(_POOL, dtype=np.float32), 2))
        start = int(rng.integers(_POOL))
        window = pool[0][start:start + min(size, _POOL)]
        values = np.resize(window, size) if size > _POOL else np.array(window, dtype=leaf.dtype)
        return values.astype(leaf.dtype, copy=False).reshape(leaf.shape)

    return jax.device_put(jax.tree.map(draw, abstract))
