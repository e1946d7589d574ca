"""The published facts of the chips a point can be compiled for: HBM per TPU chip and
what libtpu makes of a chip; what XLA's GPU compiler needs to know of a GPU.

Sources of the facts (docs/tpu.md, docs/gpu.md cite them per chip):
- TPUs: Google Cloud's TPU documentation, "System architecture" page of each version
  (v2, v3, v4, v5e, v5p, v6e, TPU7x). Google writes HBM as "GB"/"GiB"; the numbers
  below are GiB, which is what the chips report (a v5p reports 95.74 GiB).
- GPUs: NVIDIA's datasheets and architecture whitepapers (A100: "NVIDIA A100 Tensor Core
  GPU Architecture", 2020; H100: "NVIDIA H100 Tensor Core GPU Architecture", 2022;
  B200: "NVIDIA Blackwell Architecture Technical Brief" and the HGX B200 datasheet).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30


@dataclass(frozen=True)
class TpuGeneration:
    dims: int
    """Dimensions of its topology names (2: '2x2'; 3: '2x2x1')."""
    devices_per_chip: int
    """JAX devices libtpu gives per chip (two TensorCores as two devices on v2, v3, v4 and
    TPU7x, as measured with libtpu 0.0.42.1)."""
    hbm_gib: float
    """HBM per chip, GiB (Google Cloud's TPU documentation)."""
    device_kind: str
    """`device_kind` of its devices."""


TPU_GENERATIONS: dict[str, TpuGeneration] = {
    "v2": TpuGeneration(2, 2, 16, "TPU v2"),
    "v3": TpuGeneration(2, 2, 32, "TPU v3"),
    "v4": TpuGeneration(3, 2, 32, "TPU v4"),
    "v5e": TpuGeneration(2, 1, 16, "TPU v5 lite"),
    "v5p": TpuGeneration(3, 1, 95, "TPU v5"),
    "v6e": TpuGeneration(2, 1, 32, "TPU v6 lite"),
    "tpu7x": TpuGeneration(3, 2, 192, "TPU7x"),
}
"""The TPU generations libtpu 0.0.42 names (`get_topology_desc` topology names start with
these; 'v5litepod' and 'v7x' are refused by it)."""

@dataclass(frozen=True)
class GpuModel:
    """A GPU's published facts: what XLA's GPU compiler needs to know about it
    (stream_executor.GpuDeviceInfoProto) and its memory."""

    name: str
    compute_capability: tuple[int, int]
    sms: int
    fp32_per_sm: int
    memory_gib: int
    memory_bandwidth: int
    """Bytes per second."""
    l2_bytes: int
    clock_ghz: float
    shared_per_sm: int
    shared_per_block_optin: int
    source: str


GPU_MODELS: dict[str, GpuModel] = {
    "a100": GpuModel("NVIDIA A100-SXM4-80GB", (8, 0), 108, 64, 80, 2_039_000_000_000, 40 * 1024 * 1024, 1.41,
                     164 * 1024, 163 * 1024, "NVIDIA A100 datasheet and Ampere architecture whitepaper"),
    "h100": GpuModel("NVIDIA H100 80GB HBM3", (9, 0), 132, 128, 80, 3_350_000_000_000, 50 * 1024 * 1024, 1.98,
                     228 * 1024, 227 * 1024, "NVIDIA H100 SXM5 datasheet and Hopper architecture whitepaper"),
    "b200": GpuModel("NVIDIA B200", (10, 0), 148, 128, 180, 8_000_000_000_000, 126 * 1024 * 1024, 1.965,
                     228 * 1024, 227 * 1024, "NVIDIA HGX B200 datasheet and Blackwell technical brief"),
}
