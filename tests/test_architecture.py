"""The package's import graph has no cycle, and each stage package imports only the stages
below it: data flows one way (docs/architecture.md).

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


LAYERS: list[tuple[str, ...]] = [
    # The spec: what a sweep is, before anything is built or measured.
    # units: how a number with its unit reads, for every stage that shows one.
    ("profiler.errors", "profiler.units", "profiler.refs", "profiler.presets", "profiler.targets", "profiler.point",
     "profiler.spec"),
    ("profiler.models",),        # what is compiled
    ("profiler.workloads",),     # a point to its programs
    ("profiler.measurement",),   # measuring one program, inside a measuring process
    ("profiler.storage",),       # rows and results folders
    ("profiler.processes",),     # the processes that run measurements
    ("profiler.analysis",),      # statistics, forecast, plan over stored rows
    ("profiler.report",),        # the HTML report
    ("profiler.gates",),         # compare, check, bench, golden values
    ("profiler", "profiler.__main__", "profiler.api", "profiler.cli"),  # the front ends
]
"""The package's stages, lowest first. A module may import its own layer (the cycle test
keeps that acyclic) and the layers below it, never one above."""


def layer_of(module: str, layers: list[tuple[str, ...]]) -> int:
    """The index of the layer whose longest name is `module` or a package around it."""
    best, length = None, -1
    for index, names in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > length:
                best, length = index, len(name)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")
    return best


def upward_imports(graph: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    """'a -> b' for every import of a module in a higher layer."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer_of(b, layers) > layer_of(a, layers))


def test_each_stage_imports_only_the_stages_below_it():
    found = upward_imports(import_graph(PACKAGE), LAYERS)
    assert not found, "imports of a higher layer: " + "; ".join(found)


def test_the_top_level_keeps_only_the_front_ends_and_the_spec():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 10, modules
    named = {name for names in (LAYERS[0], LAYERS[-1]) for name in names}
    assert {f"profiler.{p[:-3]}" for p in modules} - {"profiler.__init__"} <= named


@pytest.mark.parametrize(("modules", "found"), [
    # A lower layer that imports a higher one, at module level or lazily.
    ({"__init__": "", "low/__init__": "", "low/a": "def f():\n    from pkg.high import b\n",
      "high/__init__": "", "high/b": "from pkg.low import a\n"}, ["pkg.low.a -> pkg.high.b"]),
    ({"__init__": "", "low/__init__": "from pkg.high import b\n", "high/__init__": "", "high/b": ""},
     ["pkg.low -> pkg.high.b"]),
    # Downward and same-layer imports are fine.
    ({"__init__": "", "low/__init__": "", "low/a": "from pkg.low import c\n", "low/c": "",
      "high/__init__": "", "high/b": "from pkg.low import a\n"}, []),
])
def test_an_upward_import_is_found_and_named(tmp_path, modules, found):
    layers = [("pkg.low",), ("pkg.high", "pkg")]
    assert upward_imports(import_graph(write_package(tmp_path, modules)), layers) == found


def test_the_profiler_package_has_no_import_cycle():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


MAX_FUNCTION_LINES = 60
"""A function longer than this (its def to its last line, docstring included) says why in
a comment `# long: <why>` inside it; otherwise it is split into named steps."""


def long_functions(package: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'path:line name (N lines)' of every function over `limit` lines without a
    `# long:` comment."""
    found = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                body = lines[node.lineno - 1:node.end_lineno]
                if length > limit and not any(line.strip().startswith("# long:") for line in body):
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_long_without_a_reason():
    found = long_functions(PACKAGE)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(found)


def test_a_long_function_is_found_unless_it_says_why(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    package = write_package(tmp_path, {"__init__": "", "a": f"def long():\n{body}",
                                       "b": f"def short():\n{body[:-len('    x59 = 59')-1]}",
                                       "c": f"def explained():\n    # long: a table of cases\n{body}"})
    assert long_functions(package) == [f"pkg/a.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"]


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
