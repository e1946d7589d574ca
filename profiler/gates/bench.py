"""Same-run A/B benchmark of cold compile times: the working tree (head) against a git
revision (base), both measured on this machine in one run (`python -m profiler bench`,
`make bench`; docs/gates.md).

Each side runs from its own checkout: the head is the working tree, uncommitted changes
included; the base is a `git worktree` of the revision under .bench/, kept for the next
run. Both use this interpreter and its installed dependencies, with the side's checkout
first on PYTHONPATH; each measuring process reports which `profiler` it imported, and a
process that imported the wrong one stops the run. Every round starts one fresh process
per side (profiler/gates/bench_probe.py), the two in a random order, so that a change of load
during the run hits both sides alike; the order is drawn from a recorded seed.

Per benchmark the decision is the ratio of medians head / base with a bootstrap
interval: a regression only when the interval's lower end is above 1 + max_slowdown.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiler.errors import UserError

_REPO = Path(__file__).resolve().parents[2]
_PROBE = Path(__file__).resolve().parent / "bench_probe.py"

# Chosen from A/A runs (HEAD against HEAD) on this project's shared 2-core machine:
# docs/gates.md has the measurement.
MAX_SLOWDOWN_PCT = 10.0
ROUNDS = 5
CACHE = ".bench"
CLOCKS = {"cpu": "cpu_s", "wall": "wall_s"}


class BenchError(UserError):
    """Bad input (a ref, a flag, a base checkout) or a side that could not be measured.
    The message is one line."""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise BenchError(f"git {' '.join(args)}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    return done.stdout.strip()


def _commit(repo: Path, ref: str) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def default_base(repo: Path) -> str:
    """The merge-base of HEAD with `main` (or `origin/main`); HEAD itself when neither
    exists. On main, that is HEAD: the working tree's changes against the last commit."""
    for branch in ("main", "origin/main"):
        if _commit(repo, branch):
            return _git(repo, "merge-base", "HEAD", branch)
    return "HEAD"


def _dirty(checkout: Path, untracked: bool = True) -> bool:
    return bool(_git(checkout, "status", "--porcelain", f"--untracked-files={'normal' if untracked else 'no'}"))


def base_checkout(repo: Path, sha: str) -> Path:
    """A clean worktree of commit `sha` under repo/.bench/, created on first use."""
    path = repo / CACHE / f"base-{sha[:12]}"
    if path.exists():
        if _commit(path, "HEAD") != sha:
            raise BenchError(f"{path}: not a checkout of {sha[:12]}; remove it (git worktree remove --force {path})")
        # Untracked files do not count: a revision whose .gitignore misses __pycache__/
        # would otherwise look changed after its first run.
        if _dirty(path, untracked=False):
            raise BenchError(f"{path}: the base checkout has local changes; remove it "
                             f"(git worktree remove --force {path}) and run again")
        return path
    _git(repo, "worktree", "prune")  # a cache folder deleted by hand leaves its registration behind
    _git(repo, "worktree", "add", "--quiet", "--detach", str(path), sha)
    return path


@dataclass(frozen=True)
class Side:
    label: str
    root: Path
    revision: str
    """Short sha, with "+ uncommitted changes" for a dirty working tree."""


def measure_side(side: Side, points: dict[str, dict[str, Any]], order: list[str], repeats: int) -> dict[str, list]:
    """One fresh process measuring `order`'s points at `side`'s checkout."""
    request = json.dumps({"points": points, "order": order, "repeats": repeats})
    env = {**os.environ, "PYTHONPATH": str(side.root)}
    done = subprocess.run([sys.executable, "-P", str(_PROBE)], input=request, capture_output=True, text=True,
                          env=env, cwd=side.root)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise BenchError(f"{side.label} ({side.revision}) could not be measured: {last}")
    out = json.loads(done.stdout)
    if Path(out["profiler"]).resolve() != (side.root / "profiler").resolve():
        raise BenchError(f"{side.label}: its process imported profiler from {out['profiler']}, not from {side.root}")
    for name, rounds in out["results"].items():
        if not all(r["cold"] for r in rounds):
            raise BenchError(f"{side.label}: a compile of {name} was answered from a cache: not cold")
    return out["results"]


