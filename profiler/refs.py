"""References to user code, `"package.module:name"`, as spec keys write them.

The module is imported from the current directory or `PYTHONPATH`, so a user profiles
their own code without installing it. The measuring process sees the same path: the
runner puts the sweep's current directory on its `PYTHONPATH`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

_IDENT = r"[A-Za-z_]\w*"
_REF = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*")


def check_format(ref: str) -> None:
    """Raise ValueError unless `ref` reads `package.module:name`."""
    if not _REF.fullmatch(ref):
        raise ValueError(f"{ref!r} is not of the form 'package.module:name'")


def load(ref: str) -> Any:
    """The object `ref` names. Any failure is a ValueError with a one-line message."""
    check_format(ref)
    module_name, _, attr_path = ref.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # e.g. under a console script
        sys.path.insert(0, cwd)
    try:
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError:
            # A module written since this process listed its folder (a fork server's child
            # importing code a notebook sent later): list the folders again, once.
            importlib.invalidate_caches()
            obj = importlib.import_module(module_name)
    except Exception as e:  # the user's module may fail in any way while importing
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"cannot import {module_name!r} ({type(e).__name__}: {first})") from None
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise ValueError(f"{ref!r}: no attribute {attr!r} in {module_name!r}")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable")
    return obj


def keyword_arguments(
    fn: Callable[..., Any], values: Mapping[str, Any], supplied: Collection[str] = ()
) -> dict[str, Any]:
    """The entries of `values` that `fn` takes as keyword arguments (all of them if it
    takes `**kwargs`). A required parameter that neither `values` nor `supplied` (passed
    by the caller itself) provides is a ValueError naming it."""
    if isinstance(fn, type):  # a metaclass's __call__ (NNX's) would hide the constructor's signature
        params = list(inspect.signature(fn.__init__).parameters.values())[1:]  # type: ignore[misc]  # a class's own
    else:
        params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(values)
    named = [p for p in params if p.kind not in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL)]
    missing = [p.name for p in named
               if p.default is inspect.Parameter.empty and p.name not in values and p.name not in supplied]
    if missing:
        raise ValueError(f"needs argument {missing[0]!r}, which no spec key provides")
    return {p.name: values[p.name] for p in named if p.name in values}
