"""The optimised HLO text (`compiled.as_text()`) cut into its computations and
instructions: one parser for the program sizes (profiler/measurement/measure.py) and the loop
corrected cost (profiler/measurement/cost.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# `%name (params) -> result {` opens a computation; `ENTRY` marks the module's entry.
_HEADER = re.compile(r"^(ENTRY )?%?([^\s(]+) \(.*\{$")
# An instruction line: `[ROOT ]%name = type opcode(operands)...`.
_OPCODE = re.compile(r"^\s*(?:ROOT\s+)?%?[^\s=]+ = .*?\s([a-z][\w\-]*)\(")
_BODY = re.compile(r"\bbody=%?([^\s,{}]+)")
_CONDITION = re.compile(r"\bcondition=%?([^\s,{}]+)")
_BRANCHES = re.compile(r"\b(?:branch_computations=\{([^}]*)\}|(?:true|false)_computation=%?([^\s,{}]+))")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_TOKEN = re.compile(r"%([^\s,(){}=]+)")
# A loop condition `i < N` with N a scalar integer constant: how a scan's loop ends.
_INT_CONSTANT = re.compile(r"= [su]\d+\[\]\S* constant\((\d+)\)")
_LESS_THAN = re.compile(r"^\s*ROOT .* compare\(.*direction=LT")


@dataclass
class Computation:
    lines: list[str]
    opcodes: list[str] = field(default_factory=list)
    """The opcode of each instruction, in order."""
    callees: set[str] = field(default_factory=set)
    """Every computation named on its lines (fusions, reducers, bodies, branches...)."""
    loops: list[tuple[str, str, int | None]] = field(default_factory=list)
    """(body, condition, known trip count or None) of each while instruction."""
    branches: list[list[str]] = field(default_factory=list)
    """Branch computations of each conditional instruction."""


def _inferred_trips(condition: Computation) -> int | None:
    """N for a condition that is `counter < N` with one scalar integer constant N: a scan's
    loop, whose counter JAX starts at 0. None for any other condition."""
    constants = [int(m.group(1)) for line in condition.lines if (m := _INT_CONSTANT.search(line))]
    if len(constants) == 1 and any(_LESS_THAN.match(line) for line in condition.lines):
        return constants[0]
    return None


@dataclass(frozen=True)
class HloText:
    """The optimised HLO text cut into its computations."""

    preamble: list[str]
    """The `HloModule` line and the tables (file names, stack frames) metadata points into."""
    computations: dict[str, Computation]
    entry: str
    looping: frozenset[str]
    """Computations that run a while loop, directly or through their callees."""
    inferred: frozenset[str] = frozenset()
    """Bodies of loops whose trip count XLA did not annotate (libtpu's optimised HLO
    carries no known_trip_count) and was read from the condition instead (`_inferred_trips`)."""

    @property
    def opcodes(self) -> list[str]:
        """The opcode of every instruction of every computation."""
        return [op for computation in self.computations.values() for op in computation.opcodes]

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
            match = _OPCODE.match(line)
            opcode = match.group(1) if match else ""
            if opcode:
                current.opcodes.append(opcode)
            if opcode == "while":
                trips, body, condition = _TRIP_COUNT.search(line), _BODY.search(line), _CONDITION.search(line)
                assert body and condition, f"a while without body= or condition=: {line}"  # XLA prints both
                current.loops.append((
                    body.group(1), condition.group(1),
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
        inferred: set[str] = set()
        for computation in computations.values():  # operand names matched _TOKEN too
            computation.callees &= computations.keys()
            for i, (loop_body, cond, known) in enumerate(computation.loops):
                if known is None and cond in computations:
                    read = _inferred_trips(computations[cond])
                    if read is not None:
                        computation.loops[i] = (loop_body, cond, read)
                        inferred.add(loop_body)
        looping = {name for name, c in computations.items() if c.loops}
        grew = True
        while grew:  # callers of looping computations loop too
            grown = {name for name, c in computations.items() if c.callees & looping}
            grew = not grown <= looping
            looping |= grown
        return cls(preamble, computations, entry, frozenset(looping), frozenset(inferred))

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
