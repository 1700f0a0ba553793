"""Settings of the compute-plane agent (environment prefix FNPLANE_AGENT_).

Every threshold of the failure rules (reference/compute.md 1.4) is here, so tests can shorten them the way
NVCF's own test build does. Defaults are laptop-sized: NVCF's 2 h startup / 30 min degradation windows are
tuned for multi-GB images.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.shared.models.compute import GpuInventory, InstanceTypeInventory


def default_inventory() -> list[GpuInventory]:
    """The fake pool every local cluster announces unless configured otherwise (DESIGN.md 3)."""
    return [
        GpuInventory(
            gpu="L40S",
            capacity=8,
            instanceTypes=[
                InstanceTypeInventory(
                    name="LOCAL.GPU.L40S_1x",
                    description="One fake L40S (local processes)",
                    default=True,
                    gpuCount=1,
                )
            ],
        )
    ]


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FNPLANE_AGENT_")

    control_url: str = "http://127.0.0.1:8080"
    nats_url: str = "nats://127.0.0.1:4222"
    # bearer with scope `cluster-management`
    token: str = ""
    cluster_name: str = "local"
    group: str = "local"
    region: str = "local"
    # containerArgs run here (DESIGN.md 3: the directory `fnplane up` was started in)
    workdir: Path = Field(default_factory=Path.cwd)
    # the agent's state (process table, instance logs) lives under home/agents/<cluster_name>
    home: Path = Field(default_factory=lambda: Path.home() / ".fnplane")
    # None = the fake default pool; real GPUs found through NVML replace it when discover_gpus is on
    inventory: list[GpuInventory] | None = None
    discover_gpus: bool = True
    # stable per (state dir, cluster) unless given, so a restarted agent recognises its processes
    agent_id: str | None = None

    heartbeat_interval_s: float = 5.0
    poll_interval_s: float = 5.0
    metrics_interval_s: float = 5.0
    http_timeout_s: float = 10.0
    nats_connect_timeout_s: float = 5.0

    # failure rules (compute.md 1.4 / 1.6)
    startup_timeout_s: float = 600.0
    degradation_timeout_s: float = 1800.0
    restart_limit: int = 3
    restart_window_s: float = 600.0
    restart_backoff_initial_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    stop_grace_s: float = 30.0
    error_log_bytes: int = 1024

    # worker health checks (compute.md 1.5)
    health_poll_interval_s: float = 1.0
    health_recheck_interval_s: float = 10.0
    health_not_ready_grace_s: float = 30.0

    # per-instance log files
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 2
    # longest a `follow=true` log stream may last
    log_follow_max_s: float = 3600.0

    worker_python: str = sys.executable

    @property
    def state_dir(self) -> Path:
        return self.home / "agents" / self.cluster_name

    @property
    def effective_agent_id(self) -> str:
        if self.agent_id:
            return self.agent_id
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return f"{self.cluster_name}-{digest}"

    def effective_inventory(self) -> list[GpuInventory]:
        if self.inventory is not None:
            return self.inventory
        if self.discover_gpus:
            from fnplane.compute.inventory import discover_nvml_inventory

            found = discover_nvml_inventory()
            if found:
                return found
        return default_inventory()
