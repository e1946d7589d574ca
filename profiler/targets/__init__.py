"""What a point is compiled for (spec key `target`): the host CPU, a TPU topology or a set
of GPUs, and the published facts of each chip, read without JAX.

A TPU or GPU target is compiled deviceless on this host: libtpu builds the chips of a TPU
topology, the CUDA plugin builds compile-only GPUs from a description of the GPU
(profiler/models/devices.py). Here is only what the spec needs to check a target before
any work: its syntax, its chip and device counts, HBM per chip, and whether the library
that compiles for it is installed.

The chips' published facts, with their sources: profiler/targets/chips.py.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import re
import sys
import types
from dataclasses import dataclass

from profiler.targets.chips import GIB, GPU_MODELS, TPU_GENERATIONS, GpuModel, TpuGeneration

__all__ = ["GIB", "GPU_MODELS", "TPU_GENERATIONS", "GpuModel", "Target", "TpuGeneration", "hide_cuda_plugin",
           "missing_package", "parse"]

INSTALL = "pip install -e '.[{extra}]' (or `make venv`, which installs it)"


HOST_BOUNDS = (2, 2, 1)
"""libtpu's default chips per host: a topology must be a multiple of it, unless all its
chips fit one host (then the topology is its own host bounds: 'v5e:1x1', 'v5p:2x1x1')."""


@dataclass(frozen=True)
class Target:
    """A parsed target."""

    platform: str
    """'cpu', 'tpu' or 'gpu'."""
    name: str = ""
    """The TPU topology name ('v5e:2x2') or the GPU model ('h100')."""
    chips: int = 0
    devices: int = 0
    """JAX devices of the target (the mesh must use them all)."""
    hbm_bytes_per_chip: int | None = None
    devices_per_chip: int = 1
    device_kind: str = ""
    host_bounds: tuple[int, int, int] | None = None
    """TPU: chips_per_host_bounds for get_topology_desc (None: libtpu's default)."""

    @property
    def hbm_bytes_per_device(self) -> int | None:
        if self.hbm_bytes_per_chip is None:
            return None
        return self.hbm_bytes_per_chip // self.devices_per_chip

    @property
    def package(self) -> str | None:
        """The module that compiles for it, or None for the CPU (jaxlib)."""
        return {"tpu": "libtpu", "gpu": "jax_plugins.xla_cuda12"}.get(self.platform)


def _closest(word: str, choices: list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.3)
    return f"; did you mean {match[0]!r}?" if match else f"; valid: {', '.join(choices)}"


def parse(target: str) -> Target:
    """The target named `target`, or a ValueError (one line, the closest valid value where
    one fits)."""
    if target == "cpu":
        return Target("cpu")
    platform, _, rest = target.partition(":")
    if platform == "tpu":
        return _tpu(rest)
    if platform == "gpu":
        return _gpu(rest)
    raise ValueError(f"{target!r} is not a target: 'cpu', 'tpu:<generation>:<topology>' "
                     f"(e.g. 'tpu:v5e:2x2') or 'gpu:<model>[:<count>]' (e.g. 'gpu:h100:8')"
                     + _closest(platform, ["cpu", "tpu", "gpu"]))


def _tpu(rest: str) -> Target:
    generation, _, topology = rest.partition(":")
    gens = list(TPU_GENERATIONS)
    if generation not in TPU_GENERATIONS:
        raise ValueError(f"'tpu:{rest}': unknown TPU generation {generation!r}" + _closest(generation, gens))
    gen = TPU_GENERATIONS[generation]
    example = "x".join(["2"] * gen.dims)
    if gen.dims == 3:
        example = "2x2x1"
    if not re.fullmatch(r"[1-9][0-9]*(x[1-9][0-9]*)*", topology) or topology.count("x") != gen.dims - 1:
        raise ValueError(f"'tpu:{rest}': topology {topology!r} is not {gen.dims} chip counts joined by 'x'; "
                         f"did you mean 'tpu:{generation}:{example}'?")
    dims = [int(d) for d in topology.split("x")]
    padded: tuple[int, int, int] = (dims[0], dims[1], dims[2] if len(dims) > 2 else 1)
    chips = math.prod(dims)
    bounds = None
    if any(d % b for d, b in zip(padded, HOST_BOUNDS, strict=True)):
        if chips > math.prod(HOST_BOUNDS):
            closer = "x".join(str(max(b, -(-d // b) * b)) for d, b in zip(padded[:gen.dims], HOST_BOUNDS, strict=False))
            raise ValueError(f"'tpu:{rest}': a topology of more than one host must be a multiple of "
                             f"{'x'.join(map(str, HOST_BOUNDS[:gen.dims]))} chips per host; "
                             f"did you mean 'tpu:{generation}:{closer}'?")
        bounds = padded
    return Target("tpu", f"{generation}:{topology}", chips=chips, devices=chips * gen.devices_per_chip,
                  hbm_bytes_per_chip=int(gen.hbm_gib * GIB), devices_per_chip=gen.devices_per_chip,
                  device_kind=gen.device_kind, host_bounds=bounds)


def _gpu(rest: str) -> Target:
    model, _, count = rest.partition(":")
    if model not in GPU_MODELS:
        raise ValueError(f"'gpu:{rest}': unknown GPU model {model!r}" + _closest(model, list(GPU_MODELS)))
    if count and not re.fullmatch(r"[1-9][0-9]*", count):
        raise ValueError(f"'gpu:{rest}': the GPU count {count!r} is not a positive integer; "
                         f"did you mean 'gpu:{model}:8'?")
    n = int(count or 1)
    spec = GPU_MODELS[model]
    return Target("gpu", model, chips=n, devices=n, hbm_bytes_per_chip=spec.memory_gib * GIB,
                  device_kind=spec.name)


def missing_package(target: Target) -> str | None:
    """The line that says how to install what compiles for `target`, if it is missing."""
    if target.package is None:
        return None
    if target.platform == "tpu":
        found = importlib.util.find_spec("libtpu") is not None
    else:  # by its distribution: a process may hide the module (hide_cuda_plugin)
        try:
            importlib.metadata.distribution("jax-cuda12-plugin")
            found = True
        except importlib.metadata.PackageNotFoundError:
            found = False
    if found:
        return None
    extra = target.platform
    what = "libtpu" if extra == "tpu" else "the CUDA plugin of this JAX release"
    return f"target '{target.platform}:{target.name}' needs {what}, which is not installed: {INSTALL.format(extra=extra)}"


CUDA_ENV = "PROFILER_CUDA_PLUGIN"
"""Set to 1 by the runner for the measuring processes of a GPU target: the others, and
the command line, hide the CUDA plugin (`hide_cuda_plugin`)."""


def hide_cuda_plugin() -> None:
    """Keep the installed CUDA plugin out of this process; call it before JAX is imported.
    Importing JAX imports the plugin's kernels (jaxlib.gpu_solver, gpu_prng, gpu_linalg)
    and starting its backend imports the plugin, even with JAX_PLATFORMS=cpu; the CUDA
    libraries they load log "Could not find cuda drivers" to stderr six times on a host
    without a GPU. Only a process that compiles for a GPU target needs the plugin
    (profiler/models/devices.py); every other starts as it did before the plugin was
    installed. Does nothing where JAX is already imported or `CUDA_ENV` is 1."""
    if "jax" in sys.modules or os.environ.get(CUDA_ENV) == "1":
        return
    sys.modules.setdefault("jax_cuda12_plugin", None)  # type: ignore[arg-type]  # imports of it fail
    stand_in = types.ModuleType("jax_plugins.xla_cuda12", "stand-in: profiler.targets.hide_cuda_plugin")
    stand_in.initialize = lambda: None  # type: ignore[attr-defined]  # registers no backend
    sys.modules.setdefault("jax_plugins.xla_cuda12", stand_in)
