"""Environments of JAX releases: which releases the package index serves, and one cached
virtual environment per release whose interpreter runs the measuring processes of the
points that name it (spec key `jax`; `profiler releases`, `profiler bisect`; docs/releases.md).

An environment holds the release's jax and jaxlib, the newest flax and optax that accept
it (or the flax asked for), and the other packages the measuring side imports, in the
versions pyproject.toml asks for. The profiler itself is not installed there: a measuring
process imports this source tree from PYTHONPATH (supervise.worker_environment), so the
project's own jax pin cannot pull jax back to the newest release. Built with uv (from the
project's dev extras) or, where uv is absent, `python -m venv` and pip. Environments live
under `cache_root()` and are reused until the requirements change; the index's answer is
cached there for a day.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "PROFILER_RELEASES_CACHE"
INDEX_TTL_S = 24 * 3600
MEASURING_DEPS = ("numpy", "pydantic", "psutil", "cloudpickle")
"""pyproject.toml's dependencies that a measuring process imports besides JAX, Flax and Optax."""
_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")


class ReleaseError(Exception):
    """A release that cannot be had: bad input (status 2: not served, an impossible pair,
    no index) or an environment that failed to build (status 1). The message is one line."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def cache_root() -> Path:
    """$PROFILER_RELEASES_CACHE, else $XDG_CACHE_HOME/jax-stack-profiler/releases, else
    ~/.cache/jax-stack-profiler/releases."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jax-stack-profiler" / "releases"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_version(text: str, what: str) -> str:
    """`text` if it spells a release (0.8.3), else a ReleaseError naming `what`."""
    text = text.strip()
    if not _VERSION.match(text):
        raise ReleaseError(f"{what}: {text!r} is not a release number such as 0.8.3")
    return text


# --- what the index serves ----------------------------------------------------------------


def served(package: str, refresh: bool = False) -> list[str]:
    """The final releases of `package` the package index serves, oldest first. Asked with
    `pip index versions` (pip's own index configuration), and cached for INDEX_TTL_S."""
    cached = cache_root() / f"index-{package}.json"
    if not refresh:
        with contextlib.suppress(OSError, ValueError, KeyError):
            saved = json.loads(cached.read_text())
            if time.time() - saved["asked"] < INDEX_TTL_S:
                return saved["versions"]
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)
    found = re.search(r"^Available versions: (.*)$", done.stdout, re.M)
    if done.returncode or not found:
        said = [line.strip() for line in (done.stderr + done.stdout).splitlines()
                if line.strip() and not line.startswith("WARNING")]
        raise ReleaseError(f"no package index answered for {package} (pip index versions {package}: "
                           f"{said[-1] if said else f'exit status {done.returncode}'})")
    versions = sorted((v.strip() for v in found.group(1).split(",") if _VERSION.match(v.strip())), key=version_key)
    from profiler.storage.files import write_atomic

    cached.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cached, json.dumps({"asked": time.time(), "versions": versions}), durable=False)
    return versions


def nearest(version: str, versions: list[str]) -> str:
    """The releases either side of `version` among `versions` (oldest first), as words."""
    keys = [version_key(v) for v in versions]
    at = bisect.bisect_left(keys, version_key(version))
    around = versions[max(0, at - 1):at + 1]
    return " and ".join(around) if around else "none"


def check_served(package: str, versions: list[str]) -> None:
    """ReleaseError (status 2) naming the nearest served releases for each of `versions`
    the index does not serve."""
    have = served(package)
    for version in versions:
        if version not in have:
            raise ReleaseError(f"{package} {version}: the package index does not serve this release; "
                               f"nearest served: {nearest(version, have)}")


def between(good: str, bad: str) -> list[str]:
    """The jax releases the index serves from `good` to `bad`, both included, oldest first."""
    lo, hi = version_key(good), version_key(bad)
    return [v for v in served("jax") if lo <= version_key(v) <= hi]


# --- one environment per release ----------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    jax: str
    flax: str | None
    """The flax asked for; None: the newest that accepts `jax`."""
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.path / "profiler-environment.json"

    def versions(self) -> dict[str, str]:
        """What was installed: {jax, jaxlib, flax, optax}, read when it was built."""
        return json.loads(self.stamp.read_text())["versions"]


def requirements(jax: str, flax: str | None) -> list[str]:
    """What an environment of `jax` installs: jax and jaxlib of the release (jaxlib of the
    same number where the index has one, else the resolver's), flax (`flax`, else the
    newest that accepts this jax) and optax, and MEASURING_DEPS as pyproject.toml asks."""
    jaxlib = [f"jaxlib=={jax}"] if jax in served("jaxlib") else ["jaxlib"]
    return [f"jax=={jax}", *jaxlib, f"flax=={flax}" if flax else "flax", "optax", *_project_deps()]


# How an environment is built, part of its folder's hash: environments built another way
# are built again. Bytecode is compiled at install time because the measuring processes and
# fork servers of every later run import JAX from it: without .pyc files (uv writes none
# unless asked, and PYTHONDONTWRITEBYTECODE stops the interpreter writing them) each start
# compiles JAX's sources again.
_RECIPE = ("compile-bytecode",)


