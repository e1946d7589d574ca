"""Facts about the machine and software a measurement ran on (the `env_*` columns),
recorded where the measurement runs.

The environment has four modules, one job each: this one records the facts;
`analysis.stats.environment` reads them back from stored rows (each column's distinct
values); `analysis.machines` decides which differences make results incomparable;
`report/environment.py` shows them on a page."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parents[1]


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_state() -> tuple[str | None, bool | None]:
    """Commit and dirty flag of the checkout the harness's code is in (None when it is not
    in a git tree, e.g. installed in site-packages)."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(_PACKAGE), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def host() -> dict[str, Any]:
    """What can be known without starting JAX (the sweep driver uses this)."""
    commit, dirty = git_state()
    return {
        "env_hostname": socket.gethostname(),
        "env_cpu_model": cpu_model(),
        "env_cpu_flags": " ".join(cpu_flags()),
        "env_cpu_count": os.cpu_count(),
        "env_python": platform.python_version(),
        "env_platform": platform.platform(),
        "env_git_commit": commit,
        "env_git_dirty": dirty,
        "env_xla_flags": os.environ.get("XLA_FLAGS", ""),
        "env_time_utc": utc_now(),
    }


def jax_env() -> dict[str, Any]:
    """Versions, backend and devices, as seen by a process that measures."""
    import flax
    import jax
    import jaxlib

    devices = jax.devices()
    cache_dir = jax.config.values["jax_compilation_cache_dir"]
    return {
        **host(),
        "env_jax_version": jax.__version__,
        "env_jaxlib_version": jaxlib.__version__,
        "env_flax_version": flax.__version__,
        "env_backend": jax.default_backend(),
        "env_device_kind": devices[0].device_kind,
        "env_device_count": len(devices),
        "env_persistent_cache": bool(jax.config.values["jax_enable_compilation_cache"] and cache_dir),
    }


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The CPU's feature flags as the kernel lists them (x86 `flags`, Arm `Features`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return tuple(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return ()


@functools.cache
def machine_fingerprint() -> str:
    """A folder-safe name for this machine as far as compile times go: CPU model, core
    count and a hash of the model, count and flags. The same CPU model differs between
    hosts in its flags (AVX-512 or not), and XLA's CPU compile cost with them, so timings
    are comparable only between equal fingerprints."""
    model, count = cpu_model(), os.cpu_count() or 0
    digest = hashlib.sha256(f"{model}\n{count}\n{' '.join(cpu_flags())}".encode()).hexdigest()[:10]
    slug = "-".join("".join(c if c.isalnum() else " " for c in model.lower()).split()) or "cpu"
    return f"{slug}-{count}cpu-{digest}"
