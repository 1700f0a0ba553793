"""The agent's GPUs: real ones through NVML (optional: `pynvml` importable and GPUs present, else none),
and the device indices a container backend hands out (`GpuDevices`)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass

from fnplane.shared.models.compute import GpuInventory, InstanceTypeInventory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuDevices:
    """A host's real GPUs: the device indices of each GPU name (NVML's, or a configured inventory's
    numbered in its order) and the GPU count of each instance type."""

    indices: dict[str, list[int]]
    counts: dict[str, int]

    @classmethod
    def numbered(cls, inventory: list[GpuInventory]) -> GpuDevices:
        """A configured inventory's GPUs numbered 0, 1, ... in its order (each pool's `capacity` of
        them), as NVML and CDI (`nvidia.com/gpu=<index>`) number a host's GPUs."""
        indices: dict[str, list[int]] = {}
        counts: dict[str, int] = {}
        first = 0
        for pool in inventory:
            indices.setdefault(pool.gpu, []).extend(range(first, first + pool.capacity))
            first += pool.capacity
            for instance_type in pool.instance_types:
                counts[instance_type.name] = instance_type.gpu_count
        return cls(indices, counts)


def normalize_gpu_name(product: str) -> str:
    """`NVIDIA L40S` -> `L40S`, `NVIDIA H100 80GB HBM3` -> `H100` (NVCF's normalized product names)."""
    name = re.sub(r"^(NVIDIA|Tesla|GeForce|Quadro)\s+", "", product.strip(), flags=re.IGNORECASE)
    first = name.split()[0] if name.split() else product
    return first.replace("-", "_").upper()


def discover_nvml_devices() -> list[tuple[int, str]]:
    """(device index, normalized GPU name) of every GPU NVML sees; none without pynvml or NVML."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVML raises its own untyped errors; no GPU = fake pool
        log.debug("NVML not usable: %s", error)
        return []
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            raw = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            devices.append((index, normalize_gpu_name(raw.decode() if isinstance(raw, bytes) else raw)))
    finally:
        pynvml.nvmlShutdown()
    return devices


def nvml_inventory(devices: list[tuple[int, str]]) -> list[GpuInventory]:
    """One pool per GPU name, with a one-GPU instance type `LOCAL.GPU.<name>_1x`."""
    names = Counter(name for _, name in devices)
    return [
        GpuInventory(
            gpu=gpu,
            capacity=count,
            instanceTypes=[
                InstanceTypeInventory(
                    name=f"LOCAL.GPU.{gpu}_1x", description=f"One {gpu}", default=True, gpuCount=1
                )
            ],
        )
        for gpu, count in sorted(names.items())
    ]


def nvml_devices(devices: list[tuple[int, str]]) -> GpuDevices:
    """The NVML devices as a container backend hands them out (NVML's own indices)."""
    indices: dict[str, list[int]] = {}
    for index, name in devices:
        indices.setdefault(name, []).append(index)
    inventory = nvml_inventory(devices)
    return GpuDevices(indices, {t.name: t.gpu_count for pool in inventory for t in pool.instance_types})


def discover_nvml_inventory() -> list[GpuInventory]:
    return nvml_inventory(discover_nvml_devices())
