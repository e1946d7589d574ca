"""Sweep specifications: a flat TOML table whose list values are grid axes.

A spec mixes two kinds of keys. *Point keys* (the fields of `Point`) describe what is
compiled; a list value makes the key a grid axis, a scalar fixes it. *Sweep keys* (the
fields of `Sweep`) describe how the sweep runs and are always scalars.

Everything is validated before any work starts, and every problem is reported as a
`SpecError` whose message is one line naming the key.
"""

from __future__ import annotations

import difflib
import itertools
import math
import tomllib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from profiler import refs
from profiler.errors import SpecError
from profiler.point import (
    BLOCK_FAMILIES,
    DECODE_KEYS,
    FAMILY_DECODE_KEYS,
    FAMILY_KEYS,
    LIMIT_KEYS,
    MODEL_KEYS,
    MOE_KEYS,
    POINT_KEYS,
    RESERVED_KNOBS,
    RUN_KEYS,
    SWEEP_KEYS,
    WORKLOAD_KEYS,
    Point,
    Sweep,
    factory_defaults,
    factory_keys,
    factory_knobs,
    family_keys,
    remat_names,
)

__all__ = [
    "BLOCK_FAMILIES", "DECODE_KEYS", "FAMILY_DECODE_KEYS", "FAMILY_KEYS", "LIMIT_KEYS", "MODEL_KEYS",
    "MOE_KEYS", "POINT_KEYS", "RUN_KEYS", "SWEEP_KEYS", "WORKLOAD_KEYS", "Point", "Spec", "SpecError",
    "Sweep", "build_spec", "factory_keys", "factory_knobs", "family_keys", "keys_markdown", "load_spec", "parse_override",
    "read_toml", "remat_names",
]


class Spec(BaseModel):
    """A validated spec: the sweep settings, the fixed point keys and the grid axes."""

    model_config = ConfigDict(frozen=True)

    sweep: Sweep
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]
    points: tuple[Point, ...]

    def as_dict(self) -> dict[str, Any]:
        """The spec as a flat table again (what a manifest stores and resume compares)."""
        return {**self.sweep.model_dump(), **self.fixed, **self.axes}


def parse_override(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE parsed as TOML; a bare word that is not TOML is a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"override {text!r}: expected KEY=VALUE")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        if value and all(c.isalnum() or c in "_-." for c in value):
            return key, value
        raise SpecError(f"override {text!r}: value is not valid TOML") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file '{path}' not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"spec file '{path}': TOML syntax error: {e}") from None
    except UnicodeDecodeError:
        raise SpecError(f"spec file '{path}': not UTF-8 text") from None


def load_spec(path: str | Path, overrides: Sequence[str] = (), *, yes: bool = False) -> Spec:
    """Read a TOML spec, apply `KEY=VALUE` overrides and validate the whole grid."""
    table = read_toml(path)
    table.update(parse_override(o) for o in overrides)
    return build_spec(table, yes=yes)