@dataclass
class Run:
    """Every sample of a run: {side label: {benchmark: [{"cpu_s", "wall_s", "cold"}]}}."""

    sides: tuple[Side, Side]
    points: dict[str, dict[str, Any]]
    rounds: int
    repeats: int
    seed: int
    samples: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    schedule: list[list[str]] = field(default_factory=list)
    """Each round's order of sides."""
    load: list[float] = field(default_factory=list)
    """The 1-minute load average at the start and at the end."""
    seconds: float = 0.0


def interleave(sides: tuple[Side, Side], points: dict[str, dict[str, Any]], rounds: int, repeats: int, seed: int,
               measure: Callable[..., dict[str, list]] = measure_side,
               progress: Callable[[str], None] = lambda line: None) -> Run:
    """`rounds` rounds, each one fresh process per side in a random order, the benchmarks
    within a process in a random order too."""
    rng = random.Random(seed)
    run = Run(sides, points, rounds, repeats, seed, samples={s.label: {n: [] for n in points} for s in sides})
    started = time.perf_counter()
    run.load.append(os.getloadavg()[0])
    for i in range(rounds):
        order = list(sides)
        rng.shuffle(order)
        run.schedule.append([s.label for s in order])
        for side in order:
            names = list(points)
            rng.shuffle(names)
            t0 = time.perf_counter()
            for name, values in measure(side, points, names, repeats).items():
                run.samples[side.label][name].extend(values)
            progress(f"round {i + 1}/{rounds}: {side.label} measured in {time.perf_counter() - t0:.0f} s")
    run.load.append(os.getloadavg()[0])
    run.seconds = time.perf_counter() - started
    return run


@dataclass(frozen=True)
class Verdict:
    name: str
    base: float
    head: float
    ratio: float
    low: float
    high: float
    regression: bool

    @property
    def word(self) -> str:
        if self.regression:
            return "REGRESSION"
        return "faster" if self.high < 1 else "ok"


def decide(run: Run, clock: str, max_slowdown_pct: float) -> list[Verdict]:
    import numpy as np

    from profiler.analysis.stats import bootstrap_ratio

    key = CLOCKS[clock]
    base, head = (s.label for s in run.sides)
    verdicts = []
    for name in run.points:
        a = [r[key] for r in run.samples[base][name]]
        b = [r[key] for r in run.samples[head][name]]
        ratio, low, high = bootstrap_ratio(a, b, seed=run.seed)  # at stats.CONFIDENCE
        verdicts.append(Verdict(name, float(np.median(a)), float(np.median(b)), ratio, low, high,
                                low > 1 + max_slowdown_pct / 100))
    return verdicts


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def format_run(run: Run, clock: str, max_slowdown_pct: float, fingerprint: str) -> str:
    from profiler.analysis.stats import CONFIDENCE  # numpy and pandas: imported once needed

    base, head = run.sides
    lines = [
        f"base: {base.revision} ({base.root})",
        f"head: {head.revision} ({head.root})",
        f"machine: {fingerprint}; load average {run.load[0]:.1f} at the start, {run.load[-1]:.1f} at the end",
        f"rounds: {run.rounds} x {run.repeats} cold compile(s) per benchmark and side, fresh processes interleaved "
        f"in random order (seed {run.seed}); {run.seconds:.0f} s",
        f"clock: {clock} time; regression when the {CONFIDENCE:.0%} interval of head / base is above "
        f"{1 + max_slowdown_pct / 100:.2f} (+{max_slowdown_pct:g}%)",
        "",
    ]
    for shown in (clock, *(c for c in CLOCKS if c != clock)):
        verdicts = decide(run, shown, max_slowdown_pct)
        gating = shown == clock
        rows = [["benchmark", f"base {shown} s", f"head {shown} s", "ratio", "interval",
                 "verdict" if gating else "(not gated)"]]
        rows += [[v.name, f"{v.base:.3f}", f"{v.head:.3f}", f"{v.ratio:.3f}", f"{v.low:.3f}-{v.high:.3f}",
                  v.word if gating else ""] for v in verdicts]
        lines += [*_table(rows), ""]
    failed = [v.name for v in decide(run, clock, max_slowdown_pct) if v.regression]
    lines.append(f"{len(failed)} regression(s): {', '.join(failed)}" if failed else "no regression")
    return "\n".join(lines)


