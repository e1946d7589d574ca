"""Whether two sets of results ran on the same machine and software: which `env_` facts
differ, and what that means for what can be compared. Pandas-free.

Timings belong to a machine: two 2-core AMD EPYC machines of one kind (one with AVX-512,
one without) took 2.5-3x different CPU time for the same cold compiles (issue 17), so a
timing is compared only with timings of the same CPU model, CPU flags, backend and device
kind. Deterministic metrics (program size, FLOPs, bytes) depend on the JAX version, not
on the machine. An environment here is what `stats.environment` returns: each column's
distinct values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from profiler.errors import UserError

# Facts whose difference makes timings incomparable. env_cpu_flags is compared when both
# sides recorded it (rows before schema 7 did not).
MACHINE = ("env_backend", "env_device_kind", "env_cpu_model", "env_cpu_flags")
# Facts whose difference makes the deterministic metrics expected to change.
VERSIONS = ("env_jax_version", "env_jaxlib_version")
# Columns that differ between any two rows by nature.
VOLATILE = ("env_time_utc",)

Environment = Mapping[str, Sequence[object]]


@dataclass(frozen=True)
class Difference:
    column: str
    a: tuple[str, ...]
    b: tuple[str, ...]
    """The distinct values on each side, as text; empty when a side lacks the column."""

    @property
    def name(self) -> str:
        return self.column.removeprefix("env_")

    @property
    def known(self) -> bool:
        """Both sides recorded the fact (old results may lack a column)."""
        return bool(self.a and self.b)

    @property
    def machine(self) -> bool:
        return self.column in MACHINE

    def __str__(self) -> str:
        if self.column == "env_cpu_flags" and len(self.a) == len(self.b) == 1:  # hundreds of flags: the difference
            a, b = set(self.a[0].split()), set(self.b[0].split())
            return f"{self.name} {' '.join(sorted(a - b)) or '–'} vs {' '.join(sorted(b - a)) or '–'} (the rest alike)"
        return f"{self.name} {', '.join(self.a) or '–'} vs {', '.join(self.b) or '–'}"


def _text(values: Sequence[object]) -> tuple[str, ...]:
    return tuple(map(str, values))


def between(a: Environment, b: Environment) -> list[Difference]:
    """Every column whose set of values differs between `a` and `b` (a column on one side
    only counts), machine facts first."""
    columns = sorted(set(a) | set(b), key=lambda c: (c not in MACHINE, c))
    return [Difference(c, _text(a.get(c, [])), _text(b.get(c, []))) for c in columns
            if set(_text(a.get(c, []))) != set(_text(b.get(c, [])))]


def other_machine(a: Environment, b: Environment) -> list[Difference]:
    """The machine facts both sides recorded and that differ: non-empty means the
    timings of `a` and `b` cannot be compared."""
    return [d for d in between(a, b) if d.machine and d.known]


def within(env: Environment) -> list[str]:
    """The columns of one environment with more than one value, in its order."""
    return [c for c, v in env.items() if len(v) > 1]


def describe(differences: Sequence[Difference]) -> str:
    """One line: 'cpu_model AMD A vs AMD B; backend cpu vs gpu'."""
    return "; ".join(map(str, differences))


class OtherMachine(UserError):
    """Timings of results from different machines were about to be gated."""

    def __init__(self, differences: Sequence[Difference], sides: str):
        self.differences = list(differences)
        super().__init__(f"{sides} ran on different machines ({describe(differences)}): their timings "
                         "cannot be gated; --cross-machine gates the deterministic metrics only")
