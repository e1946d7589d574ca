"""The one place where the page's sections and summary sentences are registered.

A section builder is `(an: Analysis) -> Section | None` (None: nothing to show for this
data); a finding is `(an: Analysis) -> list[str]` (the summary's sentences about one
subject, possibly none). Each is registered where it is written, with its place on the
page:

    @registry.section(order=45)
    def anatomy(an): ...

    @registry.finding(order=45)
    def anatomy_lines(an): ...

Every module under profiler/report/views/ is imported the first time the page is built,
so a new view is one new file there and nothing else. Orders in use: see
docs/report.md ("Adding a figure or a finding").
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from profiler.report.analysis import Analysis
    from profiler.report.page import Section

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    order: float
    build: Callable[..., Any]


_SECTIONS: list[Entry] = []
_FINDINGS: list[Entry] = []


def section(order: float) -> Callable[[F], F]:
    """Register a section builder at `order` (smaller: higher on the page)."""
    def register(build: F) -> F:
        _SECTIONS.append(Entry(order, build))
        return build
    return register


def finding(order: float) -> Callable[[F], F]:
    """Register a finding at `order` (smaller: earlier in the summary)."""
    def register(build: F) -> F:
        _FINDINGS.append(Entry(order, build))
        return build
    return register


def unregister(build: Callable[..., Any]) -> None:
    """Take a builder or finding off the page again (tests, trying a view in a notebook)."""
    _SECTIONS[:] = [e for e in _SECTIONS if e.build is not build]
    _FINDINGS[:] = [e for e in _FINDINGS if e.build is not build]


def _ordered(entries: list[Entry]) -> list[Entry]:
    from profiler.report import views

    for module in pkgutil.iter_modules(views.__path__):
        importlib.import_module(f"{views.__name__}.{module.name}")
    return sorted(entries, key=lambda e: e.order)  # stable: equal orders keep registration order


def sections(an: Analysis) -> list[Section]:
    """The page's sections for this data, in order."""
    return [s for e in _ordered(_SECTIONS) if (s := e.build(an)) is not None]


def findings(an: Analysis) -> list[str]:
    """The summary: every finding's sentences, in order."""
    return [line for e in _ordered(_FINDINGS) for line in e.build(an)]
