"""The GPUs a container backend hands its containers: which devices an instance gets, and how its
container asks the runtime for them (docs/backends.md "GPUs").

The agent chooses the devices (Docker has no GPU scheduler, and CDI names devices): an instance takes
its instance type's GPU count of free device indices of its GPU name when it first starts, keeps them
across restarts, and gives them back when it is forgotten. The control plane places instances by each
pool's capacity, so an agent whose devices are all taken is one whose inventory says more than it has.

Two ways to ask the runtime (`FNPLANE_AGENT_CONTAINER_GPU_REQUEST`):

* `device-request`: `{"DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]]}`, what `docker run --gpus
  device=0,1` sends, served by the NVIDIA Container Toolkit's runtime hook (Docker);
* `cdi`: `{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=0", ...]}`, Container Device Interface names
  that the runtime resolves from the CDI specs in /etc/cdi and /var/run/cdi (`nvidia-ctk cdi generate`):
  Docker 28.2+ and Podman 5.4+ read them from the Engine API; older Podman through libpod
  (`compute/backends/libpod.py`).
"""

from __future__ import annotations

from typing import Any, Literal

from fnplane.compute.backends.base import BackendError
from fnplane.compute.inventory import GpuDevices

GpuRequest = Literal["device-request", "cdi"]
# the CDI kind of NVIDIA GPUs (`nvidia-ctk cdi generate` names them nvidia.com/gpu=<index>)
CDI_KIND = "nvidia.com/gpu"


def cdi_name(index: int) -> str:
    return f"{CDI_KIND}={index}"


def gpu_host_config(indices: list[int], request: GpuRequest) -> dict[str, Any]:
    """The `HostConfig` fields that give a container the GPUs `indices` (none: nothing)."""
    if not indices:
        return {}
    if request == "cdi":
        return {"DeviceRequests": [{"Driver": "cdi", "DeviceIDs": [cdi_name(i) for i in indices]}]}
    return {"DeviceRequests": [{"DeviceIDs": [str(i) for i in indices], "Capabilities": [["gpu"]]}]}


class GpuPool:
    """The agent's real GPUs and which instance holds which."""

    def __init__(self, devices: GpuDevices, request: GpuRequest = "device-request") -> None:
        self.devices = devices
        self.request: GpuRequest = request
        self._held: dict[str, list[int]] = {}

    def take(self, instance_id: str, gpu: str, instance_type: str) -> list[int]:
        """The devices of an instance: those it holds, else its instance type's count of free ones of
        its GPU (BackendError when fewer are free)."""
        if instance_id in self._held:
            return self._held[instance_id]
        count = self.devices.counts.get(instance_type, 0)
        busy = {index for held in self._held.values() for index in held}
        free = [index for index in self.devices.indices.get(gpu, []) if index not in busy]
        if len(free) < count:
            raise BackendError(
                f"instance type {instance_type} needs {count} {gpu} GPU(s); {len(free)} of this agent's "
                f"{len(self.devices.indices.get(gpu, []))} are free"
            )
        self._held[instance_id] = free[:count]
        return self._held[instance_id]

    def give_back(self, instance_id: str) -> None:
        self._held.pop(instance_id, None)

    def host_config(self, indices: list[int]) -> dict[str, Any]:
        return gpu_host_config(indices, self.request)
