"""Which JAX release moved a metric (`python -m profiler bisect SPEC --good 0.8.0 --bad 0.10.2
--metric time_compile_s`): a bisection over the releases the index serves between the two.

Each step measures the middle candidate interleaved with the current good and bad ends
(one sweep of profiler/gates/releases.py, its own folder under the bisect's), so that the
three see the same load. A timing has moved when the bootstrap interval of candidate /
good lies wholly beyond 1 on the side where bad / good lies; an exact metric (program
size, FLOPs, memory) has moved when it differs from the good end's at all. The finding
is the first release where it moved, against the release before it, with the ratio and
interval measured in the same run, and the commands that reproduce it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profiler.gates.releases import is_exact, release_spec, run_matrix
from profiler.processes import environments
from profiler.processes.environments import ReleaseError, check_version, version_key
from profiler.spec import SpecError

if TYPE_CHECKING:
    from profiler.processes.supervise import Start

CONFIDENCE = 0.95


def numeric_columns() -> list[str]:
    """The columns a bisect can follow: numeric ones of the record, and the derived sums
    (from profiler.analysis.derived, not stats: refusing a --metric imports no pandas)."""
    from profiler.analysis.derived import DERIVED
    from profiler.storage.record import COLUMNS

    return [c.name for c in COLUMNS if c.type in ("int", "float") and not c.name.startswith(("run_", "cfg_", "env_"))] + list(DERIVED)


def check_metric(metric: str) -> None:
    names = numeric_columns()
    if metric not in names:
        close = [n for n in names if metric.split("_")[0] in n][:4] or names[:4]
        raise SpecError(f"--metric {metric}: not a numeric result column (e.g. {', '.join(close)}; "
                        "`python -m profiler columns` lists them)")


@dataclass
class Step:
    releases: list[str]
    folder: Path
    values: dict[str, list[float]]
    """{release: the metric per repeat, summed over the point's programs}."""
    moved: bool | None = None
    """Whether the middle release had moved (None for a step of the two ends alone)."""


@dataclass
class Finding:
    metric: str
    exact: bool
    good: str
    bad: str
    candidates: list[str]
    steps: list[Step] = field(default_factory=list)
    first: str | None = None
    """The first release where the metric moved; None when good and bad do not differ."""
    before: str | None = None
    ratio: float | None = None
    low: float | None = None
    high: float | None = None
    values: tuple[float, float] | None = None
    """The medians of `before` and `first`."""
    commands: list[str] = field(default_factory=list)
    clear: bool = False
    """Whether `first` against `before` alone clears the noise (exact metrics: always)."""


def _values(folder: Path, metric: str) -> dict[str, list[float]]:
    """{release: the metric of each repeat (summed over the point's programs)} of ok rows."""
    from profiler.analysis.stats import ok_rows, with_derived
    from profiler.storage import store

    rows = ok_rows(with_derived(store.load(folder)))
    if metric not in rows.columns:
        return {}
    rows = rows[rows[metric].notna()]
    sums = rows.groupby(["cfg_jax", "run_repeat"])[metric].sum()
    return {release: [float(v) for v in group.to_numpy()] for release, group in sums.groupby(level=0)}


def _ratio(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    from profiler.analysis.stats import bootstrap_ratio

    return bootstrap_ratio(a, b, confidence=CONFIDENCE, seed=seed)


def _beyond_noise(good: Sequence[float], other: Sequence[float], direction: int) -> bool:
    """Whether the interval of other / good lies wholly beyond 1 on `direction`'s side
    (+1 slower/larger, -1 faster/smaller)."""
    _, low, high = _ratio(good, other)
    return low > 1 if direction > 0 else high < 1


def _moved(exact: bool, good: Sequence[float], middle: Sequence[float], bad: Sequence[float]) -> bool:
    """Whether the middle release is on the bad side: an exact metric that differs from the
    good end's at all; a timing whose median is nearer the bad end's than the good end's
    (ratios, measured in the same step). Nearer, not beyond noise: a middle release
    that cannot be told from either end must still send the search one way."""
    import numpy as np

    if exact:
        return float(np.median(middle)) != float(np.median(good))
    m = float(np.median(middle))
    return abs(np.log(m / np.median(bad))) < abs(np.log(m / np.median(good)))


def _candidates(spec_path: str | Path, overrides: Sequence[str], good: str, bad: str, metric: str,
                flax: str | None) -> list[str]:
    """The releases to bisect, oldest first, once the input is known to be good."""
    check_metric(metric)
    if version_key(good) >= version_key(bad):
        raise ReleaseError(f"--good {good} is not older than --bad {bad}: bisect looks for the first release "
                           "after --good where the metric moved")
    points = release_spec(spec_path, overrides, [good]).points
    if len(points) != 1:
        raise SpecError(f"bisect follows one point; the spec has {len(points)}: fix its grid keys with KEY=VALUE")
    environments.check_served("jax", [good, bad])
    if flax:
        environments.check_served("flax", [flax])
    return environments.between(good, bad)


def _measure(spec_path: str | Path, overrides: Sequence[str], releases: list[str], folder: Path, metric: str,
             flax: str | None, start: Start | None, progress: Any) -> Step:
    """One step: `releases` measured interleaved into `folder`, and the metric of each."""
    spec = release_spec(spec_path, overrides, releases, flax)
    run_matrix(spec, folder, releases, resume=folder.exists(), start=start, progress=progress)
    values = _values(folder, metric)
    missing = [r for r in releases if not values.get(r)]
    if missing:
        raise ReleaseError(f"--metric {metric}: no ok measurement on jax {', '.join(missing)} "
                           f"(see the rows' run_error in {folder})", status=1)
    return Step(releases, folder, values)


def _changed(a: Sequence[float], b: Sequence[float]) -> bool:
    import numpy as np

    return float(np.median(a)) != float(np.median(b))


def _settle(finding: Finding, before: str | None, first: str | None, a: Sequence[float], b: Sequence[float],
            direction: int = 0) -> None:
    """The finding: `first` moved against `before` (None: nothing moved between the ends),
    with the ratio and interval of b / a, their medians, and whether that pair alone
    clears the noise."""
    import numpy as np

    finding.before, finding.first = before, first
    finding.ratio, finding.low, finding.high = _ratio(a, b)
    finding.values = (float(np.median(a)), float(np.median(b)))
    finding.clear = first is not None and (_changed(a, b) if finding.exact else _beyond_noise(a, b, direction))


def bisect(spec_path: str | Path, overrides: Sequence[str], good: str, bad: str, metric: str, out: Path, *,
           flax: str | None = None, start: Start | None = None, say: Callable[[str], None] = lambda line: None,
           progress: Any = None) -> Finding:
    """Bisect the releases from `good` to `bad` for the first that moved `metric` at the
    one point of the spec (with `overrides`). Steps are written under `out`."""
    import numpy as np

    good, bad = check_version(good, "--good"), check_version(bad, "--bad")
    candidates = _candidates(spec_path, overrides, good, bad, metric, flax)
    exact = is_exact(metric)
    finding = Finding(metric, exact, good, bad, candidates)
    lo, hi = 0, len(candidates) - 1
    direction = 0
    while True:
        mid = (lo + hi) // 2
        releases = [candidates[lo], *([candidates[mid]] if lo < mid < hi else []), candidates[hi]]
        say(f"step {len(finding.steps) + 1}: measuring jax {', '.join(releases)} interleaved ({hi - lo - 1} "
            f"candidate(s) left between {candidates[lo]} and {candidates[hi]})")
        folder = out / (f"step{len(finding.steps) + 1}-jax" + "-".join(releases))
        step = _measure(spec_path, overrides, releases, folder, metric, flax, start, progress)
        finding.steps.append(step)
        ends = step.values[candidates[lo]], step.values[candidates[hi]]
        if len(finding.steps) == 1:  # the first step: did good and bad differ at all?
            direction = 1 if np.median(ends[1]) > np.median(ends[0]) else -1
            if not (_changed(ends[0], ends[1]) if exact else _beyond_noise(ends[0], ends[1], direction)):
                _settle(finding, None, None, *ends)
                break
        if len(releases) == 2:  # adjacent: the bad end is the first that moved
            _settle(finding, candidates[lo], candidates[hi], *ends, direction=direction)
            break
        step.moved = _moved(exact, ends[0], step.values[candidates[mid]], ends[1])
        lo, hi = (lo, mid) if step.moved else (mid, hi)
        if hi - lo == 1:
            _settle(finding, candidates[lo], candidates[hi], step.values[candidates[lo]], step.values[candidates[hi]],
                    direction=direction)
            break
    if finding.first:
        spec_args = " ".join(shlex.quote(a) for a in [str(spec_path), *overrides])
        flax_arg = f" --flax {flax}" if flax else ""
        finding.commands = [
            f"python -m profiler releases {spec_args} --jax {finding.before},{finding.first}{flax_arg}",
            f"python -m profiler bisect {spec_args} --good {good} --bad {bad} --metric {metric}{flax_arg}",
        ]
    return finding


def format_finding(f: Finding) -> str:
    import numpy as np

    def show(v: float) -> str:
        return f"{v:.4f} s" if f.metric.startswith("time_") else f"{v:,.0f}"

    assert f.values is not None and f.ratio is not None, "format_finding takes a finished bisect"
    lines = [f"bisect of {f.metric} from jax {f.good} (good) to {f.bad} (bad): {len(f.candidates)} releases served, "
             f"{len(f.steps)} step(s)"]
    for i, s in enumerate(f.steps, 1):
        medians = ", ".join(f"{r}: {show(float(np.median(s.values[r])))}" for r in s.releases)
        verdict = "" if s.moved is None else f" -> the middle release {'moved' if s.moved else 'had not moved'}"
        lines.append(f"  step {i}: {medians}{verdict} ({s.folder})")
    if f.first is None:
        how = "differs in no way" if f.exact else "did not move beyond noise"
        interval = "" if f.exact else f" [{f.low:.3f}-{f.high:.3f}]"
        lines.append(f"no change found: {f.metric} {how} between {f.good} and {f.bad} "
                     f"(x{f.ratio:.3f}{interval}, {show(f.values[0])} -> {show(f.values[1])})")
        return "\n".join(lines)
    if f.exact:
        lines.append(f"first release that changed {f.metric}: jax {f.first} ({show(f.values[0])} on {f.before} -> "
                     f"{show(f.values[1])}, {(f.ratio - 1) * 100:+.3f}%; exact)")
    elif f.clear:
        lines.append(f"first release where {f.metric} moved beyond noise: jax {f.first}: x{f.ratio:.3f} "
                     f"[{f.low:.3f}-{f.high:.3f}, {CONFIDENCE:.0%} bootstrap] against {f.before} "
                     f"({show(f.values[0])} -> {show(f.values[1])}, medians)")
    else:
        lines.append(f"{f.metric} moved between {f.good} and {f.bad}, most likely in jax {f.first} (the steps put "
                     f"it nearer the bad end), but {f.first} against {f.before} alone does not clear the noise: "
                     f"x{f.ratio:.3f} [{f.low:.3f}-{f.high:.3f}]; rerun with more repeats (repeats=N)")
    lines += ["reproduce:", *(f"  {c}" for c in f.commands)]
    return "\n".join(lines)
