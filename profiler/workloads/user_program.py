"""Workload `program`: a user's factory returns the call to measure, measured as the user makes it.

The factory (spec key `program = "package.module:factory"`) receives the point's model keys
that it names as keyword arguments (all of them if it takes `**kwargs`; spec.factory_keys)
and the knobs the spec sets for it, never the keys of how the point is measured. It
returns one of (docs/own-model.md):

- `(fn, args)` or `(fn, args, kwargs)`: `fn` a plain function (measured as `jax.jit(fn)`)
  or an already-jitted one, traced as it is with its own `static_argnames`,
  `donate_argnums` ..., no jit of ours around it;
- a dict `{"fn", "args", "kwargs", "static_argnums", "static_argnames", "donate_argnums",
  "donate_argnames"}` (only `fn` required): a plain function with the `jax.jit` options it
  is to be measured with.

Arguments are pytrees of `jax.ShapeDtypeStruct`s or arrays (typed PRNG keys included),
measured as they are; static ones are passed as their values. Modes do not apply. On a
mesh (key mesh, or a TPU or GPU target) every abstract argument is replicated on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

from profiler import refs
from profiler.models import sharding
from profiler.models.program import Program, random_like
from profiler.spec import Point, factory_keys

JIT_OPTIONS = ("static_argnums", "static_argnames", "donate_argnums", "donate_argnames")
"""The `jax.jit` options a factory's dict may give for a plain function."""
_FORMS = "(fn, args), (fn, args, kwargs) or a dict with 'fn', 'args', 'kwargs' and jax.jit options"


def build(point: Point) -> list[Program]:
    factory = refs.load(point.program)
    try:
        kwargs = refs.keyword_arguments(factory, {**point.model_dump(include=set(factory_keys(factory))), **point.knobs})
    except ValueError as e:
        raise TypeError(f"{point.program} {e}") from None
    program = program_of(factory(**kwargs), point.program)
    return [on_mesh(program, point) if point.on_mesh else program]


def on_mesh(program: Program, point: Point) -> Program:
    """`program` with every abstract argument replicated on the point's mesh of its
    target's devices (a concrete array stays where it is)."""
    replicated = sharding.replicated(sharding.make_mesh(*point.mesh_shape))

    def place(tree: Any) -> Any:
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated)
                            if isinstance(a, jax.ShapeDtypeStruct) else a, tree)

    return dataclasses.replace(program, args=place(program.args), kwargs=place(program.kwargs))


def program_of(made: Any, name: str) -> Program:
    """The Program of what a factory returned (one of the forms of the module's doc)."""
    if isinstance(made, Mapping):
        unknown = sorted(set(made) - {"fn", "args", "kwargs", *JIT_OPTIONS})
        if unknown or "fn" not in made:
            raise TypeError(f"{name} returned a dict with {'key ' + repr(unknown[0]) if unknown else 'no fn'}; "
                            f"it takes fn, args, kwargs, {', '.join(JIT_OPTIONS)}")
        fn, args, call_kwargs = made["fn"], made.get("args", ()), made.get("kwargs", {})
        options = {k: made[k] for k in JIT_OPTIONS if made.get(k) is not None}
    elif isinstance(made, tuple | list) and len(made) in (2, 3):
        fn, args, call_kwargs, options = made[0], made[1], made[2] if len(made) == 3 else {}, {}
    else:
        raise TypeError(f"{name} must return {_FORMS}; got {type(made).__name__}")
    if not callable(fn) or not isinstance(args, tuple | list) or not isinstance(call_kwargs, Mapping):
        raise TypeError(f"{name} must return {_FORMS}, with args a tuple and kwargs a dict")
    jitted = isinstance(fn, jax.stages.Wrapped)
    if jitted and options:
        raise TypeError(f"{name}: fn is already jitted; give {', '.join(options)} to its own jax.jit")
    args, call_kwargs = tuple(args), dict(call_kwargs)
    own = getattr(fn, "_jit_info", None)  # a jitted fn's own options: its donation decides what is refreshed
    donates = bool(options.get("donate_argnums") or options.get("donate_argnames")
                   or getattr(own, "donate_argnums", ()) or getattr(own, "donate_argnames", ()))
    donate_argnums = options.pop("donate_argnums", ())

    def concrete(tree: Any) -> Any:
        # Abstract leaves get random values; concrete ones are used as given (copied when
        # donated: a donated buffer is gone after the call, and the next call needs one).
        def leaf(a: Any) -> Any:
            if isinstance(a, jax.ShapeDtypeStruct):
                return random_like(a)
            return jax.numpy.array(a, copy=True) if donates and isinstance(a, jax.Array) else a

        return jax.tree.map(leaf, tree)

    make_args: Callable[[], tuple[Any, ...]] = lambda: concrete(args)  # noqa: E731
    return Program(
        fn=fn, args=args, kwargs=call_kwargs, jitted=jitted, make_args=make_args,
        make_kwargs=(lambda: concrete(call_kwargs)) if call_kwargs else None,
        donate_argnums=(donate_argnums,) if isinstance(donate_argnums, int) else tuple(donate_argnums),
        jit_kwargs=options, next_args=(lambda a, out: make_args()) if donates else None,
    )