def environment(jax: str, flax: str | None = None) -> Environment:
    """Where the environment of (`jax`, `flax`) lives, built or not. Its folder names the
    interpreter's version and a hash of its requirements: a changed requirement builds anew."""
    jax = check_version(jax, "--jax")
    flax = None if flax is None else check_version(flax, "--flax")
    digest = hashlib.sha256(json.dumps([sys.version_info[:2], jax, flax, _project_deps(), *_RECIPE]).encode()
                            ).hexdigest()[:8]
    name = f"py{sys.version_info[0]}.{sys.version_info[1]}-jax{jax}-flax{flax or 'newest'}-{digest}"
    return Environment(jax, flax, cache_root() / name)


def _project_deps() -> list[str]:
    """pyproject.toml's requirements of MEASURING_DEPS, as written there."""
    project = tomllib.loads((_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return sorted(d for d in project if re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] in MEASURING_DEPS)


def built(jax: str, flax: str | None = None) -> Environment | None:
    """The environment of (`jax`, `flax`) if it is built, else None. Asks no index."""
    env = environment(jax, flax)
    return env if env.stamp.is_file() else None


def uv() -> str | None:
    """uv beside this interpreter (the dev extras install it), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per environment (two test workers may want the same one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


_CHECK = ("import json, jax, jaxlib, flax, optax; print(json.dumps({'jax': jax.__version__, "
          "'jaxlib': jaxlib.__version__, 'flax': flax.__version__, 'optax': optax.__version__}))")


def ensure(jax: str, flax: str | None = None, say: Callable[[str], None] = lambda line: None) -> Environment:
    """The environment of (`jax`, `flax`), built now unless it already is (about 5-30 s
    with uv's cache warm; nothing once built). ReleaseError: status 2 for a pair the
    resolver cannot install together (with its reason), 1 for a failed step."""
    env = environment(jax, flax)
    with _locked(env.path):
        if env.stamp.is_file():
            return env
        check_served("jax", [jax])
        if flax:
            check_served("flax", [flax])
        if env.path.exists():  # a build that stopped half-way
            shutil.rmtree(env.path)
        started = time.perf_counter()
        try:
            _build(env)
        except BaseException:
            shutil.rmtree(env.path, ignore_errors=True)
            raise
        # Said once built: a pair the resolver refuses is then the command's only line.
        say(f"built the environment of jax {jax} in {time.perf_counter() - started:.0f} s: "
            f"{', '.join(f'{k} {v}' for k, v in env.versions().items())} ({env.path})")
    return env


def _build(env: Environment) -> None:
    tool = uv()
    python = str(Path(sys.executable))
    wanted = requirements(env.jax, env.flax)
    if tool:
        _step(env, "venv", [tool, "venv", "--quiet", "--python", python, str(env.path)])
        _step(env, "install", [tool, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(env.python),
                               *wanted])
    else:
        _step(env, "venv", [python, "-m", "venv", str(env.path)])
        _step(env, "install", [str(env.python), "-m", "pip", "install", "--quiet", *wanted])
    checked = _step(env, "check", [str(env.python), "-c", _CHECK])
    versions = json.loads(checked.strip().splitlines()[-1])
    if versions["jax"] != env.jax:
        raise ReleaseError(f"environment of jax {env.jax}: step 'check': it imports jax {versions['jax']}", status=1)
    from profiler.storage.files import write_atomic

    write_atomic(env.stamp, json.dumps({"versions": versions, "requirements": wanted,
                                        "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))


# A resolver's refusal: uv says "No solution found", pip "ResolutionImpossible" or
# "conflicting dependencies"; the reason follows.
_UNRESOLVABLE = re.compile(r"No solution found|ResolutionImpossible|conflicting dependencies|"
                           r"Could not find a version that satisfies")


def _step(env: Environment, step: str, command: list[str]) -> str:
    # Installing must not see the driver's virtual environment: uv would install there.
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environ)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ReleaseError(f"environment of jax {env.jax}: step '{step}' failed ({e})", status=1) from None
    if done.returncode == 0:
        return done.stdout
    said = [re.sub(r"^(error|cause|hint|help):\s*", "", line.strip(" ×╰─▶│")) for line in done.stderr.splitlines()]
    said = [line for line in said if line and not line.startswith("Using Python")]
    if step == "install" and _UNRESOLVABLE.search(done.stderr):
        reason = " ".join(line for line in said if not _UNRESOLVABLE.search(line))
        asked = f"jax {env.jax} and flax {env.flax}" if env.flax else f"jax {env.jax}"
        raise ReleaseError(f"{asked} cannot be installed together: {reason or said[-1]}")
    raise ReleaseError(f"environment of jax {env.jax}: step '{step}' failed: "
                       f"{said[-1] if said else f'exit status {done.returncode}'}", status=1)
