"""The package's import graph has no cycle: data flows one way (docs/architecture.md).

Every import counts, at module level or inside a function (a lazy import is still a
dependency), `if TYPE_CHECKING:` ones included.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "profiler"


def import_graph(package: Path) -> dict[str, set[str]]:
    """{module: modules of the same package it imports} for every .py file under `package`
    (named as Python names them: `pkg.sub.mod`, a package by its `__init__`)."""
    root = package.name
    files = {}
    for path in sorted(package.rglob("*.py")):
        parts = [root, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}

    def internal(name: str) -> str | None:
        """`name`, or its nearest enclosing module, if it is in the package."""
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports the module pkg.mod; `from pkg import name`, pkg.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                module = internal(target)
                if module is not None and module != name:
                    graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's
    algorithm), as the shortest path `[a, b, ..., a]` through its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)

    return [_shortest_cycle(graph, component) for component in components]


def _shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest path from the component's first module back to itself (breadth-first)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not strongly connected")


def test_the_profiler_package_has_no_import_cycle():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def write_package(root: Path, modules: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, source in modules.items():
        path = package / f"{name.replace('.', '/')}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package


@pytest.mark.parametrize(("modules", "cycle"), [
    # A lazy import inside a function closes the cycle.
    ({"__init__": "", "a": "from pkg import b\n",
      "b": "def f():\n    from pkg.a import thing\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    # A package that dispatches to its submodules, which import the package back.
    ({"w/__init__": "def build():\n    from pkg.w import one\n", "w/one": "from pkg.w import Program\n",
      "__init__": ""}, ["pkg.w", "pkg.w.one", "pkg.w"]),
    # Relative imports, and a TYPE_CHECKING import.
    ({"__init__": "", "x": "from . import y\n",
      "y": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import X\n"},
     ["pkg.x", "pkg.y", "pkg.x"]),
])
def test_a_planted_cycle_is_found_and_named(tmp_path, modules, cycle):
    assert cycles(import_graph(write_package(tmp_path, modules))) == [cycle]


def test_imports_that_form_no_cycle_are_accepted(tmp_path):
    package = write_package(tmp_path, {
        "__init__": "from pkg.a import run\n", "a": "import pkg.b\nimport json\n",
        "b": "from pkg import c\n", "c": "import numpy\n"})
    assert import_graph(package) == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert cycles(import_graph(package)) == []
