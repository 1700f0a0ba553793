"""Settings of the compute-plane agent (environment prefix FNPLANE_AGENT_).

Every threshold of the failure rules (reference/compute.md 1.4) is here, so tests can shorten them the way
NVCF's own test build does. Defaults are laptop-sized: NVCF's 2 h startup / 30 min degradation windows are
tuned for multi-GB images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fnplane.shared.models.compute import GpuInventory, InstanceTypeInventory

if TYPE_CHECKING:
    from fnplane.compute.inventory import GpuDevices


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

    # the control plane's HTTP API (agent endpoints under /v1/fnplane)
    control_url: str = "http://127.0.0.1:8080"
    # NATS: assignment kicks, instance-log requests; handed to every worker for the request path
    nats_url: str = "nats://127.0.0.1:4222"
    # the agent's NATS credentials file (.creds); workers get their own from the control plane, or
    # this one where the control plane mints none (external NATS without an account signing key)
    nats_creds: Path | None = None
    # bearer with scope `cluster-management`; never on a command line (`ps` shows it to every local
    # user): set FNPLANE_AGENT_TOKEN or name a file (mode 0600) holding it in token_file
    token: str = Field(default="", repr=False)
    # a file whose content (stripped) is the token; wins over `token`
    token_file: Path | None = None
    # the cluster this agent registers (one agent per cluster name)
    cluster_name: str = "local"
    # cluster group (NVCF `backend`) and region the cluster announces
    group: str = "local"
    region: str = "local"
    # containerArgs run here (DESIGN.md 3: the directory `fnplane up` was started in)
    workdir: Path = Field(default_factory=Path.cwd)
    # the agent's state (process table, instance logs) lives under home/agents/<cluster_name>
    home: Path = Field(default_factory=lambda: Path.home() / ".fnplane")
    # None = the fake default pool; real GPUs found through NVML replace it when discover_gpus is on
    inventory: list[GpuInventory] | None = None
    # use NVML (pynvml) when importable and GPUs are present
    discover_gpus: bool = True
    # the configured inventory describes this host's real GPUs, numbered 0, 1, ... in its order (each
    # pool's capacity of them): the container backend requests them from its runtime as it does GPUs
    # found through NVML (off: a configured pool is fake, like the default one, and none is requested)
    inventory_gpus_real: bool = False
    # stable per (state dir, cluster) unless given, so a restarted agent recognises its processes
    agent_id: str | None = None

    # registration is repeated this often (it is the heartbeat)
    heartbeat_interval_s: float = 5.0
    # assignments are fetched this often even without a NATS kick
    poll_interval_s: float = 5.0
    # worker busy time is sent to the autoscaler this often
    metrics_interval_s: float = 5.0
    # deadline of each call to the control plane
    http_timeout_s: float = 10.0
    nats_connect_timeout_s: float = 5.0

    # failure rules (compute.md 1.4 / 1.6)
    # failure rules (compute.md 1.4 / 1.6): never healthy within this long after a launch -> failed
    startup_timeout_s: float = 600.0
    # healthy, then unhealthy for this long -> failed (degraded-worker)
    degradation_timeout_s: float = 1800.0
    # more exits than this within restart_window_s -> failed (container-restart-loop)
    restart_limit: int = 3
    restart_window_s: float = 600.0
    # a crashed function is restarted after this delay, doubling up to the max
    restart_backoff_initial_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    # SIGTERM to the process group, SIGKILL after this long (NVCF: 120 s)
    stop_grace_s: float = 30.0
    # how much of the stderr tail a failure report carries (NVCF: 1024 bytes)
    error_log_bytes: int = 1024

    # worker health checks (compute.md 1.5)
    # worker health checks (compute.md 1.5): startup polling period
    health_poll_interval_s: float = 1.0
    # steady-state recheck period
    health_recheck_interval_s: float = 10.0
    # a 404 from a healthy function makes it unhealthy only after this long
    health_not_ready_grace_s: float = 30.0

    # per-instance log files rotate at this size, keeping log_backups old files; a container's own log
    # at its runtime, which the agent reads its output from, is bounded by the same two (docs/backends.md)
    log_max_bytes: int = 10 * 1024 * 1024
    # rotated per-instance log files kept beside the current one
    log_backups: int = 2
    # longest a `follow=true` log stream may last
    log_follow_max_s: float = 3600.0

    # the interpreter that runs `python -m fnplane.compute.worker` (empty: the agent's own)
    worker_python: str = ""

    # what runs an instance (docs/backends.md): `process` = containerArgs as a local process (sandboxed,
    # below); `container` = containerImage through the Docker Engine API (Docker or Podman)
    backend: Literal["process", "container"] = "process"
    # the container runtime's API, e.g. unix:///run/podman/podman.sock; empty: DOCKER_HOST, then
    # CONTAINER_HOST, then the first of /var/run/docker.sock and /run/podman/podman.sock that exists
    container_host: str = ""
    # deadline of each call to the container runtime (a pull's: between two progress lines; the wait
    # for an exit and the output stream have none)
    container_api_timeout_s: float = Field(default=60.0, gt=0)
    # CPUs a container may use, per instance type name, as JSON: {"LOCAL.GPU.L40S_1x": 8}
    container_cpus: dict[str, float] = Field(default_factory=dict)
    # CPUs of a container whose instance type container_cpus does not list; 0 = no limit
    container_cpus_default: float = Field(default=0.0, ge=0)
    # memory limit of a container (no swap on top), per instance type name, as JSON
    container_memory_bytes: dict[str, int] = Field(default_factory=dict)
    # memory limit of a container whose instance type container_memory_bytes does not list; 0 = none
    container_memory_default_bytes: int = Field(default=0, ge=0)
    # how a container asks its runtime for the GPUs of its instance (docs/backends.md "GPUs"), when
    # they are real: device-request = the NVIDIA Container Toolkit's request for those device indices
    # (Docker); cdi = CDI device names nvidia.com/gpu=<index> (Docker 28.2+, Podman)
    container_gpu_request: Literal["device-request", "cdi"] = "device-request"
    # labels of the operator's on every container, as JSON ({"team": "ml"}); the fnplane.* ones win
    container_labels: dict[str, str] = Field(default_factory=dict)

    # function sandbox (compute/backends/sandbox.py): bubblewrap, none (a single trusted user only), or
    # auto = bubblewrap when a probe run of bwrap works here, else none (with a warning)
    sandbox: Literal["auto", "bubblewrap", "none"] = "auto"
    # the bwrap program (a name on PATH or a path)
    sandbox_bwrap: str = "bwrap"
    # size limit of each private tmpfs (/tmp, HOME) of a sandboxed function; 0 = the kernel's default
    sandbox_tmpfs_bytes: int = 1024 * 1024 * 1024
    # more directories a sandboxed function may read (besides the system and the working directory)
    sandbox_read_only_paths: list[Path] = Field(default_factory=list)
    # directories every sandboxed function may write (a shared volume; DIR stays hidden even inside one)
    sandbox_shared_paths: list[Path] = Field(default_factory=list)
    # more paths a sandboxed function never sees (besides DIR), e.g. a TLS key in the working directory
    sandbox_hidden_paths: list[Path] = Field(default_factory=list)

    @model_validator(mode="after")
    def _read_token_file(self) -> AgentSettings:
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as error:
                raise ValueError(f"cannot read token_file {self.token_file}: {error.strerror}") from None
            if not token:
                raise ValueError(f"token_file {self.token_file} is empty")
            self.token = token
        return self

    @property
    def state_dir(self) -> Path:
        return self.home / "agents" / self.cluster_name

    @property
    def effective_agent_id(self) -> str:
        if self.agent_id:
            return self.agent_id
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return f"{self.cluster_name}-{digest}"

    def real_gpus(self) -> GpuDevices | None:
        """The GPUs a container backend requests from its runtime: NVML's when the inventory comes from
        NVML, a configured inventory's when `inventory_gpus_real` says it is this host's; None for a
        fake pool, which has nothing to request."""
        from fnplane.compute.inventory import GpuDevices, discover_nvml_devices, nvml_devices

        if self.inventory is not None:
            return GpuDevices.numbered(self.inventory) if self.inventory_gpus_real else None
        if not self.discover_gpus:
            return None
        found = discover_nvml_devices()
        return nvml_devices(found) if found else None

    def effective_inventory(self) -> list[GpuInventory]:
        if self.inventory is not None:
            return self.inventory
        if self.discover_gpus:
            from fnplane.compute.inventory import discover_nvml_inventory

            found = discover_nvml_inventory()
            if found:
                return found
        return default_inventory()
