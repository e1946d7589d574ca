"""A program: one function a workload hands the measurer, with its abstract arguments,
and the concrete arguments made only when it runs.

Arguments are *abstract* (`jax.ShapeDtypeStruct` pytrees), so that compiling allocates
nothing; real arrays are made by `Program.make_args` (usually with `random_like`), and
only when the point runs.
"""

from __future__ import annotations

import contextlib
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
    info: Mapping[str, Any] = field(default_factory=dict)
    """Columns known from the configuration alone (e.g. analytic FLOPs)."""
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    """Entered around tracing, lowering, compiling and running (e.g. the device mesh the
    program's shardings refer to)."""
    run: Callable[[Any], Mapping[str, Any]] | None = None
    """How to execute the compiled program when `run` is on, for workloads whose use is
    more than repeating one call (e.g. generating tokens); returns `time_*` columns.
    None = the generic timing: a first call and `steps` steady-state calls."""


def random_like(abstract: Any, seed: int = 0, scale: float = 0.02) -> Any:
    """Real arrays shaped like an abstract pytree: normal(0, scale) floats, zero integers.

    Used to run compiled programs; step times do not depend on the values. Drawn with
    NumPy and transferred once, because the alternatives are slow for deep unrolled
    stacks: a jitted `model.init` took 82 s to compile for 64 looped layers at hidden
    256 (the model itself: 4 s), and op-by-op `jax.random` 14 s.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)

    def draw(leaf: Any) -> Any:
        if jnp.issubdtype(leaf.dtype, jnp.floating):  # bfloat16 too, unlike np.issubdtype
            return (scale * rng.standard_normal(leaf.shape, dtype=np.float32)).astype(leaf.dtype)
        return np.zeros(leaf.shape, leaf.dtype)

    return jax.device_put(jax.tree.map(draw, abstract))
