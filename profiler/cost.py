"""What a compiled program costs with every loop counted as many times as it runs.

XLA's `HloCostAnalysis` (what `compiled.cost_analysis()` returns) visits a `while` loop's
body and condition once, whatever the trip count, so a scanned 42-layer model reports
1/42 of the arithmetic of the same model unrolled. The optimised HLO knows better: XLA
annotates each counted loop with `known_trip_count` in its backend config. This module
re-weights XLA's own analysis with those trip counts:

    corrected(C) = raw(C) + sum over the while loops w in C of
                   N_w * corrected(body_w) - raw(body_w)
                   + (N_w + 1) * corrected(cond_w) - raw(cond_w)

where raw(C) is XLA's analysis of computation C alone (C made the entry of a module
holding it and its callees), the body runs N_w times and the condition N_w + 1 times.
Nested loops multiply through the recursion. `scan(unroll=k)` needs no special case:
XLA's loop already holds k copies of the body with trip count length // k, and the
remainder sits outside it. The base is `compiled.cost_analysis()` itself, so a program
without loops keeps XLA's numbers exactly. A loop without a known trip count (a
data-dependent `while_loop`) is counted once, as XLA does, and marks the result inexact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from jax._src.lib import _jax, hlo

# XLA's property names, in the order of the cost vectors below.
KEYS = ("flops", "transcendentals", "bytes accessed")

# `%name (params) -> result {` opens a computation; `ENTRY` marks the module's entry.
_HEADER = re.compile(r"^(ENTRY )?%?([^\s(]+) \(.*\{$")
_OPCODE = re.compile(r"^\s*(?:ROOT\s+)?%?[^\s=]+ = .*?\s([a-z][\w\-]*)\(")
_BODY = re.compile(r"\bbody=%?([^\s,{}]+)")
_CONDITION = re.compile(r"\bcondition=%?([^\s,{}]+)")
_BRANCHES = re.compile(r"\b(?:branch_computations=\{([^}]*)\}|(?:true|false)_computation=%?([^\s,{}]+))")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_TOKEN = re.compile(r"%([^\s,(){}=]+)")


@dataclass
class Computation:
    lines: list[str]
    callees: set[str] = field(default_factory=set)
    """Every computation named on its lines (fusions, reducers, bodies, branches...)."""
    loops: list[tuple[str, str, int | None]] = field(default_factory=list)
    """(body, condition, known trip count or None) of each while instruction."""
    branches: list[list[str]] = field(default_factory=list)
    """Branch computations of each conditional instruction."""


@dataclass(frozen=True)
class HloText:
    """The optimised HLO text cut into its computations."""

    preamble: list[str]
    """The `HloModule` line and the tables (file names, stack frames) metadata points into."""
    computations: dict[str, Computation]
    entry: str
    looping: frozenset[str]
    """Computations that run a while loop, directly or through their callees."""

    @classmethod
    def parse(cls, text: str) -> HloText:
        preamble: list[str] = []
        computations: dict[str, Computation] = {}
        entry = current = None
        for line in text.splitlines():
            if header := _HEADER.match(line):
                current = computations[header.group(2)] = Computation([line])
                entry = header.group(2) if header.group(1) else entry
                continue
            if current is None:
                if not computations:
                    preamble.append(line)
                continue
            current.lines.append(line)
            if line.startswith("}"):
                current = None
                continue
            current.callees.update(_TOKEN.findall(line.split(" = ", 1)[-1]))
            opcode = _OPCODE.match(line)
            opcode = opcode.group(1) if opcode else ""
            if opcode == "while":
                trips = _TRIP_COUNT.search(line)
                current.loops.append((
                    _BODY.search(line).group(1), _CONDITION.search(line).group(1),
                    int(trips.group(1)) if trips else None,
                ))
            elif opcode == "conditional":
                current.branches.append([
                    name.strip().lstrip("%")
                    for listed, single in _BRANCHES.findall(line)
                    for name in (listed.split(",") if listed else [single])
                ])
        if entry is None or not preamble or not preamble[0].startswith("HloModule"):
            raise ValueError("not the text of an HLO module with an ENTRY computation")
        for computation in computations.values():  # operand names matched _TOKEN too
            computation.callees &= computations.keys()
        looping = {name for name, c in computations.items() if c.loops}
        grew = True
        while grew:  # callers of looping computations loop too
            grown = {name for name, c in computations.items() if c.callees & looping}
            grew = not grown <= looping
            looping |= grown
        return cls(preamble, computations, entry, frozenset(looping))

    def module_text(self, name: str) -> str:
        """A module whose entry is computation `name`, holding it and what it calls.
        The header's entry attributes (layout, aliasing) described the old entry and are dropped."""
        reachable, todo = set(), [name]
        while todo:
            if (current := todo.pop()) not in reachable:
                reachable.add(current)
                todo.extend(self.computations[current].callees)
        header = _without_entry_attributes(self.preamble[0])
        blocks = []
        for other, computation in self.computations.items():
            if other in reachable:
                first = computation.lines[0].removeprefix("ENTRY ")
                blocks.append("\n".join([("ENTRY " if other == name else "") + first, *computation.lines[1:]]))
        return "\n".join([header, *self.preamble[1:], "\n\n".join(blocks)])