def build_spec(table: dict[str, Any], *, yes: bool = False) -> Spec:
    """Validate a flat table (from TOML or a Python dict) into a Spec.

    `yes` accepts a grid larger than the sweep's `max_points`.
    """
    knobs = _knobs(table)
    for key, value in table.items():
        if key not in POINT_KEYS and key not in SWEEP_KEYS and key not in knobs:
            close = difflib.get_close_matches(key, POINT_KEYS + SWEEP_KEYS + tuple(sorted(knobs)), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SpecError(f"unknown key '{key}'{hint}")
        if isinstance(value, dict):
            raise SpecError(f"key '{key}': tables are not allowed; a spec is one flat table")
        if isinstance(value, list) and key in SWEEP_KEYS:
            raise SpecError(f"key '{key}': is a sweep setting and cannot be a grid axis")
        if isinstance(value, list) and not value:
            raise SpecError(f"key '{key}': an empty list makes an empty grid")
        if isinstance(value, list) and len(set(map(repr, value))) != len(value):
            raise SpecError(f"key '{key}': the list repeats a value")
        if key in knobs and not all(isinstance(v, bool | int | float | str) for v in _values(value)):
            raise SpecError(f"key '{key}': a factory's knob takes numbers, strings or booleans "
                            f"(got {type(next(v for v in _values(value) if not isinstance(v, bool | int | float | str))).__name__})")

    sweep = _validate(Sweep, {k: v for k, v in table.items() if k in SWEEP_KEYS})
    fixed = {k: v for k, v in table.items() if k not in SWEEP_KEYS and not isinstance(v, list)}
    axes = {k: v for k, v in table.items() if k not in SWEEP_KEYS and isinstance(v, list)}
    size = math.prod(map(len, axes.values()))
    if size > sweep.max_points and not yes:  # checked before a huge grid is expanded
        raise SpecError(f"key 'max_points': the grid has {size} points, more than max_points = "
                        f"{sweep.max_points}; raise max_points or pass --yes")
    points = tuple(
        _point({**fixed, **dict(zip(axes, combo, strict=True))}, knobs)
        for combo in itertools.product(*axes.values())
    )
    # A knob that a point's factory does not take leaves it out: equal points, measured once.
    points = tuple({p.id: p for p in points}.values())
    _check_user_code(points)
    return Spec(sweep=sweep, fixed=fixed, axes=axes, points=points)


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _knobs(table: dict[str, Any]) -> set[str]:
    """The knobs of the table's program factories (point.factory_knobs) that it sets."""
    unknown = [k for k in table if k not in POINT_KEYS and k not in SWEEP_KEYS]
    refs_ = [r for r in _values(table.get("program", "")) if isinstance(r, str) and r]
    if not unknown or not refs_:
        return set()
    taken: set[str] = set()
    for ref in refs_:
        taken |= set(factory_knobs(_load("program", ref)))
    for key in unknown:
        if key in taken and key in RESERVED_KNOBS:
            raise SpecError(f"key '{key}': a factory parameter cannot be named {key!r} (its column cfg_{key} "
                            "is the profiler's); rename the parameter")
    return {k for k in unknown if k in taken}


def _point(table: dict[str, Any], knobs: Collection[str] = ()) -> Point:
    """The point of `table`; for a program, with its factory's own defaults of the model
    keys the table leaves unset (the values it is built with are the point's), and the
    knobs of `table` that its factory takes."""
    given = {k: v for k, v in table.items() if k in knobs}
    table = {k: v for k, v in table.items() if k not in knobs}
    point = _validate(Point, table)
    if point.workload != "program":
        return point
    factory = _load("program", point.program)
    taken = {k: given[k] for k in factory_knobs(factory) if k in given}  # in the factory's order
    if taken:
        table = {**table, "knobs": taken}
        point = _validate(Point, table)
    try:
        defaults = factory_defaults(factory, table)
    except ValueError as e:
        raise SpecError(f"key 'program': {point.program!r} {e}") from None
    if not defaults:
        return point
    try:
        return Point(**table, **defaults)
    except ValidationError as e:
        raise SpecError(f"key 'program': {point.program!r}: a parameter's default is not a value of its spec key "
                        f"({_one_line(e, defaults)}); set the key in the spec") from None


def _load(key: str, ref: str) -> Any:
    try:
        return refs.load(ref)
    except ValueError as e:
        raise SpecError(f"key '{key}': {e}") from None


def _check_user_code(points: tuple[Point, ...]) -> None:
    """Import every user factory and block, so that a name that cannot work fails here and
    not in every measuring process. (Trying each block on abstract input needs the model,
    which builds on this module: the runner does it before a sweep, runner.check_user_blocks.)"""
    for point in {p.program: p for p in points if p.program}.values():
        try:
            refs.keyword_arguments(_load("program", point.program),
                                   {**point.model_dump(include=set(MODEL_KEYS)), **point.knobs})
        except ValueError as e:
            raise SpecError(f"key 'program': {point.program!r} {e}") from None
    for ref in sorted({p.block for p in points if p.block and p.block not in BLOCK_FAMILIES}):
        _load("block", ref)


def _validate(model: type[BaseModel], values: dict[str, Any]) -> Any:
    try:
        return model(**values)
    except ValidationError as e:
        raise SpecError(_one_line(e, values)) from None


def _one_line(error: ValidationError, values: dict[str, Any]) -> str:
    first = error.errors(include_url=False)[0]
    msg = first["msg"].removeprefix("Value error, ")
    if msg.startswith("key '"):  # our own cross-key checks already name the key
        return msg
    key = str(first["loc"][0]) if first["loc"] else "?"
    if first["type"] == "missing":
        return f"key '{key}': is required"
    return f"key '{key}': {msg[0].lower()}{msg[1:]} (got {values.get(key)!r})"


def keys_markdown() -> str:
    """The reference of every spec key (docs/keys.md is generated from this)."""
    lines = ["# Spec keys", "", "Generated by `python -m profiler keys`; do not edit by hand.", ""]
    for title, model in (("Point keys (a list makes a grid axis)", Point), ("Sweep keys (scalars)", Sweep)):
        lines += [f"## {title}", "", "| key | default | meaning |", "| --- | --- | --- |"]
        for name, f in model.model_fields.items():
            default = "required" if f.is_required() else f"`{f.default!r}`"
            lines.append(f"| `{name}` | {default} | {f.description} |")
        lines.append("")
    return "\n".join(lines)
