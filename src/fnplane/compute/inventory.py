"""Real GPUs through NVML (optional): `pynvml` importable and GPUs present, else nothing."""

from __future__ import annotations

import logging
import re
from collections import Counter

from fnplane.shared.models.compute import GpuInventory, InstanceTypeInventory

log = logging.getLogger(__name__)


def normalize_gpu_name(product: str) -> str:
    """`NVIDIA L40S` -> `L40S`, `NVIDIA H100 80GB HBM3` -> `H100` (NVCF's normalized product names)."""
    name = re.sub(r"^(NVIDIA|Tesla|GeForce|Quadro)\s+", "", product.strip(), flags=re.IGNORECASE)
    first = name.split()[0] if name.split() else product
    return first.replace("-", "_").upper()


def discover_nvml_inventory() -> list[GpuInventory]:
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
        names: Counter[str] = Counter()
        for index in range(pynvml.nvmlDeviceGetCount()):
            raw = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            names[normalize_gpu_name(raw.decode() if isinstance(raw, bytes) else raw)] += 1
    finally:
        pynvml.nvmlShutdown()
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