# Module attributes that describe the entry computation's parameters and outputs; they
# are wrong for a module whose entry is a loop body (a donated argument's alias, say).
_ENTRY_ATTRIBUTES = (
    "entry_computation_layout", "input_output_alias", "buffer_donor",
    "allow_spmd_sharding_propagation_to_parameters", "allow_spmd_sharding_propagation_to_output",
)


def _without_entry_attributes(module_line: str) -> str:
    for name in _ENTRY_ATTRIBUTES:
        start = module_line.find(f"{name}={{")
        if start < 0:
            continue
        depth = 0
        for end in range(start + len(name) + 1, len(module_line)):
            depth += {"{": 1, "}": -1}.get(module_line[end], 0)
            if depth == 0:
                break
        module_line = module_line[:start].rstrip(", ") + module_line[end + 1:]
    return module_line


@dataclass(frozen=True)
class LoopCost:
    flops: float | None
    transcendentals: float | None
    bytes_accessed: float | None
    exact: bool
    """False where a loop's trip count is unknown: its body was counted once."""
    raw: dict[str, float]
    """`compiled.cost_analysis()` as XLA reported it."""


class _Analysis:
    """Raw and corrected costs of the computations of one optimised HLO module."""

    def __init__(self, text: HloText, client: Any):
        self.text = text
        self.client = client
        self.exact = True
        self._raw: dict[str, np.ndarray] = {}
        self._corrected: dict[str, np.ndarray] = {}

    def raw(self, name: str) -> np.ndarray:
        """XLA's own count-once analysis of computation `name` alone."""
        if name not in self._raw:
            module = hlo.hlo_module_from_text(self.text.module_text(name))
            props = _jax.hlo_module_cost_analysis(self.client, module)
            self._raw[name] = np.array([float(props.get(k, 0.0)) for k in KEYS])
        return self._raw[name]

    def corrected(self, name: str) -> np.ndarray:
        if name not in self._corrected:
            self._corrected[name] = self.raw(name) + self.missed(name)
        return self._corrected[name]

    def missed(self, name: str) -> np.ndarray:
        """corrected(name) - raw(name): what counting loop bodies once leaves out."""
        computation = self.text.computations[name]
        total = np.zeros(len(KEYS))
        for body, cond, trips in computation.loops:
            if trips is None:  # keep XLA's assumption: body and condition once
                self.exact = False
                total += self.missed(body) + self.missed(cond)
            else:
                total += trips * self.corrected(body) - self.raw(body)
                total += (trips + 1) * self.corrected(cond) - self.raw(cond)
        in_branches = set()
        for branches in computation.branches:
            in_branches.update(branches)
            if self.text.looping.intersection(branches):  # XLA keeps the costliest branch
                total += np.max([self.corrected(b) for b in branches], axis=0)
                total -= np.max([self.raw(b) for b in branches], axis=0)
        loop_parts = {part for body, cond, _ in computation.loops for part in (body, cond)}
        for callee in (computation.callees & self.text.looping) - loop_parts - in_branches:
            total += self.missed(callee)  # call, async wrappers: run once per call
        return total


def loop_corrected(compiled: Any, hlo_text: str | None = None) -> LoopCost:
    """Trip-count-correct flops, transcendentals and bytes accessed of a
    `jax.stages.Compiled`, built on its own `cost_analysis()`. `hlo_text` is
    `compiled.as_text()` where the caller already has it."""
    raw = compiled.cost_analysis() or {}
    if isinstance(raw, list | tuple):  # older jaxlibs: one dict per computation
        raw = raw[0] if raw else {}
    text = HloText.parse(compiled.as_text() if hlo_text is None else hlo_text)
    analysis = _Analysis(text, compiled.runtime_executable().client)
    missed = analysis.missed(text.entry)
    values = [None if raw.get(k) is None else float(raw[k] + m) for k, m in zip(KEYS, missed, strict=True)]
    return LoopCost(*values, exact=analysis.exact, raw=dict(raw))
