"""Workload `program`: a user's factory returns `(fn, args)`; `jax.jit(fn)` is measured on args.

The factory (spec key `program = "package.module:factory"`) receives the point's model keys
that it names as keyword arguments (all of them if it takes `**kwargs`; spec.factory_keys),
never the keys of how the point is measured. `args` is a tuple of pytrees of
`jax.ShapeDtypeStruct`s or arrays, measured as they are; modes do not apply. On a mesh
(key mesh, or a TPU or GPU target) every argument is replicated on it.
"""

from __future__ import annotations

from typing import Any

import jax

from profiler import refs
from profiler.models import sharding
from profiler.models.program import Program, random_like
from profiler.spec import Point, factory_keys


def build(point: Point) -> list[Program]:
    factory = refs.load(point.program)
    try:
        kwargs = refs.keyword_arguments(factory, point.model_dump(include=set(factory_keys(factory))))
    except ValueError as e:
        raise TypeError(f"{point.program} {e}") from None
    made = factory(**kwargs)
    if not (isinstance(made, tuple | list) and len(made) == 2 and callable(made[0])
            and isinstance(made[1], tuple | list)):
        raise TypeError(f"{point.program} must return (fn, args) with args a tuple; got {type(made).__name__}")
    fn, args = made[0], tuple(made[1])

    def make_args() -> tuple[Any, ...]:
        # Abstract arguments get random values; concrete ones are used as given.
        return jax.tree.map(lambda a: random_like(a) if isinstance(a, jax.ShapeDtypeStruct) else a, args)

    laid_out: dict[str, Any] = {}
    if point.on_mesh:  # every argument replicated on the mesh of the target's devices
        mesh = sharding.make_mesh(*point.mesh_shape)
        laid_out = dict(jit_kwargs=dict(in_shardings=jax.tree.map(lambda _: sharding.replicated(mesh), args)))
    return [Program(fn=fn, args=args, make_args=make_args, **laid_out)]
