"""Command line: `python -m profiler sweep|report|compare|check|forecast|plan|columns ...`.

Bad input (a spec, an override, a flag, a results folder) is one line on stderr and
exit status 2, before any work and without touching existing results.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from profiler.analysis.breakdown import sweep_breakdown
from profiler.errors import SpecError, UserError
from profiler.gates.check import MAX_SLOWDOWN_PCT
from profiler.processes.environments import ReleaseError
from profiler.processes.forkserver import ServerPool
from profiler.processes.progress import progress

if TYPE_CHECKING:
    from profiler.processes.runner import SweepResult



def _process_started() -> float:
    """When this process started (epoch seconds), to 10 ms: the interpreter's own start and
    imports count in a sweep's wall time. (psutil's create_time is off by up to a second:
    the kernel gives the boot time in whole seconds.)"""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (since_boot - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):  # not Linux: count from this module's import
        return time.time()


_STARTED = _process_started()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise SpecError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m profiler", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _sweep_parser(commands)
    _report_parsers(commands)
    _forecast_parsers(commands)
    _bench_parser(commands)
    _release_parsers(commands)
    commands.add_parser("columns", help="print the documentation of every result column (Markdown)")
    commands.add_parser("keys", help="print the documentation of every spec key (Markdown)")
    return parser


def _sweep_parser(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser("sweep", help="run a sweep and write its results and report",
                                description="Measure every point of a sweep spec, each repeat in a fresh process.")
    sweep.add_argument("spec", help="sweep spec (TOML), e.g. sweeps/default.toml")
    sweep.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override a spec key; VALUE is TOML (layers=[2,4], mode=scan)")
    sweep.add_argument("--out", type=Path, help="results folder (default: results/<name>-<UTC time>)")
    sweep.add_argument("--resume", action="store_true", help="continue the sweep in --out: run only missing (point, repeat)s")
    sweep.add_argument("--jobs", type=int, default=None,
                       help="points measured at once, each in its own process (default 1); with "
                       "--executor dask, the workers of the local Dask cluster")
    sweep.add_argument("--start", choices=("fork", "fresh"), default=None,
                       help="how a measuring process starts: forked from a server that has imported JAX and "
                       "Flax ('fork', the default on Linux) or a fresh interpreter ('fresh')")
    sweep.add_argument("--executor", choices=("local", "dask"), default="local",
                       help="where measurements run: threads of this process (default) or a Dask cluster")
    sweep.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="with --executor dask: the scheduler of an existing cluster (default: a "
                       "LocalCluster of --jobs workers on this machine)")
    sweep.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    sweep.add_argument("--yes", action="store_true", help="accept a grid with more points than the spec's max_points")


def _report_parsers(commands: argparse._SubParsersAction) -> None:
    """report, and the gates that compare folders: compare and check."""
    report = commands.add_parser("report", help="write the HTML report of a results folder",
                                 description="Render one self-contained HTML report from a results folder.")
    report.add_argument("folder", type=Path, help="results folder written by `sweep`")
    report.add_argument("--out", type=Path, help="HTML file (default: reports/<folder name>.html)")
    report.add_argument("--fit", action="append", default=[], metavar="CONDITION",
                        help="forecast section: fit only the points CONDITION keeps ('layers<=4'), and check the "
                        "forecasts against the held-out ones in its backtest table")

    compare = commands.add_parser("compare", help="compare two results folders point by point",
                                  description="Ratios B / A of the medians of every point measured in both "
                                  "folders, with bootstrap intervals, and the environments' differences.")
    compare.add_argument("a", type=Path, help="results folder A (the baseline)")
    compare.add_argument("b", type=Path, help="results folder B (compared with A)")
    compare.add_argument("--out", type=Path, help="HTML file (default: reports/compare-<A>-vs-<B>.html)")
    compare.add_argument("--fail-above", type=float, metavar="PCT",
                         help="exit 1 if some ratio B / A exceeds 1 + PCT/100 with its 95%% interval above 1")
    compare.add_argument("--cross-machine", action="store_true",
                         help="with --fail-above, accept A and B from different machines (CPU model, CPU flags, "
                         "backend, device kind) and gate only sizes, costs and memory")

    check = commands.add_parser(
        "check", help="compare a results folder with a baseline; exit 1 on regressions",
        description="Compare two results folders point by point: a timing median slower by more than "
        "--max-slowdown, any change of a deterministic metric (HLO instructions, corrected FLOPs, temp and "
        "argument bytes), or a point that no longer succeeds is a regression. Exit 1 when there is one.")
    check.add_argument("folder", type=Path, help="results folder to check")
    check.add_argument("--baseline", type=Path, required=True, help="results folder to check against")
    check.add_argument("--max-slowdown", type=float, metavar="PCT", default=MAX_SLOWDOWN_PCT,
                       help="largest accepted growth of a timing median, in percent (default: %(default)s)")
    check.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                       help="timings to check: the stages' CPU times (default; steady on a shared "
                       "machine) or their wall-clock times and the step time")
    check.add_argument("--cross-machine", action="store_true",
                       help="accept a baseline from another machine (CPU model, CPU flags, backend, device "
                       "kind) and check only the deterministic metrics")


def _default_out(name: str) -> Path:
    """results/<name>-<UTC time> under the current directory, where the user works (as
    pytest-benchmark's .benchmarks/), wherever the package is installed."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path.cwd() / "results" / f"{safe}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"


def _check_executor(args: argparse.Namespace) -> None:
    from profiler.processes.supervise import DEFAULT_START

    if args.jobs is not None and args.jobs < 1:
        raise SpecError(f"--jobs: must be at least 1 (got {args.jobs})")
    if args.start == "fork" and DEFAULT_START != "fork":
        raise SpecError("--start fork: needs Linux (pidfds); use --start fresh")
    if args.scheduler is not None and args.executor != "dask":
        raise SpecError("--scheduler: applies only to --executor dask")
    if args.scheduler is not None and args.jobs is not None:
        raise SpecError("--jobs: with --scheduler the cluster's worker threads decide how many points run at once")
    if args.executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise SpecError("--executor dask: needs the optional dependency 'distributed' (pip install '.[dask]')")


def _early_server(args: argparse.Namespace) -> ServerPool | None:
    """Start the fork server of the usual measuring environment (one device) now, before
    the spec is read and checked: its imports (JAX, Flax: seconds) then overlap this
    process's own (a program factory's module imports JAX too). None where the sweep may
    not use it: another executor or start, or a spec that sets devices, a mesh or a preset
    (their measuring processes may need another environment)."""
    from profiler.processes.supervise import DEFAULT_START, worker_environment

    if args.executor != "local" or (args.start or DEFAULT_START) != "fork":
        return None
    try:
        text = Path(args.spec).read_text()
    except (OSError, UnicodeDecodeError):
        return None  # refused with its one line by load_spec
    keys = {o.partition("=")[0].strip() for o in args.overrides}
    if any(k in text or k in keys for k in ("devices", "mesh", "preset")):
        return None
    if {"jax", "flax"} & keys or re.search(r"(?m)^\s*(jax|flax)\s*=", text):
        return None  # a JAX release's environment: its own server
    servers = ServerPool()
    servers.prestart(worker_environment())
    return servers


def _sweep(args: argparse.Namespace) -> int:
    _check_executor(args)
    servers = _early_server(args)
    try:
        return _run(args, servers)
    except BaseException:
        if servers is not None:  # bad input, or interrupted: the server goes at once
            servers.close(kill=True)
        raise
    finally:
        if servers is not None:
            servers.close()


def _run(args: argparse.Namespace, servers: ServerPool | None) -> int:
    from profiler.spec import load_spec

    spec = load_spec(args.spec, args.overrides, yes=args.yes)
    if args.resume and args.out is None:
        raise SpecError("--resume needs --out DIR: the folder of the sweep to continue")
    # pyarrow and numpy, once the input is good: bad input is refused in a fraction of the time
    from profiler.processes.runner import DEFAULT_START, run_sweep

    folder = args.out or _default_out(spec.sweep.name)
    if not args.no_report:
        _import_meanwhile("profiler.report.render")
    called = time.time()
    result = run_sweep(spec, folder, resume=args.resume, jobs=args.jobs or 1, start=args.start or DEFAULT_START,
                       executor=args.executor, scheduler=args.scheduler, progress=progress(), servers=servers)
    if servers is not None:  # the measurements are done: the server's exit overlaps the report
        threading.Thread(target=servers.close, daemon=True).start()
    _conclude(result, result.folder, called, report=not args.no_report)
    return 0 if result.ok else 1


def _conclude(result: SweepResult, folder: Path, called: float, report: bool, table: Path | None = None) -> None:
    """What a sweep's command prints once its measurements are stored (sweep and releases
    alike): the statuses, the failures, the report and where the command's time went."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.statuses.items())) or "nothing to do"
    print(f"results: {folder} ({counts}; {result.skipped} already done" + (f"; table: {table})" if table else ")"))
    _say_failures(result)
    driver = {"command start": called - _STARTED, **result.driver_s}
    if report:
        t0 = time.time()
        from profiler.report import write_report

        print(f"report: {write_report(folder)}")
        driver["report"] = time.time() - t0
    print(f"time: {sweep_breakdown(time.time() - _STARTED, driver, result.rows, result.spans).line()}")


def _import_meanwhile(module: str) -> None:
    """Import `module` on a thread of the lowest priority (nice 19): the report's plotting
    libraries take seconds to import, on the cores a measuring process leaves idle rather
    than after the sweep; a measurement that wants the core gets it."""
    def run() -> None:
        if hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)
        importlib.import_module(module)

    threading.Thread(target=run, daemon=True, name="import-report").start()


_FAILURES_SHOWN = 20


def _say_failures(result: SweepResult) -> None:
    """The failed rows by kind (the whole folder, a resumed sweep's earlier rows included),
    then this invocation's failures one per line."""
    if result.ok:
        return
    kinds = ", ".join(f"{n} {status}" for status, n in sorted(result.failed.items()))
    lines = [f"failed: {kinds} (rows with run_status other than ok; run_error says why)"]
    lines += [f"  {f.status}: {f.label} repeat {f.repeat}: {f.error}" for f in result.failures[:_FAILURES_SHOWN]]
    if len(result.failures) > _FAILURES_SHOWN:
        lines.append(f"  ... and {len(result.failures) - _FAILURES_SHOWN} more")
    print("\n".join(lines), file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    from profiler.storage import store

    rows = store.load(args.folder)  # a folder that cannot be used is refused before the plotting libraries load
    from profiler.report import write_report

    if args.fit:  # a bad condition is refused before the plotting libraries load
        from profiler.analysis.forecast import fitted_rows, prepare

        fitted_rows(prepare(rows), args.fit)
    print(f"report: {write_report(args.folder, args.out, rows=rows, fit=args.fit)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from profiler.storage import store

    if args.fail_above is not None and args.fail_above < 0:
        raise SpecError(f"--fail-above: must be a percentage >= 0 (got {args.fail_above:g})")
    rows = store.load(args.a), store.load(args.b)  # bad folders are refused before the plotting libraries load
    from profiler.gates.compare import compare

    result = compare(args.a, args.b, args.out, fail_above=args.fail_above, cross_machine=args.cross_machine, rows=rows)
    print(f"comparison: {result.path}")
    if result.failed:
        worst = result.ratios[result.ratios["exceeds"]].sort_values("ratio").iloc[-1]
        print(f"{int(result.ratios['exceeds'].sum())} ratio(s) above +{args.fail_above:g}%; largest: "
              f"{worst['metric']} x{worst['ratio']:.3f} at layers={worst['cfg_layers']}", file=sys.stderr)
        return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    from profiler.gates.check import check, format_result

    if args.max_slowdown < 0:
        raise SpecError(f"--max-slowdown: must be at least 0 (got {args.max_slowdown:g})")
    result = check(args.folder, args.baseline, args.max_slowdown, args.clock, args.cross_machine)
    print(format_result(result, args.folder, args.baseline))
    return 1 if result.failed else 0


_FIT_HELP = ("fit only the points that CONDITION keeps, e.g. 'layers<=4' (<, <=, >, >=, =, !=; repeat for "
             "several): the others are held out, and a forecast at one of them shows its measured value")


def _forecast_parsers(commands: argparse._SubParsersAction) -> None:
    forecast = commands.add_parser(
        "forecast", help="predict each metric at a point outside the measured grid, with an interval",
        description="Fit each metric against layers (models chosen by leave-largest-out validation) and "
        "predict it at the target, with a prediction interval, the model and the points it rests on "
        "(docs/forecast.md).")
    forecast.add_argument("folder", type=Path, help="results folder written by `sweep`")
    forecast.add_argument("target", nargs="*", metavar="KEY=VALUE",
                          help="the target point (layers=256 mode=loop hidden=1024); keys left out split the answer by series")
    forecast.add_argument("--json", action="store_true", help="print a JSON list, one object per series and metric")
    forecast.add_argument("--fit", action="append", default=[], metavar="CONDITION", help=_FIT_HELP)
    plan = commands.add_parser(
        "plan", help="rank the configurations by memory, time to a compiled program, step and total time",
        description="For the configurations in the results (forecast at the target KEY=VALUE when given): "
        "which fit in --memory-per-device, which is compiled soonest, steps fastest, and finishes --steps "
        "steps first, and why each other one lost.")
    plan.add_argument("folder", type=Path, help="results folder written by `sweep`")
    plan.add_argument("target", nargs="*", metavar="KEY=VALUE", help="the size to plan for (default: the largest measured)")
    plan.add_argument("--memory-per-device", metavar="SIZE",
                      help="device memory, e.g. 80GiB, 16GB, 512MiB (default: the HBM of one device of the "
                           "TPU or GPU target the rows were compiled for)")
    plan.add_argument("--devices", type=int, help="devices the program runs on (a key of the results)")
    plan.add_argument("--steps", type=int, default=0, help="steps the compiled program runs (default 0: only compile)")
    plan.add_argument("--json", action="store_true", help="print the ranking as JSON")
    plan.add_argument("--fit", action="append", default=[], metavar="CONDITION", help=_FIT_HELP)


def _forecast(args: argparse.Namespace) -> int:
    import json

    from profiler.analysis.forecast import forecast_target, format_text

    forecasts = forecast_target(args.folder, args.target, fit=args.fit)
    print(json.dumps([f.as_dict() for f in forecasts], indent=1) if args.json else format_text(forecasts))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from profiler.analysis.plan import format_plan, plan_target

    result = plan_target(args.folder, args.target, memory=args.memory_per_device, devices=args.devices,
                         steps=args.steps, fit=args.fit)
    print(result.to_json() if args.json else format_plan(result))
    return 0


def _bench_parser(commands: argparse._SubParsersAction) -> None:
    from profiler.gates import bench

    p = commands.add_parser(
        "bench", help="compile times of the working tree against a git revision, measured in one run",
        description="Cold compile times of the representative points, the working tree against --base, in fresh "
        "processes interleaved round by round; exit 1 when a benchmark is slower beyond --max-slowdown with its "
        "bootstrap interval (docs/gates.md).")
    p.add_argument("--base", metavar="REF", help="revision to compare with (default: the merge-base with main)")
    p.add_argument("--rounds", type=int, default=bench.ROUNDS, help="fresh processes per side (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="cold compiles per benchmark in each process (default: 1)")
    p.add_argument("--benchmarks", nargs="+", metavar="NAME", help="only these points (default: all)")
    p.add_argument("--points", type=Path, metavar="JSON", help="points to use instead of profiler.gates.golden.POINTS: "
                   "a JSON object {name: {point field: value}}")
    p.add_argument("--clock", choices=list(bench.CLOCKS), default="cpu", help="the gated clock (default: cpu)")
    p.add_argument("--max-slowdown", type=float, metavar="PCT", default=bench.MAX_SLOWDOWN_PCT,
                   help="fail when the interval of head / base is above 1 + PCT/100 (default: %(default)s)")
    p.add_argument("--seed", type=int, help="seed of the random order of sides and benchmarks (default: drawn)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every sample and verdict to FILE")


def _bench(args: argparse.Namespace) -> int:
    from profiler.gates.bench import bench

    _, verdicts, text = bench(args.base, rounds=args.rounds, repeats=args.repeats, names=args.benchmarks,
                              points_file=args.points, clock=args.clock, max_slowdown_pct=args.max_slowdown,
                              seed=args.seed, json_out=args.json,
                              progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(text)
    return 1 if any(v.regression for v in verdicts) else 0


def _release_parsers(commands: argparse._SubParsersAction) -> None:
    releases = commands.add_parser(
        "releases", help="measure a sweep on several JAX releases in one run, interleaved, side by side",
        description="Build (once, cached) an environment per JAX release and measure the spec on all of them in one "
        "sweep, each repeat visiting every release in turn; compare each release with the first (docs/releases.md).")
    releases.add_argument("spec", help="sweep spec (TOML)")
    releases.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a spec key, as in sweep")
    releases.add_argument("--jax", required=True, metavar="V1,V2,...",
                          help="the releases, comma-separated; the first is the base of the comparison")
    releases.add_argument("--flax", metavar="V", help="the flax of every environment (default: the newest flax "
                          "that accepts each release)")
    releases.add_argument("--out", type=Path, help="results folder (default: results/<name>-releases-<UTC time>)")
    releases.add_argument("--fail-above", type=float, metavar="PCT", help="exit 1 when a release is slower than the "
                          "base by more than PCT percent with its whole interval above 1, or an exact metric grows by more")
    releases.add_argument("--resume", action="store_true", help="continue the run in --out: measure only what is missing")
    releases.add_argument("--start", choices=("fork", "fresh"), default=None, help="how measuring processes start (as in sweep)")
    releases.add_argument("--no-report", action="store_true", help="do not write the HTML report")
    releases.add_argument("--yes", action="store_true", help="accept a grid past max_points")

    bisect = commands.add_parser(
        "bisect", help="find the JAX release that moved a metric",
        description="Bisect the releases the package index serves between --good and --bad, measuring each candidate "
        "interleaved with the two ends, for the first release where the metric moved (docs/releases.md).")
    bisect.add_argument("spec", help="sweep spec (TOML) of one point (fix grid keys with KEY=VALUE)")
    bisect.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a spec key, as in sweep")
    bisect.add_argument("--good", required=True, metavar="V", help="a release before the change")
    bisect.add_argument("--bad", required=True, metavar="V", help="a release after the change")
    bisect.add_argument("--metric", required=True, help="a numeric result column, e.g. time_compile_s or size_hlo_bytes")
    bisect.add_argument("--flax", metavar="V", help="the flax of every environment (default: the newest that fits)")
    bisect.add_argument("--out", type=Path, help="folder of the steps (default: results/<name>-bisect-<UTC time>)")
    bisect.add_argument("--start", choices=("fork", "fresh"), default=None, help="how measuring processes start")


def _releases(args: argparse.Namespace) -> int:
    from profiler.gates.releases import check_releases, format_matrix, parse_releases, release_spec

    releases = parse_releases(args.jax)
    if args.fail_above is not None and args.fail_above < 0:
        raise SpecError(f"--fail-above: must be a percentage >= 0 (got {args.fail_above:g})")
    if args.resume and args.out is None:
        raise SpecError("--resume needs --out DIR: the folder of the run to continue")
    spec = release_spec(args.spec, args.overrides, releases, args.flax, yes=args.yes)
    check_releases(releases, args.flax)
    from profiler.gates.releases import run_matrix

    folder = args.out or _default_out(f"{spec.sweep.name}-releases")
    called = time.time()
    matrix = run_matrix(spec, folder, releases, resume=args.resume, fail_above=args.fail_above,
                        progress=progress(), start=args.start)
    print(format_matrix(matrix, args.fail_above))
    result = matrix.sweep
    _conclude(result, matrix.folder, called, report=not args.no_report, table=matrix.folder / "releases.md")
    return 1 if matrix.failed else 0


def _bisect(args: argparse.Namespace) -> int:
    from profiler.gates.bisect import bisect, format_finding
    from profiler.spec import read_toml

    name = read_toml(args.spec).get("name", "bisect")
    out = args.out or _default_out(f"{name}-bisect")
    finding = bisect(args.spec, args.overrides, args.good, args.bad, args.metric, out, flax=args.flax,
                     start=args.start, say=lambda line: print(line, file=sys.stderr, flush=True), progress=progress())
    print(format_finding(finding))
    return 0 if finding.first and finding.clear else 1


def _columns(args: argparse.Namespace) -> int:
    from profiler.storage.record import columns_markdown

    print(columns_markdown(), end="")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from profiler.spec import keys_markdown

    print(keys_markdown(), end="")
    return 0


_KEY_VALUES = {"sweep": "overrides", "forecast": "target", "plan": "target", "releases": "overrides",
               "bisect": "overrides"}
"""The commands that take KEY=VALUE arguments, and where they go."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with KEY=VALUE words accepted anywhere: after the options too
    (`sweep SPEC --out DIR batch=4`), which argparse alone leaves unrecognised."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    field = _KEY_VALUES.get(args.command)
    stray = [w for w in rest if not (field and "=" in w and not w.startswith("-"))]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if field:
        setattr(args, field, [*getattr(args, field), *rest])
    return args


def main(argv: list[str] | None = None) -> int:
    from profiler import targets

    targets.hide_cuda_plugin()  # the driver compiles nothing: user code it imports stays quiet
    try:
        args = _parse(argv)
        return {"sweep": _sweep, "report": _report, "compare": _compare, "check": _check,
                "forecast": _forecast, "plan": _plan, "bench": _bench, "releases": _releases, "bisect": _bisect,
                "columns": _columns, "keys": _keys}[args.command](args)
    except UserError as e:  # every kind of bad input, one line each (profiler/errors.py)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ReleaseError as e:  # 2: a release that cannot be had; 1: an environment that did not build
        print(f"error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("interrupted: rows written so far are kept; continue with --resume", file=sys.stderr)
        return 130