def to_json(run: Run, clock: str, max_slowdown_pct: float, fingerprint: str) -> str:
    return json.dumps({
        "sides": {s.label: {"revision": s.revision, "root": str(s.root)} for s in run.sides},
        "machine": fingerprint, "points": run.points, "rounds": run.rounds, "repeats": run.repeats,
        "seed": run.seed, "schedule": run.schedule, "load": run.load, "seconds": run.seconds,
        "clock": clock, "max_slowdown_pct": max_slowdown_pct,
        "verdicts": [v.__dict__ for v in decide(run, clock, max_slowdown_pct)], "samples": run.samples,
    }, indent=1)


def select_points(names: Sequence[str] | None, points_file: Path | None) -> dict[str, dict[str, Any]]:
    """{name: the point's fields that differ from their defaults}: profiler.gates.golden.POINTS,
    or the points of a JSON file {name: {field: value}}; only `names` when given."""
    from pydantic import ValidationError

    from profiler.spec import Point

    if points_file is not None:
        try:
            raw = json.loads(points_file.read_text())
            points = {name: Point(**fields) for name, fields in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError, ValidationError) as e:
            raise BenchError(f"--points {points_file}: {str(e).splitlines()[0]}") from None
    else:
        from profiler.gates.golden import POINTS as points
    for name in names or ():
        if name not in points:
            raise BenchError(f"--benchmarks: unknown benchmark {name!r} (known: {', '.join(points)})")
    chosen = list(names) if names else list(points)
    if not chosen:
        raise BenchError("no benchmarks to run")
    return {name: points[name].model_dump(exclude_defaults=True) for name in chosen}


def bench(base_ref: str | None = None, *, rounds: int = ROUNDS, repeats: int = 1, names: Sequence[str] | None = None,
          points_file: Path | None = None, clock: str = "cpu", max_slowdown_pct: float = MAX_SLOWDOWN_PCT,
          seed: int | None = None, json_out: Path | None = None, repo: Path = _REPO,
          progress: Callable[[str], None] = lambda line: None) -> tuple[Run, list[Verdict], str]:
    """Measure the working tree at `repo` against `base_ref` (default: `default_base`)
    and decide. Returns the run, its verdicts on `clock` and the printed report."""
    from profiler.measurement.env import machine_fingerprint

    if rounds < 2:
        raise BenchError(f"--rounds: needs at least 2 (got {rounds})")
    if repeats < 1:
        raise BenchError(f"--repeats: needs at least 1 (got {repeats})")
    if max_slowdown_pct < 0:
        raise BenchError(f"--max-slowdown: must be at least 0 (got {max_slowdown_pct:g})")
    points = select_points(names, points_file)
    ref = base_ref or default_base(repo)
    sha = _commit(repo, ref)
    if sha is None:
        raise BenchError(f"--base {ref}: not a commit of {repo}")
    head_sha = _commit(repo, "HEAD") or "unknown"
    head_rev = f"{head_sha[:12]}" + (" + uncommitted changes" if _dirty(repo) else "")
    sides = (Side("base", base_checkout(repo, sha), f"{ref} = {sha[:12]}" if ref != sha else sha[:12]),
             Side("head", repo, f"HEAD = {head_rev} (working tree)"))
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    run = interleave(sides, points, rounds, repeats, seed, progress=progress)
    fingerprint = machine_fingerprint()
    if json_out is not None:
        from profiler.storage.files import write_atomic

        write_atomic(json_out, to_json(run, clock, max_slowdown_pct, fingerprint))
    return run, decide(run, clock, max_slowdown_pct), format_run(run, clock, max_slowdown_pct, fingerprint)
