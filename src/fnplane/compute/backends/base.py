"""The seam between the agent and whatever runs instances (local processes now, Kubernetes pods later).

A backend starts the function of one instance, tells when it ended, stops it, serves its logs, and after an
agent restart finds what an earlier run of the same agent left behind. The failure *rules* (restart
backoff, restart loop, startup timeout) live in the agent's supervisor, not in a backend.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fnplane.shared.models.compute import InstanceAssignment

# what a backend is doing before the function runs, in one line (e.g. an image pull's progress); the
# newest value is what counts: a caller may pass on only some of them
Progress = Callable[[str], None]
# NVCF's default inferencePort, which is also the default health port (reference/containers.md 1.4)
DEFAULT_INFERENCE_PORT = 8000
# where a function reads its version's secrets, as NVCF mounts them (reference/containers.md 1.3)
SECRETS_FILE = "/var/secrets/secrets.json"


class BackendError(Exception):
    """The backend could not start an instance (NVCF cause `create-container-error`)."""

    def __init__(self, detail: str, *, cause: str = "create-container-error") -> None:
        super().__init__(detail)
        self.detail = detail
        self.cause = cause


def secret_files(assignment: InstanceAssignment) -> dict[str, bytes]:
    """The files of the version's secrets inside the function: `SECRETS_FILE`, a JSON object of
    name -> value, read-only; none when the version has no secrets."""
    if not assignment.secrets:
        return {}
    return {SECRETS_FILE: json.dumps(assignment.secrets).encode()}


def request_root(state_dir: Path, instance_id: str) -> Path:
    """The instance's request directory (0700), where its worker keeps each request's asset and output
    directories; a backend makes it, and the function may write in it (and nowhere else of the agent's)."""
    return state_dir / "requests" / instance_id


def declared_inference_port(assignment: InstanceAssignment) -> int:
    """The port the function declared for inference (`inferencePort`, NVCF's default when unset)."""
    return assignment.inference_port or DEFAULT_INFERENCE_PORT


def separate_health_port(assignment: InstanceAssignment) -> int | None:
    """`health.port` when it is not the inference port, else None.

    NVCF's Triton containers answer inference on 8001 (gRPC) and `GET /v2/health/ready` on 8000 (HTTP):
    such a function gets a second port of its own for the health check (`$HEALTH_PORT`), and the worker
    checks it there. The comparison is with the declared port, as NVCF's pod has both on one loopback.
    """
    port = assignment.health.port
    return port if port != declared_inference_port(assignment) else None


@dataclass
class InstanceHandle:
    instance_id: str
    # where the worker reaches the function
    host: str
    port: int
    pid: int | None = None
    # where the worker health-checks it, when not on `port` (`separate_health_port`)
    health_port: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    # last bytes of stderr of this run (for the failure report)
    stderr_tail: str


class InstanceBackend(ABC):
    # the function runs as another user than the worker (a container runs its image's user): the
    # worker opens its request directories to every user (each instance's lies in the state dir, which
    # only the agent's user and that instance's own container, through its mount, can reach)
    shares_request_dirs: bool = False

    @abstractmethod
    async def start(self, assignment: InstanceAssignment, progress: Progress | None = None) -> InstanceHandle:
        """Start (or restart, keeping its port) the function of one instance; raise BackendError.
        `progress` hears what a long start is doing (the container backend's image pull)."""

    @abstractmethod
    async def wait(self, instance_id: str) -> ExitStatus:
        """Until the current run of the instance ends; its exit code and stderr tail."""

    @abstractmethod
    def is_alive(self, instance_id: str) -> bool: ...

    @abstractmethod
    async def stop(self, instance_id: str, *, forget: bool = True) -> None:
        """SIGTERM-like stop, then kill after the grace period; `forget` releases the port and record."""

    @abstractmethod
    def stderr_tail(self, instance_id: str) -> str: ...

    @abstractmethod
    async def logs(self, instance_id: str, *, tail: int) -> list[str]:
        """The last `tail` lines of the instance's output (stdout and stderr, in order)."""

    @abstractmethod
    def follow(self, instance_id: str, *, tail: int) -> AsyncIterator[str]:
        """The last `tail` lines, then new lines as they are written, until cancelled."""

    @abstractmethod
    def knows(self, instance_id: str) -> bool:
        """Whether the instance has logs or a record here."""

    @abstractmethod
    async def cleanup(self) -> list[str]:
        """Claim this agent's state (ConflictError if another live agent has it), then stop everything
        an earlier run of this agent left behind; the instance ids found."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop every instance of this backend."""
