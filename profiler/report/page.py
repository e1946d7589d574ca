"""What a page is made of: sections holding figures, tables and notes. Views build these;
the templates (profiler/report/templates/) draw them. Nothing here draws or computes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cell:
    text: str
    note: str = ""
    """Shown on hover."""
    css: str = ""
    """Classes of the cell: num, unstable, bad, error, better, worse (templates/base.html.j2)."""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Figure:
    id: str
    """The key of `profiler.figures(df)` and the page's element id (`fig-<id>`)."""
    title: str
    caption: str
    figure: Any
    """A plotly figure (plotly is imported only by the modules that draw)."""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

