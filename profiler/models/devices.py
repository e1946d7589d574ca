"""The devices a measuring process compiles for (spec key `target`): the host's CPU
devices, the chips of a TPU topology (libtpu, deviceless) or compile-only GPUs (the CUDA
plugin given a description of the GPU), chosen once per process by `use`.

Meshes (profiler/models/sharding.py) take their devices from here, so every workload
compiles for the target without knowing which it is.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import jax

from profiler import targets

_devices: list[Any] | None = None


def use(name: str) -> dict[str, Any]:
    """Make the devices of target `name` those that meshes are built from; the facts of
    the target as `env_target_*` columns. The CPU target changes nothing."""
    global _devices
    target = targets.parse(name)
    if target.platform == "cpu":
        _devices = None
        return {}
    if target.platform == "tpu":
        _devices = _tpu_devices(target)
        version = _version("libtpu")
    else:
        _devices = _gpu_devices(target)
        version = _version("jax-cuda12-plugin")
    return {
        "env_target_device_kind": _devices[0].device_kind,
        "env_target_chips": target.chips,
        "env_target_devices": len(_devices),
        "env_target_library_version": version,
        "mem_hbm_per_chip_bytes": target.hbm_bytes_per_chip,
        "mem_hbm_bytes": target.hbm_bytes_per_device,
    }


def devices() -> list[Any]:
    """The devices programs are compiled for."""
    return _devices if _devices is not None else jax.devices()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tpu_devices(target: targets.Target) -> list[Any]:
    from jax.experimental import topologies

    kwargs = {} if target.host_bounds is None else {"chips_per_host_bounds": target.host_bounds}
    return list(topologies.get_topology_desc(platform="tpu", topology_name=target.name, **kwargs).devices)


def gpu_target_config(model: targets.GpuModel) -> str:
    """A stream_executor.GpuTargetConfigProto, in text form, from the GPU's published
    facts: what XLA's GPU compiler reads to compile for a GPU it cannot query."""
    major, minor = model.compute_capability
    return f"""
gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: {model.shared_per_sm}
  shared_memory_per_block_optin: {model.shared_per_block_optin}
  threads_per_core_limit: 2048
  core_count: {model.sms}
  fpus_per_core: {model.fp32_per_sm}
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {model.memory_bandwidth}
  l2_cache_size: {model.l2_bytes}
  clock_rate_ghz: {model.clock_ghz}
  device_memory_size: {model.memory_gib * targets.GIB}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  cuda_compute_capability {{ major: {major} minor: {minor} }}
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
device_description_str: "{model.name}"
"""


def _gpu_devices(target: targets.Target) -> list[Any]:
    import jax_plugins.xla_cuda12 as plugin
    from jax._src import xla_bridge
    from jax._src.lib import xla_client

    # JAX's plugin discovery (when the backend starts) loads the plugin's library even
    # though the plugin fails its CUDA version check: take its API from there.
    jax.devices()
    registered = xla_bridge._backend_factories.get("cuda")
    if registered is not None and registered.c_api is not None:
        c_api = registered.c_api
    else:
        c_api = xla_client.load_pjrt_plugin_dynamically("cuda", str(plugin._get_library_path()))
    topology = xla_client.make_c_api_device_topology(
        c_api, "", topology=f"1x1x{target.devices}", target_config=gpu_target_config(targets.GPU_MODELS[target.name]))
    return list(topology._make_compile_only_devices())  # type: ignore[attr-defined]  # jaxlib's own, untyped

