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

A deviceless compile for a TPU or GPU (spec key `target`) has no client that can cost a
single computation: the host CPU client's `HloCostAnalysis` costs the target's optimised
HLO instead (for a TPU it counts the same FLOPs as libtpu's analysis; bytes differ by
the TPU's padding, docs/tpu.md). The GPU plugin's `cost_analysis()` is None compiled
deviceless: the whole cost is then the host's analysis of the GPU's HLO, loops
re-weighted, and the `cost_xla_*` columns stay null (`LoopCost.basis` says which).
libtpu annotates no `known_trip_count`: a loop whose condition is `counter < N` (a scan)
runs N times (profiler/measurement/hlo.py `_inferred_trips`), and the result is marked
inexact, since the count was read rather than reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from profiler.measurement.compat import hlo_cost_analysis
from profiler.measurement.hlo import HloText

# XLA's property names, in the order of the cost vectors below.
KEYS = ("flops", "transcendentals", "bytes accessed")

@dataclass(frozen=True)
class LoopCost:
    flops: float | None
    transcendentals: float | None
    bytes_accessed: float | None
    exact: bool
    """False where a loop's trip count is unknown: its body was counted once."""
    raw: dict[str, float]
    """`compiled.cost_analysis()` as XLA reported it."""
    basis: str = "xla"
    """'xla': XLA's `cost_analysis()` with loops re-weighted; 'host-hlo': it was None,
    and the costs are the host's HloCostAnalysis of the optimised HLO, loops re-weighted."""


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
            props = hlo_cost_analysis(self.client, self.text.module_text(name))
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
                if body in self.text.inferred:  # read from the condition, not annotated by XLA
                    self.exact = False
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


def loop_corrected(compiled: Any, text: HloText | None = None) -> LoopCost:
    """Trip-count-correct flops, transcendentals and bytes accessed of a
    `jax.stages.Compiled`, built on its own `cost_analysis()`. `text` is its parsed
    `compiled.as_text()` where the caller already has it."""
    raw = compiled.cost_analysis() or {}
    if isinstance(raw, list | tuple):  # older jaxlibs: one dict per computation
        raw = raw[0] if raw else {}
    text = HloText.parse(compiled.as_text()) if text is None else text
    analysis = _Analysis(text, _client(compiled))
    if not raw:  # a deviceless GPU compile: the host's analysis is all there is
        host = [float(v) for v in analysis.corrected(text.entry)]
        return LoopCost(host[0], host[1], host[2], exact=analysis.exact, raw={}, basis="host-hlo")
    missed = analysis.missed(text.entry)
    values = [None if raw.get(k) is None else float(raw[k] + m) for k, m in zip(KEYS, missed, strict=True)]
    flops, transcendentals, bytes_accessed = values
    return LoopCost(flops, transcendentals, bytes_accessed, exact=analysis.exact, raw=dict(raw))


def _client(compiled: Any) -> Any:
    """The client that costs single computations: the program's own, or for a deviceless
    TPU or GPU compile (whose executable has none) the host CPU's."""
    client = getattr(compiled.runtime_executable(), "client", None)
    if client is None:
        import jax

        client = jax.devices("cpu")[0].client
    return client
