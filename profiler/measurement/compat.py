"""Everything private to JAX (`jax._src`) that the measuring side uses, each piece with its
fallbacks, so that a measuring process runs on every release in `SUPPORTED` (docs/releases.md).

Private names move between releases: `hlo_module_from_text` lives in `jax._src.lib.hlo`
from jax 0.10, in `jax._src.lib._jax` before (and in `xla_extension` before 0.7). Each
function here tries the newest home first. Where no release's home answers, the error
names the piece and the installed jax, so a point that needs it gets an error row that
says what this release lacks; the sweep goes on. Nothing outside this module imports
`jax._src`.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

SUPPORTED = ("0.7", "0.8", "0.9", "0.10")
"""The JAX minor releases the measuring side is tested on (tests/test_releases.py)."""


class MissingInRelease(RuntimeError):
    """The installed JAX lacks something a measurement needs (one line, naming both)."""


def _jax_version() -> str:
    import jax

    return jax.__version__


def _find(piece: str, homes: tuple[tuple[str, str], ...]) -> Any:
    """The first of `homes` ((module, dotted attribute path) pairs) that the installed jax
    has. Attributes, not submodules: `jax._src.lib._jax` is an attribute bound to jaxlib's
    extension, which `import jax._src.lib._jax` cannot find."""
    for module, path in homes:
        try:
            found: Any = importlib.import_module(module)
            for name in path.split("."):
                found = getattr(found, name)
        except (ImportError, AttributeError):
            continue
        return found
    raise MissingInRelease(f"jax {_jax_version()} has no {piece} (looked in "
                           f"{', '.join(f'{m}.{n}' for m, n in homes)})")


@functools.cache
def _hlo_module_from_text() -> Callable[[str], Any]:
    return _find("HLO text parser", (
        ("jax._src.lib", "hlo.hlo_module_from_text"),  # jax >= 0.10
        ("jax._src.lib", "_jax.hlo_module_from_text"),  # jax 0.7 - 0.9
        ("jax._src.lib", "xla_extension.hlo_module_from_text"),  # older
    ))


@functools.cache
def _hlo_module_cost_analysis() -> Callable[[Any, Any], dict[str, float]]:
    return _find("HLO cost analysis", (
        ("jax._src.lib", "_jax.hlo_module_cost_analysis"),  # jax >= 0.7
        ("jax._src.lib", "xla_extension.hlo_module_cost_analysis"),  # older
    ))


def hlo_cost_analysis(client: Any, module_text: str) -> dict[str, float]:
    """XLA's `HloCostAnalysis` of the HLO module `module_text`, compiled for `client`'s
    backend: what `compiled.cost_analysis()` reports, for any module."""
    return _hlo_module_cost_analysis()(client, _hlo_module_from_text()(module_text))


def backends_are_initialized() -> bool:
    """Whether this process has started a JAX backend (a forked child would inherit it)."""
    try:
        from jax._src import xla_bridge
    except ImportError as e:
        raise MissingInRelease(f"jax {_jax_version()} has no jax._src.xla_bridge ({e})") from None
    started = getattr(xla_bridge, "backends_are_initialized", None)
    if started is not None:
        return bool(started())
    # Releases before the function: the backends are a module-level dict, filled on start.
    backends = getattr(xla_bridge, "_backends", None)
    if backends is None:
        raise MissingInRelease(f"jax {_jax_version()}: cannot tell whether a backend has started "
                               "(no xla_bridge.backends_are_initialized nor _backends)")
    return bool(backends)


def profiler_module() -> Any:
    """XLA's profiler bindings (`ProfileOptions`, `ProfilerSession`): the compile's TraceMe
    events of the anatomy (profiler/measurement/anatomy/xla.py)."""
    return _find("XLA profiler bindings", (
        ("jax._src.lib", "_profiler"),  # jax >= 0.4.36
        ("jax._src.lib", "xla_extension.profiler"),  # older
    ))


def jaxprs_in_params(params: dict[str, Any]) -> Any:
    """The jaxprs nested in an equation's params (a scan's body, a remat's, a pjit's).
    `jax.extend.core.jaxprs_in_params` from jax 0.10; before, the same walk by hand over
    the public `Jaxpr` and `ClosedJaxpr` types."""
    from jax.extend import core

    public = getattr(core, "jaxprs_in_params", None)
    if public is not None:
        return public(params)
    return _walk_params(params, core.Jaxpr, core.ClosedJaxpr)


def _walk_params(params: dict[str, Any], jaxpr_type: type, closed_type: Any) -> Any:
    for value in params.values():
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, jaxpr_type):
                yield v
            elif isinstance(v, closed_type):
                yield v.jaxpr
